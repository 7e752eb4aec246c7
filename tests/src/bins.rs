//! Finding the project's binaries: built by `cargo build --workspace` next to the test binary.

use std::path::PathBuf;

pub(crate) fn target_dir() -> PathBuf {
    // target/debug/deps/TEST-HASH -> target/debug
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn find(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace` before the tests (or set {env})",
        p.display()
    );
    p
}

pub fn vserverd() -> PathBuf {
    find("vserverd", "VSERVERD_BIN")
}

pub fn vserverctl() -> PathBuf {
    find("vserverctl", "VSERVERCTL_BIN")
}
