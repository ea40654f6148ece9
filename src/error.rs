//! The top-level error: every module's error, and whether retrying can help.
//!
//! Transient errors (a dropped connection, a restarting server) are retried with backoff by the
//! long-running commands; definite ones (bad configuration, missing prerequisites, wrong
//! password, undecodable input, a state directory that refused a write) stop with a message and
//! a hint for the operator. A failed write stops the process rather than being retried because
//! sled refuses every write after its first I/O error; a restart (by hand or by the service
//! manager) recovers from what is durable.

use crate::config::ConfigError;
use crate::ephemeral::EphemeralError;
use crate::pg::admin::AdminError;
use crate::pg::dsn::DsnError;
use crate::pg::replication::ReplicationError;
use crate::pg::wire::WireError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("[postgres].url: {0}")]
    Dsn(#[from] DsnError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A problem found by our own checks, with the fix.
    #[error("{message}")]
    Definite {
        message: String,
        hint: Option<String>,
    },
}

impl Error {
    /// Whether retrying the same operation later can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Wire(e) => e.is_transient(),
            Error::Replication(e) => e.is_transient(),
            Error::Admin(e) => e.is_transient(),
            Error::Store(e) => e.is_transient(),
            Error::Io { .. } => true,
            Error::Config(_) | Error::Dsn(_) | Error::Ephemeral(_) | Error::Definite { .. } => {
                false
            }
        }
    }

    /// What the operator can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Wire(e) => e.hint(),
            Error::Replication(e) => e.hint(),
            Error::Admin(e) => e.hint(),
            Error::Definite { hint, .. } => hint.clone(),
            _ => None,
        }
    }

    pub fn definite(message: impl Into<String>, hint: impl Into<Option<String>>) -> Error {
        Error::Definite {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
