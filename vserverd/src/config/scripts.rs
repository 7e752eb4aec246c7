//! scripts/: which hook files run, in which order (docs/lifecycle.md, Start and Stop).
//!
//! For each hook, candidates are `BASE/HOOK` then `BASE/HOOK.d/*` in name order, for BASE the
//! guest's scripts/ then .defaults/scripts/. Backup names are skipped. When any guest script of
//! that hook exists, the defaults are skipped unless a sourced script sets DONT_SKIP_DEFAULTS
//! (the runner decides that; here both lists are kept).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const HOOKS: &[&str] = &[
    "initialize",
    "prepre-start",
    "pre-start",
    "post-start",
    "pre-stop",
    "post-stop",
    "postpost-stop",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookScript {
    pub path: PathBuf,
    /// Executable: run as `SCRIPT HOOK NAME`; otherwise sourced by /bin/sh.
    pub executable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub guest: Vec<HookScript>,
    pub defaults: Vec<HookScript>,
}

fn skipped(name: &str) -> bool {
    [".rpmsave", ".rpmnew", ".rpmorig", "~"]
        .iter()
        .any(|s| name.ends_with(s))
        || name.contains(".cfsaved")
        || (name.starts_with('.'))
        || (name.contains(".~") && name.ends_with('~'))
}

fn script(p: PathBuf) -> Option<HookScript> {
    let m = std::fs::metadata(&p).ok()?;
    if !m.is_file() {
        return None;
    }
    Some(HookScript {
        executable: m.permissions().mode() & 0o111 != 0,
        path: p,
    })
}

fn candidates(base: &Path, hook: &str) -> Vec<HookScript> {
    let mut out: Vec<HookScript> = script(base.join(hook)).into_iter().collect();
    if let Ok(rd) = std::fs::read_dir(base.join(format!("{hook}.d"))) {
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        out.extend(
            names
                .into_iter()
                .filter(|p| {
                    !skipped(
                        &p.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                })
                .filter_map(script),
        );
    }
    out
}

pub fn hooks(cfg: &Path, def: &Path) -> Vec<Hook> {
    HOOKS
        .iter()
        .map(|h| Hook {
            name: (*h).into(),
            guest: candidates(&cfg.join("scripts"), h),
            defaults: candidates(&def.join("scripts"), h),
        })
        .filter(|h| !h.guest.is_empty() || !h.defaults.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_backups_and_executable_bit() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("cfg/scripts");
        std::fs::create_dir_all(s.join("pre-start.d")).unwrap();
        std::fs::write(s.join("pre-start"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(s.join("pre-start"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(s.join("pre-start.d/20-b"), "x=1\n").unwrap();
        std::fs::write(s.join("pre-start.d/10-a"), "x=1\n").unwrap();
        std::fs::write(s.join("pre-start.d/10-a~"), "x=1\n").unwrap();
        std::fs::write(s.join("pre-start.d/x.rpmnew"), "x=1\n").unwrap();
        let h = hooks(&d.path().join("cfg"), &d.path().join("def"));
        assert_eq!(h.len(), 1);
        let names: Vec<String> = h[0]
            .guest
            .iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["pre-start", "10-a", "20-b"]);
        assert!(h[0].guest[0].executable);
        assert!(!h[0].guest[1].executable);
    }
}
