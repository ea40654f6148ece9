//! A throwaway PostgreSQL cluster in a temp dir, for the integration tests and the `demo` command.
//!
//! Synchronous on purpose: it only drives `initdb`, `pg_ctl` and `psql`. As root it runs them as
//! the `postgres` OS user, because PostgreSQL refuses to run as root.

mod bin;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::pg::dsn::encode_component as enc;
pub use bin::find_bin_dir;
use bin::RunAs;

/// Failures of the ephemeral cluster, each naming what was tried.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: {searched}. Install them \
         with `apt-get update && apt-get install -y postgresql` (Debian/Ubuntu), or set PG_BIN to \
         the directory that holds them"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "running as root, but the `postgres` OS user to run PostgreSQL as is missing ({0}); \
         PostgreSQL refuses to run as root. Install Debian's postgresql package (it creates the \
         user) or run `useradd --system --home /var/lib/postgresql postgres`"
    )]
    NoPostgresUser(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("PostgreSQL did not start: {reason}\n--- server log (tail) ---\n{log}")]
    Start { reason: String, log: String },
    #[error("psql failed on {sql:?}: {stderr}")]
    Psql { sql: String, stderr: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EphemeralError {
    let what = what.into();
    move |source| EphemeralError::Io { what, source }
}

/// How to build the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Short, so tests of keepalive handling do not wait a minute.
    pub wal_sender_timeout: Duration,
    /// pg_hba.conf lines. See [`Cluster::set_hba`] for the line that is always added.
    pub hba: Vec<String>,
    /// `(certificate PEM, private key PEM)`: turns `ssl` on with them.
    pub ssl: Option<(String, String)>,
    /// More `postgresql.conf` settings; they come last, so they win.
    pub extra_conf: Vec<(String, String)>,
    pub superuser: String,
    /// `fsync=off` (the default) makes a throwaway cluster much faster; its data does not need to
    /// survive an OS crash. Set it for tests that reason about durability across `kill -9`.
    pub fsync: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            wal_sender_timeout: Duration::from_secs(3),
            hba: default_hba(),
            ssl: None,
            extra_conf: Vec::new(),
            superuser: "postgres".to_string(),
            fsync: false,
        }
    }
}

