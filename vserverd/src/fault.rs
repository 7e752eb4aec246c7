//! Fault injection for the crash matrix (docs/crash.md, tests/tests/crash.rs): debug builds
//! only; release builds compile every point to nothing.
//!
//! `VSERVERD_FAULT=STEP=ACTION[,STEP=ACTION…]` in the daemon's environment: when the daemon
//! passes the named point (`start.cgroup`, …), ACTION happens there — `kill` SIGKILLs the
//! process at that point (the daemon; at `stage.*` points the stage or the guest's would-be
//! PID 1 it made), as a crash, an OOM kill or a power cut would stop it mid-step; `fail`
//! makes the step fail as if its syscall had (the error names the step, so rollback is
//! exercised the way a real errno would). Stages get the spec in their plan.

/// A point after a step of work. Returns the injected failure, if any.
#[inline]
pub fn point(step: &str) -> Result<(), crate::error::StepError> {
    #[cfg(debug_assertions)]
    {
        match action(step).as_deref() {
            Some("kill") => {
                tracing::warn!("fault injection: killing the process at {step}");
                // A pid namespace's init ignores its own SIGKILL: it dies as abruptly.
                if std::process::id() == 1 {
                    crate::sys::process::exit_now(128 + libc::SIGKILL);
                }
                let _ = crate::sys::process::kill(std::process::id() as i32, libc::SIGKILL);
            }
            Some("fail") => {
                // EIO, as a failing disk or kernel call would give: the errno travels too.
                return Err(crate::error::StepError {
                    step: step.into(),
                    what: Some(format!("injected fault at {step}")),
                    path: None,
                    errno: Some(libc::EIO),
                    cause: std::io::Error::from_raw_os_error(libc::EIO).to_string(),
                });
            }
            _ => {}
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
    Ok(())
}

#[cfg(debug_assertions)]
static SPEC: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

#[cfg(debug_assertions)]
fn action(step: &str) -> Option<String> {
    let spec = SPEC.get_or_init(|| std::env::var("VSERVERD_FAULT").ok());
    parse(spec.as_deref()?, step)
}

/// The daemon's spec, for a stage (which runs with an empty environment) to `adopt`.
pub fn spec() -> Option<String> {
    #[cfg(debug_assertions)]
    {
        SPEC.get_or_init(|| std::env::var("VSERVERD_FAULT").ok())
            .clone()
    }
    #[cfg(not(debug_assertions))]
    None
}

/// In a stage: the points to act on are the daemon's (`spec` sent along in the plan).
pub fn adopt(spec: Option<String>) {
    #[cfg(debug_assertions)]
    let _ = SPEC.set(spec);
    #[cfg(not(debug_assertions))]
    let _ = spec;
}

/// The action `spec` names for `step`.
#[cfg(any(debug_assertions, test))]
fn parse(spec: &str, step: &str) -> Option<String> {
    spec.split(',')
        .filter_map(|p| p.split_once('='))
        .find(|(s, _)| s.trim() == step)
        .map(|(_, a)| a.trim().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_spec_names_actions_by_step() {
        let spec = "start.cgroup=kill, stop.signal=fail";
        assert_eq!(super::parse(spec, "start.cgroup").as_deref(), Some("kill"));
        assert_eq!(super::parse(spec, "stop.signal").as_deref(), Some("fail"));
        assert_eq!(super::parse(spec, "start.network"), None);
    }
}
