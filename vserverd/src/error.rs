//! Why a lifecycle step failed, kept typed from the failing call to the RPC edge.
//!
//! A [`StepError`] names the step (the same names as the fault points, docs/crash.md:
//! `start.cgroup`, `stage.mounts`, `stop.signal` …), what it was doing in the words the admin
//! reads, the path it worked on and the errno of the system call that failed. Its text is the
//! message the admin always got (`Display` is `WHAT: CAUSE`), so keeping the type changes no
//! message; the step and errno travel beside it to the log and to the varlink error
//! (`Failed.step`, `Failed.errno`), converted once, in [`StepError::into_manager`].
//!
//! It keeps the errno rather than the `io::Error` itself because a stage's errors cross a
//! process boundary (stage/report.rs) as JSON: [`StepError::io_error`] rebuilds the error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A failed step of a lifecycle call (start, stop, build, exec, delete, set, unify …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// The step, named as its fault point is.
    pub step: String,
    /// What the step was doing ("joining cgroup /sys/fs/cgroup/…"), when the cause's own text
    /// does not say it.
    pub what: Option<String>,
    /// The file or directory the step worked on, where there was one.
    pub path: Option<PathBuf>,
    /// The errno of the system call that failed; none for a refusal.
    pub errno: Option<i32>,
    /// The cause in words (an `io::Error`'s text, or why the step refused).
    pub cause: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.what {
            Some(w) => write!(f, "{w}: {}", self.cause),
            None => f.write_str(&self.cause),
        }
    }
}

impl std::error::Error for StepError {}

impl StepError {
    /// A step that refused for a reason of its own (no system call failed).
    pub fn refused(step: &str, why: impl Into<String>) -> StepError {
        Cause::from(why.into()).at(step)
    }

    /// Says what the step was doing; the message becomes `WHAT: CAUSE`.
    pub fn doing(mut self, what: impl Into<String>) -> StepError {
        self.what = Some(match self.what.take() {
            Some(inner) => format!("{}: {inner}", what.into()),
            None => what.into(),
        });
        self
    }

    /// Names the path the step worked on (kept apart from the text: it is there already).
    pub fn on(mut self, path: &Path) -> StepError {
        self.path.get_or_insert_with(|| path.to_path_buf());
        self
    }

    /// The cause as an `io::Error`, when it was one.
    pub fn io_error(&self) -> Option<std::io::Error> {
        self.errno.map(std::io::Error::from_raw_os_error)
    }

    /// The errno's symbolic name (`EACCES`), for logs and `vserverctl`'s details.
    pub fn errno_name(&self) -> Option<String> {
        self.errno
            .map(|e| format!("{:?}", nix::errno::Errno::from_raw(e)))
    }

    /// The varlink error for guest `name`: the same message, with the step and errno beside it.
    pub fn into_manager(self, name: &str) -> proto::ManagerError {
        tracing::debug!(
            guest = name,
            step = self.step,
            errno = self.errno_name(),
            path = self.path.as_ref().map(|p| p.display().to_string()),
            "failed: {self}"
        );
        proto::ManagerError::Failed {
            name: name.into(),
            message: self.to_string(),
            step: Some(self.step),
            errno: self.errno,
        }
    }
}

/// What went wrong, before the step it happened in is known: the text the admin reads, the
/// errno found anywhere in the error's source chain, and a path where the error kept one.
#[derive(Debug)]
pub struct Cause {
    errno: Option<i32>,
    path: Option<PathBuf>,
    text: String,
}

impl Cause {
    /// Where it happened: the step, in fault-point naming.
    pub fn at(self, step: &str) -> StepError {
        StepError {
            step: step.into(),
            what: None,
            path: self.path,
            errno: self.errno,
            cause: self.text,
        }
    }

