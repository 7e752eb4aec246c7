//! Interim config loader (context, rlimits/nproc, marks, depends) until the full model lands.
use std::path::{Path, PathBuf};
pub struct Roots {
    pub config_root: PathBuf,
    pub vdir_base: Option<PathBuf>,
}
#[derive(Debug, thiserror::Error)]
#[error("{file:?}:{line:?}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<u32>,
    pub message: String,
}
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<u32>,
    pub message: String,
}
pub struct Init {
    pub mark: Vec<String>,
    pub depends: Vec<String>,
}
pub struct GuestConfig {
    pub name: String,
    pub context: u32,
    pub vdir: PathBuf,
    pub disabled: bool,
    pub init: Init,
}
pub struct Loaded {
    pub config: GuestConfig,
    pub warnings: Vec<Diagnostic>,
}
pub fn guest_names(root: &Path) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(root)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    Ok(v)
}
pub fn load_guest(roots: &Roots, name: &str) -> Result<Loaded, ConfigError> {
    let cfg = roots.config_root.join(name);
    let ctxf = cfg.join("context");
    let s = std::fs::read_to_string(&ctxf).map_err(|_| ConfigError {
        file: ctxf.clone(),
        line: None,
        message: format!(
            "Dynamic Context IDs are not supported, you must set Context ID in {}",
            ctxf.display()
        ),
    })?;
    let context: u32 = s.trim().parse().map_err(|_| ConfigError {
        file: ctxf.clone(),
        line: Some(1),
        message: "bad".into(),
    })?;
    let nproc = cfg.join("rlimits/nproc");
    if let Ok(s) = std::fs::read_to_string(&nproc) {
        if s.trim().parse::<u64>().is_err() && !s.starts_with("inf") {
            return Err(ConfigError {
                file: nproc,
                line: Some(1),
                message: format!("expected a number or 'inf', got {:?}", s.trim()),
            });
        }
    }
    let lines = |f: &str| {
        std::fs::read_to_string(cfg.join(f))
            .map(|s| s.lines().map(String::from).collect())
            .unwrap_or_default()
    };
    Ok(Loaded {
        config: GuestConfig {
            name: name.into(),
            context,
            vdir: roots
                .vdir_base
                .clone()
                .unwrap_or("/vservers".into())
                .join(name),
            disabled: cfg.join("disabled").exists(),
            init: Init {
                mark: lines("apps/init/mark"),
                depends: lines("apps/init/depends"),
            },
        },
        warnings: vec![],
    })
}
pub fn context_conflicts(g: &[(String, u32)]) -> Vec<(u32, Vec<String>)> {
    let mut m: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for (n, c) in g {
        m.entry(*c).or_default().push(n.clone());
    }
    m.into_iter().filter(|(_, v)| v.len() > 1).collect()
}
impl From<&GuestConfig> for proto::GuestConfig {
    fn from(c: &GuestConfig) -> Self {
        proto::GuestConfig {
            name: c.name.clone(),
            context: c.context,
            vdir: c.vdir.display().to_string(),
        }
    }
}
