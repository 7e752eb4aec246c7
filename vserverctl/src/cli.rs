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
    /// Check a guest's config tree; prints the file and line of the first error.
    Check {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Start a guest (and its dependencies).
    Start {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Stop a guest.
    Stop {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Stop and start a guest.
    Restart {
        name: String,
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
    },
    /// An interactive shell inside a running guest.
    Enter { name: String },
    /// Stream guest state changes.
    Events {
        #[command(flatten)]
        out: Output,
    },
    /// Write man pages and shell completions into a folder.
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}
