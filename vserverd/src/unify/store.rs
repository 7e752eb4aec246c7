//! The content-hash store: what unify learnt about each file, so a second run reads only new
//! or changed files and skips groups it shared already.
//!
//! An entry is keyed by (device, inode) and valid while size, mtime and ctime are those it
//! was made with: a write changes mtime and ctime, a chmod or a rename of the inode changes
//! ctime, and the kernel's dedupe changes neither. Each entry also records the *set* its
//! file was shared into (the (device, inode) of the file it was deduped against, or its own
//! when it was the source): files of one set share blocks already, so a group whose members
//! all carry the same set needs no call.
//!
//! The file (STATE_DIR/unify/hashes) is a cache: written whole to a temporary file, synced
//! and renamed over the old one, so a crash leaves the old or the new one; one that does not
//! read back is dropped with a warning and rebuilt by the next run.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"VSUNIFY1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub hash: u128,
    /// The set of files sharing blocks this one belongs to, (0, 0) for none.
    pub set: (u64, u64),
    /// Index into [`Store::guests`]: whose file it is (for pruning).
    pub guest: u16,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Store {
    pub guests: Vec<String>,
    pub entries: HashMap<(u64, u64), Entry>,
}

impl Store {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("unify").join("hashes")
    }

    /// The entry for this inode if it still describes the file (same size, mtime, ctime).
    pub fn fresh(
        &self,
        dev: u64,
        ino: u64,
        size: u64,
        mtime_ns: i128,
        ctime_ns: i128,
    ) -> Option<&Entry> {
        self.entries
            .get(&(dev, ino))
            .filter(|e| e.size == size && e.mtime_ns == mtime_ns && e.ctime_ns == ctime_ns)
    }

    pub fn guest_index(&mut self, name: &str) -> u16 {
        if let Some(i) = self.guests.iter().position(|g| g == name) {
            return i as u16;
        }
        self.guests.push(name.to_string());
        (self.guests.len() - 1) as u16
    }

    /// Drops the entries of the walked guests whose inodes the walk did not see (deleted,
    /// replaced, or excluded now), and every entry of a guest not in `alive`; returns how many
    /// went.
    pub fn prune(
        &mut self,
        walked: &[u16],
        seen: &std::collections::HashSet<(u64, u64)>,
        alive: &[String],
    ) -> usize {
        let dead: Vec<u16> = (0..self.guests.len() as u16)
            .filter(|i| !alive.contains(&self.guests[*i as usize]))
            .collect();
        let before = self.entries.len();
        self.entries.retain(|k, e| {
            !dead.contains(&e.guest) && (!walked.contains(&e.guest) || seen.contains(k))
        });
        before - self.entries.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.entries.len() * 82);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(self.guests.len() as u32).to_le_bytes());
        for g in &self.guests {
            b.extend_from_slice(&(g.len() as u32).to_le_bytes());
            b.extend_from_slice(g.as_bytes());
        }
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for ((dev, ino), e) in &self.entries {
            b.extend_from_slice(&dev.to_le_bytes());
            b.extend_from_slice(&ino.to_le_bytes());
            b.extend_from_slice(&e.size.to_le_bytes());
            b.extend_from_slice(&e.mtime_ns.to_le_bytes());
            b.extend_from_slice(&e.ctime_ns.to_le_bytes());
            b.extend_from_slice(&e.hash.to_le_bytes());
            b.extend_from_slice(&e.set.0.to_le_bytes());
            b.extend_from_slice(&e.set.1.to_le_bytes());
            b.extend_from_slice(&e.guest.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Store, String> {
        let mut r = Reader { b, at: 0 };
        if r.take(8)? != MAGIC {
            return Err("not a unify hash store (bad magic)".into());
        }
        let ng = r.u32()? as usize;
        let mut guests = Vec::with_capacity(ng.min(1 << 16));
        for _ in 0..ng {
            let n = r.u32()? as usize;
            let s = std::str::from_utf8(r.take(n)?).map_err(|e| e.to_string())?;
            guests.push(s.to_string());
        }
        let n = r.u64()? as usize;
        if n > b.len() / 82 + 1 {
            return Err(format!("claims {n} entries, more than the file holds"));
        }
        let mut entries = HashMap::with_capacity(n);
        for _ in 0..n {
            let dev = r.u64()?;
            let ino = r.u64()?;
            let e = Entry {
                size: r.u64()?,
                mtime_ns: r.i128()?,
                ctime_ns: r.i128()?,
                hash: r.i128()? as u128,
                set: (r.u64()?, r.u64()?),
                guest: r.u16()?,
            };
            if e.guest as usize >= guests.len() {
                return Err("an entry names no guest".into());
            }
            entries.insert((dev, ino), e);
        }
        if r.at != b.len() {
            return Err("trailing bytes".into());
        }
        Ok(Store { guests, entries })
    }

    /// Reads the store; a missing file is an empty store, an unreadable one is dropped (it is
    /// a cache) with a warning.
    pub fn load(path: &Path) -> Store {
        let mut buf = Vec::new();
        match std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf)) {
            Ok(_) => Store::decode(&buf).unwrap_or_else(|e| {
                tracing::warn!("{}: {e}; starting with an empty hash store", path.display());
                Store::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Store::default(),
            Err(e) => {
                tracing::warn!("{}: {e}; starting with an empty hash store", path.display());
                Store::default()
            }
        }
    }

    /// Writes the store atomically (temporary file, fsync, rename, fsync of the folder).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or("truncated")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i128(&mut self) -> Result<i128, String> {
        Ok(i128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Store {
        let mut s = Store::default();
        let g = s.guest_index("web");
        let h = s.guest_index("db");
        s.entries.insert(
            (64769, 131),
            Entry {
                size: 4096,
                mtime_ns: 1_700_000_000_123_456_789,
                ctime_ns: -5,
                hash: u128::MAX - 7,
                set: (64769, 99),
                guest: g,
            },
        );
        s.entries.insert(
            (64769, 132),
            Entry {
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                hash: 1,
                set: (0, 0),
                guest: h,
            },
        );
        s
    }

    #[test]
    fn encodes_and_decodes_the_same_store() {
        let s = sample();
        assert_eq!(Store::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn damaged_stores_are_refused() {
        let b = sample().encode();
        for cut in [0, 7, 12, b.len() - 1] {
            assert!(Store::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(Store::decode(&extra).is_err());
        let mut bad = b;
        bad[0] = b'X';
        assert!(Store::decode(&bad).is_err());
    }

    #[test]
    fn an_entry_is_fresh_only_with_the_same_size_mtime_and_ctime() {
        let s = sample();
        let ok = 1_700_000_000_123_456_789;
        assert!(s.fresh(64769, 131, 4096, ok, -5).is_some());
        assert!(s.fresh(64769, 131, 4097, ok, -5).is_none());
        assert!(s.fresh(64769, 131, 4096, ok + 1, -5).is_none());
        assert!(s.fresh(64769, 131, 4096, ok, -4).is_none());
        assert!(s.fresh(1, 131, 4096, ok, -5).is_none());
    }

    #[test]
    fn pruning_drops_unseen_files_of_walked_guests_and_gone_guests() {
        let mut s = sample();
        let seen = std::collections::HashSet::new();
        // Only "db" (1) walked, its file unseen: gone. "web" not walked: kept.
        assert_eq!(s.prune(&[1], &seen, &["web".into(), "db".into()]), 1);
        assert_eq!(s.entries.len(), 1);
        assert!(s.entries.contains_key(&(64769, 131)));
        // "web" no longer exists.
        s.prune(&[], &seen, &["db".into()]);
        assert!(s.entries.is_empty());
    }

    #[test]
    fn save_and_load_round_trip_and_a_bad_file_is_an_empty_store() {
        let d = tempfile::tempdir().unwrap();
        let p = Store::path(d.path());
        assert_eq!(Store::load(&p), Store::default());
        let s = sample();
        s.save(&p).unwrap();
        assert_eq!(Store::load(&p), s);
        std::fs::write(&p, b"garbage").unwrap();
        assert_eq!(Store::load(&p), Store::default());
    }
}
