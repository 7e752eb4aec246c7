//! Starting and stopping many guests: a guest's dependencies first (those not running), a
//! mark's guests in dependency order with independent ones in parallel (bounded), stops in
//! reverse order. A failed guest's dependents are skipped and say which dependency failed;
//! unrelated branches go on.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use proto::{GuestState, ManagerError};
use tokio::sync::Semaphore;

use super::depends::{self, Graph};
use crate::daemon::Daemon;
use crate::guest;
use crate::guest::progress::Progress;

/// How one guest's job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(String),
    /// Not tried: this prerequisite failed (or was skipped itself).
    Skipped(String),
}

/// Runs `job` for every node once all its `prereqs` (within `nodes`) are done, at most
/// `parallel` at a time. With `strict`, a node whose prerequisite failed is skipped.
pub async fn run_dag<F, Fut>(
    nodes: &BTreeSet<String>,
    prereqs: &BTreeMap<String, Vec<String>>,
    parallel: usize,
    strict: bool,
    job: F,
) -> BTreeMap<String, Outcome>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(parallel.max(1)));
    let mut done: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    loop {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for n in nodes {
                if started.contains(n) {
                    continue;
                }
                let pre: Vec<&String> = prereqs
                    .get(n)
                    .into_iter()
                    .flatten()
                    .filter(|p| nodes.contains(*p))
                    .collect();
                if !pre.iter().all(|p| done.contains_key(*p)) {
                    continue;
                }
                started.insert(n.clone());
                progressed = true;
                let culprit = pre.iter().find_map(|p| match &done[*p] {
                    Outcome::Done => None,
                    Outcome::Failed(_) => Some((*p).clone()),
                    Outcome::Skipped(c) => Some(c.clone()),
                });
                match culprit {
                    Some(c) if strict => {
                        done.insert(n.clone(), Outcome::Skipped(c));
                    }
                    _ => {
                        let sem = sem.clone();
                        let fut = job(n.clone());
                        let task = tokio::spawn(async move {
                            let _permit = sem.acquire_owned().await;
                            fut.await
                        });
                        // The name stays out here: a task that panicked still has an outcome,
                        // and its dependents are skipped instead of forgotten.
                        let name = n.clone();
                        running.push(async move {
                            let r = task.await.unwrap_or_else(|e| {
                                tracing::error!("the task for {name} panicked: {e}");
                                Err(format!("internal error: {e}"))
                            });
                            (name, r)
                        });
                    }
                }
            }
        }
        match running.next().await {
            None => break,
            Some((n, r)) => {
                done.insert(
                    n,
                    match r {
                        Ok(()) => Outcome::Done,
                        Err(e) => Outcome::Failed(e),
                    },
                );
            }
        }
    }
    done
}

/// A job's error as its outcome: the guest's name is added once, where it is reported
/// (`Failed`'s Display starts with it; kept, it showed twice: "deb: deb: …").
fn without_name(e: ManagerError) -> String {
    match e {
        ManagerError::Failed { message, .. } => message,
        e => e.to_string(),
    }
}

/// The dependency graph: of the guests reachable from `roots` (parsing only those), or of
/// every guest (from the watcher's catalog when it is live). A guest whose config does not
/// load has no known dependencies; its own start reports the config error.
fn graph(d: &Daemon, roots: Option<&[String]>) -> (Graph, BTreeMap<String, (Vec<String>, bool)>) {
    let mut g = Graph::new();
    let mut marks = BTreeMap::new();
    let mut add = |n: String, c: Option<&crate::config::GuestConfig>| {
        let deps = c.map(|c| c.init.depends.clone()).unwrap_or_default();
        marks.insert(
            n.clone(),
            c.map_or((vec![], false), |c| (c.init.mark.clone(), c.disabled)),
        );
        g.insert(n, deps.clone());
        deps
    };
    match roots {
        Some(roots) => {
            let mut todo: Vec<String> = roots.to_vec();
            let mut seen = BTreeSet::new();
            while let Some(n) = todo.pop() {
                if !seen.insert(n.clone()) || !d.opts.config_root.join(&n).is_dir() {
                    continue;
                }
                let l = d.load(&n).ok();
                todo.extend(add(n, l.as_ref().map(|l| &l.config)));
            }
        }
        None if d.catalog.live() => {
            for (n, e) in d.catalog.all() {
                add(n, e.as_ref().as_ref().ok().map(|l| &l.config));
            }
        }
        None => {
            for n in d.guest_names() {
                let l = d.load(&n).ok();
                add(n, l.as_ref().map(|l| &l.config));
            }
        }
    }
    (g, marks)
}

