//! cgroup/, sched/ (and the deprecated `schedule`), cpuset/, dlimits/, sysctl/.

use std::path::Path;

use super::error::{Code, ConfigError, Result};
use super::read;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroup {
    /// `cgroup/name`: a cgroup shared by several guests.
    pub name: Option<String>,
    /// Settings written verbatim (v1) or translated (v2): (file, value).
    pub settings: Vec<(String, String)>,
}

const CGROUP_META: &[&str] = &["mnt", "subsys", "inherit", "name", "base", "per-ss"];

fn cgroup_dir(dir: &Path) -> Result<Option<Cgroup>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut c = Cgroup {
        name: read::scalar(&dir.join("name"))?,
        settings: vec![],
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::file(Code::FileUnreadable, dir, format!("cannot read: {e}")))?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !CGROUP_META.contains(&n.as_str()))
        .collect();
    files.sort();
    for f in files {
        if !f.contains('.') {
            return Err(ConfigError::file(
                Code::CgroupNameInvalid,
                &dir.join(&f),
                "expected a controller.knob file name (e.g. memory.limit_in_bytes)",
            ));
        }
        let v = read::scalar(&dir.join(&f))?.unwrap_or_default();
        c.settings.push((f, v));
    }
    Ok(Some(c))
}

/// CFG/cgroup replaces .defaults/cgroup (it does not merge with it).
pub fn cgroup(cfg: &Path, def: &Path) -> Result<Cgroup> {
    Ok(cgroup_dir(&cfg.join("cgroup"))?
        .or(cgroup_dir(&def.join("cgroup"))?)
        .unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Sub-folder name; None for the sched/ folder itself.
    pub id: Option<String>,
    pub fill_rate: Option<u64>,
    pub interval: Option<u64>,
    pub fill_rate2: Option<u64>,
    pub interval2: Option<u64>,
    pub tokens: Option<u64>,
    pub tokens_min: Option<u64>,
    pub tokens_max: Option<u64>,
    pub priority_bias: Option<i64>,
    pub idle_time: bool,
    pub cpu_id: Option<u64>,
    pub bucket_id: Option<u64>,
}

fn sched_int(f: &Path) -> Result<Option<i64>> {
    match read::scalar(f)? {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ConfigError::at(Code::UintInvalid, f, 1, "is not an integer")),
    }
}

/// A dlimits/ size or count: util-vserver writes -1 (and `inf`) for "unlimited", which is
/// u64::MAX here.
fn dlimit_value(f: &Path) -> Result<Option<u64>> {
    match read::scalar(f)?.as_deref() {
        None => Ok(None),
        Some("-1") | Some("inf") | Some("infinity") | Some("unlimited") => Ok(Some(u64::MAX)),
        Some(_) => uint(f),
    }
}

fn uint(f: &Path) -> Result<Option<u64>> {
    match sched_int(f)? {
        Some(v) if v < 0 => Err(ConfigError::at(
            Code::UintInvalid,
            f,
            1,
            "must not be negative",
        )),
        v => Ok(v.map(|v| v as u64)),
    }
}

fn bucket(dir: &Path, id: Option<String>) -> Result<Bucket> {
    Ok(Bucket {
        id,
        fill_rate: uint(&dir.join("fill-rate"))?,
        interval: uint(&dir.join("interval"))?,
        fill_rate2: uint(&dir.join("fill-rate2"))?,
        interval2: uint(&dir.join("interval2"))?,
        tokens: uint(&dir.join("tokens"))?,
        tokens_min: uint(&dir.join("tokens-min"))?,
        tokens_max: uint(&dir.join("tokens-max"))?,
        priority_bias: sched_int(&dir.join("priority-bias"))?,
        idle_time: read::flag(&dir.join("idle-time")),
        cpu_id: uint(&dir.join("cpu-id"))?,
        bucket_id: uint(&dir.join("bucket-id"))?,
    })
}

