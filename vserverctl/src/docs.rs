//! Man pages and shell completions, generated from the clap definition so they never drift.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub fn generate(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let comp = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for page in compat_pages() {
        let name = page.get_name().to_string();
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(man.join(format!("{name}.1")), out)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "vserverctl", &comp)?;
    }
    Ok(())
}

/// util-vserver's names, served by vserverctl when it is called by them (compat.rs, tools.rs):
/// (name, synopsis, what it does, options and exit codes).
const COMPAT: &[(&str, &str, &str, &str)] = &[
    (
        "vserver",
        "vserver [--silent] NAME {start|stop|restart|condrestart|status|running|exec CMD...|suexec USER CMD...|enter|chkconfig ...|build -m METHOD ...|unify [-n]|hashify [-n]|delete}",
        "util-vserver's command line for one guest",
        "Acts on guest NAME through vserverd. status prints `Vserver 'NAME' is running at context 'CTX'` or `is stopped` and exits 0 or 3; running exits 0 or 1. exec and suexec run the command in the guest on a pty when stdin and stdout are terminals, on pipes otherwise, and exit with its exit code. suexec USER takes a name or uid of the guest, looked up in the guest's own /etc/passwd from inside the guest; the command gets the user's groups (the guest's /etc/group), HOME, USER and LOGNAME; a user other than root keeps no capabilities. unify and hashify share the blocks of the guest's files that are identical to other files of the guest copy-on-write, as `vserverctl unify NAME` (XFS with reflinks or btrfs; -n: a dry run). A usage error exits 2.",
    ),
    (
        "vhashify",
        "vhashify [-n] [-v] VSERVER...",
        "share identical files' blocks between guests",
        "Finds the regular files of the guests that are identical and makes them share their blocks copy-on-write through the kernel's dedupe ioctl, as `vserverctl unify VSERVER...` does: XFS with reflinks and btrfs only (other file systems are refused, saying why); each guest's apps/vunify/exclude, else .defaults', else util-vserver's built-in list, says what stays per guest. -n reads and hashes but shares nothing and prints what would be shared; -v and util-vserver's tuning options (--refresh, --insecure, ...) are accepted and ignored. No hash directory is made: the hashes live in vserverd's state folder. Exits 0, 1 on an error from the daemon, 2 on a usage error. Root only.",
    ),
    (
        "vunify",
        "vunify [-n] [-v] VSERVER...",
        "share identical files' blocks between guests",
        "The same as vhashify(1): util-vserver's vunify made hard links, which on a mainline kernel would let one guest's write change every guest's file, so both names share blocks copy-on-write instead.",
    ),
    (
        "vserver-stat",
        "vserver-stat",
        "resource use of the running guests",
        "Prints util-vserver's columns CTX PROC VSZ RSS userTIME sysTIME UPTIME NAME, one line per running guest. Root and --read-group members.",
    ),
    (
        "vps",
        "vps [PS-OPTIONS...]",
        "ps with each process's context and guest",
        "Runs ps with the options given and inserts a CONTEXT column after PID: the guest's context id and name, or 0 MAIN for the host's processes. Exits with ps's exit code; 254 when ps printed no table or the daemon cannot be reached. Root and --read-group members.",
    ),
    (
        "vkill",
        "vkill [--xid|-c XID] [-s SIGNAL] [--] [PID...]",
        "signal processes of a guest",
        "Sends SIGNAL (a number, HUP or SIGHUP; default TERM) to host PIDs of a guest, each checked by the daemon to be a process of that guest (pinned by a pidfd, checked against the guest's cgroups, signalled through the pidfd). With --xid (a context id or name) and no PID, or PID 0: every process of the guest. Without --xid each PID's guest is looked up. Exits 0, or 1 when a PID is no guest's or a signal failed. Root only.",
    ),
    (
        "vwait",
        "vwait [--timeout SECONDS] [--terminate] [--status-fd FD] [--] XID",
        "wait until a guest stops",
        "Waits until guest XID (a context id or name) stops. Exit codes and the line written to FD: 0 FINISHED 0 (it stopped); 2 TIMEOUT (SECONDS passed); 1 KILLED (SECONDS passed and --terminate stopped it); 127 ERROR ERRNO (it was not running: ERRNO 3; --terminate could not stop it: ERRNO 1). Waiting is root and --read-group members; --terminate needs root.",
    ),
    (
        "vserver-info",
        "vserver-info [-ql] VSERVER|PID|CONTEXT TAG [ARG]",
        "facts about guests for scripts",
        "Prints one value and exits 0, or prints nothing and exits 1. VSERVER is a name, a config folder or a context id. Tags: RUNNING (1 when it runs), CONTEXT (the running or assigned context; ARG false: only a running one), ID (the guest of a context id), NAME (the name file, else the guest's name), VDIR, CFGDIR, APPDIR [APP], INITPID, XID (the context of a host PID, 0 for the host), XIDTYPE (static, main, invalid). -q prints nothing, -l lists the tags. Tags that ask the Linux-VServer kernel (UTS, APIVER, FEATURE, VERIFYCAP, NID, TAG, ...) exit 1 with a message. Root and --read-group members.",
    ),
    (
        "vlimit",
        "vlimit --xid|-c XID [-H] [--nproc N] [--rss PAGES]",
        "change a running guest's limits",
        "Each option is a cgroup knob, set live as `vserverctl set` does: --nproc sets pids.max, --rss (pages) sets memory.max (memory.limit_in_bytes on cgroup v1). Hard limits only: -M and -S, and limits with no cgroup knob (--nsock, --openfd, ...), exit 255 with a message and change nothing, as do a missing --xid and an unknown guest. Root only.",
    ),
    (
        "vsched",
        "vsched --xid XID --fill-rate N --interval M [--tokens N] [--tokens-min N] [--tokens-max N]",
        "change a running guest's CPU share",
        "Sets the guest's cpu.max (cpu.cfs_quota_us and cpu.cfs_period_us on cgroup v1) live to N/M of a CPU, as the sched/ files do at start. The token-bucket options have no cgroup knob and are ignored with a warning. Errors exit 255. Root only.",
    ),
    (
        "vuname",
        "vuname --xid XID [-g] [TAG...] | vuname --xid XID -s -t TAG=VALUE... | vuname --xid XID --dir DIR [--missingok]",
        "show or set a guest's uname fields",
        "Without -s prints the guest's values of the TAGs (context, sysname, nodename, release, version, machine, domainname; all by default) on one line, read inside the guest. With -s sets nodename and domainname live in the guest's UTS namespace (the SetUts call); the other fields are the kernel's and cannot be set per guest on a mainline kernel. --dir sets them from the files nodename and domainname in DIR (a guest's uts/ folder); a missing DIR is an error unless --missingok. Errors exit 255. Root only.",
    ),
    (
        "start-vservers",
        "start-vservers [-m MARK] [-j N] [--start|--stop] [--all|--unmarked|--running|--stopped] [-- NAME...]",
        "start or stop a set of guests",
        "Starts (or with --stop stops) the guests with MARK (apps/init/mark; repeatable), all guests (--all), the unmarked ones, and the NAMEs, N at a time; guests already in the wanted state are skipped, and each start brings up the guest's dependencies first. Exits 0 when nothing needed doing or every guest succeeded, 1 when every attempt failed, 2 when some failed. Root only.",
    ),
    (
        "vapt-get",
        "vapt-get [-q] VSERVER... [--all] -- ARGS...",
        "run apt-get inside guests",
        "Runs the guest's own apt-get with ARGS inside each guest in turn (--all: every running guest), with a header per guest when there are several. Exits with the last guest's exit code, 255 when no guest was given. vrpm, vyum, vemerge and vurpm do the same with rpm, yum, emerge and urpmi. Root only.",
    ),
    ("vrpm", "vrpm [-q] VSERVER... [--all] -- ARGS...", "run rpm inside guests", "As vapt-get(1), with the guest's rpm."),
    ("vyum", "vyum [-q] VSERVER... [--all] -- ARGS...", "run yum inside guests", "As vapt-get(1), with the guest's yum."),
    ("vemerge", "vemerge [-q] VSERVER... [--all] -- ARGS...", "run emerge inside guests", "As vapt-get(1), with the guest's emerge."),
    ("vurpm", "vurpm [-q] VSERVER... [--all] -- ARGS...", "run urpmi inside guests", "As vapt-get(1), with the guest's urpmi."),
    (
        "vpkg",
        "vpkg VSERVER install|remove|ARGS...",
        "run the guest's package manager",
        "Runs the first package manager the guest has (apt-get, dnf, yum, urpmi, emerge), found by the guest's shell inside the guest: install and remove without questions, anything else passed as it is. Exits with its exit code; 1 when the guest has none. Root only.",
    ),
];

