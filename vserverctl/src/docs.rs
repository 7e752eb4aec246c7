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
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "vserverctl", &comp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
