//! Fault injection for the crash matrix (docs/crash.md, tests/tests/crash.rs): debug builds
//! only; release builds compile every point to nothing.
//!
//! `VSERVERD_FAULT=STEP=ACTION[,STEP=ACTION…]` in the daemon's environment: when the daemon
//! passes the named point (`start.cgroup`, …), ACTION happens there — `kill` SIGKILLs the
//! daemon itself (as a crash, an OOM kill or a power cut would stop it mid-step), `fail`
//! makes the step fail as if its syscall had (the error names the step, so rollback is
//! exercised the way a real errno would).

/// A point after a step of work. Returns the injected failure, if any.
#[inline]
pub fn point(step: &str) -> Result<(), String> {
    #[cfg(debug_assertions)]
    {
        match action(step).as_deref() {
            Some("kill") => {
                tracing::warn!("fault injection: killing the daemon at {step}");
                // SAFETY: kill(2) of our own process.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            Some("fail") => return Err(format!("injected fault at {step}")),
            _ => {}
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
    Ok(())
}

#[cfg(debug_assertions)]
fn action(step: &str) -> Option<String> {
    static SPEC: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| std::env::var("VSERVERD_FAULT").ok());
    parse(spec.as_deref()?, step)
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
