# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vserverctl_global_optspecs
    string join \n socket= h/help V/version
end

function __fish_vserverctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vserverctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vserverctl_using_subcommand
    set -l cmd (__fish_vserverctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vserverctl -n "__fish_vserverctl_needs_command" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "list" -d 'List every configured guest with its state'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "status" -d 'Show a guest\'s state; exits 0 when it runs, 3 when it is stopped'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "check" -d 'Check a guest\'s config tree (or with --all every guest\'s): every error and warning, each as FILE:LINE: MESSAGE; exits 1 when any tree has an error. --json gives each problem\'s stable code (docs/config.md lists them)'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "start" -d 'Start a guest and the dependencies it needs (apps/init/depends), or with --mark every guest with that mark, in dependency order'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "stop" -d 'Stop a guest, or with --mark every running guest with that mark (dependents first)'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "restart" -d 'Stop and start a guest'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "condrestart" -d 'Restart a guest if it runs; leave it stopped (and exit 0) if not'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "set" -d 'Change a running guest\'s limits without a restart (SetLimits)'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "stat" -d 'Resource use of the running guests, as vserver-stat prints it'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "vserver-stat" -d 'Resource use of the running guests, as vserver-stat prints it'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "metrics" -d 'Every guest\'s and the daemon\'s metrics in Prometheus\'s text format (what vserverd-metrics serves; for node_exporter\'s textfile collector or a quick look)'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "build" -d 'Build a new guest: skeleton, template (-- -t TARBALL), clone (-- --source GUEST), debootstrap (-- -d SUITE [-m MIRROR])'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "delete" -d 'Delete a guest: its root, config tree, run and cache targets'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "running" -d 'Exits 0 when the guest runs, 1 when not'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "exec" -d 'Run a command inside a running guest and return its exit code'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "enter" -d 'An interactive shell inside a running guest'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "console" -d 'Attach to a running guest\'s console (/dev/console); Ctrl-] detaches. Everything the console shows is also in RUN_DIR/guests/NAME.log'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "events" -d 'Stream guest state changes, a line each: NAME KIND MESSAGE. A client that fell too far behind gets "- lost ..." and should re-read the list'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "unify" -d 'Share the blocks of identical files of guests copy-on-write (XFS with reflinks, btrfs; on ext4 hard links the kernel breaks on write, with kernel-patch/), util-vserver\'s vunify/vhashify. Each guest\'s apps/vunify/exclude (else .defaults\', else util-vserver\'s built-in list: /etc, /var, … stay per guest) says what is left alone. Running guests may be unified on XFS and btrfs, not on ext4. A second run reads only new or changed files'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "hashify" -d 'Share the blocks of identical files of guests copy-on-write (XFS with reflinks, btrfs; on ext4 hard links the kernel breaks on write, with kernel-patch/), util-vserver\'s vunify/vhashify. Each guest\'s apps/vunify/exclude (else .defaults\', else util-vserver\'s built-in list: /etc, /var, … stay per guest) says what is left alone. Running guests may be unified on XFS and btrfs, not on ext4. A second run reads only new or changed files'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "du" -d 'Disk use of guests, split into blocks only the guest uses and blocks it shares (with other guests after `unify`, or snapshots), from the file system\'s extent map (vdu)'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "generate-docs" -d 'Write man pages and shell completions into a folder'
complete -c vserverctl -n "__fish_vserverctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand list" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand list" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand list" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand list" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand status" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand status" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand check" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand check" -l all -d 'Check every guest under the config root'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand check" -l deep -d 'Also walk each guest\'s root for files whose ids a user namespace cannot map (65536 and above; reads the whole tree, root only)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand check" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand check" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand check" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand start" -l mark -d 'Every guest with this mark (apps/init/mark), e.g. `default`' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand start" -l parallel -d 'With --mark: at most this many guests at once [default: 6]' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand start" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand start" -l console -d 'Also print what the guest\'s console shows while its start or stop command runs (sysv `rc 3`, `rc 6`), filtered as `console` filters it (one guest by name; util-vserver\'s `vserver NAME start` prints it always)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand start" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand start" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand start" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stop" -l mark -d 'Every guest with this mark (apps/init/mark), e.g. `default`' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stop" -l parallel -d 'With --mark: at most this many guests at once [default: 6]' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stop" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stop" -l console -d 'Also print what the guest\'s console shows while its start or stop command runs (sysv `rc 3`, `rc 6`), filtered as `console` filters it (one guest by name; util-vserver\'s `vserver NAME start` prints it always)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stop" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stop" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stop" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand restart" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand restart" -l console -d 'Also print what the guest\'s console shows while its start or stop command runs (sysv `rc 3`, `rc 6`), filtered as `console` filters it (one guest by name; util-vserver\'s `vserver NAME start` prints it always)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand restart" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand restart" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand restart" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand condrestart" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand condrestart" -l console -d 'Also print what the guest\'s console shows while its start or stop command runs (sysv `rc 3`, `rc 6`), filtered as `console` filters it (one guest by name; util-vserver\'s `vserver NAME start` prints it always)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand condrestart" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand condrestart" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand condrestart" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -l memory -d 'Memory limit in bytes, or with a K, M, G or T suffix (powers of 1024)' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -l cpus -d 'CPU quota in CPUs (0.5 is half of one CPU)' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -l pids -d 'Maximum number of processes' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -l disk -d 'Disk limit SPACE[,INODES] (a project quota or btrfs qgroup on its root: dlimits/), SPACE in bytes or with a suffix, e.g. 10G,200000' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -l persist -d 'Also write the values into the guest\'s cgroup/ (and dlimits/) folder (and apply them to a stopped guest\'s next start)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand set" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stat" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stat" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stat" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand stat" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand vserver-stat" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand vserver-stat" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand vserver-stat" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand vserver-stat" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand metrics" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand metrics" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand metrics" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -s m -l method -d 'The build method' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -l context -d 'The static context id [default: the next free one from 40000]' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -l hostname -d 'uts/nodename [default: the guest\'s name]' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -l interface -d 'An address: [NAME=][DEV:]IP[/PREFIX]; repeat for more' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -l initstyle -d 'apps/init/style [default: sysv for debootstrap, plain otherwise]' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -l force -d 'Rename an existing config tree or non-empty root to PATH.~EPOCH~ and build anyway'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand build" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand delete" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand delete" -l stop -d 'Stop it first if it runs (otherwise a running guest is refused)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand delete" -s y -l yes -d 'Do not ask'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand delete" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand delete" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand delete" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand running" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand running" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand running" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand exec" -s u -l user -d 'Run it as this user of the guest (a name or uid), looked up in the guest\'s own /etc/passwd [default: root]' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand exec" -s e -l env -d 'NAME=VALUE in the command\'s environment (repeatable). Of the caller\'s own environment only TERM, COLORTERM, NO_COLOR, LANG, LANGUAGE, LC_* and TZ pass' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand exec" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand exec" -s t -l tty -d 'Give the command a pty'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand exec" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand exec" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand enter" -s e -l env -d 'NAME=VALUE in the shell\'s environment (repeatable)' -r
complete -c vserverctl -n "__fish_vserverctl_using_subcommand enter" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand enter" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand enter" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand console" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand console" -l raw -d 'Pass the guest\'s output as it is: without it, sequences that would change the terminal beyond the session (title, clipboard, alternate screen, mouse, modes) or make it answer into the guest (queries) are dropped'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand console" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand console" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand events" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand events" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand events" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand events" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -l all -d 'Every configured guest'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -s n -l dry-run -d 'Read and hash, print what would be shared, share nothing'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -l no-excludes -d 'Ignore the exclude lists: consider every regular file'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -l ignore-mtime -d 'Hard-link mode (ext4 with kernel-patch/): link identical files whose mtimes differ (owner, group, mode and extended attributes must still agree)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand unify" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -l all -d 'Every configured guest'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -s n -l dry-run -d 'Read and hash, print what would be shared, share nothing'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -l no-excludes -d 'Ignore the exclude lists: consider every regular file'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -l ignore-mtime -d 'Hard-link mode (ext4 with kernel-patch/): link identical files whose mtimes differ (owner, group, mode and extended attributes must still agree)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand hashify" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand du" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand du" -l json -d 'Print the daemon\'s reply as JSON'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand du" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand du" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand generate-docs" -l socket -d 'The daemon\'s control socket' -r -F
complete -c vserverctl -n "__fish_vserverctl_using_subcommand generate-docs" -s h -l help -d 'Print help'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand generate-docs" -s V -l version -d 'Print version'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "list" -d 'List every configured guest with its state'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "status" -d 'Show a guest\'s state; exits 0 when it runs, 3 when it is stopped'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "check" -d 'Check a guest\'s config tree (or with --all every guest\'s): every error and warning, each as FILE:LINE: MESSAGE; exits 1 when any tree has an error. --json gives each problem\'s stable code (docs/config.md lists them)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "start" -d 'Start a guest and the dependencies it needs (apps/init/depends), or with --mark every guest with that mark, in dependency order'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "stop" -d 'Stop a guest, or with --mark every running guest with that mark (dependents first)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "restart" -d 'Stop and start a guest'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "condrestart" -d 'Restart a guest if it runs; leave it stopped (and exit 0) if not'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "set" -d 'Change a running guest\'s limits without a restart (SetLimits)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "stat" -d 'Resource use of the running guests, as vserver-stat prints it'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "metrics" -d 'Every guest\'s and the daemon\'s metrics in Prometheus\'s text format (what vserverd-metrics serves; for node_exporter\'s textfile collector or a quick look)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "build" -d 'Build a new guest: skeleton, template (-- -t TARBALL), clone (-- --source GUEST), debootstrap (-- -d SUITE [-m MIRROR])'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "delete" -d 'Delete a guest: its root, config tree, run and cache targets'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "running" -d 'Exits 0 when the guest runs, 1 when not'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "exec" -d 'Run a command inside a running guest and return its exit code'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "enter" -d 'An interactive shell inside a running guest'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "console" -d 'Attach to a running guest\'s console (/dev/console); Ctrl-] detaches. Everything the console shows is also in RUN_DIR/guests/NAME.log'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "events" -d 'Stream guest state changes, a line each: NAME KIND MESSAGE. A client that fell too far behind gets "- lost ..." and should re-read the list'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "unify" -d 'Share the blocks of identical files of guests copy-on-write (XFS with reflinks, btrfs; on ext4 hard links the kernel breaks on write, with kernel-patch/), util-vserver\'s vunify/vhashify. Each guest\'s apps/vunify/exclude (else .defaults\', else util-vserver\'s built-in list: /etc, /var, … stay per guest) says what is left alone. Running guests may be unified on XFS and btrfs, not on ext4. A second run reads only new or changed files'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "du" -d 'Disk use of guests, split into blocks only the guest uses and blocks it shares (with other guests after `unify`, or snapshots), from the file system\'s extent map (vdu)'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "generate-docs" -d 'Write man pages and shell completions into a folder'
complete -c vserverctl -n "__fish_vserverctl_using_subcommand help; and not __fish_seen_subcommand_from list status check start stop restart condrestart set stat metrics build delete running exec enter console events unify du generate-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
