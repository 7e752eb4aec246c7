//! spaces/ (pid, net, user, nouser, mask) and netns/ (name, shared, interfaces/N/{host,guest,
//! type,bridge}).

use std::path::Path;

use super::error::{Code, ConfigError, Result};
use super::read;

/// What a spaces/ file asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Empty file: a new namespace of that kind.
    New,
    /// Content: the context id of another guest whose namespace is shared.
    Share(u32),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spaces {
    pub pid: Option<Space>,
    pub net: Option<Space>,
    /// Our extension: the guest runs in a user namespace of its own (`spaces/user`, or
    /// `.defaults/spaces/user` unless the guest has `spaces/nouser`).
    pub user: bool,
}

fn space(f: &Path) -> Result<Option<Space>> {
    match read::scalar(f)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(Some(Space::New)),
        Some(s) if s == "0" => Ok(None),
        Some(s) => s
            .parse::<u32>()
            .map(|x| Some(Space::Share(x)))
            .map_err(|_| {
                ConfigError::at(
                    Code::SpaceInvalid,
                    f,
                    1,
                    format!("expected nothing (new namespace) or a context id, got {s:?}"),
                )
            }),
    }
}

/// `spaces/user` (and `nouser`): a flag, so an empty file; content is refused rather than
/// guessed at (util-vserver never read this file, so nothing meant a context id here).
fn user_flag(f: &Path) -> Result<bool> {
    match read::scalar(f)? {
        None => Ok(false),
        Some(s) if s.is_empty() => Ok(true),
        Some(s) => Err(ConfigError::at(
            Code::SpaceInvalid,
            f,
            1,
            format!("expected an empty file (a user namespace of the guest's own), got {s:?}"),
        )),
    }
}

