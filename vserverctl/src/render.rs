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

/// A guest's check in the human form: errors, then warnings, one `FILE:LINE: MESSAGE` a line
/// on stderr; a summary line on stdout (with `all`, also for a guest with errors).
pub fn check(g: &proto::GuestCheck, all: bool) {
    for e in &g.errors {
        eprintln!("{}", problem(e));
    }
    for w in &g.warnings {
        eprintln!("warning: {}", problem(w));
    }
    if g.errors.is_empty() {
        println!(
            "{}: configuration ok ({} warnings)",
            g.name,
            g.warnings.len()
        );
    } else if all {
        println!(
            "{}: {} errors ({} warnings)",
            g.name,
            g.errors.len(),
            g.warnings.len()
        );
    }
}

pub fn list_table(list: &GuestList) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(["NAME", "CTX", "STATE", "MARK", "DEPENDS", "NOTE"]);
    for g in list.guests.iter() {
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
    if let Some(m) = &st.message {
        s.push_str(&format!("Last: {m}\n"));
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

/// vserver-stat's memory column: scaled by 1024, one decimal, a unit letter.
fn mem(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in [" ", "K", "M", "G", "T"] {
        if v < 1024.0 || unit == "T" {
            return if unit == " " {
                format!("{bytes}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
        v /= 1024.0;
    }
    unreachable!()
}

/// vserver-stat's time columns: MmSSsXX under an hour, then HhMMmSS, DdHHhMM, YyDDdHH.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    let whole = s as u64;
    let (m, h, d) = (whole / 60, whole / 3600, whole / 86400);
    if whole < 3600 {
        format!(
            "{}m{:02}s{:02}",
            m,
            whole % 60,
            ((s - whole as f64) * 100.0) as u64
        )
    } else if whole < 86400 {
        format!("{}h{:02}m{:02}", h, m % 60, whole % 60)
    } else if d < 365 {
        format!("{}d{:02}h{:02}", d, h % 24, m % 60)
    } else {
        format!("{}y{:02}d{:02}", d / 365, d % 365, h % 24)
    }
}

/// vserver-stat's table.
/// vserver-stat's table; `disk` adds vserverctl's DISK column (used/limit of dlimits/) where
/// a guest has a limit.
pub fn stat(st: &proto::StatList, disk: bool) -> String {
    let disk = disk && st.guests.iter().any(|g| g.disk_used_bytes.is_some());
    let mut out = String::from("CTX   PROC    VSZ    RSS  userTIME   sysTIME    UPTIME ");
    if disk {
        out.push_str("      DISK ");
    }
    out.push_str("NAME\n");
    for g in &st.guests {
        let name: String = g.name.chars().take(20).collect();
        let d = if disk {
            let used = g.disk_used_bytes.map_or("-".to_string(), mem);
            let lim = g.disk_limit_bytes.map_or("-".to_string(), mem);
            format!("{:>10} ", format!("{used}/{lim}"))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:<5}{:>5}{:>7}{:>7}{:>10}{:>10}{:>10} {d}{}\n",
            g.context,
            g.processes,
            mem(g.vsz_bytes),
            mem(g.rss_bytes),
            duration(g.user_seconds),
            duration(g.system_seconds),
            duration(g.uptime_seconds),
            name
        ));
    }
    out
}

/// A byte count for people: `1.5 GiB`.
fn size(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1024.0;
    }
    unreachable!()
}

/// Unify's report as a few lines.
pub fn unify(r: &proto::UnifyReport) -> String {
    let link = r.mode.as_deref() == Some("hardlink");
    let verb = match (r.dry_run, link) {
        (true, false) => "would share",
        (false, false) => "shared",
        (true, true) => "would hard-link",
        (false, true) => "hard-linked",
    };
    let mut out = format!(
        "unify: {} guests, {} files ({} inodes), {} excluded by the exclude lists\n\
         hashed {} files ({}); {} known from earlier runs\n\
         {verb} {} files in {} groups: {}\n\
         already shared: {} files; changed meanwhile (left alone): {}\n\
         took {:.1} s{}\n",
        r.guests.len(),
        r.files,
        r.inodes,
        r.excluded,
        r.hashed_files,
        size(r.hashed_bytes),
        r.cached_files,
        r.unified_files,
        r.groups,
        size(r.unified_bytes),
        r.already_shared_files,
        r.changed_files,
        r.seconds,
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    if r.left_alone_files > 0 {
        out += &format!(
            "left alone on purpose: {} files (identical, but linking them would change what a \
             guest sees or escape its disk limit)\n",
            r.left_alone_files
        );
        for l in &r.left_alone {
            out += &format!("  {l}\n");
        }
    }
    out
}

/// Du's table: a row per guest.
pub fn du(list: &proto::DiskUsageList) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    // The limit's columns where a guest has a disk limit (dlimits/): what it counts, and the
    // limit while the guest runs (stop takes it away).
    let quota = list.guests.iter().any(|g| g.quota_used_bytes.is_some());
    let mut head = vec!["NAME", "FILES", "SIZE", "ALLOCATED", "SHARED", "OWN"];
    if quota {
        head.extend(["QUOTA USED", "LIMIT", "INODES", "ILIMIT"]);
    }
    t.set_header(head);
    let opt = |v: Option<u64>, f: &dyn Fn(u64) -> String| v.map_or("-".to_string(), f);
    for g in &list.guests {
        let mut row = vec![
            g.name.clone(),
            g.files.to_string(),
            size(g.apparent_bytes),
            size(g.allocated_bytes),
            size(g.shared_bytes),
            size(g.own_bytes),
        ];
        if quota {
            row.extend([
                opt(g.quota_used_bytes, &size),
                opt(g.quota_limit_bytes, &size),
                opt(g.quota_inodes, &|v| v.to_string()),
                opt(g.quota_inodes_limit, &|v| v.to_string()),
            ]);
        }
        t.add_row(row);
    }
    let mut s: String = t
        .to_string()
        .lines()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_columns_follow_vserver_stat() {
        let mut st = proto::StatList {
            guests: vec![proto::GuestStat {
                name: "web".into(),
                context: 40000,
                processes: 12,
                vsz_bytes: 12_900_000,
                rss_bytes: 3_500_000,
                user_seconds: 5.23,
                system_seconds: 3700.0,
                uptime_seconds: 90000.0,
                disk_used_bytes: None,
                disk_limit_bytes: None,
                inodes_used: None,
                inodes_limit: None,
            }],
        };
        let t = stat(&st, true);
        let row = t.lines().nth(1).unwrap();
        assert_eq!(
            row,
            "40000   12  12.3M   3.3M   0m05s23   1h01m40   1d01h00 web"
        );
        assert_eq!(row.find("web"), Some(55));
        // A disk limit: vserverctl's own table gets a column, vserver-stat's does not.
        st.guests[0].disk_used_bytes = Some(3 << 20);
        st.guests[0].disk_limit_bytes = Some(10 << 30);
        let t = stat(&st, true);
        assert!(t.starts_with("CTX"), "{t}");
        assert!(
            t.lines().nth(1).unwrap().ends_with(" 3.0M/10.0G web"),
            "{t}"
        );
        assert_eq!(
            stat(&st, false).lines().nth(1).unwrap().find("web"),
            Some(55)
        );
        assert_eq!(mem(800), "800");
        assert_eq!(duration(400.0 * 86400.0), "1y35d00");
    }

    #[test]
    fn stopped_status_uses_util_vserver_wording() {
        let st = GuestStatus {
            name: "web".into(),
            context: Some(40000),
            state: GuestState::Stopped,
            vdir: "/vservers/web".into(),
            config_dir: "/etc/vservers/web".into(),
            init_pid: None,
            processes: None,
            uptime_seconds: None,
            restart_needed: false,
            unbounded: None,
            no_route_out: None,
            network_fallback: None,
            kernel_lacks: None,
            config_error: None,
            message: None,
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
            config_dir: "/etc/vservers/web".into(),
            init_pid: Some(10),
            processes: Some(3),
            uptime_seconds: Some(3723.0),
            restart_needed: false,
            unbounded: None,
            no_route_out: None,
            network_fallback: None,
            kernel_lacks: None,
            config_error: None,
            message: None,
        };
        assert_eq!(
            status(&st),
            "Vserver 'web' is running at context '40000'\nNumber of processes: 3\nUptime: 01:02:03\n"
        );
    }
}
