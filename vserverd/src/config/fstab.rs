//! fstab, fstab.remote, fstab.local: mounts relative to the guest root.

use std::path::Path;

use super::error::{Code, ConfigError, Result};
use super::read;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    /// Inside the guest, absolute.
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
    /// The line in its file, for error messages at mount time.
    pub line: u32,
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

pub fn parse(file: &Path) -> Result<Option<Vec<MountEntry>>> {
    let Some(lines) = read::list(file)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.text.split_whitespace().collect();
        if f.len() < 3 {
            return Err(ConfigError::at(
                Code::FstabSyntax,
                file,
                l.no,
                format!(
                    "expected SOURCE TARGET TYPE [OPTIONS [DUMP [PASS]]], got {:?}",
                    l.text
                ),
            ));
        }
        if !f[1].starts_with('/') {
            return Err(ConfigError::at(
                Code::FstabTargetRelative,
                file,
                l.no,
                format!("mount point {:?} is not absolute", f[1]),
            ));
        }
        if f[1].split('/').any(|c| c == "..") {
            return Err(ConfigError::at(
                Code::FstabTargetEscapes,
                file,
                l.no,
                format!("mount point {:?} leaves the guest root", f[1]),
            ));
        }
        out.push(MountEntry {
            source: unescape(f[0]),
            target: unescape(f[1]),
            fstype: f[2].to_string(),
            options: f
                .get(3)
                .map(|o| o.split(',').map(String::from).collect())
                .unwrap_or_default(),
            line: l.no,
        });
    }
    Ok(Some(out))
}

/// What util-vserver's build writes when there is no fstab: proc, devpts, a 16m /tmp.
pub fn default_entries() -> Vec<MountEntry> {
    let e = |s: &str, t: &str, ty: &str, o: &str| MountEntry {
        source: s.into(),
        target: t.into(),
        fstype: ty.into(),
        options: o.split(',').map(String::from).collect(),
        line: 0,
    };
    vec![
        e("none", "/proc", "proc", "defaults"),
        e("none", "/tmp", "tmpfs", "size=16m,mode=1777"),
        e("none", "/dev/pts", "devpts", "gid=5,mode=620"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_rejects_bad_ones() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fstab");
        std::fs::write(
            &f,
            "# c\nnone /proc proc defaults 0 0\n/srv /srv\\040x none bind\n",
        )
        .unwrap();
        let m = parse(&f).unwrap().unwrap();
        assert_eq!(m[0].target, "/proc");
        assert_eq!(m[1].target, "/srv x");
        assert_eq!(m[1].line, 3);
        std::fs::write(&f, "none proc proc\n").unwrap();
        assert_eq!(parse(&f).unwrap_err().line, Some(1));
        std::fs::write(&f, "none /proc\n").unwrap();
        assert!(parse(&f).is_err());
        std::fs::write(&f, "/x /../etc none bind\n").unwrap();
        assert!(parse(&f).is_err());
    }
}
