//! vserverctl: a thin varlink client of vserverd. It never touches the kernel.

mod cli;
mod compat;
mod console;
mod docs;
mod exit;
mod guestenv;
mod render;
mod session;
mod tools;

use clap::Parser;
use futures_util::{pin_mut, StreamExt};
use proto::client::ManagerProxy;
use proto::{GuestState, ManagerError};

use cli::{Cli, Command};
use exit::Failure;

/// util-vserver's names served by parsing them into vserverctl's own command line (compat.rs);
/// tools::NAMES are the others.
const COMPAT_NAMES: &[&str] = &["vserver", "vserver-stat", "vhashify", "vunify"];

fn main() -> std::process::ExitCode {
    // Called as `vserver` or `vserver-stat` (links to vserverctl): util-vserver's command line.
    let argv: Vec<String> = std::env::args().collect();
    let called = std::path::Path::new(argv.first().map(String::as_str).unwrap_or(""))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if tools::NAMES.contains(&called.as_str()) {
        // util-vserver's other programs: each with its own options and exit codes.
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("{called}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let code = rt.block_on(tools::run(&called, &argv[1..]));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        rt.shutdown_background();
        return std::process::ExitCode::from(code);
    }
    let (cli, quiet) = match called.as_str() {
        c if COMPAT_NAMES.contains(&c) => {
            let parsed = match called.as_str() {
                "vserver" => compat::parse(&argv[1..]),
                "vserver-stat" => compat::parse_stat(&argv[1..]),
                prog => compat::parse_hashify(prog, &argv[1..]),
            };
            match parsed {
                compat::Parsed::Run { cli, silent } => (
                    cli,
                    Quiet {
                        progress: true,
                        silent,
                    },
                ),
                compat::Parsed::Usage(u) => {
                    eprintln!("{u}");
                    return std::process::ExitCode::from(2);
                }
            }
        }
        _ => (Cli::parse(), Quiet::default()),
    };
    if let Command::GenerateDocs { dir } = &cli.command {
        return match docs::generate(dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vserverctl: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vserverctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run(cli, quiet)) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("vserverctl: {f}");
            f.code()
        }
    };
    // Not a drop of the runtime: it would wait for blocking reads of pipes that a guest's
    // background process may hold open for hours.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    rt.shutdown_background();
    std::process::ExitCode::from(code)
}

/// What util-vserver's form leaves unsaid.
#[derive(Default, Clone, Copy)]
struct Quiet {
    /// No step-by-step lines for start/stop/restart (util-vserver printed none).
    progress: bool,
    /// `--silent`: no status text, no delete prompt.
    silent: bool,
}

impl cli::Show {
    /// What to ask the daemon for: nothing unless wanted (older daemons know no `console`).
    fn ask(&self) -> Option<bool> {
        self.console.then_some(true)
    }
}

