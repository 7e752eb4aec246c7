//! Watches the config root with inotify: every guest folder and everything below it, and
//! .defaults. Events are debounced; a folder is rescanned right after its watch is added
//! (files made before the watch would be missed otherwise); a queue overflow rescans
//! everything; an editor's save-by-rename is just another event in the folder. Changes reach
//! the catalog at once, and a running guest whose config changed is marked "restart needed".

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use crate::daemon::Daemon;

/// Events within this window are handled together (an editor's write + rename, a `cp -r`).
const DEBOUNCE: Duration = Duration::from_millis(15);

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::ONLYDIR
}

/// What a change touches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Guest(String),
    All,
}

struct Watcher {
    watches: Watches,
    /// Watched directory and the scope a change in it belongs to.
    dirs: HashMap<WatchDescriptor, (PathBuf, Scope)>,
    root: PathBuf,
    /// Said already: the limit was hit, or three quarters of it are used.
    limit_hit: bool,
    limit_warned: bool,
}

/// fs.inotify.max_user_watches: the watches all processes of one uid may hold together.
fn max_user_watches() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Watcher {
    /// One config folder takes one watch (a guest tree has a dozen): warn before the limit
    /// bites, once, with the numbers.
    fn warn_near_limit(&mut self) {
        if self.limit_warned {
            return;
        }
        if let Some(max) = max_user_watches() {
            if self.dirs.len() * 4 >= max * 3 {
                self.limit_warned = true;
                tracing::warn!(
                    "the config watcher holds {} inotify watches, three quarters of \
                     fs.inotify.max_user_watches ({max}, shared by every uid-0 process): raise it \
                     before it bites (sysctl fs.inotify.max_user_watches=N)",
                    self.dirs.len()
                );
            }
        }
    }

    fn scope_of(&self, path: &Path) -> Option<Scope> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let first = rel
            .components()
            .next()?
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        Some(if first == ".defaults" {
            Scope::All
        } else if !crate::config::is_guest_name(&first) {
            return None;
        } else {
            Scope::Guest(first)
        })
    }

    /// Watches every folder below the root. Adding a watch that exists already is harmless
    /// (inotify returns the same descriptor), so this is also the repair after lost events.
    fn add_guest_folders(&mut self) {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in rd.flatten() {
            // A guest folder may be a symlink to a folder elsewhere (List shows those too).
            if e.path().is_dir() {
                self.add_tree(&e.path());
            }
        }
    }

    /// Drops the watches of a guest folder that left the root (moved away, or a symlink
    /// removed): the kernel keeps them while the folder itself lives on.
    fn forget(&mut self, scope: &Scope) {
        let gone: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, (_, s))| s == scope)
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in gone {
            self.dirs.remove(&wd);
            // Fails when the kernel dropped it already (the folder was deleted): fine.
            let _ = self.watches.remove(wd);
        }
    }

    /// Watches `dir` and every directory below it. Symlinks below it are not followed: a
    /// guest's `vdir` and `cache` lead to its files, not its config.
    fn add_tree(&mut self, dir: &Path) {
        let Some(scope) = self.scope_of(dir) else {
            return;
        };
        match self.watches.add(dir, mask()) {
            Ok(wd) => {
                let new = !self.dirs.contains_key(&wd);
                self.dirs.insert(wd, (dir.to_path_buf(), scope));
                if new {
                    self.warn_near_limit();
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                // Said once per burst: every later folder would say the same.
                if !self.limit_hit {
                    self.limit_hit = true;
                    tracing::error!(
                        "inotify watch limit reached (fs.inotify.max_user_watches = {}, shared \
                         by every process of uid 0 on this host, guests included; this daemon \
                         holds {}): changes in {} and later folders are not seen until it is \
                         raised (sysctl fs.inotify.max_user_watches=N) and the daemon restarted",
                        max_user_watches().map_or("?".into(), |n| n.to_string()),
                        self.dirs.len(),
                        dir.display()
                    );
                }
                return;
            }
            Err(e) => {
                tracing::warn!("cannot watch {}: {e}", dir.display());
                return;
            }
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.add_tree(&e.path());
                }
            }
        }
    }
}

