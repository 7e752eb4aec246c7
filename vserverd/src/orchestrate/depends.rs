//! The dependency graph of apps/init/depends: which guests must run before which. Pure.
//!
//! util-vserver expanded depends two levels deep; we follow the whole graph, report a cycle
//! with its chain (`a -> b -> a`) and a dependency on a guest that does not exist, and start
//! nothing in either case.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("{guest} depends on {dependency}, which is not configured")]
    Unknown { guest: String, dependency: String },
}

/// guest -> the guests it depends on.
pub type Graph = BTreeMap<String, Vec<String>>;

/// Every guest `roots` need, roots included, or the first problem found.
pub fn closure(g: &Graph, roots: &[String]) -> Result<BTreeSet<String>, GraphError> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        for dep in g.get(&n).into_iter().flatten() {
            if !g.contains_key(dep) {
                return Err(GraphError::Unknown {
                    guest: n.clone(),
                    dependency: dep.clone(),
                });
            }
            stack.push(dep.clone());
        }
    }
    check_acyclic(g, &seen)?;
    Ok(seen)
}

/// Fails with the first cycle among `set` (depth-first, in name order, so the chain reported
/// is the same every time).
fn check_acyclic(g: &Graph, set: &BTreeSet<String>) -> Result<(), GraphError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        set: &BTreeSet<String>,
        n: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Result<(), GraphError> {
        match marks.get(n) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut chain: Vec<String> = path[start..].to_vec();
                chain.push(n.to_string());
                return Err(GraphError::Cycle(chain));
            }
            None => {}
        }
        marks.insert(n.to_string(), Mark::Open);
        path.push(n.to_string());
        let mut deps: Vec<&String> = g
            .get(n)
            .into_iter()
            .flatten()
            .filter(|d| set.contains(*d))
            .collect();
        deps.sort();
        for d in deps {
            visit(g, set, d, marks, path)?;
        }
        path.pop();
        marks.insert(n.to_string(), Mark::Done);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    for n in set {
        visit(g, set, n, &mut marks, &mut Vec::new())?;
    }
    Ok(())
}

/// The dependencies of `n` inside `set`.
pub fn deps_in<'a>(g: &'a Graph, set: &'a BTreeSet<String>, n: &str) -> Vec<&'a String> {
    g.get(n)
        .into_iter()
        .flatten()
        .filter(|d| set.contains(*d))
        .collect()
}

/// Layers of `set`: each guest comes after all its dependencies (start order; reverse it to
/// stop). Assumes `set` is closed and acyclic (see [`closure`]).
pub fn layers(g: &Graph, set: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    fn depth<'a>(
        g: &'a Graph,
        set: &'a BTreeSet<String>,
        n: &'a str,
        level: &mut BTreeMap<&'a str, usize>,
    ) -> usize {
        if let Some(l) = level.get(n) {
            return *l;
        }
        let l = deps_in(g, set, n)
            .into_iter()
            .map(|d| depth(g, set, d, level) + 1)
            .max()
            .unwrap_or(0);
        level.insert(n, l);
        l
    }
    for n in set {
        depth(g, set, n, &mut level);
    }
    let max = level.values().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); max];
    for (n, l) in level {
        out[l].push(n.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn closure_and_layers() {
        let g = graph(&[
            ("web", &["db", "cache"]),
            ("db", &["dns"]),
            ("cache", &[]),
            ("dns", &[]),
            ("other", &[]),
        ]);
        let c = closure(&g, &s(&["web"])).unwrap();
        assert_eq!(c.len(), 4);
        assert!(!c.contains("other"));
        assert_eq!(
            layers(&g, &c),
            vec![s(&["cache", "dns"]), s(&["db"]), s(&["web"])]
        );
    }

    #[test]
    fn cycles_are_reported_with_their_chain() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        assert_eq!(
            closure(&g, &s(&["d"])).unwrap_err().to_string(),
            "dependency cycle: a -> b -> c -> a"
        );
        let g = graph(&[("a", &["a"])]);
        assert_eq!(
            closure(&g, &s(&["a"])).unwrap_err(),
            GraphError::Cycle(s(&["a", "a"]))
        );
    }

    #[test]
    fn unknown_dependencies_are_named() {
        let g = graph(&[("a", &["ghost"])]);
        assert_eq!(
            closure(&g, &s(&["a"])).unwrap_err().to_string(),
            "a depends on ghost, which is not configured"
        );
    }

    proptest! {
        /// On random DAGs (edges only to lower-numbered guests) every guest's layer is after
        /// all its dependencies' layers.
        #[test]
        fn layers_respect_every_edge(edges in proptest::collection::vec((0usize..30, 0usize..30), 0..80)) {
            let mut g: Graph = (0..30).map(|i| (format!("g{i:02}"), vec![])).collect();
            for (a, b) in edges {
                if a > b {
                    g.get_mut(&format!("g{a:02}")).unwrap().push(format!("g{b:02}"));
                }
            }
            let all: Vec<String> = g.keys().cloned().collect();
            let c = closure(&g, &all).unwrap();
            let l = layers(&g, &c);
            let at = |n: &str| l.iter().position(|layer| layer.iter().any(|x| x == n)).unwrap();
            for (n, deps) in &g {
                for d in deps {
                    prop_assert!(at(d) < at(n));
                }
            }
        }
    }
}
