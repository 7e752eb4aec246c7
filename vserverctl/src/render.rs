//! Human output: tables and util-vserver's wording where scripts parse it.

use comfy_table::{presets::NOTHING, Table};
use proto::{ConfigProblem, GuestList, GuestState, GuestStatus};

pub fn json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("vserverctl: cannot print JSON: {e}"),
    }
}

pub fn problem(p: &ConfigProblem) -> String {
    match p.line {
        Some(l) => format!("{}:{l}: {}", p.file, p.message),
        None => format!("{}: {}", p.file, p.message),
    }
}

pub fn list_table(list: &GuestList) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["NAME", "CTX", "STATE", "MARK", "DEPENDS", "NOTE"]);
    for g in &list.guests {
        let note = match (&g.config_error, g.disabled) {
            (Some(p), _) => format!("invalid: {}", problem(p)),
            (None, true) => "disabled".into(),
            (None, false) => String::new(),
        };
        t.add_row([
            g.name.clone(),
            g.context
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            g.state.as_str().to_string(),
            g.mark.join(","),
            g.depends.join(","),
            note,
        ]);
    }
    let mut s = t.to_string();
    // comfy-table pads every line; trailing blanks only get in the way of scripts.
    s = s
        .lines()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

/// util-vserver's `vserver NAME status` wording, which LSB scripts grep for.
pub fn status(st: &GuestStatus) -> String {
    let mut s = match (st.state, st.context) {
        (GuestState::Running, Some(ctx)) => {
            format!("Vserver '{}' is running at context '{ctx}'\n", st.name)
        }
        (GuestState::Running, None) => format!("Vserver '{}' is running\n", st.name),
        (GuestState::Stopped, _) => format!("Vserver '{}' is stopped\n", st.name),
        (other, _) => format!("Vserver '{}' is {}\n", st.name, other.as_str()),
    };
    if let Some(n) = st.processes {
        s.push_str(&format!("Number of processes: {n}\n"));
    }
    if let Some(up) = st.uptime_seconds {
        s.push_str(&format!("Uptime: {}\n", uptime(up)));
    }
    if let Some(p) = &st.config_error {
        s.push_str(&format!("Configuration error: {}\n", problem(p)));
    }
    if st.restart_needed {
        s.push_str("Configuration changed: restart needed\n");
    }
    s
}

fn uptime(secs: f64) -> String {
    let s = secs as u64;
    let (d, h, m, sec) = (s / 86400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{sec:02}")
    } else {
        format!("{h:02}:{m:02}:{sec:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_status_uses_util_vserver_wording() {
        let st = GuestStatus {
            name: "web".into(),
            context: Some(40000),
            state: GuestState::Stopped,
            vdir: "/vservers/web".into(),
            init_pid: None,
            processes: None,
            uptime_seconds: None,
            restart_needed: false,
            config_error: None,
        };
        assert_eq!(status(&st), "Vserver 'web' is stopped\n");
    }

    #[test]
    fn running_status_names_the_context() {
        let st = GuestStatus {
            name: "web".into(),
            context: Some(40000),
            state: GuestState::Running,
            vdir: "/vservers/web".into(),
            init_pid: Some(10),
            processes: Some(3),
            uptime_seconds: Some(3723.0),
            restart_needed: false,
            config_error: None,
        };
        assert_eq!(
            status(&st),
            "Vserver 'web' is running at context '40000'\nNumber of processes: 3\nUptime: 01:02:03\n"
        );
    }
}
