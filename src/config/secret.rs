//! Values that must never be printed: endpoint secrets and the database URL (which may hold a
//! password). Their `Debug` hides them, they have no `Display`, and the real value is reached
//! only through an explicit `expose()`.

use std::fmt;

/// A secret string, such as an endpoint's signing secret. `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A PostgreSQL connection string (URL or `key=value`). `Debug` and [`DatabaseUrl::redacted`]
/// show it with any password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// Connection parameters whose values are secret.
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

impl DatabaseUrl {
    /// Wraps a connection string (not validated here).
    pub fn new(value: impl Into<String>) -> Self {
        DatabaseUrl(value.into())
    }

    /// The real connection string, password included; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The connection string with passwords replaced by `***`, safe for logs and messages.
    /// Anything that cannot be parsed well enough to redact is shown as `***` entirely.
    pub fn redacted(&self) -> String {
        let text = self.0.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            redact_url(text).unwrap_or_else(|| "***".to_owned())
        } else {
            redact_dsn(text).unwrap_or_else(|| "***".to_owned())
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

fn redact_url(text: &str) -> Option<String> {
    let mut url = url::Url::parse(text).ok()?;
    if url.password().is_some() {
        url.set_password(Some("***")).ok()?;
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SECRET_PARAMS.contains(&k.as_ref()) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(url.into())
}

/// Re-renders a `key=value` string with secret values replaced; `None` if it does not scan.
fn redact_dsn(text: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let key_len = rest.find(|c: char| c == '=' || c.is_whitespace())?;
        let key = &rest[..key_len];
        rest = rest[key_len..].trim_start().strip_prefix('=')?.trim_start();
        let (value, after) = dsn_value(rest)?;
        if SECRET_PARAMS.contains(&key) {
            out.push(format!("{key}=***"));
        } else {
            out.push(format!("{key}={value}"));
        }
        rest = after.trim_start();
    }
    Some(out.join(" "))
}

/// Splits one libpq value (quoted with `'…'` or bare, `\` escaping) from the rest.
fn dsn_value(text: &str) -> Option<(&str, &str)> {
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return Some((&text[..i + 2], &quoted[i + 1..])),
                _ => {}
            }
        }
        None
    } else {
        let mut escaped = false;
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                c if c.is_whitespace() => return Some((&text[..i], &text[i..])),
                _ => {}
            }
        }
        Some((text, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_hidden() {
        let url =
            DatabaseUrl::new("postgres://u:hunter2@db:5432/fuse?sslmode=require&password=pw2");
        let shown = format!("{url:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw2"),
            "{shown}"
        );
        assert!(shown.contains("u:***@db:5432/fuse"), "{shown}");
    }

    #[test]
    fn dsn_password_is_hidden() {
        let url = DatabaseUrl::new("host=db password='hun ter2' user=u");
        assert_eq!(url.redacted(), "host=db password=*** user=u");
        assert_eq!(DatabaseUrl::new("password=x'").redacted(), "password=***");
        assert_eq!(DatabaseUrl::new("garbage 'x").redacted(), "***");
    }

    #[test]
    fn secret_is_hidden() {
        assert_eq!(format!("{:?}", Some(Secret::new("whsec_abc"))), "Some(***)");
    }
}
