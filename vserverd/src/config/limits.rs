//! rlimits/ (per-guest limits) and ulimits/ (per-process limits of init), in util-vserver's
//! number syntax: `inf…` is unlimited; else strtoll base 0 (so `010` is 8) with an optional
//! K (×1024), M (×1024²), k (×1000) or m (×10⁶) suffix and nothing after it.

use std::path::Path;

use super::error::{Code, ConfigError, Errors, Result};
use super::read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Value(u64),
}

impl Limit {
    pub fn as_option(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Value(v) => Some(v),
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Unlimited => write!(f, "inf"),
            Limit::Value(v) => write!(f, "{v}"),
        }
    }
}

/// Parses one limit value; the error text is what the user sees after `file:line: `.
pub fn parse_limit(s: &str) -> std::result::Result<Limit, String> {
    let t = s.trim();
    if t.starts_with("inf") {
        return Ok(Limit::Unlimited);
    }
    let bad = || format!("expected a number or 'inf', got {t:?}");
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1024u64),
        Some('M') => (&t[..t.len() - 1], 1024 * 1024),
        Some('k') => (&t[..t.len() - 1], 1000),
        Some('m') => (&t[..t.len() - 1], 1_000_000),
        _ => (t, 1),
    };
    // util-vserver's parsers (vlimit's strtoll, exec-ulimit's strtol) read -1 as all ones, their
    // infinity; other negatives are refused here (they were huge values there).
    if t == "-1" {
        return Ok(Limit::Unlimited);
    }
    if num.is_empty() || num.starts_with('-') {
        return Err(bad());
    }
    // strtoll saturates a decimal beyond 2^63-1 (PlanetLab writes the kernel's 2^64-1 in
    // full): no limit in practice.
    if num.len() > 18 && num.bytes().all(|b| b.is_ascii_digit()) && num.parse::<i64>().is_err() {
        return Ok(Limit::Unlimited);
    }
    let v = read::parse_int(num).ok_or_else(bad)?;
    (v as u64)
        .checked_mul(mult)
        .map(Limit::Value)
        .ok_or_else(|| format!("{t:?} is too large"))
}

/// min, soft and hard of one resource; None where nothing was set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Triple {
    pub min: Option<Limit>,
    pub soft: Option<Limit>,
    pub hard: Option<Limit>,
}

/// The resources rlimits/ knows (util-vserver's vlimit names).
pub const RLIMITS: &[&str] = &[
    "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as", "locks",
    "msgqueue", "nsock", "openfd", "anon", "shmem", "semary", "nsems", "dentry",
];

/// rlimits counted in pages (the resources code converts with the page size).
pub const RLIMITS_IN_PAGES: &[&str] = &["rss", "as", "anon", "memlock", "shmem"];

/// The resources ulimits/ knows (exec-ulimit).
pub const ULIMITS: &[&str] = &[
    "core", "cpu", "data", "fsize", "locks", "memlock", "nofile", "nproc", "rss", "stack",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub name: String,
    pub limits: Triple,
    /// The values are pages, not bytes or counts.
    pub in_pages: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: Limit,
    pub hard: Limit,
}

fn value(path: &Path) -> Result<Option<Limit>> {
    match read::scalar(path)? {
        None => Ok(None),
        Some(s) => parse_limit(&s)
            .map(Some)
            .map_err(|m| ConfigError::at(Code::LimitInvalid, path, 1, m)),
    }
}

fn unknown(dir: &Path, known: &[&str], suffixes: &[&str], warnings: &mut Vec<ConfigError>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let base = suffixes
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(&n);
        if !known.contains(&base) {
            warnings.push(ConfigError::file(
                Code::LimitUnknown,
                &dir.join(&n),
                "unknown limit, ignored",
            ));
        }
    }
}

fn first<T>(out: T, errors: Errors) -> Result<T> {
    match errors.0.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// rlimits/: a plain file sets min, soft and hard; `.min`/`.soft`/`.hard` override.
pub fn rlimits(dir: &Path, warnings: &mut Vec<ConfigError>) -> Result<Vec<Rlimit>> {
    let mut errors = Errors::default();
    let out = rlimits_each(dir, warnings, &mut errors);
    first(out, errors)
}

/// [`rlimits`], recording an error per file that is wrong and going on.
pub fn rlimits_each(
    dir: &Path,
    warnings: &mut Vec<ConfigError>,
    errors: &mut Errors,
) -> Vec<Rlimit> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return out;
    }
    unknown(dir, RLIMITS, &[".min", ".soft", ".hard"], warnings);
    for name in RLIMITS {
        let all = errors.keep(value(&dir.join(name)));
        let mut one = |suffix: &str| errors.keep(value(&dir.join(format!("{name}{suffix}"))));
        let t = Triple {
            min: one(".min").or(all),
            soft: one(".soft").or(all),
            hard: one(".hard").or(all),
        };
        if t != Triple::default() {
            out.push(Rlimit {
                name: (*name).into(),
                limits: t,
                in_pages: RLIMITS_IN_PAGES.contains(name),
            });
        }
    }
    out
}

/// ulimits/: a plain file sets soft and hard; soft above a finite hard is clamped to it.
pub fn ulimits(dir: &Path, warnings: &mut Vec<ConfigError>) -> Result<Vec<Ulimit>> {
    let mut errors = Errors::default();
    let out = ulimits_each(dir, warnings, &mut errors);
    first(out, errors)
}

