//! The one error type of the core, and its `Result` alias.
//!
//! The bindings convert it to Python in one place: [`Error::Os`] becomes the built-in `OSError`
//! subclass matching its errno (with the path kept), [`Error::InvalidArgument`] a `ValueError`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed on `path`.
    #[error("{op} failed for {path:?}: {source}")]
    Os {
        /// The operation that failed (`statfs`, `stat`, `read`, ...), for the message.
        op: &'static str,
        /// The path the call was made on.
        path: PathBuf,
        /// The OS error, errno included.
        #[source]
        source: std::io::Error,
    },
    /// We refused to act on `path` because acting could lose data (the reason says why).
    #[error("refusing to touch {path:?}: {reason}")]
    Refused {
        /// The path concerned.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the lock on the directory (and we were asked not to wait, or not
    /// that long).
    #[error("{path:?} is being pruned by another process (its lock is held{})", held_by(.holders))]
    Busy {
        /// The directory.
        path: PathBuf,
        /// Process ids holding the lock, from `/proc/locks` (empty when unknown).
        holders: Vec<u32>,
    },
    /// A write was refused before any byte was written: it would not fit (the message says what
    /// was tried to make room). Becomes `diskguard.InsufficientSpaceError`.
    #[error("{message}")]
    InsufficientSpace {
        /// The whole message.
        message: String,
        /// Bytes the write needs (its staging and margin included).
        needed: u64,
        /// Bytes that could be written.
        available: u64,
    },
    /// The object cannot answer yet (a trend monitor with no sample); the message says what to do.
    #[error("{0}")]
    NotReady(String),
    /// An argument outside what is allowed; the message names the argument, the value and the rule.
    #[error("{name}={value}: {allowed}")]
    InvalidArgument {
        /// The argument's name as the caller spells it.
        name: &'static str,
        /// The value as given, rendered for the message.
        value: String,
        /// What is allowed instead.
        allowed: String,
    },
}

impl Error {
    /// An OS failure of `op` on `path`.
    pub fn os(op: &'static str, path: &Path, source: impl Into<std::io::Error>) -> Self {
        Error::Os {
            op,
            path: path.to_path_buf(),
            source: source.into(),
        }
    }

    /// A bad argument: `name` had `value`, and `allowed` says what would be accepted.
    pub fn invalid(name: &'static str, value: impl std::fmt::Display, allowed: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// The errno of an OS failure, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// " by pid 12, 34" for the [`Error::Busy`] message; nothing when the holders are unknown.
fn held_by(holders: &[u32]) -> String {
    if holders.is_empty() {
        return String::new();
    }
    let pids: Vec<String> = holders.iter().map(u32::to_string).collect();
    format!(" by pid {}", pids.join(", "))
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Renders a path argument for an error message without losing non-UTF-8 bytes.
pub(crate) fn show_path(path: &Path) -> String {
    let os: OsString = path.as_os_str().to_owned();
    format!("{os:?}")
}
