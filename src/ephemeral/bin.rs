//! Finding the PostgreSQL server binaries and the OS user to run them as.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use super::EphemeralError;

const NEEDED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `PG_BIN`, else a directory on `PATH`,
/// else the newest `/usr/lib/postgresql/*/bin` (where Debian puts them, off `PATH`).
pub fn find_bin_dir() -> Result<PathBuf, EphemeralError> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if holds_server(&dir) {
            Ok(dir)
        } else {
            Err(EphemeralError::BinariesNotFound {
                searched: format!(
                    "PG_BIN={} (it lacks initdb, pg_ctl or postgres)",
                    dir.display()
                ),
            })
        };
    }
    if let Some(dir) = on_path(std::env::var_os("PATH")) {
        return Ok(dir);
    }
    if let Some(dir) = newest_debian_bin(Path::new("/usr/lib/postgresql")) {
        return Ok(dir);
    }
    Err(EphemeralError::BinariesNotFound {
        searched: "PG_BIN is unset; not on PATH; no /usr/lib/postgresql/*/bin".to_string(),
    })
}

fn holds_server(dir: &Path) -> bool {
    NEEDED.iter().all(|b| dir.join(b).is_file())
}

/// A PATH entry may hold symlinks into the real bin dir (Debian's `/usr/local/bin/initdb` →
/// `/usr/lib/postgresql/15/bin/initdb`); the real one is what we want, because `psql` and the
/// server's own helpers must come from the same installation.
fn on_path(path: Option<OsString>) -> Option<PathBuf> {
    for dir in std::env::split_paths(&path?) {
        if !holds_server(&dir) {
            continue;
        }
        let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
        let real_dir = real.parent()?.to_path_buf();
        return Some(if holds_server(&real_dir) {
            real_dir
        } else {
            dir
        });
    }
    None
}

fn newest_debian_bin(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            let bin = e.path().join("bin");
            Some((version?, bin)).filter(|(_, bin)| holds_server(bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The unprivileged identity the server runs as when we are root (PostgreSQL refuses root).
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    pub home: PathBuf,
}

impl RunAs {
    /// `None` when we are not root: then the server runs as us.
    pub fn detect() -> Result<Option<RunAs>, EphemeralError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let user = User::from_name("postgres")
            .map_err(|e| EphemeralError::NoPostgresUser(e.to_string()))?
            .ok_or_else(|| EphemeralError::NoPostgresUser("no such user".to_string()))?;
        Ok(Some(RunAs {
            uid: user.uid,
            gid: user.gid,
            home: user.dir,
        }))
    }

    /// Setting uid as root also makes std drop the supplementary groups (root's included).
    pub fn apply(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        cmd.uid(self.uid.as_raw())
            .gid(self.gid.as_raw())
            .env("HOME", &self.home)
            .env("USER", "postgres")
            .env("LOGNAME", "postgres");
    }

    pub fn chown(&self, path: &Path) -> Result<(), EphemeralError> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| EphemeralError::Io {
            what: format!("chown {} to the postgres user", path.display()),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_version_numerically() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "16", "not-a-version"] {
            let bin = root.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for b in NEEDED {
                std::fs::write(bin.join(b), "").unwrap();
            }
        }
        std::fs::create_dir_all(root.path().join("17/bin")).unwrap(); // empty: not a server
        assert_eq!(
            newest_debian_bin(root.path()).unwrap(),
            root.path().join("16").join("bin")
        );
    }

    #[test]
    fn resolves_symlinks_on_path() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        let link = root.path().join("link");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&link).unwrap();
        for b in NEEDED {
            std::fs::write(real.join(b), "").unwrap();
            std::os::unix::fs::symlink(real.join(b), link.join(b)).unwrap();
        }
        let path = std::env::join_paths([root.path().join("nothing"), link]).unwrap();
        assert_eq!(on_path(Some(path)).unwrap(), real.canonicalize().unwrap());
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn missing_binaries_say_how_to_install_them() {
        let e = EphemeralError::BinariesNotFound {
            searched: "PG_BIN is unset".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("apt-get update && apt-get install -y postgresql"),
            "{msg}"
        );
        assert!(msg.contains("set PG_BIN"), "{msg}");
        assert!(msg.contains("PG_BIN is unset"), "{msg}");
    }
}
