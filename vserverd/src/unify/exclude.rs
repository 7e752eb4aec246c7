//! util-vserver's unification exclude lists (`apps/vunify/exclude`), parsed and matched: pure.
//!
//! One pattern a line, matched against a path relative to the guest root and starting with
//! `/` (`/etc/passwd`). A leading `+` makes a match *included* (unified), `~` *skipped* and
//! `-` (or no prefix) *excluded*; the first pattern that matches decides, and a path no
//! pattern matches is included. A directory that is not included is not entered. Patterns
//! are shell globs (`*`, `?`, `[…]`, `\` escapes) in which `*` also matches `/`, as
//! util-vserver matched them (fnmatch without FNM_PATHNAME). `#` starts a comment line;
//! trailing blanks are dropped.

use std::path::Path;

use crate::config::{Code, ConfigError};

/// What a pattern says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Include,
    Exclude,
    /// util-vserver's `~`: never touched (key files, secrets). Here it is the same as
    /// excluded; it is kept apart so reports can say which rule applied.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub verdict: Verdict,
    pub pattern: String,
}

impl Rule {
    /// The pattern's literal start, before any wildcard or escape: a path that does not
    /// start with it cannot match (most paths fail here, without the glob).
    pub fn literal(&self) -> &str {
        let end = self
            .pattern
            .find(['*', '?', '[', '\\'])
            .unwrap_or(self.pattern.len());
        &self.pattern[..end]
    }
}

/// An ordered exclude list and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// The file read, or `built-in`.
    pub source: String,
}

/// util-vserver's built-in list (its `defaults/vunify-exclude`): devices, host-specific and
/// variable data (/etc, /var, /tmp, /home …) and secrets stay per guest; /etc files that
/// are the same everywhere (termcap, gconf schemas) are shared.
pub const BUILTIN: &str = "\
/.rpmdb
/dev
~/etc/shadow
~/etc/passwd
~/etc/group
+/etc/termcap
+/etc/gconf
+/etc/gconf/schemas
/etc/gconf/*
/etc/*
/home
/proc
/mnt
+/root/.ssh
~/root/.ssh/id*
-/root/.ssh/*
+/root/.gnupg
~/root/.gnupg/secring*
-/root/.gnupg/*
-/root/*
/selinux
/sys
~/tmp/*
/tmp
~/var/tmp/*
/var
/*/ls-R
";

impl Rules {
    /// No rules: everything is included (`vserverctl unify --no-excludes`).
    pub fn none() -> Rules {
        Rules {
            rules: Vec::new(),
            source: "none".into(),
        }
    }

    pub fn builtin() -> Rules {
        parse(BUILTIN, Path::new("built-in")).expect("the built-in list parses")
    }

    /// The verdict for `path` (relative to the guest root, with a leading `/`).
    pub fn verdict(&self, path: &str) -> Verdict {
        let p = path.as_bytes();
        self.rules
            .iter()
            .find(|r| p.starts_with(r.literal().as_bytes()) && glob(r.pattern.as_bytes(), p))
            .map_or(Verdict::Include, |r| r.verdict)
    }
}

/// Parses an exclude list; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Rules, ConfigError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u32 + 1;
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim_end_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        let (verdict, pattern) = match line.as_bytes()[0] {
            b'+' => (Verdict::Include, &line[1..]),
            b'~' => (Verdict::Skip, &line[1..]),
            b'-' => (Verdict::Exclude, &line[1..]),
            _ => (Verdict::Exclude, line),
        };
        if pattern.is_empty() {
            return Err(ConfigError::at(
                Code::ExcludeSyntax,
                file,
                n,
                "a prefix without a pattern",
            ));
        }
        if !pattern.starts_with('/') && !pattern.starts_with('*') {
            return Err(ConfigError::at(
                Code::ExcludeSyntax,
                file,
                n,
                format!(
                    "{pattern:?} matches nothing: patterns are paths inside the guest starting \
                     with / (e.g. /var/log/*)"
                ),
            ));
        }
        if let Err(m) = check_classes(pattern.as_bytes()) {
            return Err(ConfigError::at(Code::ExcludeSyntax, file, n, m));
        }
        rules.push(Rule {
            verdict,
            pattern: pattern.to_string(),
        });
    }
    Ok(Rules {
        rules,
        source: file.display().to_string(),
    })
}

