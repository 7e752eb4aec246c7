//! apps/init/: init style, runlevels, start/stop commands, killseq, environment, marks, depends.

use std::path::{Path, PathBuf};

use super::error::{Code, ConfigError, Result};
use super::read;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Style {
    #[default]
    Sysv,
    Plain,
    Minit,
    Gentoo,
    Openrc,
    Arch,
    Rescue,
    /// An empty style file: no default commands, cmd.start must be given.
    Empty,
}

impl Style {
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Sysv => "sysv",
            Style::Plain => "plain",
            Style::Minit => "minit",
            Style::Gentoo => "gentoo",
            Style::Openrc => "openrc",
            Style::Arch => "arch",
            Style::Rescue => "rescue",
            Style::Empty => "",
        }
    }
}

/// One step of the kill sequence: send `signal`, then wait up to `wait` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillStep {
    pub signal: i32,
    pub wait: Option<u32>,
}

/// The default stands in for a wrong apps/init/ while the rest of the tree is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Init {
    pub style: Style,
    pub runlevel_start: Option<String>,
    pub runlevel_stop: Option<String>,
    pub cmd_start: Option<Vec<String>>,
    pub cmd_stop: Option<Vec<String>>,
    pub cmd_prepare: Option<Vec<String>>,
    pub cmd_start_sync: Option<Vec<String>>,
    pub cmd_stop_sync: Option<Vec<String>>,
    pub sync: bool,
    pub killseq: Vec<KillStep>,
    /// The whole environment of init (`VAR=VAL`).
    pub environment: Vec<String>,
    pub mtab: Option<PathBuf>,
    pub tty: Option<PathBuf>,
    pub mark: Vec<String>,
    pub depends: Vec<String>,
}

fn argv(path: &Path) -> Result<Option<Vec<String>>> {
    Ok(read::lines_keep_hash(path)?.map(|ls| ls.into_iter().map(|l| l.text).collect()))
}

pub fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "PWR" => 30,
        _ => return None,
    };
    Some(n)
}

/// `SIG [WAIT SIG]*`, e.g. the default `15 5 9`.
pub fn parse_killseq(file: &Path, lines: &[read::Line]) -> Result<Vec<KillStep>> {
    let tokens: Vec<(u32, &str)> = lines
        .iter()
        .flat_map(|l| l.text.split_whitespace().map(move |t| (l.no, t)))
        .collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (no, sig) = tokens[i];
        let signal = signal_number(sig).ok_or_else(|| {
            ConfigError::at(
                Code::KillseqInvalid,
                file,
                no,
                format!("expected a signal, got {sig:?}"),
            )
        })?;
        let wait = match tokens.get(i + 1) {
            Some((no, w)) => Some(w.parse::<u32>().map_err(|_| {
                ConfigError::at(
                    Code::KillseqInvalid,
                    file,
                    *no,
                    format!("expected a wait in seconds, got {w:?}"),
                )
            })?),
            None => None,
        };
        steps.push(KillStep { signal, wait });
        i += 2;
    }
    if steps.is_empty() {
        return Err(ConfigError::file(
            Code::KillseqInvalid,
            file,
            "empty kill sequence",
        ));
    }
    Ok(steps)
}

pub fn default_killseq() -> Vec<KillStep> {
    vec![
        KillStep {
            signal: 15,
            wait: Some(5),
        },
        KillStep {
            signal: 9,
            wait: None,
        },
    ]
}

