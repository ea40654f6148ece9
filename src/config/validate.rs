//! From the file as written to a [`Config`]: defaults filled in, every value checked, each
//! problem reported with its key path and a fix.

use std::time::Duration;

use super::duration::{self, parse_duration};
use super::error::ConfigError;
use super::keypath::{child, index};
use super::overrides::rules;
use super::raw::{RawBackoff, RawConfig, RawEndpoint, RawOutbox, RawPostgres};
use super::rules::EventType;
use super::secret::{DatabaseUrl, Secret};
use super::{
    BackoffConfig, Config, EndpointConfig, HttpConfig, OutboxConfig, PayloadFormat, PostgresConfig,
    StateConfig,
};

const DEFAULT_NAME: &str = "fuse_cdc_bridge";
const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

pub(crate) type Result<T> = std::result::Result<T, ConfigError>;

pub(crate) fn build(raw: RawConfig) -> Result<Config> {
    let postgres = postgres(raw.postgres)?;
    if raw.state.dir.trim().is_empty() {
        return Err(ConfigError::invalid(
            "state.dir",
            "is empty",
            "set it to a directory the bridge can write, e.g. \"/var/lib/fuse-cdc-bridge\"",
        ));
    }
    let listen_text = raw.http.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().map_err(|_| {
        ConfigError::invalid(
            "http.listen",
            format!("{listen_text:?} is not an IP address and port"),
            "write e.g. \"127.0.0.1:9187\" or \"[::1]:9187\"",
        )
    })?;
    let outbox = outbox(raw.outbox)?;
    let endpoints = endpoints(raw.endpoints)?;
    let rules = rules(raw.events.0)?;
    Ok(Config {
        postgres,
        state: StateConfig {
            dir: raw.state.dir.into(),
        },
        http: HttpConfig { listen },
        outbox,
        endpoints,
        rules,
    })
}

fn postgres(raw: RawPostgres) -> Result<PostgresConfig> {
    check_database_url(&raw.url)?;
    let slot = raw.slot.unwrap_or_else(|| DEFAULT_NAME.to_owned());
    check_slot_name("postgres.slot", &slot)?;
    let publication = raw.publication.unwrap_or_else(|| DEFAULT_NAME.to_owned());
    check_slot_name("postgres.publication", &publication)?;
    Ok(PostgresConfig {
        url: DatabaseUrl::new(raw.url),
        slot,
        publication,
    })
}

/// Checks only the shape: the value may hold a password, so it never appears in the error.
fn check_database_url(text: &str) -> Result<()> {
    const FIX: &str = "write a URL such as \"postgres://fuse_bridge:${FUSE_BRIDGE_DB_PASSWORD}@db.internal:5432/fuse\" or a key=value string such as \"host=db.internal dbname=fuse user=fuse_bridge\"";
    let key = "postgres.url";
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::invalid(key, "is empty", FIX));
    }
    match text.split_once("://") {
        Some((scheme, _)) if scheme == "postgres" || scheme == "postgresql" => {
            url::Url::parse(text)
                .map(|_| ())
                .map_err(|e| ConfigError::invalid(key, format!("is not a valid URL ({e})"), FIX))
        }
        Some((scheme, _)) if !scheme.contains([' ', '=']) => Err(ConfigError::invalid(
            key,
            format!("has scheme {scheme:?}; only postgres:// and postgresql:// are accepted"),
            FIX,
        )),
        _ => {
            let key_len = text
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(text.len());
            let after = text[key_len..].trim_start();
            let is_word = key_len > 0
                && text[..key_len]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if is_word && after.starts_with('=') {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    "is neither a postgres:// URL nor a key=value connection string",
                    FIX,
                ))
            }
        }
    }
}

/// PostgreSQL's rule for replication slot names, applied to the publication too so both can be
/// used unquoted.
fn check_slot_name(key: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{name:?} is not a valid name"),
            "use 1 to 63 lowercase letters, digits and underscores, e.g. \"fuse_cdc_bridge\"",
        ))
    }
}

fn outbox(raw: RawOutbox) -> Result<OutboxConfig> {
    let max_pending = raw.max_pending.unwrap_or(1_000_000);
    let max_pending = u64::try_from(max_pending)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ConfigError::invalid(
                "outbox.max_pending",
                format!("is {max_pending}"),
                "set it to at least 1 (default 1000000)",
            )
        })?;
    let flush_interval = duration_or("outbox.flush_interval", raw.flush_interval, "5ms")?;
    Ok(OutboxConfig {
        max_pending,
        flush_interval,
    })
}

