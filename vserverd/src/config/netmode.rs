//! `apps/vserverd/netmode` (our extension; in a guest's tree, else in `.defaults`): how a guest
//! with `interfaces/` is networked. `shared` (what a guest without the file gets, as under
//! util-vserver): the host's network stack with the guest's addresses on the host's devices
//! and its sockets narrowed to them. `netns`: a network namespace and a veth pair
//! (docs/network.md).

use std::path::Path;

use super::error::{Code, ConfigError, Result};
use super::read;
use super::GuestConfig;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetMode {
    /// No netmode file: the shared stack, unless the guest's bounding set grants NET_ADMIN or
    /// NET_RAW (which would be the host's there): such a guest keeps its namespace.
    #[default]
    Auto,
    Netns,
    Shared,
}

/// CAP_NET_ADMIN and CAP_NET_RAW: over the host's own stack they would let guest root change
/// the host's network or sniff and forge any traffic.
const HOST_NET_CAPS: u64 = (1 << 12) | (1 << 13);

fn one(file: &Path) -> Result<Option<NetMode>> {
    Ok(match read::scalar(file)?.as_deref() {
        None => None,
        Some("shared") => Some(NetMode::Shared),
        Some("netns") => Some(NetMode::Netns),
        Some(v) => {
            return Err(ConfigError::at(
                Code::NetmodeInvalid,
                file,
                1,
                format!("expected `shared` or `netns`, got {v:?}"),
            ))
        }
    })
}

/// The mode a guest's tree (`cfg`) or `.defaults` (`def`) asks for ([`NetMode::Auto`]: none).
pub fn load(cfg: &Path, def: &Path) -> Result<NetMode> {
    let f = Path::new("apps/vserverd/netmode");
    Ok(one(&cfg.join(f))?
        .or(one(&def.join(f))?)
        .unwrap_or_default())
}

/// Whether the guest runs in the shared stack: the mode says so and it has addresses, and
/// nothing asks for a namespace (spaces/net, netns/interfaces) or for the host's whole stack
/// (nonetns).
pub fn shared_stack(c: &GuestConfig) -> bool {
    let wanted = match c.netmode {
        NetMode::Shared => true,
        NetMode::Netns => false,
        // An address the shared stack cannot give (0.0.0.0: util-vserver's "no IP" guests, a
        // loopback or multicast address) keeps the namespace too; asked for by name it is an
        // error at start.
        NetMode::Auto => {
            c.bcaps & HOST_NET_CAPS == 0
                && c.interfaces
                    .list
                    .iter()
                    .all(|i| !(i.ip.is_unspecified() || i.ip.is_loopback() || i.ip.is_multicast()))
        }
    };
    wanted
        && !c.nonetns
        && c.spaces.net.is_none()
        && c.netns.interfaces.is_empty()
        && !c.interfaces.list.is_empty()
}

/// What a shared-stack guest may not have: capabilities over the host's network (asked for by
/// name: without a netmode file such a guest gets a namespace instead).
pub fn check(c: &GuestConfig) -> Result<()> {
    if c.netmode == NetMode::Shared && shared_stack(c) && c.bcaps & HOST_NET_CAPS != 0 {
        return Err(ConfigError::file(
            Code::NetmodeHostCaps,
            &c.cfg_dir.join("bcapabilities"),
            "NET_ADMIN and NET_RAW would be the host's own in the shared network stack \
             (apps/vserverd/netmode is shared): drop them, or give the guest a namespace \
             (netmode netns)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmode_files() {
        let t = tempfile::tempdir().unwrap();
        let (cfg, def) = (t.path().join("g"), t.path().join(".defaults"));
        std::fs::create_dir_all(cfg.join("apps/vserverd")).unwrap();
        std::fs::create_dir_all(def.join("apps/vserverd")).unwrap();
        assert_eq!(load(&cfg, &def).unwrap(), NetMode::Auto);
        std::fs::write(def.join("apps/vserverd/netmode"), "netns\n").unwrap();
        assert_eq!(load(&cfg, &def).unwrap(), NetMode::Netns);
        std::fs::write(def.join("apps/vserverd/netmode"), "shared\n").unwrap();
        assert_eq!(load(&cfg, &def).unwrap(), NetMode::Shared);
        std::fs::write(cfg.join("apps/vserverd/netmode"), "netns\n").unwrap();
        assert_eq!(load(&cfg, &def).unwrap(), NetMode::Netns);
        std::fs::write(cfg.join("apps/vserverd/netmode"), "bridge\n").unwrap();
        let e = load(&cfg, &def).unwrap_err().to_string();
        assert!(
            e.contains("apps/vserverd/netmode:1") && e.contains("bridge"),
            "{e}"
        );
    }
}