pub fn load(cfg: &Path, def: &Path) -> Result<Init> {
    let d = cfg.join("apps/init");
    let style = match read::scalar(&d.join("style"))? {
        None => Style::Sysv,
        Some(s) => match s.as_str() {
            "sysv" => Style::Sysv,
            "plain" => Style::Plain,
            "minit" => Style::Minit,
            "gentoo" => Style::Gentoo,
            "openrc" => Style::Openrc,
            "arch" => Style::Arch,
            "rescue" => Style::Rescue,
            "" => Style::Empty,
            other => {
                return Err(ConfigError::at(
                    Code::InitStyleUnknown, &d.join("style"),
                    1,
                    format!("Unknown init-style '{other}'; expected sysv, plain, minit, gentoo, openrc, arch or rescue"),
                ))
            }
        },
    };
    let runlevel = read::scalar(&d.join("runlevel"))?;
    let runlevel_start = read::scalar(&d.join("runlevel.start"))?.or(runlevel);
    let runlevel_stop = read::scalar(&d.join("runlevel.stop"))?;
    let killseq = match read::lines_keep_hash(&d.join("killseq"))? {
        Some(ls) => parse_killseq(&d.join("killseq"), &ls)?,
        None => default_killseq(),
    };
    // First existing file wins; the built-in default is util-vserver's PATH.
    let mut environment = None;
    for f in [d.join("environment"), def.join("apps/init/environment")] {
        if let Some(ls) = read::lines_keep_hash(&f)? {
            for l in &ls {
                if !l.text.contains('=') || l.text.starts_with('=') {
                    return Err(ConfigError::at(
                        Code::InitEnvironmentSyntax,
                        &f,
                        l.no,
                        format!("expected VAR=VALUE, got {:?}", l.text),
                    ));
                }
            }
            environment = Some(ls.into_iter().map(|l| l.text).collect());
            break;
        }
    }
    let environment =
        environment.unwrap_or_else(|| vec!["PATH=/bin:/usr/bin:/sbin:/usr/sbin".to_string()]);
    let first = |a: PathBuf, b: PathBuf| {
        if read::flag(&a) {
            Some(a)
        } else if read::flag(&b) {
            Some(b)
        } else {
            None
        }
    };
    let names = |f: &str| -> Result<Vec<String>> {
        Ok(read::list(&d.join(f))?
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.text)
            .collect())
    };
    let depends = names("depends")?;
    if let Some(bad) = depends
        .iter()
        .find(|n| n.contains('/') || n.starts_with('.'))
    {
        return Err(ConfigError::file(
            Code::DependsInvalid,
            &d.join("depends"),
            format!("{bad:?} is not a guest name"),
        ));
    }
    Ok(Init {
        style,
        runlevel_start,
        runlevel_stop,
        cmd_start: argv(&d.join("cmd.start"))?,
        cmd_stop: argv(&d.join("cmd.stop"))?,
        cmd_prepare: argv(&d.join("cmd.prepare"))?,
        cmd_start_sync: argv(&d.join("cmd.start-sync"))?,
        cmd_stop_sync: argv(&d.join("cmd.stop-sync"))?,
        sync: read::flag(&d.join("sync")),
        killseq,
        environment,
        mtab: first(d.join("mtab"), def.join("init/mtab")),
        tty: first(d.join("tty"), def.join("apps/init/tty")),
        mark: names("mark")?,
        depends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (f, c) in files {
            let p = d.path().join("cfg").join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        std::fs::create_dir_all(d.path().join("cfg")).unwrap();
        std::fs::create_dir_all(d.path().join("def")).unwrap();
        d
    }

    #[test]
    fn defaults() {
        let d = tree(&[]);
        let i = load(&d.path().join("cfg"), &d.path().join("def")).unwrap();
        assert_eq!(i.style, Style::Sysv);
        assert_eq!(i.killseq, default_killseq());
        assert_eq!(i.environment, ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]);
        assert!(i.mark.is_empty() && i.depends.is_empty());
    }

    #[test]
    fn everything_set() {
        let d = tree(&[
            ("apps/init/style", "plain\n"),
            ("apps/init/runlevel", "2\n"),
            ("apps/init/runlevel.stop", "0\n"),
            ("apps/init/cmd.start", "/bin/sh\n-c\n# not a comment here\n"),
            ("apps/init/killseq", "INT 10 TERM 2 9\n"),
            ("apps/init/environment", "A=1\nB=2\n"),
            ("apps/init/mark", "default\n# x\nweb\n"),
            ("apps/init/depends", "db\n"),
            ("apps/init/sync", ""),
        ]);
        let i = load(&d.path().join("cfg"), &d.path().join("def")).unwrap();
        assert_eq!(i.style, Style::Plain);
        assert_eq!(i.runlevel_start.as_deref(), Some("2"));
        assert_eq!(i.runlevel_stop.as_deref(), Some("0"));
        assert_eq!(
            i.cmd_start.unwrap(),
            ["/bin/sh", "-c", "# not a comment here"]
        );
        assert_eq!(
            i.killseq,
            [
                KillStep {
                    signal: 2,
                    wait: Some(10)
                },
                KillStep {
                    signal: 15,
                    wait: Some(2)
                },
                KillStep {
                    signal: 9,
                    wait: None
                }
            ]
        );
        assert_eq!(i.environment, ["A=1", "B=2"]);
        assert_eq!(i.mark, ["default", "web"]);
        assert_eq!(i.depends, ["db"]);
        assert!(i.sync);
    }

    #[test]
    fn unknown_style_is_an_error_naming_the_file() {
        let d = tree(&[("apps/init/style", "upstart\n")]);
        let e = load(&d.path().join("cfg"), &d.path().join("def")).unwrap_err();
        assert!(e.message.starts_with("Unknown init-style 'upstart'"), "{e}");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn bad_killseq_and_environment() {
        let d = tree(&[("apps/init/killseq", "15\nsoon 9\n")]);
        let e = load(&d.path().join("cfg"), &d.path().join("def")).unwrap_err();
        assert_eq!(e.line, Some(2));
        let d = tree(&[("apps/init/environment", "A=1\nnonsense\n")]);
        let e = load(&d.path().join("cfg"), &d.path().join("def")).unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn defaults_environment_is_used_when_the_guest_has_none() {
        let d = tree(&[]);
        std::fs::create_dir_all(d.path().join("def/apps/init")).unwrap();
        std::fs::write(d.path().join("def/apps/init/environment"), "X=y\n").unwrap();
        let i = load(&d.path().join("cfg"), &d.path().join("def")).unwrap();
        assert_eq!(i.environment, ["X=y"]);
    }
}
