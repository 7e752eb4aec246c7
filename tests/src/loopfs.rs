//! File systems in loop images mounted where a test wants them (unification, disk limits).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{require, TestDaemon};

/// A file system in a loop image, unmounted on drop.
pub struct Loop {
    pub at: PathBuf,
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn mkfs(fs: &str) -> Option<(&'static str, Vec<&'static str>)> {
    match fs {
        "xfs" => Some(("/usr/sbin/mkfs.xfs", vec!["-q", "-f", "-m", "reflink=1"])),
        "btrfs" => Some(("/usr/sbin/mkfs.btrfs", vec!["-q", "-f"])),
        "ext4" => Some(("/usr/sbin/mkfs.ext4", vec!["-q", "-F"])),
        _ => None,
    }
}

/// The daemon's vdir base on a fresh `fs` loop image (None: the mkfs is missing).
pub fn mount_loop(d: &TestDaemon, fs: &str, mib: u64) -> Option<Loop> {
    mount_loop_with(d, fs, mib, &[], "")
}

/// As [`mount_loop`], with extra mkfs arguments and mount options.
pub fn mount_loop_with(
    d: &TestDaemon,
    fs: &str,
    mib: u64,
    mkfs_args: &[&str],
    options: &str,
) -> Option<Loop> {
    let (tool, args) = mkfs(fs)?;
    if !require(Path::new(tool).exists(), tool) {
        return None;
    }
    let img = d.dir.path().join(format!("{fs}.img"));
    std::fs::File::create(&img)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let ok = Command::new(tool)
        .args(&args)
        .args(mkfs_args)
        .arg(&img)
        .status()
        .unwrap();
    assert!(ok.success(), "{tool}");
    let opts = if options.is_empty() {
        "loop".to_string()
    } else {
        format!("loop,{options}")
    };
    let ok = Command::new("mount")
        .args(["-o", &opts])
        .arg(&img)
        .arg(&d.vdir_base)
        .status()
        .unwrap();
    assert!(ok.success(), "mount the {fs} loop image");
    Some(Loop {
        at: d.vdir_base.clone(),
    })
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A btrfs loop image on the daemon's vdir base, quotas on, `names` made subvolumes (guest
/// roots a disk limit can be set on).
pub fn btrfs_with_quota(d: &TestDaemon, names: &[&str]) -> Option<Loop> {
    if !require(Path::new("/usr/bin/btrfs").exists(), "btrfs-progs") {
        return None;
    }
    let l = mount_loop(d, "btrfs", 300)?;
    let ok = Command::new("btrfs")
        .args(["quota", "enable"])
        .arg(&d.vdir_base)
        .status()
        .unwrap();
    assert!(ok.success(), "btrfs quota enable");
    for n in names {
        let ok = Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(d.vdir_base.join(n))
            .output()
            .unwrap();
        assert!(ok.status.success(), "subvolume: {}", text(&ok));
    }
    Some(l)
}

/// The kernel's limit on the qgroup of subvolume `path` of the btrfs at `mnt` (None: no
/// limit), as `btrfs qgroup show` reads it.
pub fn qgroup_limit(mnt: &Path, path: &str) -> Option<u64> {
    let o = Command::new("btrfs")
        .args(["qgroup", "show", "-re", "--raw"])
        .arg(mnt)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.split_whitespace().last() == Some(path))
        .unwrap_or_else(|| panic!("no qgroup for {path}: {out}"));
    line.split_whitespace().nth(3).unwrap().parse().ok()
}