fn graph_error(e: depends::GraphError) -> ManagerError {
    ManagerError::InvalidDependencies {
        message: e.to_string(),
    }
}

/// The guests a call is about: one name, or every guest with a mark (disabled ones skipped).
pub enum Selection {
    One(String),
    Mark(String),
}

fn roots(
    d: &Daemon,
    sel: &Selection,
    marks: &BTreeMap<String, (Vec<String>, bool)>,
) -> Result<Vec<String>, ManagerError> {
    match sel {
        Selection::One(n) => {
            d.check_name(n)?;
            Ok(vec![n.clone()])
        }
        Selection::Mark(m) => Ok(marks
            .iter()
            .filter(|(_, (ms, disabled))| !disabled && ms.contains(m))
            .map(|(n, _)| n.clone())
            .collect()),
    }
}

fn summary(what: &str, total: usize, out: &BTreeMap<String, Outcome>) -> Result<(), String> {
    let bad: Vec<String> = out
        .iter()
        .filter_map(|(n, o)| match o {
            Outcome::Done => None,
            Outcome::Failed(e) => Some(format!("{n}: {e}")),
            Outcome::Skipped(c) => Some(format!("{n}: not {what}: dependency {c} failed")),
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {total} guests failed: {}",
            bad.len(),
            bad.join("; ")
        ))
    }
}

/// Starts the selection and every dependency not running, in dependency order.
pub async fn start(
    d: &Arc<Daemon>,
    sel: Selection,
    parallel: usize,
    p: &Progress,
) -> Result<(), ManagerError> {
    if let Selection::One(n) = &sel {
        if d.guests.running(n).is_some() {
            return Err(ManagerError::AlreadyRunning { name: n.clone() });
        }
    }
    let (g, marks) = match &sel {
        Selection::One(n) => graph(d, Some(std::slice::from_ref(n))),
        Selection::Mark(_) => graph(d, None),
    };
    let roots = roots(d, &sel, &marks)?;
    let set = depends::closure(&g, &roots).map_err(graph_error)?;
    // Each guest's own error, kept whole: the one asked for is answered with it (its step
    // and errno), not with the text the graph's outcome keeps.
    let errors: Arc<std::sync::Mutex<BTreeMap<String, ManagerError>>> = Arc::default();
    let job = |n: String| {
        let d = d.clone();
        let p = p.clone();
        let errors = errors.clone();
        async move {
            match guest::start::start(&d, &n, &p).await {
                Ok(()) | Err(ManagerError::AlreadyRunning { .. }) => Ok(()),
                Err(e) => {
                    let text = without_name(e.clone());
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(n, e);
                    Err(text)
                }
            }
        }
    };
    let out = run_dag(&set, &g, parallel, true, job).await;
    for (n, o) in &out {
        if let Outcome::Skipped(c) = o {
            p.send(
                n,
                "skipped",
                &format!("not started: dependency {c} failed"),
                GuestState::Stopped,
            );
        }
    }
    match sel {
        Selection::One(name) => match out.get(&name) {
            Some(Outcome::Skipped(c)) => Err(ManagerError::DependencyFailed {
                name,
                dependency: c.clone(),
                reason: match out.get(c) {
                    Some(Outcome::Failed(e)) => e.clone(),
                    _ => "not started".into(),
                },
            }),
            Some(Outcome::Failed(e)) => Err(errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name)
                .unwrap_or_else(|| ManagerError::failed(name, e.clone()))),
            _ => Ok(()),
        },
        Selection::Mark(m) => summary("started", set.len(), &out)
            .map_err(|message| ManagerError::failed(format!("mark {m}"), message)),
    }
}

