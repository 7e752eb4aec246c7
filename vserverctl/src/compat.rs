//! util-vserver's command line: `vserver [--silent] NAME VERB [ARGS…]` and `vserver-stat`, for
//! the scripts users have run for years (docs/compat.md). Installed as links to vserverctl;
//! the name it is called by selects this form.

use std::path::PathBuf;

use crate::cli::{Cli, Command, Many, Output, Show};

const USAGE: &str = "Usage: vserver <vserver> {start|stop|suexec|restart|condrestart|exec|enter|chkconfig|running|status|delete}";

/// What `vserver …` means: a vserverctl command, or a usage error (exit 2) with its text.
pub enum Parsed {
    Run { cli: Cli, silent: bool },
    Usage(String),
}

fn socket() -> PathBuf {
    std::env::var_os("VSERVERD_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(proto::DEFAULT_SOCKET))
}

/// util-vserver's exec and suexec gave the command the caller's terminal: a pty when both
/// stdin and stdout are terminals, pipes otherwise (so scripts read plain output).
pub fn on_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

pub fn parse(args: &[String]) -> Parsed {
    let mut rest: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut silent = false;
    // util-vserver ran the start and stop commands (sysv `rc 3`, `rc 6`) with the caller's
    // stdout and stderr, whatever --silent said (that one only quietened its own messages);
    // --defaulttty sent them to apps/init/tty or /dev/null instead.
    let mut console = true;
    // Global options before the name.
    while let Some(o) = rest.first().copied().filter(|a| a.starts_with('-')) {
        match o {
            "--silent" => silent = true,
            "--defaulttty" => console = false,
            "-s" | "--sync" | "-v" | "--verbose" | "--debug" => {}
            _ => return Parsed::Usage(format!("vserver: unknown option '{o}'\n{USAGE}")),
        }
        rest.remove(0);
    }
    let (Some(name), Some(verb)) = (rest.first(), rest.get(1)) else {
        return Parsed::Usage(USAGE.into());
    };
    let name = name.to_string();
    let args: Vec<String> = rest[2..].iter().map(|s| s.to_string()).collect();
    let out = Output { json: false };
    let show = Show { console };
    let command = match *verb {
        "start" => Command::Start {
            name: Some(name),
            many: Many {
                mark: None,
                parallel: None,
            },
            show,
            out,
        },
        "stop" => Command::Stop {
            name: Some(name),
            many: Many {
                mark: None,
                parallel: None,
            },
            show,
            out,
        },
        "restart" => Command::Restart { name, show, out },
        "condrestart" => Command::Condrestart { name, show, out },
        "status" => Command::Status { name, out },
        "running" => Command::Running { name },
        "enter" => Command::Enter { name, env: vec![] },
        "exec" if !args.is_empty() => Command::Exec {
            name,
            command: args,
            tty: on_terminal(),
            user: None,
            env: vec![],
        },
        // suexec USER CMD…: USER is a name or uid of the guest, looked up inside it.
        "suexec" if args.len() >= 2 => Command::Exec {
            name,
            command: args[1..].to_vec(),
            tty: on_terminal(),
            user: Some(args[0].clone()),
            env: vec![],
        },
        "chkconfig" => Command::Exec {
            name,
            command: std::iter::once("chkconfig".to_string())
                .chain(args)
                .collect(),
            tty: false,
            user: None,
            env: vec![],
        },
        "build" => match build_args(&name, &args) {
            Ok(c) => c,
            Err(u) => return Parsed::Usage(u),
        },
        // util-vserver ran vunify / vhashify here; both are `unify` now (docs/unify.md).
        "unify" | "hashify" => match unify_args("vserver", vec![name], &args) {
            Ok(c) => c,
            Err(u) => return Parsed::Usage(u),
        },
        "delete" => Command::Delete {
            name,
            stop: true,
            yes: silent,
            out: Output { json: false },
        },
        _ => return Parsed::Usage(USAGE.into()),
    };
    Parsed::Run {
        cli: Cli {
            socket: socket(),
            command,
        },
        silent,
    }
}

/// `vserver NAME build -m METHOD [--force] [--context N] [--hostname H] [--interface I]…
/// [--initstyle S] [-- ARGS]`.
fn build_args(name: &str, args: &[String]) -> Result<Command, String> {
    let (opts, rest) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (args, vec![]),
    };
    let (mut method, mut force) = (None, false);
    let (mut context, mut hostname, mut initstyle, mut interfaces) = (None, None, None, vec![]);
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("vserver {name} build: {o} needs a value"))
        };
        match o.as_str() {
            "-m" => method = Some(val()?),
            "--force" => force = true,
            "--context" => {
                context = Some(
                    val()?
                        .parse()
                        .map_err(|_| format!("vserver {name} build: bad --context"))?,
                )
            }
            "--hostname" => hostname = Some(val()?),
            "--interface" => interfaces.push(val()?),
            "--initstyle" => initstyle = Some(val()?),
            other => return Err(format!("vserver {name} build: unknown option '{other}'")),
        }
    }
    Ok(Command::Build {
        name: name.to_string(),
        method: method.ok_or_else(|| format!("vserver {name} build: -m METHOD is required"))?,
        context,
        hostname,
        interfaces,
        initstyle,
        force,
        arguments: rest,
        out: Output { json: false },
    })
}

/// `vserver-stat`: no arguments (util-vserver accepted and ignored -O/--sort).
pub fn parse_stat(args: &[String]) -> Parsed {
    if args
        .iter()
        .any(|a| a != "-O" && a != "--sort" && !a.starts_with("--sort="))
    {
        return Parsed::Usage("Usage: vserver-stat".into());
    }
    Parsed::Run {
        cli: Cli {
            socket: socket(),
            command: Command::Stat {
                out: Output { json: false },
                util_columns: true,
            },
        },
        silent: false,
    }
}

/// `vhashify`/`vunify`'s options and `vserver NAME hashify|unify`'s: -n (dry run); -v and
/// util-vserver's tuning options are accepted and ignored.
fn unify_args(prog: &str, mut names: Vec<String>, args: &[String]) -> Result<Command, String> {
    let mut dry_run = false;
    let mut ignore_mtime = false;
    for a in args {
        match a.as_str() {
            "-n" | "--dry-run" => dry_run = true,
            "--ignore-mtime" => ignore_mtime = true,
            "-v" | "--verbose" | "-R" | "--refresh" | "--insecure" | "--sledgehammer" => {}
            o if o.starts_with('-') => return Err(format!("{prog}: unknown option '{o}'")),
            n => names.push(n.to_string()),
        }
    }
    if names.is_empty() {
        return Err(format!("{prog}: No directory/vserver given"));
    }
    Ok(Command::Unify {
        names,
        all: false,
        dry_run,
        no_excludes: false,
        ignore_mtime,
        out: Output { json: false },
    })
}

/// `vhashify [-n] [-v] VSERVER…` (and `vunify`): unify the named guests.
pub fn parse_hashify(prog: &str, args: &[String]) -> Parsed {
    match unify_args(prog, vec![], args) {
        Ok(command) => Parsed::Run {
            cli: Cli {
                socket: socket(),
                command,
            },
            silent: false,
        },
        Err(u) => Parsed::Usage(u),
    }
}
