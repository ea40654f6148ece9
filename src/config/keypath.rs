//! Key paths such as `endpoints[1].backoff.initial` or `events."user.updated".table`, the way
//! errors name a place in the file.

/// The path of `key` inside the table at `parent` (`""` is the document root).
pub(crate) fn child(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        // Quoted like TOML would need it, so the path can be pasted back into the file.
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of element `index` of the array at `parent`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_keys_that_need_it() {
        assert_eq!(child("", "postgres"), "postgres");
        assert_eq!(child("events", "user.updated"), "events.\"user.updated\"");
        assert_eq!(index(&child("", "endpoints"), 1), "endpoints[1]");
    }
}