async fn run(cli: Cli, quiet: Quiet) -> Result<u8, Failure> {
    let mut conn = zlink::tokio::unix::connect(&cli.socket)
        .await
        .map_err(|e| Failure::Unreachable(cli.socket.clone(), e.to_string()))?;
    match cli.command {
        Command::List { out } => {
            let list = conn.list().await??;
            if out.json {
                render::json(&list);
            } else {
                print!("{}", render::list_table(&list));
            }
            Ok(0)
        }
        Command::Status { name, out } => {
            let st = conn.status(&name).await??;
            if out.json {
                render::json(&st);
            } else if !quiet.silent {
                print!("{}", render::status(&st));
                // On stderr, and not in util-vserver's own form (`vserver NAME status`), whose
                // output scripts read.
                if !quiet.progress {
                    for w in [
                        &st.unbounded,
                        &st.no_route_out,
                        &st.network_fallback,
                        &st.kernel_lacks,
                    ]
                    .into_iter()
                    .flatten()
                    {
                        eprintln!("warning: {w}");
                    }
                }
            }
            Ok(if st.state == GuestState::Running {
                0
            } else {
                3
            })
        }
        Command::Running { name } => {
            let st = conn.status(&name).await??;
            Ok(if st.state == GuestState::Running {
                0
            } else {
                1
            })
        }
        Command::Check {
            name,
            all,
            deep,
            out,
        } => {
            let report = conn.check(name.as_deref(), deep.then_some(true)).await??;
            let bad = report.guests.iter().any(|g| !g.errors.is_empty());
            match (name, out.json) {
                // One guest: its problems and, when it has no error, the parsed config.
                (Some(_), true) => {
                    let mut v = serde_json::to_value(report.guests.first()).unwrap_or_default();
                    if let (Some(g), Some(obj)) = (report.guests.first(), v.as_object_mut()) {
                        if g.errors.is_empty() {
                            let val = conn.validate(&g.name).await??;
                            obj.insert(
                                "config".into(),
                                serde_json::to_value(&val.config).unwrap_or_default(),
                            );
                        }
                    }
                    render::json(&v);
                }
                (_, true) => render::json(&report),
                (_, false) => {
                    for g in &report.guests {
                        render::check(g, all);
                    }
                }
            }
            Ok(if bad { 1 } else { 0 })
        }
        Command::Start {
            name,
            many,
            show,
            out,
        } => {
            let r = match (name, &many.mark) {
                (Some(name), _) => {
                    progress(
                        conn.start(&name, show.ask()).await?,
                        out.json,
                        quiet.progress,
                    )
                    .await
                }
                (None, Some(mark)) => {
                    progress(
                        conn.start_marked(mark, many.parallel).await?,
                        out.json,
                        quiet.progress,
                    )
                    .await
                }
                (None, None) => unreachable!("clap requires a name or --mark"),
            };
            match r {
                // util-vserver: a running guest is not an error for start.
                Err(Failure::Daemon(ManagerError::AlreadyRunning { name })) => {
                    eprintln!("vserver '{name}' already running");
                    Ok(0)
                }
                r => r,
            }
        }
        Command::Stop {
            name,
            many,
            show,
            out,
        } => match (name, &many.mark) {
            (Some(name), _) => {
                progress(
                    conn.stop(&name, show.ask()).await?,
                    out.json,
                    quiet.progress,
                )
                .await
            }
            (None, Some(mark)) => {
                progress(
                    conn.stop_marked(mark, many.parallel).await?,
                    out.json,
                    quiet.progress,
                )
                .await
            }
            (None, None) => unreachable!("clap requires a name or --mark"),
        },
        Command::Restart { name, show, out } => {
            let s = conn.restart(&name, show.ask()).await?;
            progress(s, out.json, quiet.progress).await
        }
        Command::Set {
            name,
            memory,
            cpus,
            pids,
            disk,
            persist,
            out,
        } => {
            let limits = proto::Limits {
                memory,
                cpus,
                pids,
                disk_bytes: disk.map(|d| d.0),
                disk_inodes: disk.and_then(|d| d.1),
            };
            let set = conn.set_limits(&name, &limits, persist).await??;
            if out.json {
                render::json(&set);
            } else {
                println!(
                    "{name}: limits set{}",
                    if persist { " and saved" } else { "" }
                );
            }
            Ok(0)
        }
        Command::Stat { out, util_columns } => {
            let st = conn.stat().await??;
            if out.json {
                render::json(&st);
            } else {
                print!("{}", render::stat(&st, !util_columns));
            }
            Ok(0)
        }
        Command::Metrics { out } => {
            let m = conn.metrics().await??;
            if out.json {
                render::json(&m);
            } else {
                print!("{}", proto::exposition::render(Some(&m)));
            }
            Ok(0)
        }
        Command::Condrestart { name, show, out } => {
            let s = conn.cond_restart(&name, show.ask()).await?;
            progress(s, out.json, quiet.progress).await
        }
        Command::Exec {
            name,
            command,
            tty,
            user,
            env,
        } => {
            let env = guestenv::build(std::env::vars(), &env);
            let s = conn
                .exec(&name, &command, &env, tty, user.as_deref())
                .await?;
            match session::run(s, tty).await {
                Err(Failure::Daemon(ManagerError::NotRunning { .. })) if quiet.progress => {
                    eprintln!(
                        "'vserver ... suexec' is supported for running vservers only; aborting..."
                    );
                    Ok(1)
                }
                r => r,
            }
        }
        Command::Build {
            name,
            method,
            context,
            hostname,
            interfaces,
            initstyle,
            force,
            arguments,
            out,
        } => {
            let options = proto::BuildOptions {
                context,
                hostname,
                interfaces,
                initstyle,
                arguments,
                force: force.then_some(true),
            };
            let s = conn.build(&name, &method, &options).await?;
            progress(s, out.json, false).await
        }
        Command::Delete {
            name,
            stop,
            yes,
            out,
        } => {
            if !yes && !quiet.silent {
                use std::io::Write;
                eprint!("Are you sure you want to delete the vserver {name} (y/N) ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                let got = std::io::stdin().read_line(&mut answer).unwrap_or(0);
                if got == 0 {
                    // No terminal and nothing on stdin (a script, cron): say so.
                    eprintln!(
                        "\nvserverctl: delete {name}: no answer on stdin; nothing deleted \
                         (give --yes to delete without asking)"
                    );
                    return Ok(2);
                }
                if !matches!(answer.trim(), "y" | "Y") {
                    eprintln!("vserverctl: {name} not deleted");
                    return Ok(2);
                }
            }
            conn.delete(&name, stop).await??;
            if out.json {
                render::json(&serde_json::json!({ "name": name, "deleted": true }));
            }
            Ok(0)
        }
        Command::Console { name, raw } => {
            let reply = conn.console(&name).await?;
            console::run(&name, reply, raw).await
        }
        Command::Enter { name, env } => {
            let env = guestenv::build(std::env::vars(), &env);
            let s = conn.enter(&name, &env).await?;
            session::run(s, true).await
        }
        Command::Events { out } => {
            let s = conn.events().await?;
            pin_mut!(s);
            while let Some(ev) = s.next().await {
                let ev = ev??;
                if out.json {
                    render::json(&ev);
                } else {
                    // "lost" concerns no one guest: "-" keeps the columns.
                    let name = if ev.name.is_empty() { "-" } else { &ev.name };
                    println!("{name} {} {}", ev.kind, ev.message.unwrap_or_default());
                }
            }
            Ok(0)
        }
        Command::Unify {
            names,
            all,
            dry_run,
            no_excludes,
            ignore_mtime,
            out,
        } => {
            let excludes = no_excludes.then_some(false);
            let s = conn
                .unify(&names, all, dry_run, excludes, ignore_mtime.then_some(true))
                .await?;
            unify_progress(s, out.json, quiet.silent).await
        }
        Command::Du { names, out } => {
            let du = conn.du(&names).await??;
            if out.json {
                render::json(&du);
            } else {
                print!("{}", render::du(&du));
                for g in &du.guests {
                    for e in &g.errors {
                        eprintln!("warning: {}: {e}", g.name);
                    }
                }
            }
            Ok(0)
        }
        Command::GenerateDocs { .. } => unreachable!("handled before connecting"),
    }
}

/// Unify's steps on a spinner line (a terminal) or not at all (piped), then the report: as
/// text, or with --json the report alone.
async fn unify_progress(
    s: impl futures_util::Stream<Item = zlink::Result<Result<proto::UnifyReply, ManagerError>>>,
    json: bool,
    silent: bool,
) -> Result<u8, Failure> {
    pin_mut!(s);
    let bar =
        (!json && !silent && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(100));
            b
        });
    let mut report = None;
    let result = async {
        while let Some(r) = s.next().await {
            let r = r??;
            if let Some(b) = &bar {
                b.set_message(format!("{}: {}", r.step, r.message));
            }
            if r.report.is_some() {
                report = r.report;
            }
        }
        Ok::<(), Failure>(())
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result?;
    let Some(report) = report else {
        return Err(Failure::Daemon(ManagerError::failed(
            String::new(),
            "unify ended without a report",
        )));
    };
    if json {
        render::json(&report);
    } else if !silent {
        print!("{}", render::unify(&report));
        for e in &report.errors {
            eprintln!("warning: {e}");
        }
    }
    Ok(0)
}

