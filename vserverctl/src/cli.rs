//! The command-line definition (also the source of the man pages and completions).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Control Linux-VServer guests through vserverd.
///
/// Every command is one varlink call to the daemon's socket.
/// Exit codes: 0 ok, 1 error from the daemon, 2 usage, 3 `status` of a stopped guest,
/// 69 daemon unreachable.
#[derive(Debug, Parser)]
#[command(name = "vserverctl", version, propagate_version = true)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, env = "VSERVERD_SOCKET", default_value = proto::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// Print the daemon's reply as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `256M` → 268435456.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some(c @ ('K' | 'k' | 'M' | 'm' | 'G' | 'g' | 'T' | 't')) => (
            &s[..s.len() - 1],
            match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => 1 << 40,
            },
        ),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("expected a size such as 268435456 or 256M, got {s:?}"))
}

/// `SPACE[,INODES]` of `set --disk`: a size as for --memory, then an optional inode count.
pub fn parse_disk(s: &str) -> Result<(u64, Option<u64>), String> {
    let (space, inodes) = match s.split_once(',') {
        Some((a, b)) => (
            a,
            Some(
                b.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("expected an inode count after the comma, got {b:?}"))?,
            ),
        ),
        None => (s, None),
    };
    Ok((parse_size(space)?, inodes))
}

#[derive(Debug, Args, Clone, Copy)]
pub struct Show {
    /// Also print what the guest's console shows while its start or stop command runs (sysv
    /// `rc 3`, `rc 6`), filtered as `console` filters it (one guest by name; util-vserver's
    /// `vserver NAME start` prints it always).
    #[arg(long)]
    pub console: bool,
}