/// [`ulimits`], recording an error per file that is wrong and going on.
pub fn ulimits_each(
    dir: &Path,
    warnings: &mut Vec<ConfigError>,
    errors: &mut Errors,
) -> Vec<Ulimit> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return out;
    }
    unknown(dir, ULIMITS, &[".soft", ".hard"], warnings);
    for name in ULIMITS {
        let both = errors.keep(value(&dir.join(name)));
        let soft = errors
            .keep(value(&dir.join(format!("{name}.soft"))))
            .or(both);
        let hard = errors
            .keep(value(&dir.join(format!("{name}.hard"))))
            .or(both);
        if soft.is_none() && hard.is_none() {
            continue;
        }
        if *name == "nofile" && hard == Some(Limit::Unlimited) {
            // The kernel refuses an unlimited RLIMIT_NOFILE (it caps it at fs.nr_open), so
            // util-vserver's exec-ulimit failed the start on it; say so before the start.
            let f = if read::flag(&dir.join("nofile.hard")) {
                dir.join("nofile.hard")
            } else {
                dir.join("nofile")
            };
            errors.0.push(ConfigError::at(
                Code::LimitInvalid,
                &f,
                1,
                "nofile cannot be unlimited: the kernel caps it at fs.nr_open; give a number",
            ));
            continue;
        }
        let hard = hard.unwrap_or(Limit::Unlimited);
        let mut soft = soft.unwrap_or(hard);
        if let (Limit::Value(h), Limit::Value(s)) = (hard, soft) {
            if s > h {
                soft = Limit::Value(h);
            }
        } else if let (Limit::Value(h), Limit::Unlimited) = (hard, soft) {
            soft = Limit::Value(h);
        }
        out.push(Ulimit {
            name: (*name).into(),
            soft,
            hard,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limit_syntax() {
        assert_eq!(parse_limit("inf"), Ok(Limit::Unlimited));
        assert_eq!(parse_limit("infinity"), Ok(Limit::Unlimited));
        assert_eq!(parse_limit("100"), Ok(Limit::Value(100)));
        assert_eq!(parse_limit("010"), Ok(Limit::Value(8)));
        assert_eq!(parse_limit("0x10"), Ok(Limit::Value(16)));
        assert_eq!(parse_limit("2K"), Ok(Limit::Value(2048)));
        assert_eq!(parse_limit("2M"), Ok(Limit::Value(2 << 20)));
        assert_eq!(parse_limit("2k"), Ok(Limit::Value(2000)));
        assert_eq!(parse_limit("2m"), Ok(Limit::Value(2_000_000)));
        assert_eq!(parse_limit("-1"), Ok(Limit::Unlimited));
        assert!(parse_limit("-2").is_err());
        assert!(parse_limit("unlimited").is_err());
        assert!(parse_limit("12G").is_err());
        assert_eq!(
            parse_limit("18446744073709551615"),
            Ok(Limit::Unlimited),
            "saturates as strtoll"
        );
        assert_eq!(
            parse_limit("lots"),
            Err("expected a number or 'inf', got \"lots\"".into())
        );
        assert!(parse_limit("2G").is_err());
        assert!(parse_limit("").is_err());
    }

    #[test]
    fn rlimit_plain_file_sets_min_soft_and_hard_and_suffixes_override() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("nproc"), "100\n").unwrap();
        std::fs::write(d.path().join("nproc.soft"), "50\n").unwrap();
        std::fs::write(d.path().join("rss.hard"), "1000\n").unwrap();
        std::fs::write(d.path().join("bogus"), "1\n").unwrap();
        let mut w = vec![];
        let r = rlimits(d.path(), &mut w).unwrap();
        let nproc = r.iter().find(|r| r.name == "nproc").unwrap();
        assert_eq!(nproc.limits.min, Some(Limit::Value(100)));
        assert_eq!(nproc.limits.soft, Some(Limit::Value(50)));
        assert_eq!(nproc.limits.hard, Some(Limit::Value(100)));
        assert!(!nproc.in_pages);
        let rss = r.iter().find(|r| r.name == "rss").unwrap();
        assert!(rss.in_pages);
        assert_eq!(rss.limits.min, None);
        assert_eq!(w.len(), 1);
        assert!(w[0].file.ends_with("bogus"));
    }

    #[test]
    fn rlimit_error_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("nproc"), "lots\n").unwrap();
        let e = rlimits(d.path(), &mut vec![]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:1: expected a number or 'inf', got \"lots\"",
                d.path().join("nproc").display()
            )
        );
    }

    #[test]
    fn ulimit_soft_is_clamped_to_hard() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("nofile.soft"), "5000\n").unwrap();
        std::fs::write(d.path().join("nofile.hard"), "1000\n").unwrap();
        std::fs::write(d.path().join("core"), "0\n").unwrap();
        let u = ulimits(d.path(), &mut vec![]).unwrap();
        let nofile = u.iter().find(|u| u.name == "nofile").unwrap();
        assert_eq!(
            (nofile.soft, nofile.hard),
            (Limit::Value(1000), Limit::Value(1000))
        );
        let core = u.iter().find(|u| u.name == "core").unwrap();
        assert_eq!((core.soft, core.hard), (Limit::Value(0), Limit::Value(0)));
    }

    proptest! {
        #[test]
        fn values_round_trip(v in any::<u32>()) {
            prop_assert_eq!(parse_limit(&Limit::Value(v as u64).to_string()), Ok(Limit::Value(v as u64)));
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_limit(&s);
        }
    }
}
