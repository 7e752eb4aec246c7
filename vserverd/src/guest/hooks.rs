//! Runs one hook type (docs/lifecycle.md): the guest's scripts, then .defaults' unless a guest
//! script ran and none set DONT_SKIP_DEFAULTS. One /bin/sh runs them all, so a sourced
//! (non-executable) script can set variables for the next, as under util-vserver's bash.

use std::path::Path;
use std::process::Stdio;

use crate::config::scripts::{Hook, HookScript};

/// The driver: `$1` hook, `$2` guest, `$3` count of guest scripts, then the scripts as
/// `x:PATH` (run) or `s:PATH` (source), guest's first. Names are prefixed so sourced scripts
/// do not clobber them.
const DRIVER: &str = r#"
__vsd_hook=$1; __vsd_name=$2; __vsd_n=$3; shift 3
__vsd_ran=0
__vsd_one() {
    case $1 in
        x:*) "${1#x:}" "$__vsd_hook" "$__vsd_name" ;;
        s:*) . "${1#s:}" ;;
    esac
}
while [ "$__vsd_n" -gt 0 ]; do
    __vsd_one "$1"; shift; __vsd_n=$((__vsd_n - 1)); __vsd_ran=1
done
if [ "$__vsd_ran" = 0 ] || [ -n "${DONT_SKIP_DEFAULTS:-}" ]; then
    for __vsd_s in "$@"; do __vsd_one "$__vsd_s"; done
fi
"#;

fn arg(s: &HookScript) -> String {
    format!(
        "{}:{}",
        if s.executable { "x" } else { "s" },
        s.path.display()
    )
}

/// Runs the hook's scripts with `cwd`. `strict` (start): the first failure stops the hook and
/// is returned, with the output; otherwise (stop) failures are only logged.
pub async fn run(
    hook: &Hook,
    guest: &str,
    cwd: &Path,
    env: &[(&str, String)],
    strict: bool,
) -> Result<(), String> {
    if hook.guest.is_empty() && hook.defaults.is_empty() {
        return Ok(());
    }
    let script = if strict {
        format!("set -e\n{DRIVER}")
    } else {
        DRIVER.to_string()
    };
    let mut cmd = tokio::process::Command::new("/bin/sh");
    crate::sys::fd::no_inherited_fds(cmd.as_std_mut());
    cmd.arg("-c")
        .arg(script)
        .arg("vserverd-hook")
        .arg(&hook.name)
        .arg(guest)
        .arg(hook.guest.len().to_string())
        .args(hook.guest.iter().chain(hook.defaults.iter()).map(arg))
        .current_dir(cwd)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("VSERVER_NAME", guest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("{} hook: cannot run /bin/sh: {e}", hook.name))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if !out.status.success() {
        let msg = format!(
            "{} hook failed ({}){}",
            hook.name,
            out.status,
            match text(&out.stderr) {
                s if s.is_empty() => String::new(),
                s => format!(": {s}"),
            }
        );
        if strict {
            return Err(msg);
        }
        tracing::warn!(guest, "{msg}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str, exec: bool) -> HookScript {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(
            &p,
            std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
        )
        .unwrap();
        HookScript {
            path: p,
            executable: exec,
        }
    }

    #[tokio::test]
    async fn runs_in_order_with_util_vservers_arguments() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let l = log.display();
        let hook = Hook {
            name: "pre-start".into(),
            guest: vec![
                script(
                    t.path(),
                    "a",
                    &format!("#!/bin/sh\necho \"a $1 $2 $VSERVER_NAME\" >> {l}\n"),
                    true,
                ),
                script(
                    t.path(),
                    "b",
                    &format!("echo \"b sourced $__vsd_hook\" >> {l}\n"),
                    false,
                ),
            ],
            defaults: vec![script(
                t.path(),
                "d",
                &format!("#!/bin/sh\necho d >> {l}\n"),
                true,
            )],
        };
        run(&hook, "web", t.path(), &[], true).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "a pre-start web web\nb sourced pre-start\n",
            "defaults are skipped when the guest has its own"
        );
    }

    #[tokio::test]
    async fn dont_skip_defaults_and_failures() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let l = log.display();
        let hook = Hook {
            name: "pre-start".into(),
            guest: vec![script(t.path(), "s", "DONT_SKIP_DEFAULTS=1\n", false)],
            defaults: vec![
                script(t.path(), "d", &format!("#!/bin/sh\necho d >> {l}\n"), true),
                script(t.path(), "f", "#!/bin/sh\necho nope >&2\nexit 3\n", true),
            ],
        };
        let e = run(&hook, "web", t.path(), &[], true).await.unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "d\n");
        // Stop hooks ignore failures.
        run(&hook, "web", t.path(), &[], false).await.unwrap();
    }
}
