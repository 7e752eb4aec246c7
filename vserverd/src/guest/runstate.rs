//! What a fresh daemon needs to re-adopt a running guest, under RUN_DIR/guests/NAME.json,
//! written atomically (write to a temp file, then rename) with a format version.

use std::path::{Path, PathBuf};

use crate::isolate::cgroup::GuestCgroup;

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub version: u32,
    pub name: String,
    pub context: u32,
    pub init_pid: i32,
    /// Field 22 of /proc/PID/stat: with the pid, names the process uniquely.
    pub init_start_time: u64,
    pub pid_ns: u64,
    pub mnt_ns: u64,
    pub cgroup: GuestCgroup,
    /// Seconds since the epoch.
    pub started: f64,
    pub reaper: bool,
    /// util-vserver's run file (target of CFG/run), holding the context id.
    pub run_file: Option<PathBuf>,
    /// The guest's pinned network namespace and the host end of its veth pair.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    #[serde(default)]
    pub host_veth: Option<String>,
    /// Host ends of netns/interfaces pairs.
    #[serde(default)]
    pub extra_veths: Vec<String>,
    /// The network namespace is another guest's (spaces/net with its context): not ours.
    #[serde(default)]
    pub netns_shared: bool,
    /// A shared-stack guest's addresses and rules (sharednet.rs); None in a namespace.
    #[serde(default)]
    pub shared_net: Option<super::sharednet::SharedNet>,
    /// Host files bound over the guest's /proc files (virt_mem), to bind again should their
    /// server be restarted.
    #[serde(default)]
    pub proc_files: Vec<(String, PathBuf)>,
    /// The kernel's boot id when the guest started: a record from an earlier boot (a run
    /// directory that is not on tmpfs, after a power cut) never names a live guest, whatever
    /// process now has its pid.
    #[serde(default)]
    pub boot_id: String,
    /// The disk limits its start set (dlimits/), taken away at stop.
    #[serde(default)]
    pub disk: Vec<crate::disk::Applied>,
}

/// This boot's id (/proc/sys/kernel/random/boot_id).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("guests")
}

pub fn path(run_dir: &Path, name: &str) -> PathBuf {
    dir(run_dir).join(format!("{name}.json"))
}

pub fn save(run_dir: &Path, s: &RunState) -> std::io::Result<()> {
    std::fs::create_dir_all(dir(run_dir))?;
    let final_path = path(run_dir, &s.name);
    let tmp = final_path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s).expect("serializable"))?;
    std::fs::rename(&tmp, &final_path)
}

pub fn remove(run_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(path(run_dir, name));
}

/// Every state file; unreadable or other-version ones are returned as errors by name.
pub fn load_all(run_dir: &Path) -> Vec<(String, Result<RunState, String>)> {
    let Ok(rd) = std::fs::read_dir(dir(run_dir)) else {
        return vec![];
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        let Some(name) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .map(String::from)
        else {
            continue;
        };
        let r = std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<RunState>(&b).map_err(|e| e.to_string()))
            .and_then(|s| {
                if s.version == VERSION {
                    Ok(s)
                } else {
                    Err(format!(
                        "format version {} (this vserverd reads {VERSION})",
                        s.version
                    ))
                }
            });
        out.push((name, r));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_atomically() {
        let t = tempfile::tempdir().unwrap();
        let s = RunState {
            version: VERSION,
            name: "web".into(),
            context: 42,
            init_pid: 7,
            init_start_time: 99,
            pid_ns: 1,
            mnt_ns: 2,
            cgroup: GuestCgroup::default(),
            started: 1.5,
            reaper: false,
            run_file: None,
            netns: None,
            host_veth: None,
            extra_veths: vec![],
            netns_shared: false,
            shared_net: None,
            boot_id: boot_id(),
            disk: vec![crate::disk::Applied {
                directory: "/vservers/web".into(),
                how: crate::disk::How::Qgroup {
                    subvol: 257,
                    fsid: "x".into(),
                },
                wanted: crate::disk::Wanted::default(),
            }],
            proc_files: Vec::new(),
        };
        save(t.path(), &s).unwrap();
        let all = load_all(t.path());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.as_ref().unwrap(), &s);
        assert!(!path(t.path(), "web").with_extension("json.tmp").exists());
        std::fs::write(path(t.path(), "old"), r#"{"version": 0}"#).unwrap();
        assert!(load_all(t.path())[0].1.is_err());
        remove(t.path(), "web");
        assert_eq!(load_all(t.path()).len(), 1);
    }
}