/// The man pages of util-vserver's names.
fn compat_pages() -> Vec<clap::Command> {
    COMPAT
        .iter()
        .map(|(name, usage, about, long)| {
            clap::Command::new(*name)
                .about(*about)
                .long_about(format!(
                    "{long}\n\nA link to vserverctl, which acts by the name it is called by; \
                     it talks to vserverd at /run/vserverd/control (or $VSERVERD_SOCKET). \
                     docs/compat.md lists every util-vserver program and where it stands."
                ))
                .override_usage(*usage)
                .disable_help_flag(true)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every name vserverctl serves has its man page.
    #[test]
    fn every_util_vserver_name_has_a_page() {
        let pages: Vec<&str> = super::COMPAT.iter().map(|c| c.0).collect();
        for n in crate::tools::NAMES.iter().chain(crate::COMPAT_NAMES) {
            assert!(pages.contains(n), "no man page for {n}");
        }
    }

    /// vserverctl/links, the list scripts/demo.sh and the Debian package install as links to
    /// vserverctl, names exactly the programs vserverctl serves by the name it is called by.
    #[test]
    fn the_installed_links_are_the_served_names() {
        let mut listed: Vec<&str> = include_str!("../links")
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .collect();
        let mut served: Vec<&str> = crate::tools::NAMES
            .iter()
            .chain(crate::COMPAT_NAMES)
            .copied()
            .collect();
        listed.sort_unstable();
        served.sort_unstable();
        assert_eq!(
            listed, served,
            "vserverctl/links against what vserverctl serves"
        );
    }

    /// docs/man and docs/completions are committed; they must be what the CLI generates.
    /// Regenerate with `cargo run -p vserverctl -- generate-docs docs`.
    #[test]
    fn committed_docs_match_the_cli() {
        let tmp = tempfile::tempdir().unwrap();
        super::generate(tmp.path()).unwrap();
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        for sub in ["man", "completions"] {
            for entry in std::fs::read_dir(tmp.path().join(sub)).unwrap() {
                let entry = entry.unwrap();
                let fresh = std::fs::read(entry.path()).unwrap();
                let committed = std::fs::read(docs.join(sub).join(entry.file_name()));
                assert!(
                    committed.as_deref().ok() == Some(&fresh[..]),
                    "docs/{sub}/{} is stale: run `cargo run -p vserverctl -- generate-docs docs`",
                    entry.file_name().to_string_lossy()
                );
            }
        }
    }
}
