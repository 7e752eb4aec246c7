//! The barrier over the vdir base (config/exposure.rs says why): the daemon makes a missing
//! base mode 000 and marks it as its own, and puts mode 000 back at each start on a base it
//! made; a base someone else made is never changed, only warned about.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The file in a vdir base that says the daemon made it (guest names never start with '.').
pub const MARK: &str = ".vserverd-base";

/// What [`ensure`] found or did, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Base {
    Made,
    Restored(u32),
    Kept,
    /// Not the daemon's, and host users can pass it.
    Open(String),
}

pub fn ensure(base: &Path) -> std::io::Result<Base> {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777);
    if std::fs::symlink_metadata(base).is_err() {
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(base)?;
        std::fs::write(
            base.join(MARK),
            "made by vserverd: kept mode 000 (the barrier)\n",
        )?;
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o000))?;
        return Ok(Base::Made);
    }
    if base.join(MARK).exists() {
        let m = mode(base)?;
        if m != 0 {
            std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o000))?;
            return Ok(Base::Restored(m));
        }
        return Ok(Base::Kept);
    }
    // A guest root below the base stands for every other.
    match crate::config::exposure::root_warning(&base.join("GUEST")) {
        Some(w) => Ok(Base::Open(w)),
        None => Ok(Base::Kept),
    }
}

/// [`ensure`], logged: called at daemon start.
pub fn ensure_logged(base: &Path) {
    match ensure(base) {
        Ok(Base::Made) => tracing::info!("made the vdir base {} (mode 000)", base.display()),
        Ok(Base::Restored(m)) => tracing::warn!(
            "vdir base {} was mode {m:o}: set back to 000 (the barrier)",
            base.display()
        ),
        Ok(Base::Kept) => {}
        Ok(Base::Open(w)) => tracing::warn!("{w}"),
        Err(e) => tracing::warn!("vdir base {}: {e}", base.display()),
    }
}
