//! What to hash and what to share, from what the walk saw and what the store knows: pure.
//!
//! Hard links are one inode (the kernel refuses to dedupe a file with itself), so files are
//! collapsed by (device, inode) first; only inodes whose (device, size) another inode has
//! can have a twin, so only those are hashed; inodes of one (device, size, hash) form a
//! group, shared onto one source.

use std::collections::HashMap;
use std::path::PathBuf;

use super::walk::Seen;

/// One inode, reached through the first path the walk met it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub guest: u16,
    pub rel: PathBuf,
    /// Paths the walk met it at (hard links inside the walked trees).
    pub paths: u32,
}

impl Inode {
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Collapses hard links: one [`Inode`] per (device, inode), in the order first seen.
pub fn collapse(seen: Vec<Seen>) -> Vec<Inode> {
    let mut at: HashMap<(u64, u64), usize> = HashMap::with_capacity(seen.len());
    let mut out: Vec<Inode> = Vec::with_capacity(seen.len());
    for s in seen {
        match at.get(&(s.dev, s.ino)) {
            Some(&i) => out[i].paths += 1,
            None => {
                at.insert((s.dev, s.ino), out.len());
                out.push(Inode {
                    dev: s.dev,
                    ino: s.ino,
                    size: s.size,
                    mtime_ns: s.mtime_ns,
                    ctime_ns: s.ctime_ns,
                    guest: s.guest,
                    rel: s.rel,
                    paths: 1,
                });
            }
        }
    }
    out
}

/// Indexes of the inodes worth hashing: at least `min_size` bytes, and another inode of the
/// same device has the same size. In inode order per device (roughly the disk's order).
pub fn candidates(inodes: &[Inode], min_size: u64) -> Vec<usize> {
    let mut by_size: HashMap<(u64, u64), u32> = HashMap::new();
    for i in inodes.iter().filter(|i| i.size >= min_size.max(1)) {
        *by_size.entry((i.dev, i.size)).or_default() += 1;
    }
    let mut out: Vec<usize> = (0..inodes.len())
        .filter(|&k| {
            let i = &inodes[k];
            i.size >= min_size.max(1) && by_size.get(&(i.dev, i.size)).is_some_and(|&n| n > 1)
        })
        .collect();
    out.sort_by_key(|&k| (inodes[k].dev, inodes[k].ino));
    out
}

/// One group of identical inodes to share: `dests` onto `source`, all then in set `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub source: usize,
    pub dests: Vec<usize>,
    pub set: (u64, u64),
}

/// What is known of a hashed inode: its hash and the set it was shared into ((0, 0): none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub hash: u128,
    pub set: (u64, u64),
}