#[derive(Debug, Args, Clone)]
pub struct Many {
    /// Every guest with this mark (apps/init/mark), e.g. `default`.
    #[arg(long)]
    pub mark: Option<String>,
    /// With --mark: at most this many guests at once [default: 6].
    #[arg(long, requires = "mark")]
    pub parallel: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every configured guest with its state.
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Show a guest's state; exits 0 when it runs, 3 when it is stopped.
    Status {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Check a guest's config tree (or with --all every guest's): every error and warning, each
    /// as FILE:LINE: MESSAGE; exits 1 when any tree has an error. --json gives each problem's
    /// stable code (docs/config.md lists them).
    Check {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Check every guest under the config root.
        #[arg(long)]
        all: bool,
        /// Also walk each guest's root for files whose ids a user namespace cannot map
        /// (65536 and above; reads the whole tree, root only).
        #[arg(long)]
        deep: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Start a guest and the dependencies it needs (apps/init/depends), or with --mark every
    /// guest with that mark, in dependency order.
    Start {
        #[arg(required_unless_present = "mark", conflicts_with = "mark")]
        name: Option<String>,
        #[command(flatten)]
        many: Many,
        #[command(flatten)]
        show: Show,
        #[command(flatten)]
        out: Output,
    },
    /// Stop a guest, or with --mark every running guest with that mark (dependents first).
    Stop {
        #[arg(required_unless_present = "mark", conflicts_with = "mark")]
        name: Option<String>,
        #[command(flatten)]
        many: Many,
        #[command(flatten)]
        show: Show,
        #[command(flatten)]
        out: Output,
    },
    /// Stop and start a guest.
    Restart {
        name: String,
        #[command(flatten)]
        show: Show,
        #[command(flatten)]
        out: Output,
    },
    /// Restart a guest if it runs; leave it stopped (and exit 0) if not.
    Condrestart {
        name: String,
        #[command(flatten)]
        show: Show,
        #[command(flatten)]
        out: Output,
    },
    /// Change a running guest's limits without a restart (SetLimits).
    Set {
        name: String,
        /// Memory limit in bytes, or with a K, M, G or T suffix (powers of 1024).
        #[arg(long, value_parser = parse_size)]
        memory: Option<u64>,
        /// CPU quota in CPUs (0.5 is half of one CPU).
        #[arg(long)]
        cpus: Option<f64>,
        /// Maximum number of processes.
        #[arg(long)]
        pids: Option<u64>,
        /// Disk limit SPACE[,INODES] (a project quota or btrfs qgroup on its root: dlimits/),
        /// SPACE in bytes or with a suffix, e.g. 10G,200000.
        #[arg(long, value_parser = parse_disk)]
        disk: Option<(u64, Option<u64>)>,
        /// Also write the values into the guest's cgroup/ (and dlimits/) folder (and apply
        /// them to a stopped guest's next start).
        #[arg(long)]
        persist: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Resource use of the running guests, as vserver-stat prints it.
    #[command(visible_alias = "vserver-stat")]
    Stat {
        #[command(flatten)]
        out: Output,
        /// util-vserver's columns only (vserver-stat).
        #[arg(skip)]
        util_columns: bool,
    },
    /// Every guest's and the daemon's metrics in Prometheus's text format (what
    /// vserverd-metrics serves; for node_exporter's textfile collector or a quick look).
    Metrics {
        #[command(flatten)]
        out: Output,
    },
    /// Build a new guest: skeleton, template (-- -t TARBALL), clone (-- --source GUEST),
    /// debootstrap (-- -d SUITE [-m MIRROR]).
    Build {
        name: String,
        /// The build method.
        #[arg(short, long)]
        method: String,
        /// The static context id [default: the next free one from 40000].
        #[arg(long)]
        context: Option<u32>,
        /// uts/nodename [default: the guest's name].
        #[arg(long)]
        hostname: Option<String>,
        /// An address: [NAME=][DEV:]IP[/PREFIX]; repeat for more.
        #[arg(long = "interface")]
        interfaces: Vec<String>,
        /// apps/init/style [default: sysv for debootstrap, plain otherwise].
        #[arg(long)]
        initstyle: Option<String>,
        /// Rename an existing config tree or non-empty root to PATH.~EPOCH~ and build anyway.
        #[arg(long)]
        force: bool,
        /// The method's own arguments.
        #[arg(last = true)]
        arguments: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Delete a guest: its root, config tree, run and cache targets.
    Delete {
        name: String,
        /// Stop it first if it runs (otherwise a running guest is refused).
        #[arg(long)]
        stop: bool,
        /// Do not ask.
        #[arg(short, long)]
        yes: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Exits 0 when the guest runs, 1 when not.
    Running { name: String },
    /// Run a command inside a running guest and return its exit code.
    Exec {
        name: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
        /// Give the command a pty.
        #[arg(short, long)]
        tty: bool,
        /// Run it as this user of the guest (a name or uid), looked up in the guest's own
        /// /etc/passwd [default: root].
        #[arg(short, long)]
        user: Option<String>,
        /// NAME=VALUE in the command's environment (repeatable). Of the caller's own
        /// environment only TERM, COLORTERM, NO_COLOR, LANG, LANGUAGE, LC_* and TZ pass.
        #[arg(short, long = "env", value_name = "NAME=VALUE", value_parser = crate::guestenv::parse)]
        env: Vec<String>,
    },
    /// An interactive shell inside a running guest.
    Enter {
        name: String,
        /// NAME=VALUE in the shell's environment (repeatable).
        #[arg(short, long = "env", value_name = "NAME=VALUE", value_parser = crate::guestenv::parse)]
        env: Vec<String>,
    },
    /// Attach to a running guest's console (/dev/console); Ctrl-] detaches. Everything the
    /// console shows is also in RUN_DIR/guests/NAME.log.
    Console {
        name: String,
        /// Pass the guest's output as it is: without it, sequences that would change the
        /// terminal beyond the session (title, clipboard, alternate screen, mouse, modes)
        /// or make it answer into the guest (queries) are dropped.
        #[arg(long)]
        raw: bool,
    },
    /// Stream guest state changes, a line each: NAME KIND MESSAGE. A client that fell too
    /// far behind gets "- lost ..." and should re-read the list.
    Events {
        #[command(flatten)]
        out: Output,
    },
    /// Share the blocks of identical files of guests copy-on-write (XFS with reflinks, btrfs;
    /// on ext4 hard links the kernel breaks on write, with kernel-patch/), util-vserver's
    /// vunify/vhashify. Each guest's apps/vunify/exclude (else .defaults', else
    /// util-vserver's built-in list: /etc, /var, … stay per guest) says what is left alone.
    /// Running guests may be unified on XFS and btrfs, not on ext4. A second run reads only
    /// new or changed files.
    #[command(visible_alias = "hashify")]
    Unify {
        /// The guests (at least two share anything, but one guest's own duplicates count too).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every configured guest.
        #[arg(long)]
        all: bool,
        /// Read and hash, print what would be shared, share nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Ignore the exclude lists: consider every regular file.
        #[arg(long)]
        no_excludes: bool,
        /// Hard-link mode (ext4 with kernel-patch/): link identical files whose mtimes differ
        /// (owner, group, mode and extended attributes must still agree).
        #[arg(long)]
        ignore_mtime: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Disk use of guests, split into blocks only the guest uses and blocks it shares (with
    /// other guests after `unify`, or snapshots), from the file system's extent map (vdu).
    Du {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Write man pages and shell completions into a folder.
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}