fn endpoints(raw: Vec<RawEndpoint>) -> Result<Vec<EndpointConfig>> {
    if raw.is_empty() {
        return Err(ConfigError::invalid(
            "endpoints",
            "no endpoint is configured",
            "add an `[[endpoints]]` section with at least `name` and `url`",
        ));
    }
    let mut built: Vec<EndpointConfig> = Vec::with_capacity(raw.len());
    for (i, raw) in raw.into_iter().enumerate() {
        let path = index("endpoints", i);
        let endpoint = endpoint(&path, raw)?;
        if let Some(j) = built.iter().position(|e| e.name == endpoint.name) {
            return Err(ConfigError::invalid(
                &child(&path, "name"),
                format!("{:?} is already the name of endpoints[{j}]", endpoint.name),
                "give each endpoint a unique name",
            ));
        }
        built.push(endpoint);
    }
    Ok(built)
}

fn endpoint(path: &str, raw: RawEndpoint) -> Result<EndpointConfig> {
    if raw.name.trim().is_empty() {
        return Err(ConfigError::invalid(
            &child(path, "name"),
            "is empty",
            "name the endpoint, e.g. \"hr-system\"",
        ));
    }
    let url = endpoint_url(&child(path, "url"), &raw.url)?;
    let events = match raw.events {
        None => EventType::ALL.to_vec(),
        Some(names) => endpoint_events(&child(path, "events"), &names)?,
    };
    let format = match raw.format.as_deref() {
        None | Some("form") => PayloadFormat::Form,
        Some("json") => PayloadFormat::Json,
        Some(other) => {
            return Err(ConfigError::invalid(
                &child(path, "format"),
                format!("{other:?} is not a format"),
                "write \"form\" (Fuse-compatible, the default) or \"json\"",
            ))
        }
    };
    let secret =
        match raw.secret {
            Some(secret) if secret.is_empty() => return Err(ConfigError::invalid(
                &child(path, "secret"),
                "is empty",
                "set a secret (whsec_<base64> or raw), or remove the key to send unsigned requests",
            )),
            other => other.map(Secret::new),
        };
    let timeout = positive_duration(&child(path, "timeout"), raw.timeout, "10s")?;
    let concurrency = at_least_one(&child(path, "concurrency"), raw.concurrency, 16)?;
    let max_attempts = at_least_one(&child(path, "max_attempts"), raw.max_attempts, 20)?;
    let max_age = positive_duration(&child(path, "max_age"), raw.max_age, "3d")?;
    let backoff = backoff(&child(path, "backoff"), raw.backoff)?;
    Ok(EndpointConfig {
        name: raw.name,
        url,
        events,
        format,
        secret,
        timeout,
        concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
        max_attempts,
        max_age,
        backoff,
    })
}

fn endpoint_url(key: &str, text: &str) -> Result<url::Url> {
    const FIX: &str = "write an http or https URL, e.g. \"https://hr.example.com/fuse-hooks\"";
    let url = url::Url::parse(text)
        .map_err(|e| ConfigError::invalid(key, format!("is not a valid URL ({e})"), FIX))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(
            key,
            format!("has scheme {:?}", url.scheme()),
            FIX,
        ));
    }
    Ok(url)
}

fn endpoint_events(key: &str, names: &[String]) -> Result<Vec<EventType>> {
    if names.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "is empty, so the endpoint would receive nothing",
            "list at least one event type, or remove the key to receive all six",
        ));
    }
    let mut events = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let event = event_type(&index(key, i), name)?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

fn event_type(key: &str, name: &str) -> Result<EventType> {
    name.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("unknown event type {name:?}"),
            format!("use one of {}", EventType::valid_list()),
        )
    })
}

fn backoff(path: &str, raw: RawBackoff) -> Result<BackoffConfig> {
    let initial = positive_duration(&child(path, "initial"), raw.initial, "1s")?;
    let max = positive_duration(&child(path, "max"), raw.max, "10m")?;
    if initial > max {
        return Err(ConfigError::invalid(
            &child(path, "initial"),
            format!("{initial:?} is longer than backoff.max ({max:?})"),
            "make initial at most max, e.g. `backoff = { initial = \"1s\", max = \"10m\" }`",
        ));
    }
    Ok(BackoffConfig { initial, max })
}

fn duration_or(key: &str, text: Option<String>, default: &str) -> Result<Duration> {
    let text = text.as_deref().unwrap_or(default);
    parse_duration(text).map_err(|problem| {
        ConfigError::invalid(
            key,
            problem,
            format!(
                "write a whole number and a unit (ms, s, m, h, d), e.g. {}",
                duration::EXAMPLES
            ),
        )
    })
}

fn positive_duration(key: &str, text: Option<String>, default: &str) -> Result<Duration> {
    let value = duration_or(key, text, default)?;
    if value.is_zero() {
        return Err(ConfigError::invalid(
            key,
            "is zero",
            format!("use a positive duration (default \"{default}\")"),
        ));
    }
    Ok(value)
}

fn at_least_one(key: &str, value: Option<i64>, default: u32) -> Result<u32> {
    let Some(value) = value else {
        return Ok(default);
    };
    u32::try_from(value)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!("is {value}"),
                format!("set it to a whole number of at least 1 (default {default})"),
            )
        })
}
