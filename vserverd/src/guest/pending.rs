//! The start journal: what a start has made so far (network, cgroups), kept on
//! disk under RUN_DIR/guests/NAME.pending from before the first thing is made until the run
//! state is saved or the start is rolled back. A daemon killed in between leaves it behind,
//! and the next daemon takes everything it names back before adopting anyone, so a start cut
//! short never leaves a guest that cannot start again (docs/crash.md).

use std::path::{Path, PathBuf};

use crate::isolate::cgroup::GuestCgroup;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub cgroup: Option<GuestCgroup>,
    pub netns: Option<PathBuf>,
    pub veths: Vec<String>,
    pub host_veth: Option<String>,
    pub netns_shared: bool,
    /// A shared-stack guest's addresses (its programs are found by its name).
    #[serde(default)]
    pub shared_net: Option<super::sharednet::SharedNet>,
    /// Disk limits, named before they are set.
    #[serde(default)]
    pub disk: Vec<crate::disk::Applied>,
}

const SUFFIX: &str = ".pending";

fn path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("guests").join(format!("{name}{SUFFIX}"))
}

/// Written atomically (temp file, rename), so a crash leaves the old record or the new one.
pub fn save(run_dir: &Path, name: &str, p: &Pending) -> Result<(), crate::error::StepError> {
    let f = path(run_dir, name);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(run_dir.join("guests"))?;
        let tmp = f.with_extension("pending.tmp");
        std::fs::write(&tmp, serde_json::to_vec(p).expect("serializable"))?;
        std::fs::rename(&tmp, &f)
    };
    crate::error::StepResult::step_doing(write(), "start.journal", || {
        format!("writing the start journal {}", f.display())
    })
    .map_err(|e| e.on(&f))
}

pub fn remove(run_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(path(run_dir, name));
}

/// Every journal left behind, by guest name (unreadable ones as empty: nothing to undo).
pub fn load_all(run_dir: &Path) -> Vec<(String, Pending)> {
    let Ok(rd) = std::fs::read_dir(run_dir.join("guests")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Pending)> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_suffix(SUFFIX)?.to_string();
            let p = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            Some((n, p))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

impl Pending {
    pub fn net(&self) -> Option<super::network::GuestNet> {
        self.netns.clone().map(|ns| super::network::GuestNet {
            ns,
            veths: self.veths.clone(),
            host_veth: self.host_veth.clone(),
            shared: self.netns_shared,
        })
    }

    pub fn set_net(&mut self, n: &super::network::GuestNet) {
        self.netns = Some(n.ns.clone());
        self.veths = n.veths.clone();
        self.host_veth = n.host_veth.clone();
        self.netns_shared = n.shared;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journals_round_trip_and_are_not_run_states() {
        let t = tempfile::tempdir().unwrap();
        let p = Pending {
            netns: Some("/run/x".into()),
            ..Default::default()
        };
        save(t.path(), "web", &p).unwrap();
        let all = load_all(t.path());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "web");
        assert_eq!(all[0].1.netns, p.netns);
        // The run-state reader does not take it for a guest.
        assert!(super::super::runstate::load_all(t.path()).is_empty());
        remove(t.path(), "web");
        assert!(load_all(t.path()).is_empty());
    }
}