async fn progress(
    s: impl futures_util::Stream<Item = zlink::Result<Result<proto::Progress, ManagerError>>>,
    json: bool,
    quiet: bool,
) -> Result<u8, Failure> {
    pin_mut!(s);
    // On a terminal the current step shows on a spinner line and each finished step stays
    // above it; piped, one plain line per step (what scripts parse).
    let bar =
        (!json && !quiet && std::io::IsTerminal::is_terminal(&std::io::stdout())).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(100));
            b
        });
    let mut last: Option<String> = None;
    // One filter for the whole stream: an escape sequence may be split between two steps.
    let mut filter = proto::termfilter::Filter::new();
    let result = async {
        while let Some(p) = s.next().await {
            let p = p??;
            if json {
                render::json(&p);
                continue;
            }
            if p.step == "console" {
                // The guest's own bytes: filtered (no title, mode or query reaches the
                // terminal, docs/security.md), as `vserverctl console` does.
                use std::io::Write;
                let shown = filter.apply(p.message.as_bytes());
                let write = || {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&shown);
                    let _ = out.flush();
                };
                match &bar {
                    Some(b) => b.suspend(write),
                    None => write(),
                }
                continue;
            }
            let line = format!("{}: {}: {}", p.name, p.step, p.message);
            if let Some(b) = &bar {
                if let Some(prev) = last.replace(line.clone()) {
                    b.println(prev);
                }
                b.set_message(line);
            } else if !quiet {
                println!("{line}");
            } else if p.step == "not-running" {
                // util-vserver says this one even in its quiet form, on stderr.
                eprintln!("{}", p.message);
            }
        }
        Ok::<u8, Failure>(0)
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
        if let Some(l) = last {
            println!("{l}");
        }
    }
    result
}
