//! `${NAME}` interpolation in string values, done on the parsed document before it is
//! deserialized, so that an unset variable can be reported with the key path it appears at.
//!
//! `$${` is a literal `${`; a `$` not followed by `{` is kept as it is.

use std::borrow::Cow;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::ConfigError;
use super::keypath;

/// Looks up an environment variable; `None` means unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Byte spans of every key and value in the document with their key paths, so that a serde error
/// (which only carries a span) can be reported with a key path.
#[derive(Default)]
pub(crate) struct KeyIndex {
    entries: Vec<(Range<usize>, String)>,
}

impl KeyIndex {
    /// The key path of the innermost key or value whose span contains `span`; `""` for the root.
    pub(crate) fn path_at(&self, span: &Range<usize>) -> &str {
        let mut best: Option<&(Range<usize>, String)> = None;
        for entry in &self.entries {
            let (range, _) = entry;
            if range.start <= span.start && span.end <= range.end {
                // `<=` so that among equal spans the later (deeper) entry wins.
                let deeper = match best {
                    Some((b, _)) => range.len() <= b.len(),
                    None => true,
                };
                if deeper {
                    best = Some(entry);
                }
            }
        }
        best.map_or("", |(_, path)| path.as_str())
    }
}

/// Replaces `${NAME}` in every string value of `root`, recording key spans as it goes.
pub(crate) fn interpolate(
    root: &mut Spanned<DeTable<'_>>,
    env: EnvLookup<'_>,
) -> Result<KeyIndex, ConfigError> {
    let mut index = KeyIndex::default();
    walk_table(root.get_mut(), "", env, &mut index)?;
    Ok(index)
}

fn walk_table(
    table: &mut DeTable<'_>,
    path: &str,
    env: EnvLookup<'_>,
    index: &mut KeyIndex,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        let path = keypath::child(path, key.get_ref());
        index.entries.push((key.span(), path.clone()));
        walk_value(value, &path, env, index)?;
    }
    Ok(())
}

fn walk_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    env: EnvLookup<'_>,
    index: &mut KeyIndex,
) -> Result<(), ConfigError> {
    index.entries.push((value.span(), path.to_owned()));
    match value.get_mut() {
        DeValue::String(text) => {
            if text.contains('$') {
                *text = Cow::Owned(expand(text, path, env)?);
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_value(item, &keypath::index(path, i), env, index)?;
            }
        }
        DeValue::Table(table) => walk_table(table, path, env, index)?,
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
    Ok(())
}

/// Expands one string. The result is not scanned again, so a variable's value may contain `${`.
pub(crate) fn expand(text: &str, key: &str, env: EnvLookup<'_>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err(ConfigError::invalid(
                    key,
                    "`${` has no closing `}`",
                    "write `${NAME}` to use an environment variable, or `$${` for a literal `${`",
                ));
            };
            let name = &tail[..end];
            if !is_variable_name(name) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`${{{name}}}` is not a valid variable reference"),
                    "variable names are letters, digits and underscores, not starting with a digit; write `$${` for a literal `${`",
                ));
            }
            match env(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(ConfigError::UnsetVariable {
                        file: None,
                        key: key.to_owned(),
                        name: name.to_owned(),
                    })
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret".to_owned()),
            "NESTED" => Some("${PW}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_escapes() {
        let f: EnvLookup<'_> = &env;
        assert_eq!(expand("a${PW}b", "k", f).ok().as_deref(), Some("as3cretb"));
        assert_eq!(expand("$${PW}", "k", f).ok().as_deref(), Some("${PW}"));
        assert_eq!(
            expand("cost $5 $", "k", f).ok().as_deref(),
            Some("cost $5 $")
        );
        assert_eq!(expand("${NESTED}", "k", f).ok().as_deref(), Some("${PW}"));
    }

    #[test]
    fn reports_unset_and_malformed() {
        let f: EnvLookup<'_> = &env;
        let err = expand("${NOPE}", "postgres.url", f)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("postgres.url") && e.contains("`NOPE`")));
        assert!(expand("${PW", "k", f).is_err());
        assert!(expand("${1X}", "k", f).is_err());
        assert!(expand("${}", "k", f).is_err());
    }
}