/// Stops every running guest of a mark, dependents before what they depend on.
pub async fn stop_mark(
    d: &Arc<Daemon>,
    mark: &str,
    parallel: usize,
    p: &Progress,
) -> Result<(), ManagerError> {
    let (g, marks) = graph(d, None);
    let set: BTreeSet<String> = roots(d, &Selection::Mark(mark.into()), &marks)?
        .into_iter()
        .filter(|n| d.guests.running(n).is_some())
        .collect();
    // Reverse edges: a guest waits for its dependents.
    let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, deps) in &g {
        for dep in deps {
            dependents.entry(dep.clone()).or_default().push(n.clone());
        }
    }
    let job = |n: String| {
        let d = d.clone();
        let p = p.clone();
        async move { guest::stop::stop(&d, &n, &p).await.map_err(without_name) }
    };
    let out = run_dag(&set, &dependents, parallel, false, job).await;
    summary("stopped", set.len(), &out)
        .map_err(|message| ManagerError::failed(format!("mark {mark}"), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn failures_skip_dependents_and_spare_other_branches() {
        let nodes: BTreeSet<String> = ["a", "b", "c", "x"].iter().map(|s| s.to_string()).collect();
        let pre: BTreeMap<String, Vec<String>> = [("b", vec!["a"]), ("c", vec!["b"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let out = run_dag(&nodes, &pre, 4, true, move |n| {
            let o = o.clone();
            async move {
                o.lock().unwrap().push(n.clone());
                if n == "a" {
                    Err("boom".into())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(out["a"], Outcome::Failed("boom".into()));
        assert_eq!(out["b"], Outcome::Skipped("a".into()));
        assert_eq!(out["c"], Outcome::Skipped("a".into()));
        assert_eq!(out["x"], Outcome::Done);
        assert!(!order.lock().unwrap().contains(&"b".to_string()));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_and_its_dependents_are_skipped() {
        let nodes: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let pre: BTreeMap<String, Vec<String>> = [("b".to_string(), vec!["a".to_string()])]
            .into_iter()
            .collect();
        let out = run_dag(&nodes, &pre, 2, true, |n| async move {
            assert_ne!(n, "a", "a job that panics");
            Ok(())
        })
        .await;
        assert!(matches!(&out["a"], Outcome::Failed(e) if e.contains("internal error")));
        assert_eq!(out["b"], Outcome::Skipped("a".into()));
    }

    #[tokio::test]
    async fn runs_after_prerequisites_and_in_parallel() {
        let nodes: BTreeSet<String> = (0..8)
            .map(|i| format!("n{i}"))
            .chain(["top".to_string()])
            .collect();
        let pre: BTreeMap<String, Vec<String>> =
            [("top".to_string(), (0..8).map(|i| format!("n{i}")).collect())]
                .into_iter()
                .collect();
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let finished = Arc::new(Mutex::new(Vec::new()));
        let (l, pk, f) = (live.clone(), peak.clone(), finished.clone());
        let out = run_dag(&nodes, &pre, 3, true, move |n| {
            let (l, pk, f) = (l.clone(), pk.clone(), f.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = l.fetch_add(1, SeqCst) + 1;
                pk.fetch_max(now, SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                l.fetch_sub(1, SeqCst);
                f.lock().unwrap().push(n);
                Ok(())
            }
        })
        .await;
        assert!(out.values().all(|o| *o == Outcome::Done));
        assert_eq!(finished.lock().unwrap().last().unwrap(), "top");
        let p = peak.load(std::sync::atomic::Ordering::SeqCst);
        assert!(p > 1 && p <= 3, "peak parallelism {p}");
    }
}
