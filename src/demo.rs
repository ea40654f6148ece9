//! `demo`: the real bridge, end to end, on a laptop with only PostgreSQL's server binaries.
//!
//! A throwaway cluster gets the reference Fuse schema; a loopback receiver stands in for two
//! customer systems; the bridge runs in-process through [`crate::app::run`] with a configuration
//! written as TOML text, exactly as an operator would write it; a generator plays Fuse (sign-ups,
//! profile edits, plans, enrolments, SCORM, attendance, and bookkeeping writes that must send
//! nothing). Each webhook is printed as it arrives, then a summary. Everything is removed on exit.

mod activity;
mod arrival;
mod endpoints;
mod expect;
mod session;
mod summary;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::ephemeral::{Cluster, ClusterOptions};
use crate::Error;

/// The reference schema, embedded so the demo runs from any directory.
pub const FUSE_SCHEMA: &str = include_str!("../sql/fuse_schema.sql");

const TABLES: &[&str] = &[
    "users",
    "learning_plans",
    "learning_plan_enrollments",
    "scorm_attempts",
    "event_attendances",
];

/// Runs the demo until `shutdown` or, once activity has started, for `duration`.
pub async fn run(duration: Option<Duration>, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    println!("Starting a throwaway PostgreSQL cluster…");
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default()))
        .await
        .map_err(|e| Error::definite(format!("the cluster start task failed: {e}"), None))??;
    // The temp dir that holds the data directory, the socket and the log: all of it goes on drop.
    let cluster_dir = cluster
        .data_dir()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster.data_dir());
    println!(
        "PostgreSQL from {} on 127.0.0.1:{}, files in {}",
        cluster.bin_dir().display(),
        cluster.port(),
        cluster_dir.display()
    );
    let result = session::run(&cluster, duration, shutdown).await;
    // `pg_ctl stop` blocks for a moment; keep it off the async workers.
    let stopped = tokio::task::spawn_blocking(move || drop(cluster)).await;
    if stopped.is_ok() && !cluster_dir.exists() {
        println!("Stopped PostgreSQL and removed {}.", cluster_dir.display());
    } else {
        println!(
            "warning: could not remove {}; delete it by hand.",
            cluster_dir.display()
        );
    }
    result
}
