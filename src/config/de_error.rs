//! Turns toml's errors (syntax errors, and serde errors that carry only a byte span) into
//! [`ConfigError`]s with a line, column, key path and fix.

use super::env::KeyIndex;
use super::error::ConfigError;
use super::keypath;

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A TOML syntax error. Only the message and position are shown, never the line's text, which
/// might hold a password.
pub(crate) fn syntax(err: &toml::de::Error, text: &str) -> ConfigError {
    let (line, column) = line_column(text, err.span().map_or(0, |s| s.start));
    ConfigError::Syntax {
        file: None,
        line,
        column,
        message: err.message().trim().replace('\n', "; "),
    }
}

/// A serde error raised while deserializing the (interpolated) document.
pub(crate) fn shape(err: &toml::de::Error, text: &str, index: &KeyIndex) -> ConfigError {
    let span = err.span();
    let location = span.as_ref().map(|s| line_column(text, s.start));
    let at = span.as_ref().map_or("", |s| index.path_at(s));
    let message = sanitize(err.message().trim());

    let (key, problem, fix) = if let Some(field) = between(&message, "missing field `", "`") {
        let key = keypath::child(at, field);
        let fix = match example(&key) {
            Some(example) => format!("add it, e.g. {example}"),
            None if at.is_empty() => format!("add a `[{field}]` section"),
            None => format!("add `{field} = …` to `{at}`"),
        };
        (key, "is required but missing".to_owned(), fix)
    } else if let Some(field) = between(&message, "unknown field `", "`") {
        let expected = message
            .split_once(", expected ")
            .map_or(String::new(), |(_, e)| format!("; valid keys here: {e}"));
        (
            at.to_owned(),
            format!("unknown key `{field}`"),
            format!("remove it or correct its spelling{expected}"),
        )
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        let expected = message
            .split_once(", expected ")
            .map_or("a value of the right type", |(_, e)| e);
        (
            at.to_owned(),
            format!("has the wrong type ({message})"),
            format!("write {expected} here"),
        )
    } else {
        (
            at.to_owned(),
            message.clone(),
            "see config.example.toml for the expected shape".to_owned(),
        )
    };
    ConfigError::Invalid {
        file: None,
        location,
        key,
        problem,
        fix,
    }
}

/// Example lines for the required keys.
fn example(key: &str) -> Option<&'static str> {
    let last = key.rsplit('.').next().unwrap_or(key);
    Some(match (key, last) {
        ("postgres", _) => {
            "`[postgres]` with `url = \"postgres://fuse_bridge:${PASSWORD}@db:5432/fuse\"`"
        }
        ("postgres.url", _) => "`url = \"postgres://fuse_bridge:${PASSWORD}@db:5432/fuse\"`",
        ("state", _) => "`[state]` with `dir = \"/var/lib/fuse-cdc-bridge\"`",
        ("state.dir", _) => "`dir = \"/var/lib/fuse-cdc-bridge\"`",
        (_, "name") if key.starts_with("endpoints[") => "`name = \"hr-system\"`",
        (_, "url") if key.starts_with("endpoints[") => {
            "`url = \"https://hr.example.com/fuse-hooks\"`"
        }
        (_, "column") => "`becomes = { column = \"status\", values = [\"completed\"] }`",
        (_, "values") => "`becomes = { column = \"status\", values = [\"completed\"] }`",
        _ => return None,
    })
}

/// Friendlier type names, and no string values: a string in the wrong place may be a secret.
fn sanitize(message: &str) -> String {
    let mut out = drop_quoted_strings(message);
    for (from, to) in [
        ("i64", "an integer"),
        ("a sequence", "an array"),
        ("a map", "a table"),
    ] {
        out = out.replace(from, to);
    }
    // `struct RawEndpoint` etc. are internal names.
    while let Some(start) = out.find("struct Raw") {
        let name_start = start + "struct Raw".len();
        let name_len = out[name_start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        out.replace_range(start..name_start + name_len, "a table");
    }
    out
}

/// Replaces `string "…"` (serde's rendering of an unexpected string) with `a string`.
fn drop_quoted_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::new();
    let mut rest = message;
    while let Some(start) = rest.find(MARK) {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let quoted = &rest[start + MARK.len()..];
        let mut escaped = false;
        let mut end = quoted.len();
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &quoted[end..];
    }
    out.push_str(rest);
    out
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let after = &text[text.find(start)? + start.len()..];
    Some(&after[..after.find(end)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_dropped_and_types_renamed() {
        assert_eq!(
            sanitize(r#"invalid type: string "pw\"x", expected struct RawPostgres"#),
            "invalid type: a string, expected a table"
        );
        assert_eq!(
            sanitize("invalid type: string \"16\", expected i64"),
            "invalid type: a string, expected an integer"
        );
    }

    #[test]
    fn positions() {
        assert_eq!(line_column("a\nbc\n", 3), (2, 2));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
