//! interfaces/: the guest's addresses. `dev prefix mask bcast scope extip` set at the folder
//! level are inherited by every interface; `ip name mac peer` are not (docs/config.md, interfaces/).

use std::net::IpAddr;
use std::path::Path;

use super::error::{Code, ConfigError, Errors, Result};
use super::read;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The folder name (`00`, `eth0`, …), processed in alphabetical order.
    pub id: String,
    pub ip: IpAddr,
    pub prefix: u8,
    pub dev: Option<String>,
    /// Address label (`dev:name`).
    pub name: Option<String>,
    pub bcast: Option<String>,
    pub scope: Option<String>,
    pub peer: Option<String>,
    pub mac: Option<String>,
    pub extip: Option<String>,
    pub nodev: bool,
    pub down: bool,
    pub vlandev: Option<bool>,
    pub tun: bool,
    pub tap: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interfaces {
    pub list: Vec<Interface>,
    /// `interfaces/lback`: the loopback address (chbind --lback).
    pub lback: Option<String>,
    /// `interfaces/vlandev` / `novlandev` at the folder level.
    pub vlandev: Option<bool>,
}

fn mask_to_prefix(file: &Path, mask: &str) -> Result<u8> {
    let m: std::net::Ipv4Addr = mask.parse().map_err(|_| {
        ConfigError::at(
            Code::InterfaceMaskInvalid,
            file,
            1,
            format!("expected a netmask, got {mask:?}"),
        )
    })?;
    let bits = u32::from(m);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(ConfigError::at(
            Code::InterfaceMaskInvalid,
            file,
            1,
            format!("{mask} is not a contiguous netmask"),
        ));
    }
    Ok(bits.leading_ones() as u8)
}

fn vlan(dir: &Path) -> Option<bool> {
    if read::flag(&dir.join("novlandev")) {
        Some(false)
    } else if read::flag(&dir.join("vlandev")) {
        Some(true)
    } else {
        None
    }
}

/// The guest's side of its veth pair, whose addresses carry the labels.
pub const GUEST_IF: &str = "eth0";

/// Whether `eth0:NAME` fits the kernel's label size (IFNAMSIZ less its NUL: 15 bytes).
pub fn label_fits(name: &str) -> bool {
    GUEST_IF.len() + 1 + name.len() <= 15
}

