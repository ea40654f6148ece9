//! Connection strings: `postgres://` URLs and libpq `key=value` strings, parsed into
//! [`ConnectParams`] with libpq's defaults. The password never shows in `Debug` or logs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Used when the connection string names no `application_name`; shows in `pg_stat_activity`.
pub const DEFAULT_APPLICATION_NAME: &str = "fuse-cdc-bridge";
/// libpq waits forever by default; a sidecar must not hang on an unreachable host.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// libpq's `sslmode`, minus `allow` (plaintext first is never what a sidecar wants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, DsnError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(DsnError::BadValue {
                    key: "sslmode",
                    value: s.to_string(),
                    expected: "disable, prefer, require, verify-ca or verify-full",
                })
            }
        })
    }
}

/// A password; prints as `***` so it cannot leak through `{:?}` or `{}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(p: impl Into<String>) -> Password {
        Password(p.into())
    }

    /// The secret itself, for the authentication exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where and how to connect: what both the walsender and the SQL connection need.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// A host name or IP address (IPv6 without brackets). Unix sockets are not supported.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Password>,
    pub dbname: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub application_name: Option<String>,
    pub connect_timeout: Option<Duration>,
}

/// A connection string that cannot be used, naming the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("unknown connection parameter {0:?} (supported: host, port, user, password, dbname, sslmode, sslrootcert, application_name, connect_timeout)")]
    UnknownParameter(String),
    #[error("invalid {key} {value:?} in the connection string (expected {expected})")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("the connection string names no user; add one (postgres://USER@host/db or user=USER)")]
    MissingUser,
    #[error("malformed connection string: {0}")]
    Syntax(String),
}

impl ConnectParams {
    /// Parses a `postgres://`/`postgresql://` URL or a libpq `key=value` string.
    pub fn parse(s: &str) -> Result<ConnectParams, DsnError> {
        let s = s.trim();
        let mut b = Builder::default();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            parse_url(s, &mut b)?;
        } else if s.contains("://") {
            let scheme = s.split("://").next().unwrap_or_default();
            return Err(DsnError::Syntax(format!(
                "unsupported URL scheme {scheme:?}; use postgres:// or postgresql://"
            )));
        } else {
            parse_key_values(s, &mut b)?;
        }
        b.finish()
    }

    /// `host:port` as used in error messages (IPv6 in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn application_name(&self) -> &str {
        self.application_name
            .as_deref()
            .unwrap_or(DEFAULT_APPLICATION_NAME)
    }

    /// The URL with the password replaced by `***`, safe for logs.
    pub fn redacted_url(&self) -> String {
        let mut url = format!("postgres://{}", encode_component(&self.user));
        if self.password.is_some() {
            url.push_str(":***");
        }
        url.push('@');
        url.push_str(&self.addr());
        url.push('/');
        url.push_str(&encode_component(&self.dbname));
        url.push_str("?sslmode=");
        url.push_str(self.sslmode.as_str());
        if let Some(p) = &self.sslrootcert {
            url.push_str("&sslrootcert=");
            url.push_str(&encode_component(&p.to_string_lossy()));
        }
        if let Some(a) = &self.application_name {
            url.push_str("&application_name=");
            url.push_str(&encode_component(a));
        }
        if let Some(t) = self.connect_timeout {
            url.push_str(&format!("&connect_timeout={}", t.as_secs()));
        }
        url
    }

    /// The same target for tokio-postgres. Certificate verification (verify-ca, verify-full) is
    /// done by our TLS connector, so tokio-postgres only learns whether TLS is required.
    pub fn to_tokio_postgres(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(self.application_name())
            .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                    tokio_postgres::config::SslMode::Require
                }
            });
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }
}

