//! Host id ranges for guests in a user namespace (`spaces/user`): each such guest gets 65536
//! host uids and gids of its own, allocated from a window (default: systemd's container
//! range, 524288–1879048191) and kept in STATE_DIR/userns/ranges, so a guest keeps its range
//! across restarts and reboots and no two guests, nor a guest and /etc/subuid or /etc/subgid,
//! ever share an id.
//!
//! Why not context × 65536: it overflows at context 65535, lands above 2³¹ for util-vserver's
//! usual 40000+ contexts (ids the kernel and many tools treat as negative), and nothing keeps
//! it clear of the ranges the host gave its own users in /etc/subuid.
//!
//! The file is one `NAME BASE` line per guest, written whole to a temporary file, synced and
//! renamed over the old one, so a crash leaves the old or the new table. Planning is pure
//! ([`Table::allocate`]); [`allocate`] reads, plans and writes under a lock.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Ids per guest: a whole 16-bit id space, so every id a Debian tree uses maps (nobody is
/// 65534).
pub const RANGE: u32 = 65536;

/// Where ranges may be taken from: [start, end], both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

impl Default for Window {
    /// systemd's container uid range (its docs' "UIDs and GIDs" page): 0x80000–0x6FFFFFFF.
    fn default() -> Self {
        Window {
            start: 524288,
            end: 1879048191,
        }
    }
}

impl std::str::FromStr for Window {
    type Err = String;

    /// `START-END` (inclusive): at least one range, below 2³¹, never touching id 0.
    fn from_str(s: &str) -> Result<Window, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: expected START-END"))?;
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?}: {x:?} is not a number"))
        };
        let w = Window {
            start: num(a)?,
            end: num(b)?,
        };
        if w.start < RANGE {
            return Err(format!("{s:?}: the window must start at {RANGE} or above"));
        }
        if w.end >= 1 << 31 {
            return Err(format!("{s:?}: ids from 2^31 on are not used"));
        }
        if w.end < w.start || w.end - w.start + 1 < RANGE {
            return Err(format!("{s:?}: holds no range of {RANGE} ids"));
        }
        Ok(w)
    }
}

/// A half-open id interval [start, start + count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub start: u64,
    pub count: u64,
}

impl Ids {
    fn overlaps(&self, o: &Ids) -> bool {
        self.start < o.start + o.count && o.start < self.start + self.count
    }
}

/// /etc/subuid or /etc/subgid: `NAME:START:COUNT` lines; others (comments, junk) are skipped,
/// since a range the host meant is better kept clear than a start refused.
pub fn parse_subids(text: &str) -> Vec<Ids> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (_, start, count) = (f.next()?, f.next()?, f.next()?);
            Some(Ids {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            })
        })
        .filter(|i| i.count > 0)
        .collect()
}

/// The guests' ranges: guest name → base host id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub bases: BTreeMap<String, u32>,
}

