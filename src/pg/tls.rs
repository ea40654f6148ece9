//! rustls client configurations for each `sslmode`, with libpq's meaning:
//! `prefer`/`require` encrypt without checking the certificate, `verify-ca` checks the chain,
//! `verify-full` checks the chain and the host name. The ring provider is passed explicitly so
//! nothing depends on a process-wide default provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::dsn::{ConnectParams, SslMode};

/// Why no TLS configuration could be built (before any connection is tried).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read sslrootcert {path}: {source}")]
    ReadRootCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sslrootcert {path} holds no PEM certificate")]
    NoRootCert { path: PathBuf },
    #[error("sslrootcert {path} holds a certificate rustls rejects: {source}")]
    BadRootCert {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("no usable system root certificates for sslmode={mode} ({detail}); set sslrootcert to the CA that signed the server certificate")]
    NoSystemRoots { mode: SslMode, detail: String },
    #[error("building the TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration `params.sslmode` calls for; `None` for `disable`.
///
/// As in libpq, `require` with an explicit `sslrootcert` verifies the chain like `verify-ca`.
/// `sslrootcert=system` (or none, with verify-*) means the operating system's roots.
pub fn client_config(params: &ConnectParams) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match params.sslmode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer => Arc::new(NoVerify(provider.clone())),
        SslMode::Require if params.sslrootcert.is_none() => Arc::new(NoVerify(provider.clone())),
        SslMode::Require | SslMode::VerifyCa => Arc::new(ChainOnly {
            roots: Arc::new(roots(params)?),
            provider: provider.clone(),
        }),
        SslMode::VerifyFull => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(params)?), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// For tokio-postgres: `None` means connect with `NoTls`.
pub fn make_tls_connect(
    params: &ConnectParams,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, TlsError> {
    Ok(client_config(params)?
        .map(|c| tokio_postgres_rustls::MakeRustlsConnect::new(ClientConfig::clone(&c))))
}

/// The name the certificate is checked against; IP addresses are checked as IP SANs.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Config(format!("host {host:?} is not a valid TLS server name: {e}")))
}

fn roots(params: &ConnectParams) -> Result<RootCertStore, TlsError> {
    match &params.sslrootcert {
        Some(p) if p.as_os_str() != "system" => roots_from_file(p),
        _ => system_roots(params.sslmode),
    }
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadRootCert {
        path: path.to_path_buf(),
        source,
    })?;
    let mut store = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|source| TlsError::ReadRootCert {
            path: path.to_path_buf(),
            source,
        })?;
        store.add(cert).map_err(|source| TlsError::BadRootCert {
            path: path.to_path_buf(),
            source,
        })?;
    }
    if store.is_empty() {
        return Err(TlsError::NoRootCert {
            path: path.to_path_buf(),
        });
    }
    Ok(store)
}

fn system_roots(mode: SslMode) -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let detail = match found.errors.first() {
            Some(e) => e.to_string(),
            None => "none found".to_string(),
        };
        return Err(TlsError::NoSystemRoots { mode, detail });
    }
    Ok(store)
}

/// `prefer`/`require`: any certificate, but the handshake signatures are still checked so the
/// session really is keyed to the certificate the server sent.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