impl FromStr for ConnectParams {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, DsnError> {
        ConnectParams::parse(s)
    }
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Collects parameters in any order; later values win, as in libpq.
#[derive(Default)]
struct Builder {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Password>,
    dbname: Option<String>,
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
    application_name: Option<String>,
    connect_timeout: Option<Duration>,
}

impl Builder {
    fn set(&mut self, key: &str, value: String) -> Result<(), DsnError> {
        match key {
            "host" => self.host = Some(value),
            "port" => self.port = Some(parse_port(&value)?),
            "user" => self.user = Some(value),
            "password" => self.password = Some(Password(value)),
            "dbname" => self.dbname = Some(value),
            "sslmode" => self.sslmode = Some(value.parse()?),
            "sslrootcert" => self.sslrootcert = Some(PathBuf::from(value)),
            "application_name" => self.application_name = Some(value),
            "connect_timeout" => {
                let secs: u64 = value.trim().parse().map_err(|_| DsnError::BadValue {
                    key: "connect_timeout",
                    value: value.clone(),
                    expected: "a whole number of seconds",
                })?;
                // libpq: zero means wait forever; ours is the default instead.
                self.connect_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            other => return Err(DsnError::UnknownParameter(other.to_string())),
        }
        Ok(())
    }

    fn finish(self) -> Result<ConnectParams, DsnError> {
        let host = self
            .host
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        if host.starts_with('/') || host.starts_with('@') {
            return Err(DsnError::BadValue {
                key: "host",
                value: host,
                expected: "a TCP host name or address (unix-domain sockets are not supported)",
            });
        }
        if host.contains(',') {
            return Err(DsnError::BadValue {
                key: "host",
                value: host,
                expected: "a single host (multiple hosts are not supported)",
            });
        }
        let user = self
            .user
            .filter(|u| !u.is_empty())
            .ok_or(DsnError::MissingUser)?;
        let dbname = self
            .dbname
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());
        Ok(ConnectParams {
            host,
            port: self.port.unwrap_or(5432),
            user,
            password: self.password,
            dbname,
            sslmode: self.sslmode.unwrap_or(SslMode::Prefer),
            sslrootcert: self.sslrootcert,
            application_name: self.application_name,
            connect_timeout: self.connect_timeout,
        })
    }
}

fn parse_port(v: &str) -> Result<u16, DsnError> {
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(DsnError::BadValue {
            key: "port",
            value: v.to_string(),
            expected: "a port number between 1 and 65535",
        }),
    }
}

fn decode(key: &'static str, s: &str) -> Result<String, DsnError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| DsnError::BadValue {
            key,
            value: s.to_string(),
            expected: "percent-encoded UTF-8",
        })
}

fn parse_url(s: &str, b: &mut Builder) -> Result<(), DsnError> {
    let url = url::Url::parse(s).map_err(|e| DsnError::Syntax(format!("{e}")))?;
    if !url.username().is_empty() {
        b.user = Some(decode("user", url.username())?);
    }
    if let Some(p) = url.password() {
        b.password = Some(Password(decode("password", p)?));
    }
    match url.host() {
        Some(url::Host::Ipv6(a)) => b.host = Some(a.to_string()),
        Some(url::Host::Ipv4(a)) => b.host = Some(a.to_string()),
        Some(url::Host::Domain(d)) => b.host = Some(decode("host", d)?),
        None => {}
    }
    if let Some(p) = url.port() {
        b.port = Some(p);
    }
    let path = url.path().trim_start_matches('/');
    if !path.is_empty() {
        b.dbname = Some(decode("dbname", path)?);
    }
    // Not `query_pairs()`: that is form decoding, which would turn `+` into a space.
    for pair in url.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode("parameter name", k)?;
        b.set(&k, decode("parameter value", v)?)?;
    }
    Ok(())
}

/// libpq's `key = value` syntax: values may be single-quoted; backslash escapes `'` and `\`.
fn parse_key_values(s: &str, b: &mut Builder) -> Result<(), DsnError> {
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(());
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(DsnError::Syntax(format!(
                "missing \"=\" after {key:?} in the key=value connection string"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(DsnError::Syntax(format!(
                            "unterminated quoted value for {key:?}"
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        b.set(&key, value)?;
    }
}

/// Userinfo and path segments: everything but unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a URL userinfo or path component.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests;
