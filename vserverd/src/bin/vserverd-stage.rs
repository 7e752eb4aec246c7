//! The stage alone (see `vserverd::stage`): what the daemon seals into a memfd and runs for
//! every start and exec. The same code runs as `vserverd __stage`; this binary carries only the
//! stage's part of the crate, so a start execs 1 MB rather than the whole daemon (measured: the
//! exec and first page faults were a third of a start's time).

fn main() -> std::process::ExitCode {
    vserverd::stage::main()
}
