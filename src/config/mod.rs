//! The TOML configuration file: typed settings, built-in defaults (the reference schema's rules),
//! `${NAME}` interpolation from the environment, and validation whose errors name the file, the
//! key path and a fix.
//!
//! Loading goes text → TOML tree (with spans) → `${NAME}` expanded in place → serde structs that
//! mirror the file (`raw`) → checked, defaulted [`Config`] (`validate`). See `config.example.toml`
//! for every key.

mod de_error;
mod duration;
mod env;
mod error;
mod keypath;
mod overrides;
mod raw;
mod rules;
mod secret;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use duration::parse_duration;
pub use env::EnvLookup;
pub use error::ConfigError;
pub use rules::{Becomes, EventType, Operation, Param, Rule, TableName, UnknownEventType};
pub use secret::{DatabaseUrl, Secret};

/// The whole configuration, defaults applied and validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub postgres: PostgresConfig,
    pub state: StateConfig,
    pub http: HttpConfig,
    pub outbox: OutboxConfig,
    /// At least one, names unique.
    pub endpoints: Vec<EndpointConfig>,
    /// One per event type, in [`EventType::ALL`] order.
    rules: Vec<Rule>,
}

/// `[postgres]`
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// A `postgres://` / `postgresql://` URL or a `key=value` connection string.
    pub url: DatabaseUrl,
    /// Replication slot name (default `fuse_cdc_bridge`).
    pub slot: String,
    /// Publication name (default `fuse_cdc_bridge`).
    pub publication: String,
}

/// `[state]`
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// Where sled keeps the checkpoint, outbox and dead letters.
    pub dir: PathBuf,
}

/// `[http]`
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Address of /metrics, /healthz, /readyz and the admin routes (default `127.0.0.1:9187`).
    pub listen: SocketAddr,
}

/// `[outbox]`
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// Replication pauses while more events than this are undelivered (default 1000000).
    pub max_pending: u64,
    /// Group-commit window (default 5ms).
    pub flush_interval: Duration,
}

/// How an endpoint wants its request bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// `application/x-www-form-urlencoded`, as Fuse sends it (default).
    Form,
    /// `{"type", "timestamp", "data"}`.
    Json,
}

/// One `[[endpoints]]` entry. `Debug` hides a password in the url (the secret hides itself).
#[derive(Clone)]
pub struct EndpointConfig {
    pub name: String,
    /// An `http` or `https` URL.
    pub url: url::Url,
    /// Subscribed event types, without duplicates, in the order written (default: all six).
    pub events: Vec<EventType>,
    pub format: PayloadFormat,
    /// Signing secret (`whsec_<base64>` or raw), as written.
    pub secret: Option<Secret>,
    /// Per-request timeout (default 10s).
    pub timeout: Duration,
    /// Requests in flight to this endpoint (default 16).
    pub concurrency: usize,
    /// Attempts before dead-lettering (default 20).
    pub max_attempts: u32,
    /// Age after which an undelivered event is dead-lettered (default 3d).
    pub max_age: Duration,
    pub backoff: BackoffConfig,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            // Only fails for urls that cannot have a password, and this one has one.
            let _ = url.set_password(Some("***"));
        }
        f.debug_struct("EndpointConfig")
            .field("name", &self.name)
            .field("url", &url.as_str())
            .field("events", &self.events)
            .field("format", &self.format)
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("max_age", &self.max_age)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl EndpointConfig {
    /// Whether this endpoint subscribes to `event_type`.
    pub fn wants(&self, event_type: EventType) -> bool {
        self.events.contains(&event_type)
    }
}

/// Retry delays: exponential with jitter, from `initial` (default 1s) up to `max` (default 10m).
#[derive(Clone, Debug)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Config {
    /// Reads and validates the file at `path`, taking `${NAME}` values from the process
    /// environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], with `${NAME}` values from `env`.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: EnvLookup<'_>,
    ) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse_str(&text, env).map_err(|e| e.in_file(path))
    }

    /// Parses and validates configuration text, with `${NAME}` values from `env`.
    pub fn parse_str(text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let mut tree = toml::de::DeTable::parse(text).map_err(|e| de_error::syntax(&e, text))?;
        let index = env::interpolate(&mut tree, env)?;
        let raw = raw::RawConfig::deserialize(toml::de::Deserializer::from(tree))
            .map_err(|e| de_error::shape(&e, text, &index))?;
        validate::build(raw)
    }

    /// The effective rule of every event type, in [`EventType::ALL`] order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The effective rule for `event_type`.
    pub fn rule(&self, event_type: EventType) -> &Rule {
        // `rules` follows `EventType::ALL`, which lists the variants in declaration order.
        &self.rules[event_type as usize]
    }

    /// The distinct tables the rules read, in rule order: what the publication must include.
    pub fn tables(&self) -> Vec<TableName> {
        let mut tables: Vec<TableName> = Vec::new();
        for rule in &self.rules {
            if !tables.contains(&rule.table) {
                tables.push(rule.table.clone());
            }
        }
        tables
    }
}
