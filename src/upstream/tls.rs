//! The one rustls client configuration for `https://` backends, built once at start: the
//! system's roots plus `backends.ca_file`, certificates verified for the URL's host (SNI), or
//! any certificate with `backends.tls_verify = false`. Proxied requests, tunnels and probes all
//! use it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::certs::{self, CertError};

/// The TLS configuration for `https://` backends: the system's roots and those of `ca_file`;
/// `verify = false` accepts any certificate (testing only; the caller logs it loudly). Backends
/// are spoken to over HTTP/1.1, so that is all ALPN offers. Blocking (reads the roots).
pub fn tls_config(ca_file: Option<&Path>, verify: bool) -> Result<Arc<ClientConfig>, CertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions");
    let mut config = if verify {
        let mut roots = RootCertStore::empty();
        let system = rustls_native_certs::load_native_certs();
        if let Some(err) = system.errors.first() {
            log::warn!("some system trust roots could not be read: {err}");
        }
        roots.add_parsable_certificates(system.certs);
        if let Some(path) = ca_file {
            for root in certs::load_roots(path)? {
                roots.add(root).map_err(|err| CertError {
                    file: path.to_path_buf(),
                    problem: format!("not a usable trust root: {err}"),
                })?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `backends.tls_verify = false`: any certificate is accepted (the handshake's signatures are
/// still checked, so the connection is encrypted to whoever holds the key it showed).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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

/// The name a backend's certificate must carry, and that TLS sends as SNI: its URL's host (an
/// IP address as such, without the brackets of an IPv6 literal).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|err| format!("{host} as a TLS server name: {err}"))
}