/// sched/ with its per-CPU sub-folders, else the deprecated six-line `schedule`.
pub fn sched(cfg: &Path) -> Result<Vec<Bucket>> {
    let d = cfg.join("sched");
    if d.is_dir() {
        let mut out = vec![bucket(&d, None)?];
        let mut subs: Vec<_> = std::fs::read_dir(&d)
            .map_err(|e| ConfigError::file(Code::FileUnreadable, &d, format!("cannot read: {e}")))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        subs.sort_by_key(|e| e.file_name());
        for s in subs {
            out.push(bucket(
                &s.path(),
                Some(s.file_name().to_string_lossy().into_owned()),
            )?);
        }
        out.retain(|b| {
            *b != Bucket {
                id: b.id.clone(),
                ..Default::default()
            }
        });
        return Ok(out);
    }
    let f = cfg.join("schedule");
    let Some(lines) = read::list(&f)? else {
        return Ok(vec![]);
    };
    let vals: Vec<i64> = lines
        .iter()
        .map(|l| l.text.parse::<i64>().ok())
        .collect::<Option<_>>()
        .filter(|v: &Vec<i64>| v.len() == 6)
        .ok_or_else(|| {
            ConfigError::file(
                Code::ScheduleShort,
                &f,
                format!("Bad content in '{}'; expected 6 integers", f.display()),
            )
        })?;
    let u = |v: i64| Some(v.max(0) as u64);
    Ok(vec![Bucket {
        fill_rate: u(vals[0]),
        interval: u(vals[1]),
        tokens: u(vals[2]),
        tokens_min: u(vals[3]),
        tokens_max: u(vals[4]),
        priority_bias: Some(vals[5]),
        ..Default::default()
    }])
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dlimit {
    pub directory: String,
    pub space_total: u64,
    pub inodes_total: u64,
    pub reserved: u64,
}

/// dlimits/*: all four files required, else the entry is skipped (with a warning here).
pub fn dlimits(cfg: &Path, warnings: &mut Vec<ConfigError>) -> Result<Vec<Dlimit>> {
    let d = cfg.join("dlimits");
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(&d) else {
        return Ok(out);
    };
    // A shell glob (util-vserver's start) and vsysctl skip dot names: a .svn or .git folder
    // of a tree kept in version control is no entry.
    let mut subs: Vec<_> = rd
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    subs.sort_by_key(|e| e.file_name());
    for s in subs {
        let p = s.path();
        if read::flag(&p.join("disabled")) {
            continue;
        }
        let dir = read::scalar(&p.join("directory"))?;
        let (st, it, r) = (
            dlimit_value(&p.join("space_total"))?,
            dlimit_value(&p.join("inodes_total"))?,
            uint(&p.join("reserved"))?,
        );
        match (dir, st, it, r) {
            (Some(directory), Some(space_total), Some(inodes_total), Some(reserved)) => {
                if !directory.starts_with('/') {
                    return Err(ConfigError::at(
                        Code::DlimitInvalid,
                        &p.join("directory"),
                        1,
                        format!("{directory:?} is not an absolute path"),
                    ));
                }
                if reserved > 100 {
                    return Err(ConfigError::at(
                        Code::DlimitInvalid,
                        &p.join("reserved"),
                        1,
                        format!("{reserved} is over 100 (a percentage)"),
                    ));
                }
                out.push(Dlimit {
                    directory,
                    space_total,
                    inodes_total,
                    reserved,
                })
            }
            _ => warnings.push(ConfigError::file(
                Code::DlimitIncomplete,
                &p,
                "skipped: directory, space_total, inodes_total and reserved are all required",
            )),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub setting: String,
    pub value: String,
}

pub fn sysctl(cfg: &Path) -> Result<Vec<Sysctl>> {
    let d = cfg.join("sysctl");
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(&d) else {
        return Ok(out);
    };
    // A shell glob (util-vserver's start) and vsysctl skip dot names: a .svn or .git folder
    // of a tree kept in version control is no entry.
    let mut subs: Vec<_> = rd
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    subs.sort_by_key(|e| e.file_name());
    for s in subs {
        let p = s.path();
        let setting = read::scalar(&p.join("setting"))?.ok_or_else(|| {
            ConfigError::file(Code::SysctlIncomplete, &p, "missing the setting file")
        })?;
        if setting.contains("..") || setting.contains('/') {
            return Err(ConfigError::at(
                Code::SysctlSettingInvalid,
                &p.join("setting"),
                1,
                format!("{setting:?} is not a dotted sysctl name"),
            ));
        }
        let value = read::scalar(&p.join("value"))?.ok_or_else(|| {
            ConfigError::file(Code::SysctlIncomplete, &p, "missing the value file")
        })?;
        out.push(Sysctl { setting, value });
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpuset {
    pub name: String,
    pub cpus: Option<String>,
    pub mems: Option<String>,
    pub cpu_exclusive: bool,
    pub mem_exclusive: bool,
    pub virtualized: bool,
    pub nocreate: bool,
}

pub fn cpuset(cfg: &Path) -> Result<Option<Cpuset>> {
    let d = cfg.join("cpuset");
    if !d.is_dir() {
        return Ok(None);
    }
    // util-vserver's build always makes the folder and writes `name` only with --cpuset; its
    // start skips a cpuset without a name.
    let Some(name) = read::scalar(&d.join("name"))? else {
        return Ok(None);
    };
    let yes = |f: &str| -> Result<bool> {
        Ok(read::scalar(&d.join(f))?.is_some_and(|v| v == "1" || v == "yes"))
    };
    Ok(Some(Cpuset {
        name,
        cpus: read::scalar(&d.join("cpus"))?,
        mems: read::scalar(&d.join("mems"))?,
        cpu_exclusive: yes("cpu_exclusive")?,
        mem_exclusive: yes("mem_exclusive")?,
        virtualized: yes("virtualized")?,
        nocreate: read::flag(&d.join("nocreate")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_tree as tree;

    #[test]
    fn cgroup_settings_and_defaults_replacement() {
        let d = tree(&[
            ("cfg/cgroup/memory.limit_in_bytes", "1000000\n"),
            ("cfg/cgroup/name", "shared\n"),
            ("def/cgroup/cpu.shares", "512\n"),
        ]);
        let c = cgroup(&d.path().join("cfg"), &d.path().join("def")).unwrap();
        assert_eq!(c.name.as_deref(), Some("shared"));
        assert_eq!(
            c.settings,
            [("memory.limit_in_bytes".to_string(), "1000000".to_string())]
        );
        let c = cgroup(&d.path().join("nocfg"), &d.path().join("def")).unwrap();
        assert_eq!(c.settings, [("cpu.shares".to_string(), "512".to_string())]);
    }

    #[test]
    fn sched_and_schedule() {
        let d = tree(&[
            ("sched/fill-rate", "1\n"),
            ("sched/interval", "4\n"),
            ("sched/cpu0/cpu-id", "0\n"),
        ]);
        let s = sched(d.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].fill_rate, s[0].interval), (Some(1), Some(4)));
        let d = tree(&[("sched/fill-rate", "fast\n")]);
        assert_eq!(sched(d.path()).unwrap_err().message, "is not an integer");
        let d = tree(&[("schedule", "1\n4\n100\n0\n200\n0\n")]);
        assert_eq!(sched(d.path()).unwrap()[0].tokens_max, Some(200));
        let d = tree(&[("schedule", "1\n4\n")]);
        assert!(sched(d.path())
            .unwrap_err()
            .message
            .starts_with("Bad content"));
    }

    #[test]
    fn dlimits_need_all_four() {
        let d = tree(&[
            ("dlimits/a/directory", "/\n"),
            ("dlimits/a/space_total", "100\n"),
        ]);
        let mut w = vec![];
        assert!(dlimits(d.path(), &mut w).unwrap().is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn dlimits_refuse_relative_directories_and_reserves_over_100_with_file_and_line() {
        let four = |dir: &str, reserved: &str| {
            tree(&[
                ("dlimits/a/directory", dir),
                ("dlimits/a/space_total", "100\n"),
                ("dlimits/a/inodes_total", "-1\n"),
                ("dlimits/a/reserved", reserved),
            ])
        };
        let mut w = vec![];
        let d = four("vservers/a\n", "5\n");
        let e = dlimits(d.path(), &mut w).unwrap_err();
        assert_eq!((e.code, e.line), (Code::DlimitInvalid, Some(1)));
        assert!(e.file.ends_with("dlimits/a/directory"), "{e}");
        let d = four("/vservers/a\n", "101\n");
        let e = dlimits(d.path(), &mut w).unwrap_err();
        assert!(e.file.ends_with("dlimits/a/reserved"), "{e}");
        let d = four("/vservers/a\n", "big\n");
        assert_eq!(
            dlimits(d.path(), &mut w).unwrap_err().code,
            Code::UintInvalid
        );
        let d = four("/vservers/a\n", "100\n");
        assert_eq!(dlimits(d.path(), &mut w).unwrap().len(), 1);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn sysctl_entries() {
        let d = tree(&[
            ("sysctl/0/setting", "kernel.shmmax\n"),
            ("sysctl/0/value", "1000\n"),
        ]);
        assert_eq!(sysctl(d.path()).unwrap()[0].setting, "kernel.shmmax");
        let d = tree(&[
            ("sysctl/0/setting", "../../etc\n"),
            ("sysctl/0/value", "1\n"),
        ]);
        assert!(sysctl(d.path()).is_err());
    }
}
