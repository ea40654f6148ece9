//! Helpers shared by the integration tests: clusters with chosen auth, TLS material.
#![allow(dead_code)]

use fuse_cdc_bridge::ephemeral::{Cluster, ClusterOptions};

pub fn cluster() -> Cluster {
    cluster_with(ClusterOptions::default())
}

pub fn cluster_with(opts: ClusterOptions) -> Cluster {
    match Cluster::start(opts) {
        Ok(c) => c,
        Err(e) => panic!("starting the ephemeral cluster: {e}"),
    }
}

/// pg_hba lines that require `method` on loopback TCP for normal and walsender connections.
pub fn hba(method: &str) -> Vec<String> {
    vec![
        format!("host all all 127.0.0.1/32 {method}"),
        format!("host replication all 127.0.0.1/32 {method}"),
    ]
}