impl Table {
    /// Reads the file's text; a line that does not parse is an error naming it (the file is
    /// ours: damage is worth a look, not a silent reallocation that would reown a guest's ids).
    pub fn parse(text: &str, file: &Path) -> Result<Table, String> {
        let mut t = Table::default();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let bad = || {
                format!(
                    "{}:{}: expected NAME BASE, got {l:?}",
                    file.display(),
                    i + 1
                )
            };
            let (name, base) = l.split_once(' ').ok_or_else(bad)?;
            let base: u32 = base.trim().parse().map_err(|_| bad())?;
            if !base.is_multiple_of(RANGE) {
                return Err(bad());
            }
            t.bases.insert(name.to_string(), base);
        }
        Ok(t)
    }

    pub fn render(&self) -> String {
        let mut s = String::from("# vserverd: guest host-id ranges (NAME BASE), 65536 ids each\n");
        for (n, b) in &self.bases {
            s.push_str(&format!("{n} {b}\n"));
        }
        s
    }

    /// The guest's base: the one it has, if it still lies in the window and clear of
    /// `reserved` (the host's subordinate ranges may have grown), else the lowest free
    /// 65536-aligned range. Returns (base, whether the table changed).
    pub fn allocate(
        &mut self,
        name: &str,
        window: Window,
        reserved: &[Ids],
    ) -> Result<(u32, bool), String> {
        let fits = |base: u32, others: &BTreeMap<String, u32>| {
            let r = Ids {
                start: base as u64,
                count: RANGE as u64,
            };
            base >= window.start
                && base as u64 + RANGE as u64 - 1 <= window.end as u64
                && !reserved.iter().any(|x| x.overlaps(&r))
                && !others.iter().any(|(n, b)| {
                    n != name
                        && Ids {
                            start: *b as u64,
                            count: RANGE as u64,
                        }
                        .overlaps(&r)
                })
        };
        if let Some(&b) = self.bases.get(name) {
            if fits(b, &self.bases) {
                return Ok((b, false));
            }
        }
        let first = window.start.div_ceil(RANGE) as u64 * RANGE as u64;
        let mut base = first;
        while base + RANGE as u64 - 1 <= window.end as u64 {
            if fits(base as u32, &self.bases) {
                self.bases.insert(name.to_string(), base as u32);
                return Ok((base as u32, true));
            }
            base += RANGE as u64;
        }
        Err(format!(
            "no free range of {RANGE} host ids left in {}-{} (the id window)",
            window.start, window.end
        ))
    }
}

/// STATE_DIR/userns/ranges.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("userns").join("ranges")
}

/// The host's subordinate id ranges, uid and gid both: guests keep clear of either.
pub fn host_reserved() -> Vec<Ids> {
    let mut v = Vec::new();
    for f in ["/etc/subuid", "/etc/subgid"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            v.extend(parse_subids(&t));
        }
    }
    v
}

/// `check --deep`: a warning when the tree at `vdir` holds entries whose ids are 65536 or
/// more (the hostile-tree walk of unify/walk.rs: nothing followed, no other file system).
pub fn unmappable_warning(vdir: &Path) -> Option<proto::ConfigProblem> {
    let root = crate::unify::walk::open_root(vdir).ok()?;
    let rules = crate::unify::exclude::parse("", vdir).ok()?;
    let c = crate::unify::walk::walk(0, &root, &rules, &mut |_| {}).ok()?;
    if c.unmappable == 0 {
        return None;
    }
    let named: Vec<String> = c
        .unmappable_named
        .iter()
        .map(|(p, u, g)| format!("{p} ({u}:{g})"))
        .collect();
    Some(proto::ConfigProblem {
        file: vdir.display().to_string(),
        line: None,
        message: format!(
            "{} entries owned by ids of {RANGE} or more, which a user namespace (spaces/user) \
             cannot map: nobody's inside, not writable; {}{}",
            c.unmappable,
            named.join(", "),
            if c.unmappable > named.len() as u64 {
                ", …"
            } else {
                ""
            }
        ),
        code: crate::config::Code::IdUnmappable.as_str().to_string(),
    })
}

