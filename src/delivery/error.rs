//! Why an endpoint's HTTP client could not be set up. These are configuration or environment
//! problems found at start, so each says what to change.

use super::signing::SigningKeyError;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("endpoint `{endpoint}`: secret: {source}")]
    Secret {
        endpoint: String,
        #[source]
        source: SigningKeyError,
    },
    #[error("endpoint `{endpoint}`: no trusted CA certificates for its https url ({detail}); install the system CA bundle (the ca-certificates package) or set SSL_CERT_FILE to a PEM file of CA certificates")]
    NoRootCertificates { endpoint: String, detail: String },
    #[error("endpoint `{endpoint}`: cannot set up TLS: {detail}")]
    Tls { endpoint: String, detail: String },
    #[error("endpoint `{endpoint}`: cannot create the HTTP client: {detail}")]
    Client { endpoint: String, detail: String },
}
