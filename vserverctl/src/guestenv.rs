//! The environment a command started in a guest gets: never the caller's whole environment
//! (cloud credentials, SSH_AUTH_SOCK and tokens would be readable by guest root), only the
//! variables that describe the terminal and the locale, a standard PATH and HOME, and what
//! the caller names with `--env`.

/// Variables passed through from the caller when set: terminal and locale.
const PASSED: &[&str] = &["TERM", "COLORTERM", "NO_COLOR", "LANG", "LANGUAGE", "TZ"];

/// PATH inside the guest (the caller's PATH names host folders).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment from the caller's `vars` and the `--env NAME=VALUE` arguments (which win).
pub fn build(vars: impl Iterator<Item = (String, String)>, extra: &[String]) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), PATH.into()),
        ("HOME".into(), "/root".into()),
    ];
    for (k, v) in vars {
        if PASSED.contains(&k.as_str()) || k.starts_with("LC_") {
            env.push((k, v));
        }
    }
    for e in extra {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.to_string()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Checks one `--env` argument: NAME=VALUE with a plain name.
pub fn parse(s: &str) -> Result<String, String> {
    let (k, _) = s
        .split_once('=')
        .ok_or_else(|| format!("--env {s:?}: expected NAME=VALUE"))?;
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("--env {s:?}: {k:?} is not a variable name"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_terminal_and_locale_pass_and_env_arguments_win() {
        let vars = [
            ("TERM", "xterm"),
            ("LC_ALL", "C.UTF-8"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("PATH", "/home/me/bin:/usr/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = build(vars.into_iter(), &["FOO=bar".into(), "HOME=/srv".into()]);
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert!(env.contains(&"LC_ALL=C.UTF-8".to_string()));
        assert!(env.contains(&format!("PATH={PATH}")));
        assert!(env.contains(&"FOO=bar".to_string()));
        assert!(env.contains(&"HOME=/srv".to_string()));
        assert!(!env
            .iter()
            .any(|e| e.starts_with("AWS_") || e.starts_with("SSH_")));
        assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
        assert!(parse("A_1=x").is_ok());
        assert!(parse("noequals").is_err());
        assert!(parse("A-B=x").is_err());
    }
}
