//! HTTPS for the HTTP endpoint: `http.tls_cert` and `http.tls_key` (PEM).
//!
//! With both set, every component serves `/metrics`, `/healthz` and the
//! notifier's API over TLS only (rustls, TLS 1.2 and 1.3): PagerDuty's
//! maintained Python client and most webhook senders refuse plain `http://`.
//! The files are read once at start; a bad file stops the component with
//! the file's path and the reason, before it binds.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::{TlsAcceptor, rustls};

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("http.tls_cert {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("http.tls_key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("http.tls_cert and http.tls_key do not make a usable pair: {0}")]
    Pair(rustls::Error),
}

/// Reads the certificate chain (leaf first) and its private key.
pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    // Named explicitly: the dependency tree enables two crypto providers,
    // and rustls will not choose between them on its own.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Pair)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn a_certificate_and_its_key_make_an_acceptor() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path());
        acceptor(&cert, &key).unwrap();
    }

    #[test]
    fn bad_files_are_named_with_the_reason() {
        let error = |cert: &Path, key: &Path| match acceptor(cert, key) {
            Ok(_) => panic!("{} and {} were taken", cert.display(), key.display()),
            Err(e) => e.to_string(),
        };
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path());
        let missing = dir.path().join("missing.pem");
        let err = error(&missing, &key);
        assert!(
            err.starts_with("http.tls_cert ") && err.contains("missing.pem"),
            "{err}"
        );
        // Files swapped: the key file holds no certificate, and the
        // certificate file holds no key.
        let err = error(&key, &key);
        assert!(err.contains("key.pem") && err.contains("no PEM"), "{err}");
        let err = error(&cert, &cert);
        assert!(
            err.starts_with("http.tls_key ") && err.contains("cert.pem"),
            "{err}"
        );
        // A key that is not the certificate's.
        let other_dir = tempfile::tempdir().unwrap();
        let (_, other_key) = pair(other_dir.path());
        let err = error(&cert, &other_key);
        assert!(err.contains("usable pair"), "{err}");
    }
}
