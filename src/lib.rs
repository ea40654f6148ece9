//! fuse-cdc-bridge: Fuse webhooks from PostgreSQL logical replication.
//!
//! # Layout
//!
//! - [`app`]: the `run` command: capture, detection, outbox and delivery wired together.
//! - [`config`]: the TOML file: structs, defaults, `${ENV}` interpolation, validation.
//! - [`pg`]: everything that speaks to PostgreSQL.
//!   - [`pg::dsn`]: connection strings (URL and `key=value`), sslmode.
//!   - [`pg::tls`]: rustls client configurations for each sslmode.
//!   - [`pg::wire`]: a framed socket: startup, authentication, simple queries, CopyBoth.
//!   - [`pg::replication`]: the walsender session: IDENTIFY_SYSTEM, START_REPLICATION, feedback.
//!   - [`pg::admin`]: ordinary SQL over tokio-postgres: prerequisites, slot, publication.
//! - [`pgoutput`]: pure decoding of pgoutput and the replication envelope; no I/O.
//! - [`dispatch`]: per endpoint, which outbox entry goes when (per-user order, retries).
//! - [`store`]: sled state: the checkpoint, the outbox per endpoint (fresh events in runs, several
//!   per sled value) and dead letters; the only place that knows key layouts.
//! - [`capture`]: replication + store: committed transactions, resumable after a crash.
//! - [`detect`]: the rules: row changes in, events out; the capture handler that stores them.
//! - [`preflight`]: `check` and `setup`: the database's prerequisites, findings and fixes.
//! - [`teardown`]: the `teardown` command: drop the slot (and publication) when nothing is owed.
//! - [`systemd`]: the unit file `systemd-unit` prints.
//! - [`tail`]: the `tail` command's JSON lines.
//! - [`dead_letters`]: the `dead-letters` command: list, retry, purge.
//! - [`status`]: the `status` command and `/admin/status`: checkpoint, slot, outbox, failures;
//!   reaching a running bridge over its admin routes.
//! - [`metrics`]: the Prometheus series, the lag sampler and the counting capture handler.
//! - [`http`]: the listener of `run`: `/metrics`, `/healthz`, `/readyz`, loopback-only `/admin`;
//!   and the admin client.
//! - [`demo`]: the `demo` command: a throwaway cluster, activity, and what the bridge captures.
//! - [`receiver`]: a loopback webhook receiver for the demo and the tests.
//! - [`ephemeral`]: a throwaway PostgreSQL cluster for the demo and the tests.
//! - [`event`]: events, their stable ids and their compact stored form.
//! - [`delivery`]: one event to one endpoint over HTTP: payloads, signing, retry policy.
//! - [`error`]: the top-level error, which knows whether it is transient or definite.
//! - [`lsn`]: the `Lsn` type.

pub mod app;
pub mod capture;
pub mod config;
pub mod dead_letters;
pub mod delivery;
pub mod demo;
pub mod detect;
pub mod dispatch;
pub mod ephemeral;
pub mod error;
pub mod event;
pub mod http;
pub mod lsn;
pub mod metrics;
pub mod pg;
pub mod pgoutput;
pub mod preflight;
pub mod receiver;
pub mod status;
pub mod store;
pub mod systemd;
pub mod tail;
pub mod teardown;

pub use error::Error;
pub use lsn::Lsn;
