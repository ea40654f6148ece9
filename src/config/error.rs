//! The one error type of the configuration: every variant names the file (when there is one),
//! the key path, what is wrong and how to fix it. None of them ever carries a secret value.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}; check the path and its permissions", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error(
        "{}line {line}, column {column}: invalid TOML: {message}; fix the syntax at that position",
        Origin(file)
    )]
    Syntax {
        file: Option<PathBuf>,
        line: usize,
        column: usize,
        message: String,
    },
    /// A `${NAME}` reference names a variable that is not set.
    #[error("{}{key}: environment variable `{name}` is not set; set it in the bridge's environment, or write `$${{` for a literal `${{`", Origin(file))]
    UnsetVariable {
        file: Option<PathBuf>,
        key: String,
        name: String,
    },
    /// A key is missing, unknown, of the wrong type or has a value that is not allowed.
    #[error(
        "{}{}{}: {problem}; {fix}",
        Origin(file),
        Location(location),
        KeyName(key)
    )]
    Invalid {
        file: Option<PathBuf>,
        /// Line and column (1-based), when known.
        location: Option<(usize, usize)>,
        key: String,
        problem: String,
        fix: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: None,
            location: None,
            key: key.to_owned(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// The key path the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnsetVariable { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    pub(crate) fn in_file(mut self, path: &Path) -> Self {
        match &mut self {
            ConfigError::Syntax { file, .. }
            | ConfigError::UnsetVariable { file, .. }
            | ConfigError::Invalid { file, .. } => *file = Some(path.to_owned()),
            ConfigError::Read { .. } => {}
        }
        self
    }
}

struct Origin<'a>(&'a Option<PathBuf>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }
}

struct Location<'a>(&'a Option<(usize, usize)>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, "line {line}, column {column}: "),
            None => Ok(()),
        }
    }
}

struct KeyName<'a>(&'a str);

impl fmt::Display for KeyName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(self.0)
        }
    }
}
