//! Certificates made by the tests (rcgen): a certificate authority, server certificates for
//! `localhost` and `127.0.0.1` signed by it, written as PEM files; and an awc client over rustls
//! that trusts only that authority and offers the ALPN protocols it is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;

/// A certificate authority of the tests' own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// Writes `{stem}.crt` and `{stem}.key` into `dir`: a server certificate signed by this CA.
    pub fn server_files(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        self.server_files_for(dir, stem, &["localhost", "127.0.0.1"])
    }

    /// The same for the names (DNS names or IP addresses) `names`.
    pub fn server_files_for(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let params = CertificateParams::new(names).expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// Writes the CA's certificate as `{stem}.pem` into `dir` (a `backends.ca_file`).
    pub fn ca_file(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, self.issuer.pem()).expect("write CA");
        path
    }

    /// Gives `settings` a TLS listener on 127.0.0.1:0 serving a fresh certificate of this CA.
    pub fn add_listener(&self, settings: &mut loadbalancer::Settings) {
        let (cert, key) = self.server_files(&super::fresh_dir(), "server");
        let certified = loadbalancer::settings::load_certificate(&cert, &key).expect("valid pair");
        settings.tls = Some(loadbalancer::settings::TlsSettings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert,
            key,
            certified,
        });
    }

    /// A server configuration with a fresh `localhost` certificate of this CA.
    pub fn server_config(&self) -> rustls::ServerConfig {
        self.server_config_for(&["localhost", "127.0.0.1"])
    }

    /// The same with a certificate for `names` only.
    pub fn server_config_for(&self, names: &[&str]) -> rustls::ServerConfig {
        let dir = super::fresh_dir();
        let (cert, key) = self.server_files_for(&dir, "backend", names);
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
            .expect("read")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config")
    }

    /// An HTTPS backend on 127.0.0.1 serving a certificate of this CA; it answers
    /// `https backend` to everything. Runs inside the current actix system.
    pub fn https_backend(&self) -> std::net::SocketAddr {
        let config = self.server_config();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new().default_service(actix_web::web::to(|| async { "https backend" }))
        })
        .workers(1)
        .disable_signals()
        .listen_rustls_0_23(listener, config)
        .expect("listen")
        .run();
        actix_rt::spawn(server);
        addr
    }

    /// A rustls client configuration that trusts only this CA and offers `alpn`.
    pub fn raw_client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("CA into the root store");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A client (its own connection pool, so every client makes a new handshake) that trusts
    /// only this CA and offers `alpn` (e.g. `[b"h2", b"http/1.1"]`).
    pub fn client(&self, alpn: &[&[u8]]) -> awc::Client {
        awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(self.raw_client_config(alpn)))
            .timeout(Duration::from_secs(10))
            .disable_redirects()
            .finish()
    }
}
