//! The TLS listener's server configuration (rustls with the ring provider, like the agent's
//! client): a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).

use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;

use crate::BrokerError;

/// Loads the certificate and key into an acceptor; errors name the file and what to do.
pub fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, BrokerError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_path).and_then(Iterator::collect).map_err(|e| {
            BrokerError::Tls(format!("cannot read certificates from {}: {e}", cert_path.display()))
        })?;
    if certs.is_empty() {
        return Err(BrokerError::Tls(format!(
            "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        BrokerError::Tls(format!("cannot read a PEM private key from {}: {e}", key_path.display()))
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BrokerError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| BrokerError::Tls(format!("certificate and key do not fit together: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
