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
    /// Links the inode has (st_nlink), inside the walked trees or not.
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
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
                    nlink: s.nlink,
                    mode: s.mode,
                    uid: s.uid,
                    gid: s.gid,
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

/// Every path after the first of each inode the walk met more than once, by (device, inode):
/// hard-link unification replaces every name of a destination inode, else the old inode
/// lives on through the names left and nothing is saved.
pub fn other_paths(seen: &[Seen]) -> HashMap<(u64, u64), Vec<(u16, PathBuf)>> {
    let mut first: HashMap<(u64, u64), ()> = HashMap::with_capacity(seen.len());
    let mut out: HashMap<(u64, u64), Vec<(u16, PathBuf)>> = HashMap::new();
    for s in seen {
        if first.insert((s.dev, s.ino), ()).is_some() {
            out.entry((s.dev, s.ino))
                .or_default()
                .push((s.guest, s.rel.clone()));
        }
    }
    out
}

/// What must agree, besides the content, for two inodes to become one by hard link: one
/// inode has one owner, group, mode and mtime, so linking files that differ in them would
/// change what some guest sees (util-vserver's vunify and vhashify compared the same, mtime
/// unless told to ignore it). Extended attributes are compared when linking (run's link
/// step), as they need the files open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkKey {
    pub dev: u64,
    pub size: u64,
    pub hash: u128,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// 0 when told to ignore mtimes.
    pub mtime_ns: i128,
}

/// What hard-link unification will do: see [`link_groups`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    pub groups: Vec<Group>,
    /// Names of the groups' inodes that were already one inode with others (paths past the
    /// first).
    pub already: u64,
    /// Inodes with identical twins only under another project id (ext4 project quotas: the
    /// kernel refuses links across projects, and a link would move one guest's file onto
    /// another's quota): left alone, and reported.
    pub other_project: Vec<usize>,
}

/// The groups for hard-link unification: inodes of one [`LinkKey`] and one project id
/// (`projects[guest]`, 0 for a guest without a disk limit); the source is the inode with
/// the most links (the one an earlier run linked into other guests), then the lowest inode
/// number; every other inode of the group is a destination.
pub fn link_groups(
    inodes: &[Inode],
    known: &HashMap<usize, Known>,
    ignore_mtime: bool,
    projects: &[u32],
) -> LinkPlan {
    let mut buckets: HashMap<LinkKey, Vec<usize>> = HashMap::new();
    for (&k, kn) in known {
        let i = &inodes[k];
        let key = LinkKey {
            dev: i.dev,
            size: i.size,
            hash: kn.hash,
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            mtime_ns: if ignore_mtime { 0 } else { i.mtime_ns },
        };
        buckets.entry(key).or_default().push(k);
    }
    let mut keys: Vec<LinkKey> = buckets.keys().copied().collect();
    keys.sort();
    let mut out = LinkPlan::default();
    for key in keys {
        let members = buckets.remove(&key).expect("key from the map");
        out.already += members
            .iter()
            .map(|&k| u64::from(inodes[k].paths.saturating_sub(1)))
            .sum::<u64>();
        if members.len() < 2 {
            continue;
        }
        let project = |k: usize| projects.get(inodes[k].guest as usize).copied().unwrap_or(0);
        let mut parts: Vec<(u32, Vec<usize>)> = Vec::new();
        for k in members {
            match parts.iter_mut().find(|(p, _)| *p == project(k)) {
                Some((_, v)) => v.push(k),
                None => parts.push((project(k), vec![k])),
            }
        }
        parts.sort_by_key(|(p, _)| *p);
        for (_, mut part) in parts {
            if part.len() < 2 {
                out.other_project.extend(part);
                continue;
            }
            part.sort_by_key(|&k| (std::cmp::Reverse(inodes[k].nlink), inodes[k].ino));
            let source = part[0];
            out.groups.push(Group {
                source,
                dests: part[1..].to_vec(),
                set: inodes[source].id(),
            });
        }
    }
    out
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
            mode: 0o100644,
            uid: 0,
            gid: 0,
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

    #[test]
    fn link_groups_need_equal_owner_mode_and_mtime_and_keep_the_most_linked_inode() {
        let mut s = vec![
            seen(0, "a", 5, 5000),
            seen(1, "a", 3, 5000),
            seen(2, "a", 4, 5000),
            seen(2, "a2", 4, 5000),
            seen(3, "a", 6, 5000),
            seen(4, "a", 7, 5000),
            seen(5, "a", 8, 5000),
        ];
        s[2].nlink = 3; // linked by an earlier run
        s[3].nlink = 3;
        s[4].uid = 1000; // another owner
        s[5].mtime_ns = 99; // another mtime
        s[6].mode = 0o100755; // another mode
        let extra = other_paths(&s);
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[&(7, 4)], vec![(2, PathBuf::from("a2"))]);
        let v = collapse(s);
        let k: HashMap<usize, Known> = (0..v.len()).map(|i| (i, known(9, (0, 0)))).collect();
        let LinkPlan {
            groups: g,
            already,
            other_project,
        } = link_groups(&v, &k, false, &[]);
        assert!(other_project.is_empty());
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(v[g[0].source].ino, 4, "the inode with most links");
        let mut d: Vec<u64> = g[0].dests.iter().map(|&k| v[k].ino).collect();
        d.sort();
        assert_eq!(d, vec![3, 5]);
        assert_eq!(already, 1, "a2 is a second name of inode 4");
        // Told to ignore mtimes, the file with another mtime joins (owner and mode still count).
        let g = link_groups(&v, &k, true, &[]).groups;
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].dests.len(), 3);
        // Guests 0 and 1 under one project id (disk limits), the rest without: two groups;
        // with guest 1 alone in its project, its file is left alone and reported.
        let p = link_groups(&v, &k, false, &[7, 7, 0]);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(v[p.groups[0].source].ino, 3);
        assert_eq!(p.groups[0].dests.len(), 1);
        let p = link_groups(&v, &k, false, &[0, 7]);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.other_project.len(), 1);
        assert_eq!(v[p.other_project[0]].ino, 3);
    }
}