/// The groups to share, and how many inodes were in a group already fully shared.
///
/// Within a group, the largest set the store knows is kept (its first member the source) and
/// the others are shared onto it; with no set known, the first inode is the source and
/// names the new set.
pub fn groups(inodes: &[Inode], known: &HashMap<usize, Known>) -> (Vec<Group>, u64) {
    let mut buckets: HashMap<(u64, u64, u128), Vec<usize>> = HashMap::new();
    for (&k, kn) in known {
        let i = &inodes[k];
        buckets.entry((i.dev, i.size, kn.hash)).or_default().push(k);
    }
    let mut out = Vec::new();
    let mut already = 0u64;
    let mut keys: Vec<_> = buckets.keys().copied().collect();
    keys.sort();
    for key in keys {
        let mut members = buckets.remove(&key).expect("key from the map");
        if members.len() < 2 {
            continue;
        }
        members.sort_by_key(|&k| inodes[k].id());
        let mut sizes: HashMap<(u64, u64), usize> = HashMap::new();
        for &k in &members {
            let s = known[&k].set;
            if s != (0, 0) {
                *sizes.entry(s).or_default() += 1;
            }
        }
        let best = sizes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(s, _)| *s);
        let (source, set) = match best {
            Some(s) => (
                *members
                    .iter()
                    .find(|&&k| known[&k].set == s)
                    .expect("the set has a member"),
                s,
            ),
            None => (members[0], inodes[members[0]].id()),
        };
        let dests: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&k| k != source && known[&k].set != set)
            .collect();
        if dests.is_empty() {
            already += members.len() as u64;
            continue;
        }
        already += (members.len() - 1 - dests.len()) as u64;
        out.push(Group { source, dests, set });
    }
    (out, already)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(guest: u16, rel: &str, ino: u64, size: u64) -> Seen {
        Seen {
            guest,
            rel: rel.into(),
            dev: 7,
            ino,
            size,
            mtime_ns: 1,
            ctime_ns: 2,
            nlink: 1,
            allocated: size,
        }
    }

    #[test]
    fn hard_links_are_one_inode() {
        let v = collapse(vec![
            seen(0, "usr/bin/perl", 10, 5000),
            seen(0, "usr/bin/perl5.36.0", 10, 5000),
            seen(1, "usr/bin/perl", 20, 5000),
        ]);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].paths, 2);
        assert_eq!(v[0].rel, PathBuf::from("usr/bin/perl"));
    }

    #[test]
    fn only_sizes_seen_twice_and_big_enough_are_hashed() {
        let v = collapse(vec![
            seen(0, "a", 1, 5000),
            seen(1, "a", 2, 5000),
            seen(0, "b", 3, 6000),
            seen(0, "c", 4, 10),
            seen(1, "c", 5, 10),
            seen(0, "e", 6, 0),
            seen(1, "e", 7, 0),
        ]);
        assert_eq!(candidates(&v, 4096), vec![0, 1]);
        assert_eq!(candidates(&v, 1), vec![0, 1, 3, 4]);
    }

    fn known(hash: u128, set: (u64, u64)) -> Known {
        Known { hash, set }
    }

    #[test]
    fn identical_inodes_form_a_group_onto_the_first() {
        let v = collapse(vec![
            seen(0, "a", 3, 5000),
            seen(1, "a", 1, 5000),
            seen(2, "a", 2, 5000),
            seen(2, "other", 4, 5000),
        ]);
        let k: HashMap<usize, Known> = [
            (0, known(9, (0, 0))),
            (1, known(9, (0, 0))),
            (2, known(9, (0, 0))),
            (3, known(8, (0, 0))),
        ]
        .into();
        let (g, already) = groups(&v, &k);
        assert_eq!(already, 0);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].source, 1, "lowest inode");
        assert_eq!(g[0].dests, vec![2, 0]);
        assert_eq!(g[0].set, (7, 1));
    }

    #[test]
    fn shared_groups_are_skipped_and_new_members_join_the_largest_set() {
        let v = collapse(vec![
            seen(0, "a", 1, 5000),
            seen(1, "a", 2, 5000),
            seen(2, "a", 3, 5000),
            seen(3, "a", 4, 5000),
            seen(4, "a", 5, 5000),
        ]);
        // Already one set: nothing to do.
        let all: HashMap<usize, Known> = (0..5).map(|i| (i, known(9, (7, 1)))).collect();
        let (g, already) = groups(&v, &all);
        assert!(g.is_empty());
        assert_eq!(already, 5);
        // Two sets (unified in two runs of different guests) and a newcomer: the larger set
        // wins, the smaller set's members and the newcomer join it.
        let k: HashMap<usize, Known> = [
            (0, known(9, (7, 1))),
            (1, known(9, (7, 3))),
            (2, known(9, (7, 3))),
            (3, known(9, (7, 1))),
            (4, known(9, (0, 0))),
        ]
        .into();
        let (g, already) = groups(&v, &k);
        assert_eq!(g.len(), 1);
        // A tie of two: the lower set id wins, its first member is the source.
        assert_eq!(g[0].set, (7, 1));
        assert_eq!(g[0].source, 0);
        assert_eq!(g[0].dests, vec![1, 2, 4]);
        assert_eq!(already, 1);
    }
}
