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

/// A test CA that signs server certificates.
pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        Ca {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate into `dir` and returns its path (for `sslrootcert`).
    pub fn write(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// `(certificate PEM, key PEM)` for a server known by `names` (DNS names or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test server");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

pub mod bridge;
pub mod walsender;
pub mod webhooks;
pub mod workload;