/// interfaces/ of a guest; `def` is .defaults, whose interfaces/vlandev is the fallback. The
/// first error stops it ([`load_each`] goes on).
pub fn load(cfg: &Path, def: &Path, warnings: &mut Vec<ConfigError>) -> Result<Interfaces> {
    let mut errors = Errors::default();
    let out = load_each(cfg, def, warnings, &mut errors);
    match errors.0.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// [`load`], recording an error per interface folder that is wrong and going on with the next.
pub fn load_each(
    cfg: &Path,
    def: &Path,
    warnings: &mut Vec<ConfigError>,
    errors: &mut Errors,
) -> Interfaces {
    let top = cfg.join("interfaces");
    let mut out = Interfaces::default();
    if !top.is_dir() {
        return out;
    }
    out.lback = errors.keep(read::scalar(&top.join("lback")));
    out.vlandev = vlan(&top).or(vlan(&def.join("interfaces")));
    let rd = match std::fs::read_dir(&top) {
        Ok(rd) => rd,
        Err(e) => {
            errors.0.push(ConfigError::file(
                Code::FileUnreadable,
                &top,
                format!("cannot read: {e}"),
            ));
            return out;
        }
    };
    let mut dirs: Vec<_> = rd
        .flatten() // util-vserver's start walks interfaces/* with a shell glob, which skips dot names (a
        // .svn folder of a tree kept in version control).
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for e in dirs {
        let id = e.file_name().to_string_lossy().into_owned();
        if let Some(i) = errors.keep(one(&top, &e.path(), id, warnings)) {
            out.list.push(i);
        }
    }
    out
}

/// One interface folder `dir` under `top` (interfaces/); None when it is disabled.
fn one(
    top: &Path,
    dir: &Path,
    id: String,
    warnings: &mut Vec<ConfigError>,
) -> Result<Option<Interface>> {
    let inherit = |f: &str, dir: &Path| -> Result<Option<String>> {
        Ok(read::scalar(&dir.join(f))?.or(read::scalar(&top.join(f))?))
    };
    if read::flag(&dir.join("disabled")) {
        return Ok(None);
    }
    let ipf = dir.join("ip");
    // util-vserver's start stopped here too ("Can not read ip", under set -e).
    let raw = read::scalar(&ipf)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ConfigError::file(
                Code::InterfaceIpMissing,
                dir,
                "interface without an ip file",
            )
        })?;
    let (addr, len) = match raw.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (raw.as_str(), None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        ConfigError::at(
            Code::InterfaceIpInvalid,
            &ipf,
            1,
            format!("expected an IP address, got {addr:?}"),
        )
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = if let Some(l) = len {
        Some(l.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
            ConfigError::at(
                Code::InterfacePrefixInvalid,
                &ipf,
                1,
                format!("expected a prefix length 0-{max}, got {l:?}"),
            )
        })?)
    } else if let Some(p) = inherit("prefix", dir)? {
        let pf = if read::flag(&dir.join("prefix")) {
            dir.join("prefix")
        } else {
            top.join("prefix")
        };
        Some(p.parse::<u8>().ok().filter(|x| *x <= max).ok_or_else(|| {
            ConfigError::at(
                Code::InterfacePrefixInvalid,
                &pf,
                1,
                format!("expected a prefix length 0-{max}, got {p:?}"),
            )
        })?)
    } else if let Some(m) = inherit("mask", dir)? {
        let mf = if read::flag(&dir.join("mask")) {
            dir.join("mask")
        } else {
            top.join("mask")
        };
        Some(mask_to_prefix(&mf, &m)?)
    } else {
        None
    };
    let nodev = read::flag(&dir.join("nodev")) || read::flag(&dir.join("only_ip"));
    if read::flag(&dir.join("only_ip")) {
        warnings.push(ConfigError::file(
            Code::LegacyFile,
            &dir.join("only_ip"),
            "deprecated: use nodev",
        ));
    }
    let dev = inherit("dev", dir)?;
    // Only `nodev` stands for a device: util-vserver's start refused `only_ip` without a dev.
    if dev.is_none() && !read::flag(&dir.join("nodev")) {
        return Err(ConfigError::file(
            Code::InterfaceDevMissing,
            dir,
            "No device specified: add a dev file or nodev",
        ));
    }
    for f in [
        "tun", "tap", "peer", "mac", "down", "indirect", "shared", "nocsum", "linktype", "uid",
        "gid",
    ] {
        if read::flag(&dir.join(f)) {
            warnings.push(ConfigError::file(
                Code::NotApplicable,
                &dir.join(f),
                "not supported by vserverd, ignored",
            ));
        }
    }
    if ip.is_unspecified() {
        warnings.push(ConfigError::at(
            Code::AnyAddress,
            &ipf,
            1,
            format!(
                "{ip} stood for every address of the host under util-vserver (chbind); in the \
                 guest's own network namespace it reaches nothing: write nonetns for the host's \
                 network stack, or give the guest an address of its own"
            ),
        ));
    }
    if let Some(n) = read::scalar(&dir.join("name"))?.filter(|n| !label_fits(n)) {
        warnings.push(ConfigError::at(
            Code::LabelTooLong,
            &dir.join("name"),
            1,
            format!(
                "the label {GUEST_IF}:{n} is longer than the kernel's 15 bytes: the address is \
                 added without it (util-vserver's ip addr add failed, and the guest ran without \
                 the address)"
            ),
        ));
    }
    if read::flag(&dir.join("scope")) {
        warnings.push(ConfigError::file(
            Code::ScopeUnused,
            &dir.join("scope"),
            "scope is read but never used (as in util-vserver)",
        ));
    }
    Ok(Some(Interface {
        id,
        ip,
        prefix: prefix.unwrap_or(max),
        dev,
        name: read::scalar(&dir.join("name"))?,
        bcast: inherit("bcast", dir)?,
        scope: inherit("scope", dir)?,
        peer: read::scalar(&dir.join("peer"))?,
        mac: read::scalar(&dir.join("mac"))?,
        extip: inherit("extip", dir)?,
        nodev,
        down: read::flag(&dir.join("down")),
        vlandev: vlan(dir),
        tun: read::flag(&dir.join("tun")),
        tap: read::flag(&dir.join("tap")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_tree as tree;

    #[test]
    fn defaults_vlandev_is_the_fallback() {
        let d = tree(&[
            ("interfaces/0/ip", "10.0.0.2/24\n"),
            ("interfaces/0/dev", "eth0.5\n"),
            (".defaults/interfaces/vlandev", ""),
        ]);
        let def = d.path().join(".defaults");
        assert_eq!(
            load(d.path(), &def, &mut vec![]).unwrap().vlandev,
            Some(true)
        );
        std::fs::write(d.path().join("interfaces/novlandev"), "").unwrap();
        assert_eq!(
            load(d.path(), &def, &mut vec![]).unwrap().vlandev,
            Some(false)
        );
    }

    #[test]
    fn inheritance_mask_and_order() {
        let d = tree(&[
            ("interfaces/dev", "eth0\n"),
            ("interfaces/mask", "255.255.255.0\n"),
            ("interfaces/01/ip", "10.0.0.2\n"),
            ("interfaces/00/ip", "10.0.0.1/16\n"),
            ("interfaces/00/name", "web\n"),
            ("interfaces/02/ip", "fd00::1\n"),
            ("interfaces/02/nodev", ""),
            ("interfaces/02/prefix", "64\n"),
        ]);
        let i = load(d.path(), &d.path().join(".defaults"), &mut vec![]).unwrap();
        let ids: Vec<&str> = i.list.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, ["00", "01", "02"]);
        assert_eq!(
            (i.list[0].prefix, i.list[0].name.as_deref()),
            (16, Some("web"))
        );
        assert_eq!(
            (i.list[1].prefix, i.list[1].dev.as_deref()),
            (24, Some("eth0"))
        );
        assert_eq!(i.list[1].name, None);
        assert!(i.list[2].nodev);
        assert_eq!(i.list[2].prefix, 64);
    }

    #[test]
    fn interface_without_ip_is_an_error() {
        let d = tree(&[("interfaces/00/dev", "eth0\n")]);
        let e = load(d.path(), &d.path().join(".defaults"), &mut vec![]).unwrap_err();
        assert!(e.message.contains("without an ip"), "{e}");
    }

    #[test]
    fn bad_address_names_the_line() {
        let d = tree(&[
            ("interfaces/00/ip", "10.0.0.300\n"),
            ("interfaces/00/dev", "eth0\n"),
        ]);
        let e = load(d.path(), &d.path().join(".defaults"), &mut vec![]).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.file.ends_with("interfaces/00/ip"));
    }

    #[test]
    fn disabled_interfaces_are_skipped_and_unsupported_files_warned() {
        let d = tree(&[
            ("interfaces/00/ip", "10.0.0.1\n"),
            ("interfaces/00/dev", "eth0\n"),
            ("interfaces/00/tun", ""),
            ("interfaces/01/disabled", ""),
        ]);
        let mut w = vec![];
        let i = load(d.path(), &d.path().join(".defaults"), &mut w).unwrap();
        assert_eq!(i.list.len(), 1);
        assert!(w.iter().any(|w| w.file.ends_with("tun")));
    }
}
