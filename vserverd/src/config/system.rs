//! uts/, personality, nice and ionice/.

use std::path::Path;

use super::error::{Code, ConfigError, Result};
use super::read;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uts {
    pub nodename: Option<String>,
    pub domainname: Option<String>,
    pub machine: Option<String>,
    pub sysname: Option<String>,
    pub release: Option<String>,
    pub version: Option<String>,
}

pub fn uts(cfg: &Path, warnings: &mut Vec<ConfigError>) -> Result<Uts> {
    let d = cfg.join("uts");
    let mut u = Uts {
        nodename: read::scalar(&d.join("nodename"))?,
        domainname: read::scalar(&d.join("domainname"))?,
        machine: read::scalar(&d.join("machine"))?,
        sysname: read::scalar(&d.join("sysname"))?,
        release: read::scalar(&d.join("release"))?,
        version: read::scalar(&d.join("version"))?,
    };
    for (legacy, field) in [
        ("hostname", &mut u.nodename),
        ("domainname", &mut u.domainname),
    ] {
        if let Some(v) = read::scalar(&cfg.join(legacy))? {
            warnings.push(ConfigError::file(
                Code::LegacyFile,
                &cfg.join(legacy),
                format!(
                    "legacy file: use uts/{}",
                    if legacy == "hostname" {
                        "nodename"
                    } else {
                        "domainname"
                    }
                ),
            ));
            field.get_or_insert(v);
        }
    }
    for f in ["sysname", "release", "version"] {
        if read::flag(&d.join(f)) {
            warnings.push(ConfigError::file(
                Code::NotApplicable,
                &d.join(f),
                "a mainline kernel cannot fake this uts field; ignored",
            ));
        }
    }
    if let Some(n) = &u.nodename {
        if n.len() > 64 {
            return Err(ConfigError::at(
                Code::UtsTooLong,
                &d.join("nodename"),
                1,
                "longer than 64 bytes",
            ));
        }
    }
    Ok(u)
}

const PERSONALITY_TYPES: &[(&str, u32)] = &[
    ("linux", 0x0000),
    ("linux_32bit", 0x0800000),
    ("linux32", 0x0008),
    ("linux32_3gb", 0x8000008),
    ("svr4", 0x4100001),
    ("svr3", 0x1000002),
    ("scosvr3", 0x3000003),
    ("osr5", 0x3000003),
    ("wysev386", 0x1000004),
    ("iscr4", 0x5000005),
    ("bsd", 0x0006),
    ("sunos", 0x0400006),
    ("xenix", 0x1000007),
    ("irix32", 0x4000009),
    ("irixn32", 0x400000a),
    ("irix64", 0x400000b),
    ("riscos", 0x000c),
    ("solaris", 0x400000d),
    ("uw7", 0x410000e),
    ("hpux", 0x0010),
    ("osf4", 0x000f),
];

const PERSONALITY_FLAGS: &[(&str, u32)] = &[
    ("mmap_page_zero", 0x0100000),
    ("addr_limit_32bit", 0x0800000),
    ("short_inode", 0x1000000),
    ("whole_seconds", 0x2000000),
    ("sticky_timeouts", 0x4000000),
    ("addr_limit_3gb", 0x8000000),
    ("uname26", 0x0020000),
];

