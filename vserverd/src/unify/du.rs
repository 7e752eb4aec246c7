//! A guest's disk usage split into its own and shared blocks (util-vserver's vdu, plus what
//! unification saved): every regular file's extents through FIEMAP, whose SHARED flag the
//! file system sets on an extent another file (or a snapshot) also uses. `du` cannot tell:
//! it counts a shared block once per file.

use std::os::fd::AsFd;

use super::exclude::Rules;
use super::plan;
use super::walk;
use crate::sys::fs as sysfs;

pub fn usage(name: &str, vdir: &std::path::Path) -> Result<proto::GuestDiskUsage, String> {
    let root = walk::open_root(vdir).map_err(|e| format!("{}: {e}", vdir.display()))?;
    let mut seen = Vec::new();
    let counts = walk::walk(0, &root, &Rules::none(), &mut |f| seen.push(f))
        .map_err(|e| format!("{}: {e}", vdir.display()))?;
    let mut errors = counts.errors;
    let inodes = plan::collapse(seen);
    let mut u = proto::GuestDiskUsage {
        name: name.to_string(),
        vdir: vdir.display().to_string(),
        files: inodes.len() as u64 + counts.empty,
        apparent_bytes: 0,
        allocated_bytes: 0,
        shared_bytes: 0,
        own_bytes: 0,
        quota_used_bytes: None,
        quota_limit_bytes: None,
        quota_inodes: None,
        quota_inodes_limit: None,
        errors: Vec::new(),
    };
    for i in &inodes {
        u.apparent_bytes += i.size;
        if i.size == 0 {
            continue;
        }
        let ext = sysfs::open_beneath(root.as_fd(), &i.rel, false).and_then(|fd| {
            let st = sysfs::fstat(&fd)?;
            if st.st_ino != i.ino || st.st_dev != i.dev {
                return Err(std::io::Error::other("changed since the walk"));
            }
            sysfs::extents(&fd)
        });
        match ext {
            Ok(ext) => {
                for e in ext {
                    if e.flags & sysfs::FIEMAP_EXTENT_DELALLOC != 0 && e.physical == 0 {
                        // Not written out yet: its own, of its length.
                        u.allocated_bytes += e.length;
                        continue;
                    }
                    u.allocated_bytes += e.length;
                    if e.flags & sysfs::FIEMAP_EXTENT_SHARED != 0 {
                        u.shared_bytes += e.length;
                    }
                }
            }
            Err(e) => {
                if errors.len() < 20 {
                    errors.push(format!("/{}: {e}", i.rel.display()));
                }
            }
        }
    }
    u.own_bytes = u.allocated_bytes - u.shared_bytes;
    u.errors = errors;
    Ok(u)
}