/// Starts watching; the catalog is filled first and marked live once the watches are in place.
pub fn spawn(d: Arc<Daemon>) {
    let root = d.opts.config_root.clone();
    let inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("inotify unavailable ({e}): config changes are read at each call");
            return;
        }
    };
    let watches = inotify.watches();
    let mut w = Watcher {
        watches,
        dirs: HashMap::new(),
        root: root.clone(),
        limit_hit: false,
        limit_warned: false,
    };
    match w.watches.add(&root, mask()) {
        Ok(wd) => {
            w.dirs.insert(wd, (root.clone(), Scope::All));
        }
        Err(e) => {
            tracing::warn!(
                "cannot watch {} ({e}): config changes are read at each call",
                root.display()
            );
            return;
        }
    }
    w.add_guest_folders();
    // After the watches: nothing changed since is missed.
    d.catalog.reload_all(&d.roots());
    d.catalog.set_live(true);
    let mut stream = match inotify.into_event_stream(vec![0u8; 64 * 1024]) {
        Ok(s) => s,
        Err(e) => {
            d.catalog.set_live(false);
            tracing::warn!("inotify stream: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let Some(first) = stream.next().await else {
                break;
            };
            let mut batch = vec![first];
            let deadline = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    ev = stream.next() => match ev {
                        Some(ev) => batch.push(ev),
                        None => break,
                    },
                }
            }
            let mut dirty: BTreeSet<Scope> = BTreeSet::new();
            for ev in batch {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!("inotify: {e}");
                        dirty.insert(Scope::All);
                        continue;
                    }
                };
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    // Lost events may include new folders: watch them too, then re-read all.
                    tracing::info!("inotify queue overflowed: rescanning the config root");
                    w.add_guest_folders();
                    dirty.insert(Scope::All);
                    continue;
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    w.dirs.remove(&ev.wd);
                    continue;
                }
                let Some((dir, scope)) = w.dirs.get(&ev.wd).cloned() else {
                    continue;
                };
                let name: Option<OsString> = ev.name.map(|n| n.to_os_string());
                let path = name.as_ref().map(|n| dir.join(n)).unwrap_or(dir.clone());
                // A new directory (a new guest, or a folder inside one): watch it, then read it.
                // In the root a symlink to a folder is a guest folder too.
                let at_root = dir == w.root;
                let arrived =
                    ev.mask.contains(EventMask::CREATE) || ev.mask.contains(EventMask::MOVED_TO);
                if arrived && (ev.mask.contains(EventMask::ISDIR) || (at_root && path.is_dir())) {
                    w.add_tree(&path);
                }
                let left =
                    ev.mask.contains(EventMask::DELETE) || ev.mask.contains(EventMask::MOVED_FROM);
                if at_root && left && !path.is_dir() {
                    // Only a guest's: .defaults shares its scope with the root's own watch.
                    if let Some(s @ Scope::Guest(_)) = w.scope_of(&path) {
                        w.forget(&s);
                    }
                }
                let s = if at_root {
                    w.scope_of(&path)
                } else {
                    Some(scope)
                };
                if let Some(s) = s {
                    dirty.insert(s);
                }
            }
            apply(&d, dirty).await;
        }
        d.catalog.set_live(false);
    });
}

async fn apply(d: &Arc<Daemon>, dirty: BTreeSet<Scope>) {
    let roots = d.roots();
    let names: Vec<String> = if dirty.contains(&Scope::All) {
        let mut n = d.catalog.reload_all(&roots);
        // Guests that vanished are among the running ones, if anywhere.
        n.extend(d.guests.running_names());
        n
    } else {
        dirty
            .into_iter()
            .filter_map(|s| match s {
                Scope::Guest(n) => {
                    d.catalog.reload(&roots, &n);
                    Some(n)
                }
                Scope::All => None,
            })
            .collect()
    };
    tracing::debug!("config changes applied to {} guests", names.len());
    for n in names {
        let entry = d.catalog.all().get(&n).cloned();
        d.guests.emit(
            &n,
            "config-changed",
            entry
                .as_ref()
                .and_then(|e| e.as_ref().as_ref().err().map(|e| e.to_string())),
        );
        if let Some(run) = d.guests.running(&n) {
            use crate::guest::limits::{apply_live, without_limits, without_orchestration};
            let restart = match (entry.as_deref(), run.config.as_ref()) {
                (Some(Ok(l)), Some(old))
                    if without_orchestration(old) == without_orchestration(&l.config) =>
                {
                    false
                }
                (Some(Ok(l)), Some(old)) if without_limits(old) == without_limits(&l.config) => {
                    // Only limits changed: apply them to the running guest (disk limits as
                    // `set --disk` does).
                    let disk = match old.dlimits == l.config.dlimits {
                        true => Ok(()),
                        false => {
                            let (rd, r, c) = (d.opts.run_dir.clone(), run.clone(), l.clone());
                            tokio::task::spawn_blocking(move || {
                                crate::guest::disk::apply_edit(&rd, &r, &c.config)
                            })
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r)
                            .map(|_| ())
                        }
                    };
                    match apply_live(&run, &l.config).and(disk) {
                        Ok(()) => {
                            tracing::info!(guest = n, "limits changed in the config tree: applied");
                            false
                        }
                        Err(e) => {
                            tracing::warn!(guest = n, "changed limits not applied live: {e}");
                            true
                        }
                    }
                }
                _ => true,
            };
            if restart {
                d.guests.set_restart_needed(&n, true);
            }
        }
    }
}
