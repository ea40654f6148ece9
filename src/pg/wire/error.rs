//! Errors of the PostgreSQL connections: what went wrong, whether retrying can help
//! ([`WireError::is_transient`]) and what the operator should change ([`WireError::hint`]).

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use crate::pg::dsn::SslMode;
use crate::pg::tls::TlsError;

/// An `ErrorResponse` (or `NoticeResponse`) from the server, field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbError {
    /// Non-localized when the server sends it (`V`), else the localized one (`S`).
    pub severity: String,
    /// The SQLSTATE, e.g. `28P01`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<String>,
    pub where_: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
    pub routine: Option<String>,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, "; DETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; HINT: {h}")?;
        }
        if let Some(w) = &self.where_ {
            write!(f, "; WHERE: {w}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

/// A failure to connect to, or talk with, PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("could not resolve host name {host:?}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {}s connecting to {addr}", after.as_secs())]
    Timeout { addr: String, after: Duration },
    #[error("I/O error on the connection to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server at {addr} closed the connection")]
    Closed { addr: String },
    #[error("TLS handshake with {host} at {addr} failed: {source}")]
    Tls {
        host: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    TlsConfig(#[from] TlsError),
    #[error("the server at {addr} does not support SSL, but sslmode={mode} requires it")]
    SslRefused { addr: String, mode: SslMode },
    #[error("{0}")]
    Server(Box<DbError>),
    #[error("the server asks for a password ({method} authentication) for user {user:?}, but the connection string has none")]
    PasswordMissing { method: &'static str, user: String },
    #[error("the server asks for {method} authentication, which fuse-cdc-bridge does not support (use scram-sha-256, md5 or password in pg_hba.conf)")]
    UnsupportedAuth { method: String },
    #[error("protocol violation from {addr}: {detail}")]
    Protocol { addr: String, detail: String },
    #[error("{addr}: {}", chain(source))]
    Sql {
        addr: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// tokio-postgres' Display leaves out the cause ("db error"); the operator needs it.
fn chain(e: &tokio_postgres::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = match c.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().and_then(|i| i.source()),
            None => c.source(),
        };
    }
    s
}

/// SQLSTATEs after which the same attempt may succeed later.
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now (starting up, shutting down, recovery)
            | "53300" // too_many_connections
            | "53000" // insufficient_resources
            | "53200" // out_of_memory
            | "55006" // object_in_use: e.g. the slot is active for another PID
            | "40001" // serialization_failure
            | "40P01" // deadlock_detected
    ) || code.starts_with("08") // connection_exception
}

fn code_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "28P01" => "check the password in [postgres].url",
        "28000" => {
            "the server rejected this user/database/address: check the user in [postgres].url and \
             that pg_hba.conf on the server admits it (replication connections need a line for \
             the `replication` database)"
        }
        "3D000" => "check the database name in [postgres].url",
        "42501" => {
            "the role lacks a privilege: the replication connection needs a role with REPLICATION \
             (ALTER ROLE … REPLICATION) and SELECT on the published tables"
        }
        "53300" => {
            "the server has no free connection slots: raise max_connections or max_wal_senders, \
             or close idle sessions"
        }
        "57P03" => "the server is starting up, shutting down or in recovery; retrying",
        "55006" => "another process is using this object (e.g. the replication slot); retrying",
        _ => return None,
    })
}

/// The rustls error inside an error chain; io::Error hides its payload from `source()`.
pub(crate) fn find_rustls<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return Some(r);
            }
        }
        cur = c.source();
    }
    None
}

fn tls_hint(e: &rustls::Error, host: &str) -> Option<String> {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => Some(format!(
            "the server certificate is not valid for host {host}; fix the host in the URL or \
                 use sslmode=verify-ca"
        )),
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => Some(
            "the server certificate is not signed by a trusted CA: set sslrootcert to the CA \
             certificate that issued it"
                .to_string(),
        ),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            Some("the server certificate has expired; renew it on the server".to_string())
        }
        _ => Some(format!(
            "TLS with {host} failed; check the server's ssl settings and sslmode/sslrootcert"
        )),
    }
}

fn connect_hint(kind: std::io::ErrorKind, addr: &str) -> Option<String> {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => Some(format!(
            "is PostgreSQL running on {addr} and listening on that address (listen_addresses, port)?"
        )),
        K::TimedOut => Some(format!(
            "no answer from {addr}: check the host and port, and any firewall in between"
        )),
        _ => None,
    }
}

impl WireError {
    /// The SQLSTATE when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            WireError::Server(e) => Some(&e.code),
            WireError::Sql { source, .. } => source.as_db_error().map(|e| e.code().code()),
            _ => None,
        }
    }

    /// Whether trying again later can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            WireError::Resolve { .. }
            | WireError::Connect { .. }
            | WireError::Timeout { .. }
            | WireError::Io { .. }
            | WireError::Closed { .. } => true,
            WireError::Tls { source, .. } => find_rustls(source).is_none(),
            WireError::Server(e) => transient_code(&e.code),
            WireError::Sql { source, .. } => match self.code() {
                Some(code) => transient_code(code),
                None => find_rustls(source).is_none() && (source.is_closed() || has_io(source)),
            },
            WireError::TlsConfig(_)
            | WireError::SslRefused { .. }
            | WireError::PasswordMissing { .. }
            | WireError::UnsupportedAuth { .. }
            | WireError::Protocol { .. } => false,
        }
    }

    /// What the operator can do about it, when we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            WireError::Resolve { host, .. } => Some(format!(
                "check the host {host:?} in [postgres].url (and DNS on this machine)"
            )),
            WireError::Connect { addr, source } => connect_hint(source.kind(), addr),
            WireError::Timeout { addr, .. } => connect_hint(std::io::ErrorKind::TimedOut, addr),
            WireError::Tls { host, source, .. } => {
                find_rustls(source).and_then(|e| tls_hint(e, host))
            }
            WireError::SslRefused { .. } => Some(
                "turn on ssl in the server's postgresql.conf, or use sslmode=prefer or disable"
                    .to_string(),
            ),
            WireError::PasswordMissing { .. } => Some(
                "add the password to [postgres].url, e.g. \
                 postgres://user:${FUSE_BRIDGE_DB_PASSWORD}@host/db"
                    .to_string(),
            ),
            WireError::UnsupportedAuth { .. } => Some(
                "give this user a scram-sha-256 (or md5/password) line in pg_hba.conf".to_string(),
            ),
            WireError::Server(e) => code_hint(&e.code).map(str::to_string),
            WireError::Sql { addr, source } => {
                if let Some(code) = self.code() {
                    return code_hint(code).map(str::to_string);
                }
                if let Some(r) = find_rustls(source) {
                    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                    return tls_hint(r, host);
                }
                io_kind(source).and_then(|k| connect_hint(k, addr))
            }
            WireError::TlsConfig(_)
            | WireError::Io { .. }
            | WireError::Closed { .. }
            | WireError::Protocol { .. } => None,
        }
    }
}

fn io_kind(e: &tokio_postgres::Error) -> Option<std::io::ErrorKind> {
    let mut cur = e.source();
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = c.source();
    }
    None
}

fn has_io(e: &tokio_postgres::Error) -> bool {
    io_kind(e).is_some()
}
