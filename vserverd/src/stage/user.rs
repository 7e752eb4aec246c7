//! `vserver NAME suexec USER`: who USER is, read from the guest's own /etc/passwd and
//! /etc/group by the joined process itself, after it entered the guest's mount namespace and
//! was confined. No NSS module of the guest is ever loaded, and no host process follows a
//! guest path: the files are the guest's, read by a guest process, and still treated as
//! hostile (bounded reads, regular files only, no blocking on a FIFO).

use std::ffi::CString;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use crate::error::{StepError, StepResult};

/// The step a suexec's errors are reported under.
const STEP: &str = "join.user";

/// At most this much of /etc/passwd or /etc/group is read; a guest's real ones are far smaller.
const MAX_FILE: u64 = 4 << 20;

/// A resolved user: its ids, supplementary groups, home and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// `PATH: ERROR`, as the message always read, with the errno and the path kept.
fn io_at(e: std::io::Error, path: &str) -> StepError {
    crate::error::Cause::from(e)
        .at(STEP)
        .doing(path)
        .on(std::path::Path::new(path))
}

/// Reads a guest file for lookup: a regular file, opened without blocking (a FIFO planted
/// there would otherwise hang the open), at most MAX_FILE bytes. Missing is empty.
fn read_bounded(path: &str) -> Result<String, StepError> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(io_at(e, path)),
    };
    let meta = f.metadata().map_err(|e| io_at(e, path))?;
    if !meta.is_file() {
        return Err(StepError::refused(
            STEP,
            format!("{path}: not a regular file"),
        ));
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE)
        .read_to_end(&mut buf)
        .map_err(|e| io_at(e, path))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Finds `user` (a name, or a uid when all digits) in passwd and group texts. A uid without a
/// passwd entry runs with the group of the same number and no supplementary groups.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<Who, String> {
    let numeric = user.parse::<u32>().ok();
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let (uid, gid) = (f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?);
        let hit = match numeric {
            Some(n) => uid == n,
            None => f[0] == user,
        };
        hit.then(|| (f[0].to_string(), uid, gid, f[5].to_string()))
    });
    let (name, uid, gid, home) = match (entry, numeric) {
        (Some(e), _) => e,
        (None, Some(n)) => (n.to_string(), n, n, "/".to_string()),
        (None, None) => return Err(format!("unknown user '{user}' in the guest's /etc/passwd")),
    };
    let mut groups = vec![gid];
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        let Ok(g) = f[2].parse::<u32>() else { continue };
        if f[3].split(',').any(|m| m == name) && !groups.contains(&g) {
            groups.push(g);
        }
        // NGROUPS_MAX: a guest listing the user in more groups than the kernel takes gets
        // the first ones.
        if groups.len() >= 65536 {
            break;
        }
    }
    Ok(Who {
        name,
        uid,
        gid,
        groups,
        home,
    })
}

/// Looks `user` up in this process's /etc (the guest's, once joined).
pub fn lookup(user: &str) -> Result<Who, StepError> {
    let passwd = read_bounded("/etc/passwd")?;
    let group = read_bounded("/etc/group")?;
    resolve(user, &passwd, &group).map_err(|e| StepError::refused(STEP, e))
}

/// Becomes `who`: groups, gid, then uid (which, from root, clears every capability).
pub fn switch(who: &Who) -> Result<(), StepError> {
    use crate::sys::process as sys;
    sys::setgroups(&who.groups).step_doing(STEP, || "setgroups".into())?;
    sys::setresgid(who.gid).step_doing(STEP, || format!("setgid {}", who.gid))?;
    sys::setresuid(who.uid).step_doing(STEP, || format!("setuid {}", who.uid))?;
    Ok(())
}

/// The environment for `who`: HOME, USER and LOGNAME set to its own.
pub fn environment(env: &[CString], who: &Who) -> Result<Vec<CString>, StepError> {
    let mut out: Vec<CString> = env
        .iter()
        .filter(|e| {
            let b = e.as_bytes();
            !(b.starts_with(b"HOME=") || b.starts_with(b"USER=") || b.starts_with(b"LOGNAME="))
        })
        .cloned()
        .collect();
    for (k, v) in [
        ("HOME", who.home.as_str()),
        ("USER", who.name.as_str()),
        ("LOGNAME", who.name.as_str()),
    ] {
        out.push(
            CString::new(format!("{k}={v}"))
                .map_err(|_| StepError::refused(STEP, format!("NUL byte in {k}")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nbad line\nweb:x:1000:100:W:/home/web:/bin/sh\nx:x:notanumber:1::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:\nwww:x:33:web,other\nadm:x:4:other\n";

    #[test]
    fn names_and_uids_resolve_with_their_groups() {
        let w = resolve("web", PASSWD, GROUP).unwrap();
        assert_eq!(
            w,
            Who {
                name: "web".into(),
                uid: 1000,
                gid: 100,
                groups: vec![100, 33],
                home: "/home/web".into()
            }
        );
        assert_eq!(resolve("1000", PASSWD, GROUP).unwrap().name, "web");
        let n = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid, n.groups.clone()), (4242, 4242, vec![4242]));
        assert!(resolve("nosuch", PASSWD, GROUP).is_err());
        assert!(
            resolve("x", PASSWD, GROUP).is_err(),
            "a malformed uid is no entry"
        );
    }
}