/// Trust for everyone on the socket and on loopback, walsender connections included.
pub fn default_hba() -> Vec<String> {
    [
        "local all all trust",
        "local replication all trust",
        "host all all 127.0.0.1/32 trust",
        "host all all ::1/128 trust",
        "host replication all 127.0.0.1/32 trust",
        "host replication all ::1/128 trust",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// How to stop the server (`pg_ctl stop -m …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    Fast,
    Immediate,
}

/// A running (or stopped) throwaway cluster. Dropping it stops the server and deletes its files.
pub struct Cluster {
    // Fields drop after Drop::drop, so the server is stopped before the directory goes away.
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<RunAs>,
    port: u16,
    superuser: String,
    running: bool,
}

const HOST: &str = "127.0.0.1";
const START_TIMEOUT_SECS: u32 = 30;

impl Cluster {
    pub fn start(opts: ClusterOptions) -> Result<Cluster, EphemeralError> {
        let bin = find_bin_dir()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("fuse-pg-")
            .tempdir()
            .map_err(io("create a temp dir for the cluster"))?;
        if let Some(r) = &run_as {
            r.chown(dir.path())?;
        }
        let mut cluster = Cluster {
            dir,
            bin,
            run_as,
            port: 0,
            superuser: opts.superuser.clone(),
            running: false,
        };
        cluster.initdb()?;
        cluster.write_conf(&opts)?;
        cluster.write_file(&cluster.hba_path(), &hba_text(&opts.superuser, &opts.hba))?;
        // The port was free when we looked; another process may take it before the server
        // binds, so pick a new one and try again a few times.
        let mut attempt = 0;
        loop {
            cluster.port = free_port()?;
            cluster.append_conf(&[("port".to_string(), cluster.port.to_string())])?;
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < 4 && cluster.server_log().contains("could not bind") => {
                    tracing::debug!(error = %e, "port taken, retrying with another");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &str {
        HOST
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A `postgres://` URL for this cluster with `sslmode=disable`; append `&key=value` for more
    /// (a later `sslmode` overrides).
    pub fn url(&self, user: &str, password: Option<&str>, dbname: &str) -> String {
        let mut url = format!("postgres://{}", enc(user));
        if let Some(p) = password {
            let _ = write!(url, ":{}", enc(p));
        }
        let _ = write!(url, "@{HOST}:{}/{}?sslmode=disable", self.port, enc(dbname));
        url
    }

    pub fn superuser_url(&self) -> String {
        self.url(&self.superuser, None, "postgres")
    }

    /// Runs SQL as the superuser in database `postgres`; returns psql's unaligned, tuples-only
    /// output (`|` between columns). Several statements in one call run as one transaction.
    pub fn psql(&self, sql: &str) -> Result<String, EphemeralError> {
        self.psql_db("postgres", sql)
    }

    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String, EphemeralError> {
        // The unix socket, whose pg_hba line stays `trust` (see set_hba), so psql works whatever
        // the test does to TCP authentication.
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                &self.superuser,
                "-d",
                db,
            ])
            .args(["-c", sql]);
        clear_pg_env(&mut cmd);
        let out = cmd.output().map_err(io("run psql"))?;
        if !out.status.success() {
            return Err(EphemeralError::Psql {
                sql: sql.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Replaces pg_hba.conf with `lines` and reloads. A `local all <superuser> trust` line is
    /// always put first so [`Cluster::psql`] keeps working.
    pub fn set_hba(&self, lines: &[String]) -> Result<(), EphemeralError> {
        self.write_file(&self.hba_path(), &hba_text(&self.superuser, lines))?;
        self.pg_ctl(&["reload"]).map(|_| ())
    }

    pub fn stop(&mut self, mode: StopMode) -> Result<(), EphemeralError> {
        let m = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.pg_ctl(&["stop", "-w", "-m", m])?;
        self.running = false;
        Ok(())
    }

    /// Starts the server on the same data dir and port, waiting until it accepts connections.
    pub fn start_again(&mut self) -> Result<(), EphemeralError> {
        let log = self.log_path();
        let log = log.to_string_lossy();
        let timeout = START_TIMEOUT_SECS.to_string();
        if let Err(e) = self.pg_ctl(&["start", "-w", "-t", &timeout, "-l", &log]) {
            return Err(EphemeralError::Start {
                reason: e.to_string(),
                log: self.log_tail(),
            });
        }
        self.running = true;
        // pg_ctl -w watches the socket file; make sure TCP answers too.
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port).into();
        for _ in 0..100 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(EphemeralError::Start {
            reason: format!("nothing accepts TCP connections on {HOST}:{}", self.port),
            log: self.log_tail(),
        })
    }

    pub fn is_running(&self) -> bool {
        self.pg_ctl(&["status"]).is_ok()
    }

    /// The whole server log (empty when there is none yet).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.server_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn hba_path(&self) -> PathBuf {
        self.data_dir().join("pg_hba.conf")
    }

    fn initdb(&self) -> Result<(), EphemeralError> {
        let data = self.data_dir();
        let mut cmd = self.server_cmd("initdb");
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", &self.superuser, "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"]);
        run(cmd, "initdb").map(|_| ())
    }

    fn write_conf(&self, opts: &ClusterOptions) -> Result<(), EphemeralError> {
        let s = |k: &str, v: String| (k.to_string(), v);
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut conf = vec![
            s("listen_addresses", HOST.to_string()),
            s("unix_socket_directories", dir),
            s("wal_level", "logical".into()),
            s("max_replication_slots", "20".into()),
            s("max_wal_senders", "20".into()),
            s(
                "wal_sender_timeout",
                format!("{}ms", opts.wal_sender_timeout.as_millis()),
            ),
            s("fsync", if opts.fsync { "on" } else { "off" }.into()),
            s("shared_buffers", "32MB".into()),
        ];
        if let Some((cert, key)) = &opts.ssl {
            let cert_path = self.dir.path().join("server.crt");
            let key_path = self.dir.path().join("server.key");
            self.write_file(&cert_path, cert)?;
            self.write_file(&key_path, key)?;
            // The server refuses a key file that others can read.
            set_mode(&key_path, 0o600)?;
            conf.push(s("ssl", "on".into()));
            conf.push(s("ssl_cert_file", cert_path.to_string_lossy().into()));
            conf.push(s("ssl_key_file", key_path.to_string_lossy().into()));
        }
        conf.extend(opts.extra_conf.iter().cloned());
        self.append_conf(&conf)
    }

    fn append_conf(&self, settings: &[(String, String)]) -> Result<(), EphemeralError> {
        let path = self.data_dir().join("postgresql.conf");
        let mut text = String::from("\n");
        for (k, v) in settings {
            let _ = writeln!(text, "{k} = '{}'", v.replace('\'', "''"));
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        f.write_all(text.as_bytes())
            .map_err(io(format!("write {}", path.display())))
    }

    /// Writes a file the server must read, owned by the server's user.
    fn write_file(&self, path: &Path, text: &str) -> Result<(), EphemeralError> {
        std::fs::write(path, text).map_err(io(format!("write {}", path.display())))?;
        match &self.run_as {
            Some(r) => r.chown(path),
            None => Ok(()),
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, EphemeralError> {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).args(args);
        run(cmd, &format!("pg_ctl {}", args.join(" ")))
    }

    /// A command for a server binary, run as the server's user, from a directory it can enter.
    fn server_cmd(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(self.dir.path());
        clear_pg_env(&mut cmd);
        if let Some(r) = &self.run_as {
            r.apply(&mut cmd);
        }
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Always try: a test may have started the server behind our back, or panicked mid-way.
        let _ = self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("data_dir", &self.data_dir())
            .field("port", &self.port)
            .field("running", &self.running)
            .finish()
    }
}

fn hba_text(superuser: &str, lines: &[String]) -> String {
    let mut text = format!("local all {superuser} trust\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// The caller's PGHOST, PGSSLMODE, … must not steer our tools to another server.
fn clear_pg_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
}

fn run(mut cmd: Command, name: &str) -> Result<Output, EphemeralError> {
    let out = cmd.output().map_err(io(format!("run {name}")))?;
    if out.status.success() {
        return Ok(out);
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(EphemeralError::Command {
        command: name.to_string(),
        status: out.status.to_string(),
        stderr,
    })
}

fn free_port() -> Result<u16, EphemeralError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("find a free port"))?;
    let port = l.local_addr().map_err(io("find a free port"))?.port();
    Ok(port)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), EphemeralError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))
}
