//! Failures and the exit codes scripts rely on.

use std::fmt;
use std::path::PathBuf;

use proto::ManagerError;

pub enum Failure {
    /// The daemon could not be reached (exit 69, EX_UNAVAILABLE).
    Unreachable(PathBuf, String),
    /// The daemon answered with an error (exit 1).
    Daemon(ManagerError),
    /// The connection broke or the reply made no sense (exit 1).
    Protocol(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Unreachable(..) => 69,
            Failure::Daemon(_) | Failure::Protocol(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(path, e) => write!(
                f,
                "cannot reach vserverd at {}: {e}\n\
                 Start it with `systemctl start vserverd` (or run `vserverd` as root), \
                 or point --socket / VSERVERD_SOCKET at its socket.",
                path.display()
            ),
            Failure::Daemon(e) => write!(f, "{e}"),
            Failure::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl From<ManagerError> for Failure {
    fn from(e: ManagerError) -> Self {
        Failure::Daemon(e)
    }
}

impl From<zlink::Error> for Failure {
    fn from(e: zlink::Error) -> Self {
        Failure::Protocol(e.to_string())
    }
}