/// `def` is .defaults: its `spaces/user` makes every guest's choice unless a guest says
/// `spaces/nouser`.
pub fn spaces(cfg: &Path, def: &Path, warnings: &mut Vec<ConfigError>) -> Result<Spaces> {
    let d = cfg.join("spaces");
    for f in ["mask", "mnt", "uts", "ipc"] {
        if read::flag(&d.join(f)) {
            warnings.push(ConfigError::file(
                Code::SpaceIgnored,
                &d.join(f),
                "ignored: only spaces/pid, net and user are read",
            ));
        }
    }
    let own = user_flag(&d.join("user"))?;
    let nouser = read::flag(&d.join("nouser"));
    if own && nouser {
        warnings.push(ConfigError::file(
            Code::UserNouser,
            &d.join("nouser"),
            "spaces/user and spaces/nouser both exist: nouser wins",
        ));
    }
    let user = (own || user_flag(&def.join("spaces/user"))?) && !nouser;
    let s = Spaces {
        pid: space(&d.join("pid"))?,
        net: space(&d.join("net"))?,
        user,
    };
    if user && matches!(s.pid, Some(Space::Share(_))) {
        return Err(ConfigError::file(
            Code::UserShared,
            &d.join("pid"),
            "a guest in a user namespace cannot share another guest's pid namespace",
        ));
    }
    Ok(s)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    pub id: String,
    pub host: String,
    pub guest: String,
    pub kind: String,
    /// Our extension: put the host end on this bridge.
    pub bridge: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Netns {
    pub name: Option<String>,
    pub shared: bool,
    pub interfaces: Vec<VethPair>,
}

pub fn netns(cfg: &Path, def: &Path) -> Result<Netns> {
    let d = cfg.join("netns");
    let mut n = Netns {
        name: read::scalar(&d.join("name"))?.or(read::scalar(&def.join("netns/name"))?),
        shared: read::flag(&d.join("shared")) || read::flag(&def.join("netns/shared")),
        interfaces: vec![],
    };
    let Ok(rd) = std::fs::read_dir(d.join("interfaces")) else {
        return Ok(n);
    };
    let mut subs: Vec<_> = rd.flatten().filter(|e| e.path().is_dir()).collect();
    subs.sort_by_key(|e| e.file_name());
    for (i, s) in subs.iter().enumerate() {
        let p = s.path();
        let host = read::scalar(&p.join("host"))?.ok_or_else(|| {
            ConfigError::file(
                Code::NetnsInvalid,
                &p,
                "missing the host file (host-side interface name)",
            )
        })?;
        for (f, v) in [("host", &host)] {
            if v.is_empty() || v.len() > 15 || v.contains('/') || v.contains(char::is_whitespace) {
                return Err(ConfigError::at(
                    Code::NetnsInvalid,
                    &p.join(f),
                    1,
                    format!("{v:?} is not a valid interface name"),
                ));
            }
        }
        let kind = read::scalar(&p.join("type"))?.unwrap_or_else(|| "veth".into());
        if kind != "veth" {
            return Err(ConfigError::at(
                Code::NetnsInvalid,
                &p.join("type"),
                1,
                format!("interface type {kind:?} is not supported (veth only)"),
            ));
        }
        n.interfaces.push(VethPair {
            id: s.file_name().to_string_lossy().into_owned(),
            host,
            guest: read::scalar(&p.join("guest"))?.unwrap_or_else(|| format!("geth{i}")),
            kind,
            bridge: read::scalar(&p.join("bridge"))?,
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("spaces")).unwrap();
        std::fs::write(d.path().join("spaces/net"), "").unwrap();
        std::fs::write(d.path().join("spaces/pid"), "40001\n").unwrap();
        let def = d.path().join("nodefaults");
        let s = spaces(d.path(), &def, &mut vec![]).unwrap();
        assert_eq!(
            s,
            Spaces {
                pid: Some(Space::Share(40001)),
                net: Some(Space::New),
                user: false,
            }
        );
        std::fs::write(d.path().join("spaces/pid"), "0\n").unwrap();
        assert_eq!(spaces(d.path(), &def, &mut vec![]).unwrap().pid, None);
        std::fs::write(d.path().join("spaces/pid"), "x\n").unwrap();
        assert!(spaces(d.path(), &def, &mut vec![]).is_err());
    }

    #[test]
    fn user_namespace_per_guest_and_host_wide() {
        let d = tempfile::tempdir().unwrap();
        let (cfg, def) = (d.path().join("g"), d.path().join(".defaults"));
        std::fs::create_dir_all(cfg.join("spaces")).unwrap();
        std::fs::create_dir_all(def.join("spaces")).unwrap();
        let user = |w: &mut Vec<ConfigError>| spaces(&cfg, &def, w).map(|s| s.user);
        assert!(!user(&mut vec![]).unwrap());
        std::fs::write(cfg.join("spaces/user"), "").unwrap();
        assert!(user(&mut vec![]).unwrap());
        std::fs::remove_file(cfg.join("spaces/user")).unwrap();
        std::fs::write(def.join("spaces/user"), "").unwrap();
        assert!(user(&mut vec![]).unwrap());
        std::fs::write(cfg.join("spaces/nouser"), "").unwrap();
        assert!(!user(&mut vec![]).unwrap());
        std::fs::write(cfg.join("spaces/user"), "").unwrap();
        let mut w = vec![];
        assert!(!user(&mut w).unwrap());
        assert_eq!(w[0].code, Code::UserNouser);
        std::fs::remove_file(cfg.join("spaces/nouser")).unwrap();
        std::fs::write(cfg.join("spaces/user"), "40001\n").unwrap();
        let e = user(&mut vec![]).unwrap_err();
        assert_eq!((e.code, e.line), (Code::SpaceInvalid, Some(1)));
        std::fs::write(cfg.join("spaces/user"), "").unwrap();
        std::fs::write(cfg.join("spaces/pid"), "40001\n").unwrap();
        assert_eq!(user(&mut vec![]).unwrap_err().code, Code::UserShared);
    }

    #[test]
    fn netns_pairs() {
        let d = tempfile::tempdir().unwrap();
        let i = d.path().join("cfg/netns/interfaces/0");
        std::fs::create_dir_all(&i).unwrap();
        std::fs::write(i.join("host"), "veth-web\n").unwrap();
        std::fs::write(i.join("bridge"), "br0\n").unwrap();
        let n = netns(&d.path().join("cfg"), &d.path().join("def")).unwrap();
        assert_eq!(n.interfaces[0].guest, "geth0");
        assert_eq!(n.interfaces[0].bridge.as_deref(), Some("br0"));
    }
}