/// A `[` without its `]` is almost certainly a typo: refuse it rather than match it
/// literally as fnmatch would.
fn check_classes(p: &[u8]) -> Result<(), String> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' => i += 2,
            b'[' => match class_end(p, i) {
                Some(e) => i = e,
                None => return Err("a [ without its closing ]".into()),
            },
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index after the `]` closing the class that opens at `p[start] == b'['`.
fn class_end(p: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if i < p.len() && (p[i] == b'!' || p[i] == b'^') {
        i += 1;
    }
    // A `]` first in the class is a member.
    if i < p.len() && p[i] == b']' {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            b']' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Whether `c` is in the class `p[start..end]` (`[` … `]`).
fn in_class(p: &[u8], start: usize, end: usize, c: u8) -> bool {
    let mut i = start + 1;
    let negate = i < end && (p[i] == b'!' || p[i] == b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < end - 1 && (first || p[i] != b']') {
        first = false;
        let mut lo = p[i];
        if lo == b'\\' && i + 1 < end - 1 {
            i += 1;
            lo = p[i];
        }
        if i + 2 < end - 1 && p[i + 1] == b'-' && p[i + 2] != b']' {
            let hi = p[i + 2];
            hit |= lo <= c && c <= hi;
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
    hit != negate
}

/// fnmatch(3) with no flags: `*` matches any run of bytes, `/` included.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi + 1, si));
                    pi += 1;
                    continue;
                }
                b'?' => Some(pi + 1),
                b'[' => match class_end(p, pi) {
                    Some(end) if in_class(p, pi, end, s[si]) => Some(end),
                    Some(_) => None,
                    None => (s[si] == b'[').then_some(pi + 1),
                },
                b'\\' if pi + 1 < p.len() => (p[pi + 1] == s[si]).then_some(pi + 2),
                c => (c == s[si]).then_some(pi + 1),
            }
        } else {
            None
        };
        match step {
            Some(next) => {
                pi = next;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) => {
                    pi = sp;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_fnmatch_without_pathname() {
        assert!(glob(b"/etc/*", b"/etc/passwd"));
        assert!(glob(b"/etc/*", b"/etc/ssh/sshd_config"), "* crosses /");
        assert!(!glob(b"/etc/*", b"/etc"));
        assert!(glob(b"/*/ls-R", b"/usr/share/texmf/ls-R"));
        assert!(glob(b"/root/.ssh/id*", b"/root/.ssh/id_rsa.pub"));
        assert!(glob(b"/lib/ld-?.so", b"/lib/ld-2.so"));
        assert!(glob(b"/var/log/[a-c]*", b"/var/log/btmp"));
        assert!(!glob(b"/var/log/[!a-c]*", b"/var/log/btmp"));
        assert!(glob(b"/x\\*", b"/x*"));
        assert!(!glob(b"/x\\*", b"/xy"));
        assert!(glob(b"/dev", b"/dev"));
        assert!(!glob(b"/dev", b"/dev/null"));
        assert!(glob(b"*", b""));
        assert!(glob(b"/a*b*c", b"/aXXbYYbZc"));
    }

    #[test]
    fn the_builtin_list_keeps_etc_var_and_secrets_per_guest() {
        let r = Rules::builtin();
        assert_eq!(r.verdict("/usr/bin/perl"), Verdict::Include);
        assert_eq!(
            r.verdict("/etc"),
            Verdict::Include,
            "entered, its files excluded"
        );
        assert_eq!(r.verdict("/etc/hostname"), Verdict::Exclude);
        assert_eq!(r.verdict("/etc/shadow"), Verdict::Skip);
        assert_eq!(r.verdict("/etc/termcap"), Verdict::Include);
        assert_eq!(r.verdict("/etc/gconf/schemas"), Verdict::Include);
        assert_eq!(r.verdict("/etc/gconf/other"), Verdict::Exclude);
        assert_eq!(r.verdict("/var"), Verdict::Exclude);
        assert_eq!(r.verdict("/dev"), Verdict::Exclude);
        assert_eq!(r.verdict("/root"), Verdict::Include);
        assert_eq!(r.verdict("/root/.ssh"), Verdict::Include);
        assert_eq!(r.verdict("/root/.ssh/id_ed25519"), Verdict::Skip);
        assert_eq!(r.verdict("/root/.ssh/known_hosts"), Verdict::Exclude);
        assert_eq!(r.verdict("/root/.bashrc"), Verdict::Exclude);
        assert_eq!(r.verdict("/usr/share/texmf/ls-R"), Verdict::Exclude);
        assert_eq!(r.verdict("/tmp"), Verdict::Exclude);
    }

    #[test]
    fn prefixes_comments_and_blanks() {
        let r = parse(
            "# comment\n\n+/opt/keep   \n~/opt/secret*\n-/opt/*\n/srv\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.rules.len(), 4);
        assert_eq!(r.verdict("/opt/keep"), Verdict::Include);
        assert_eq!(r.verdict("/opt/secret.key"), Verdict::Skip);
        assert_eq!(r.verdict("/opt/other"), Verdict::Exclude);
        assert_eq!(r.verdict("/srv"), Verdict::Exclude);
        assert_eq!(r.verdict("/usr"), Verdict::Include);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = parse("/ok\n+\n", Path::new("/etc/vservers/g/apps/vunify/exclude")).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.file, Path::new("/etc/vservers/g/apps/vunify/exclude"));
        let e = parse("/ok\nvar/log\n", Path::new("f")).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("start"), "{}", e.message);
        let e = parse("/var/[abc\n", Path::new("f")).unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