/// The personality(2) value: type (line 1) or'ed with flags (further lines or commas).
pub fn personality(cfg: &Path) -> Result<Option<u32>> {
    let f = cfg.join("personality");
    // util-vserver reads the first line as the type as it is (a comment there is a type
    // vpersonality refuses) and skips empty and `#` lines among the flags after it.
    let Some(all) = read::lines_keep_hash(&f)? else {
        return Ok(None);
    };
    if let Some(l) = all.first().filter(|l| l.no == 1 && l.text.starts_with('#')) {
        return Err(ConfigError::at(
            Code::PersonalityUnknown,
            &f,
            1,
            format!(
                "the first line is the personality type, and {:?} is none (write \
                 linux, or remove the file)",
                l.text
            ),
        ));
    }
    let lines: Vec<_> = all
        .into_iter()
        .filter(|l| !l.text.starts_with('#'))
        .collect();
    let mut value = 0u32;
    for (i, l) in lines.iter().enumerate() {
        for word in l.text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let w = word.to_ascii_lowercase();
            let table = if i == 0 {
                PERSONALITY_TYPES
            } else {
                PERSONALITY_FLAGS
            };
            let v = table
                .iter()
                .chain(
                    if i == 0 {
                        PERSONALITY_FLAGS
                    } else {
                        PERSONALITY_TYPES
                    }
                    .iter(),
                )
                .find(|(n, _)| *n == w)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    ConfigError::at(
                        Code::PersonalityUnknown,
                        &f,
                        l.no,
                        format!("unknown personality {word:?}"),
                    )
                })?;
            value |= v;
        }
    }
    Ok(Some(value))
}

/// ionice/: (class, priority); a priority alone means class 2 (best effort).
pub fn ionice(cfg: &Path) -> Result<Option<(u8, Option<u8>)>> {
    let d = cfg.join("ionice");
    let class = read::int(&d.join("class"))?;
    let prio = read::int(&d.join("priority"))?;
    let class = match (class, prio) {
        (None, None) => return Ok(None),
        (Some(c @ 0..=3), _) => c as u8,
        (Some(c), _) => {
            return Err(ConfigError::at(
                Code::IoniceRange,
                &d.join("class"),
                1,
                format!("ionice class {c} is not 0-3"),
            ))
        }
        (None, Some(_)) => 2,
    };
    let prio = match prio {
        None => None,
        Some(p @ 0..=7) => Some(p as u8),
        Some(p) => {
            return Err(ConfigError::at(
                Code::IoniceRange,
                &d.join("priority"),
                1,
                format!("ionice priority {p} is not 0-7"),
            ))
        }
    };
    Ok(Some((class, prio)))
}

/// nice: the absolute nice value of init, -20..19.
pub fn nice(cfg: &Path) -> Result<Option<i32>> {
    match read::int(&cfg.join("nice"))? {
        None => Ok(None),
        Some(n @ -20..=19) => Ok(Some(n as i32)),
        Some(n) => Err(ConfigError::at(
            Code::NiceRange,
            &cfg.join("nice"),
            1,
            format!("nice {n} is not in -20..19"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personality_type_and_flags() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("personality"), "LINUX_32BIT\nUNAME26\n").unwrap();
        assert_eq!(personality(d.path()).unwrap(), Some(0x0800000 | 0x0020000));
        std::fs::write(d.path().join("personality"), "klingon\n").unwrap();
        assert_eq!(personality(d.path()).unwrap_err().line, Some(1));
    }

    #[test]
    fn uts_with_legacy_hostname() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("hostname"), "old\n").unwrap();
        let mut w = vec![];
        let u = uts(d.path(), &mut w).unwrap();
        assert_eq!(u.nodename.as_deref(), Some("old"));
        assert_eq!(w.len(), 1);
        std::fs::create_dir(d.path().join("uts")).unwrap();
        std::fs::write(d.path().join("uts/nodename"), "new\n").unwrap();
        assert_eq!(
            uts(d.path(), &mut vec![]).unwrap().nodename.as_deref(),
            Some("new")
        );
    }

    #[test]
    fn nice_and_ionice_ranges() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("nice"), "5\n").unwrap();
        assert_eq!(nice(d.path()).unwrap(), Some(5));
        std::fs::write(d.path().join("nice"), "50\n").unwrap();
        assert!(nice(d.path()).is_err());
        std::fs::create_dir(d.path().join("ionice")).unwrap();
        std::fs::write(d.path().join("ionice/priority"), "4\n").unwrap();
        assert_eq!(ionice(d.path()).unwrap(), Some((2, Some(4))));
    }
}
