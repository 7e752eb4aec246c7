//! The config as the varlink interface shows it.

use super::limits::Limit;
use super::{names, GuestConfig};

fn limit(l: Option<Limit>, field: &str, unlimited: &mut Vec<String>) -> Option<u64> {
    match l {
        Some(Limit::Unlimited) => {
            unlimited.push(field.to_string());
            None
        }
        Some(Limit::Value(v)) => Some(v),
        None => None,
    }
}

impl From<&GuestConfig> for proto::GuestConfig {
    fn from(c: &GuestConfig) -> Self {
        let mounts = c
            .fstab
            .clone()
            .unwrap_or_else(super::fstab::default_entries);
        proto::GuestConfig {
            name: c.name.clone(),
            context: c.context,
            vdir: c.vdir.display().to_string(),
            display_name: c.display_name.clone(),
            disabled: c.disabled,
            init_style: c.init.style.as_str().to_string(),
            runlevel: c.init.runlevel_start.clone(),
            mark: c.init.mark.clone(),
            depends: c.init.depends.clone(),
            environment: c.init.environment.clone(),
            bcapabilities: names::BCAPS.names(c.bcaps),
            ccapabilities: names::CCAPS.names(c.ccaps),
            cflags: names::CFLAGS.names(c.cflags),
            nflags: names::NFLAGS.names(c.nflags),
            umask: names::UMASK.names(c.umask),
            nodename: c.uts.nodename.clone(),
            domainname: c.uts.domainname.clone(),
            nice: c.nice.map(i64::from),
            personality: c.personality.map(i64::from),
            interfaces: c
                .interfaces
                .list
                .iter()
                .map(|i| proto::AddressConfig {
                    id: i.id.clone(),
                    address: format!("{}/{}", i.ip, i.prefix),
                    dev: i.dev.clone(),
                    label: i.name.clone(),
                    nodev: i.nodev,
                })
                .collect(),
            mounts: mounts
                .iter()
                .map(|m| proto::MountConfig {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    fstype: m.fstype.clone(),
                    options: m.options.clone(),
                })
                .collect(),
            rlimits: c
                .rlimits
                .iter()
                .map(|r| {
                    let mut u = vec![];
                    proto::LimitConfig {
                        resource: r.name.clone(),
                        min: limit(r.limits.min, "min", &mut u),
                        soft: limit(r.limits.soft, "soft", &mut u),
                        hard: limit(r.limits.hard, "hard", &mut u),
                        unlimited: u,
                        in_pages: r.in_pages,
                    }
                })
                .collect(),
            ulimits: c
                .ulimits
                .iter()
                .map(|r| {
                    let mut u = vec![];
                    proto::LimitConfig {
                        resource: r.name.clone(),
                        min: None,
                        soft: limit(Some(r.soft), "soft", &mut u),
                        hard: limit(Some(r.hard), "hard", &mut u),
                        unlimited: u,
                        in_pages: false,
                    }
                })
                .collect(),
            cgroup: c
                .cgroup
                .settings
                .iter()
                .map(|(n, v)| proto::Setting {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
            hooks: c
                .hooks
                .iter()
                .flat_map(|h| {
                    h.guest
                        .iter()
                        .chain(h.defaults.iter())
                        .map(move |s| format!("{}: {}", h.name, s.path.display()))
                })
                .collect(),
            sync_timeout: i64::from(c.vshelper.sync_timeout),
        }
    }
}