    fn of(e: &(dyn std::error::Error + 'static), path: Option<PathBuf>) -> Cause {
        let mut errno = None;
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                errno = io.raw_os_error();
                break;
            }
            next = e.source();
        }
        Cause {
            errno,
            path,
            text: e.to_string(),
        }
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Cause {
        Cause {
            errno: None,
            path: None,
            text,
        }
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Cause {
        Cause::from(text.to_string())
    }
}

impl From<StepError> for Cause {
    /// A step's error met again by the step that called it: the inner step's errno and path
    /// are kept, its text becomes the cause.
    fn from(e: StepError) -> Cause {
        Cause {
            errno: e.errno,
            path: e.path.clone(),
            text: e.to_string(),
        }
    }
}

macro_rules! cause_from_errors {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Cause {
            fn from(e: $t) -> Cause {
                Cause::of(&e, None)
            }
        }
    )*};
}

cause_from_errors!(
    std::io::Error,
    rustix::io::Errno,
    nix::Error,
    tokio::task::JoinError,
    serde_json::Error,
    crate::isolate::mount::MountError,
    crate::isolate::process::ProcessError,
    crate::isolate::net::NetError,
    crate::isolate::caps::CapsError,
    crate::isolate::seccomp::SeccompError,
    crate::isolate::sockbpf::SockBpfError,
    crate::stage::spawn::SpawnError,
);

impl From<crate::isolate::cgroup::CgroupError> for Cause {
    fn from(e: crate::isolate::cgroup::CgroupError) -> Cause {
        let path = match &e {
            crate::isolate::cgroup::CgroupError::Io { path, .. } => Some(path.clone()),
            crate::isolate::cgroup::CgroupError::Busy(p) => Some(p.clone()),
            crate::isolate::cgroup::CgroupError::Knob { path, .. } => Some(path.clone()),
            crate::isolate::cgroup::CgroupError::NoHierarchy
            | crate::isolate::cgroup::CgroupError::Refused(_) => None,
        };
        Cause::of(&e, path)
    }
}

/// `result.step("start.cgroup")?`: an error of any kind becomes the step's.
pub trait StepResult<T> {
    fn step(self, step: &str) -> Result<T, StepError>;
    /// As [`StepResult::step`], saying what the step was doing.
    fn step_doing(self, step: &str, what: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T, E: Into<Cause>> StepResult<T> for Result<T, E> {
    fn step(self, step: &str) -> Result<T, StepError> {
        self.map_err(|e| e.into().at(step))
    }

    fn step_doing(self, step: &str, what: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|e| e.into().at(step).doing(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_keeps_its_errno_and_its_text() {
        let e: Result<(), _> = Err(std::io::Error::from_raw_os_error(libc::EACCES));
        let e = e
            .step_doing("start.run-file", || "run file /run/x".into())
            .unwrap_err();
        assert_eq!(e.step, "start.run-file");
        assert_eq!(e.errno, Some(libc::EACCES));
        assert_eq!(e.errno_name().as_deref(), Some("EACCES"));
        assert_eq!(
            e.to_string(),
            "run file /run/x: Permission denied (os error 13)"
        );
    }

    #[test]
    fn a_typed_errors_errno_is_found_in_its_source_chain() {
        let cg = crate::isolate::cgroup::CgroupError::Io {
            path: "/sys/fs/cgroup/x".into(),
            source: std::io::Error::from_raw_os_error(libc::EBUSY),
        };
        let text = cg.to_string();
        let e = Cause::from(cg).at("start.cgroup");
        assert_eq!(e.errno, Some(libc::EBUSY));
        assert_eq!(e.path.as_deref(), Some(Path::new("/sys/fs/cgroup/x")));
        assert_eq!(e.to_string(), text);
    }

    #[test]
    fn a_refusal_has_no_errno_and_reaches_varlink_with_its_step() {
        let e = StepError::refused("start.config", "the guest root /v/x does not exist");
        let proto::ManagerError::Failed {
            name,
            message,
            step,
            errno,
        } = e.into_manager("x")
        else {
            panic!("not Failed")
        };
        assert_eq!(
            (name.as_str(), message.as_str(), step.as_deref(), errno),
            (
                "x",
                "the guest root /v/x does not exist",
                Some("start.config"),
                None
            )
        );
    }

    #[test]
    fn it_survives_the_stage_channel() {
        let e = Cause::from(std::io::Error::from_raw_os_error(libc::ENOENT))
            .at("stage.mounts")
            .doing("bind /etc/x");
        let back: StepError = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            back.io_error().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }
}
