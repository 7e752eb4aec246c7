//! Reading util-vserver's file kinds: scalars, lists, argv files and flags, with line numbers.
//!
//! Bytes that are not UTF-8 are read lossily: a config file is text, and an error naming the
//! line beats a refusal to read the file at all.

use std::path::Path;

use super::error::{Code, ConfigError, Result};

/// A line of a file with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub no: u32,
    pub text: String,
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Err(ConfigError::file(
            Code::FileIsDirectory,
            path,
            "expected a file, found a directory",
        )),
        Err(e) => Err(ConfigError::file(
            Code::FileUnreadable,
            path,
            format!("cannot read: {e}"),
        )),
    }
}

/// Presence is the flag.
pub fn flag(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// The first line, blanks stripped (bash `read`); None when the file is absent.
pub fn scalar(path: &Path) -> Result<Option<String>> {
    Ok(read(path)?.map(|s| s.lines().next().unwrap_or("").trim().to_string()))
}

/// One item per line; empty lines and `#` comments skipped.
pub fn list(path: &Path) -> Result<Option<Vec<Line>>> {
    Ok(read(path)?.map(|s| {
        numbered(&s)
            .filter(|l| !l.text.is_empty() && !l.text.starts_with('#'))
            .collect()
    }))
}

/// One item per line, `#` lines kept (util-vserver reads cmd.*, killseq and environment this
/// way); only empty lines dropped.
pub fn lines_keep_hash(path: &Path) -> Result<Option<Vec<Line>>> {
    Ok(read(path)?.map(|s| numbered(&s).filter(|l| !l.text.is_empty()).collect()))
}

fn numbered(s: &str) -> impl Iterator<Item = Line> + '_ {
    s.lines().enumerate().map(|(i, t)| Line {
        no: u32::try_from(i + 1).unwrap_or(u32::MAX),
        text: t.trim().to_string(),
    })
}

/// A scalar parsed as an integer (base 0 like strtol: 0x hex, leading 0 octal).
pub fn int(path: &Path) -> Result<Option<i64>> {
    match scalar(path)? {
        None => Ok(None),
        Some(s) => parse_int(&s).map(Some).ok_or_else(|| {
            ConfigError::at(
                Code::IntegerInvalid,
                path,
                1,
                format!("expected an integer, got {s:?}"),
            )
        }),
    }
}

/// strtoll with base 0, whole string.
pub fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Where a symlink points (absolute or relative to its folder), if it is one.
pub fn link_target(path: &Path) -> Option<std::path::PathBuf> {
    let t = std::fs::read_link(path).ok()?;
    Some(if t.is_absolute() {
        t
    } else {
        path.parent()?.join(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_takes_the_first_line_trimmed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "  42  \nignored\n").unwrap();
        assert_eq!(scalar(&p).unwrap().as_deref(), Some("42"));
        std::fs::write(&p, "7").unwrap();
        assert_eq!(scalar(&p).unwrap().as_deref(), Some("7"));
        assert_eq!(scalar(&d.path().join("absent")).unwrap(), None);
    }

    #[test]
    fn list_skips_blank_and_comment_lines_keeping_numbers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "a\n\n# c\n b \n").unwrap();
        let l = list(&p).unwrap().unwrap();
        assert_eq!(
            l,
            vec![
                Line {
                    no: 1,
                    text: "a".into()
                },
                Line {
                    no: 4,
                    text: "b".into()
                }
            ]
        );
        let k = lines_keep_hash(&p).unwrap().unwrap();
        assert_eq!(k.len(), 3);
    }

    #[test]
    fn integers_are_base_zero() {
        assert_eq!(parse_int("010"), Some(8));
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("10"), Some(10));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("09"), None);
        assert_eq!(parse_int("x"), None);
    }

    #[test]
    fn a_directory_where_a_file_belongs_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = scalar(d.path()).unwrap_err();
        assert!(e.message.contains("directory"));
    }
}