/// One allocation at a time in this daemon (starts run in parallel).
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The guest's base host id, allocated and recorded on first use.
pub fn allocate(
    state_dir: &Path,
    name: &str,
    window: Window,
    reserved: &[Ids],
) -> Result<u32, String> {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = path(state_dir);
    let mut t = match std::fs::read_to_string(&file) {
        Ok(text) => Table::parse(&text, &file)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table::default(),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let (base, changed) = t.allocate(name, window, reserved)?;
    if changed {
        write(&file, &t.render()).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(base)
}

/// Drops a deleted guest's range.
pub fn release(state_dir: &Path, name: &str) -> Result<(), String> {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = path(state_dir);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    let mut t = Table::parse(&text, &file)?;
    if t.bases.remove(name).is_some() {
        write(&file, &t.render()).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

fn write(file: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = file.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(".ranges.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Window {
        Window::default()
    }

    #[test]
    fn a_guest_keeps_its_range_and_others_get_their_own() {
        let mut t = Table::default();
        let (a, ch) = t.allocate("a", w(), &[]).unwrap();
        assert!(ch);
        assert_eq!(a, 524288);
        let (b, _) = t.allocate("b", w(), &[]).unwrap();
        assert_eq!(b, 524288 + RANGE);
        assert_eq!(t.allocate("a", w(), &[]).unwrap(), (a, false));
        // Through the file, too.
        let t2 = Table::parse(&t.render(), Path::new("ranges")).unwrap();
        assert_eq!(t2, t);
    }

    #[test]
    fn host_subordinate_ranges_are_kept_clear() {
        let sub = parse_subids("# c\nalice:524288:65536\nbob:600000:10\njunk\n");
        assert_eq!(sub.len(), 2);
        let mut t = Table::default();
        let (a, _) = t.allocate("a", w(), &sub).unwrap();
        // 524288 (alice) and 589824..655359 (holds bob's 600000) are taken.
        assert_eq!(a, 524288 + 2 * RANGE);
        // A range that became reserved later is given up for a free one.
        let mut t = Table::default();
        t.bases.insert("a".into(), 524288);
        let (a, ch) = t.allocate("a", w(), &sub).unwrap();
        assert!(ch);
        assert_eq!(a, 524288 + 2 * RANGE);
    }

    #[test]
    fn the_window_bounds_every_range() {
        let win: Window = "131072-262143".parse().unwrap();
        let mut t = Table::default();
        assert_eq!(t.allocate("a", win, &[]).unwrap().0, 131072);
        assert_eq!(t.allocate("b", win, &[]).unwrap().0, 196608);
        let e = t.allocate("c", win, &[]).unwrap_err();
        assert!(e.contains("no free range"), "{e}");
        // A range from another window is moved into this one.
        t.bases.insert("d".into(), 524288);
        assert!(t.allocate("d", win, &[]).is_err());
        for bad in [
            "1-70000",
            "100000",
            "65536-65537",
            "65536-4294967295",
            "x-y",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
        // Unaligned starts round up.
        let win: Window = "70000-300000".parse().unwrap();
        assert_eq!(Table::default().allocate("a", win, &[]).unwrap().0, 131072);
    }

    #[test]
    fn ranges_never_overlap() {
        let sub = parse_subids("x:700000:100000\n");
        let mut t = Table::default();
        let mut got: Vec<u32> = (0..20)
            .map(|i| t.allocate(&format!("g{i}"), w(), &sub).unwrap().0)
            .collect();
        got.sort();
        for p in got.windows(2) {
            assert!(p[1] - p[0] >= RANGE);
        }
        for b in got {
            let r = Ids {
                start: b as u64,
                count: RANGE as u64,
            };
            assert!(!sub.iter().any(|s| s.overlaps(&r)));
        }
    }

    #[test]
    fn a_damaged_table_is_an_error_naming_the_line() {
        let e = Table::parse("a 524288\nb nope\n", Path::new("/s/ranges")).unwrap_err();
        assert!(e.starts_with("/s/ranges:2:"), "{e}");
        assert!(Table::parse("a 524289\n", Path::new("r")).is_err());
    }

    #[test]
    fn the_state_file_is_kept_and_released() {
        let d = tempfile::tempdir().unwrap();
        let a = allocate(d.path(), "a", w(), &[]).unwrap();
        let b = allocate(d.path(), "b", w(), &[]).unwrap();
        assert_ne!(a, b);
        assert_eq!(allocate(d.path(), "a", w(), &[]).unwrap(), a);
        release(d.path(), "a").unwrap();
        assert_eq!(allocate(d.path(), "c", w(), &[]).unwrap(), a);
        let text = std::fs::read_to_string(path(d.path())).unwrap();
        assert!(text.contains(&format!("b {b}\n")), "{text}");
    }
}
