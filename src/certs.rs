//! Certificates from PEM files: a chain and its private key, checked to belong together, as
//! rustls serves them (when the settings are validated — a bad pair is a configuration error
//! naming the file — and when the TLS listener re-reads them on SIGHUP); and extra trust roots
//! for `https://` backends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a certificate or key cannot be used: the file and the problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct CertError {
    pub file: PathBuf,
    pub problem: String,
}

/// The certificates of a PEM file of trust roots (at least one).
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let fail = |problem: String| CertError {
        file: path.to_path_buf(),
        problem,
    };
    let roots = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate file: {e}")))?;
    if roots.is_empty() {
        return Err(fail("no CERTIFICATE block in the file".into()));
    }
    Ok(roots)
}

/// Reads `cert` (a PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let fail = |file: &Path, problem: String| CertError {
        file: file.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(fail(cert, "no CERTIFICATE block in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| fail(key, format!("no usable PEM private key: {e}")))?;
    let signer = any_supported_type(&private)
        .map_err(|e| fail(key, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        fail(
            key,
            format!(
                "does not belong to the certificate in {}: {e}",
                cert.display()
            ),
        )
    })?;
    Ok(Arc::new(certified))
}
