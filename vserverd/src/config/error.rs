//! Errors and warnings that point at a file and, where it makes sense, a line.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error: the first one found stops the load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; None when the problem is the file as a whole (missing, unreadable).
    pub line: Option<u32>,
    pub message: String,
}

/// A warning has the same shape: something parsed but ignored or not applicable.
pub type Diagnostic = ConfigError;

impl ConfigError {
    pub fn at(file: &Path, line: u32, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }

    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

pub type Result<T> = std::result::Result<T, ConfigError>;
