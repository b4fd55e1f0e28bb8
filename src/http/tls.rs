//! The TLS listener's configuration: rustls (TLS 1.2 and 1.3, the `ring` provider) serving the
//! certificate in a [`CertSlot`], which SIGHUP refills from the files ([`TlsReloader`]) so new
//! handshakes use the new pair while open connections keep theirs. actix-http adds ALPN `h2` and
//! `http/1.1`, so HTTP/2 clients are served HTTP/2. Connections that came in over TLS carry a
//! [`ViaTls`] marker, which the proxy turns into `X-Forwarded-Proto: https`.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::certs::{self, CertError};
use crate::settings::TlsSettings;

/// Marks a connection that came in over TLS (in the connection's extensions).
#[derive(Debug, Clone, Copy)]
pub struct ViaTls;

/// The certificate new handshakes get.
#[derive(Debug)]
pub struct CertSlot(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Re-reads the certificate and key into the slot.
#[derive(Debug, Clone)]
pub struct TlsReloader {
    slot: Arc<CertSlot>,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsReloader {
    /// Reads the files again (on the blocking pool); a bad pair is logged and the old one kept.
    pub async fn reload(&self) -> Result<(), CertError> {
        let (cert, key) = (self.cert.clone(), self.key.clone());
        let loaded = actix_rt::task::spawn_blocking(move || certs::load(&cert, &key))
            .await
            .unwrap_or_else(|err| {
                Err(CertError {
                    file: self.cert.clone(),
                    problem: err.to_string(),
                })
            });
        match loaded {
            Ok(certified) => {
                self.slot.0.store(certified);
                log::info!(
                    "TLS certificate reloaded from {}; new handshakes use it",
                    self.cert.display()
                );
                Ok(())
            }
            Err(err) => {
                log::error!("TLS certificate not reloaded, the old one stays: {err}");
                Err(err)
            }
        }
    }
}

/// The server configuration for `settings`, and the handle that reloads its certificate.
pub fn server_config(settings: &TlsSettings) -> (ServerConfig, TlsReloader) {
    let slot = Arc::new(CertSlot(ArcSwap::new(Arc::clone(&settings.certified))));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&slot) as Arc<dyn ResolvesServerCert>);
    let reloader = TlsReloader {
        slot,
        cert: settings.cert.clone(),
        key: settings.key.clone(),
    };
    (config, reloader)
}

/// `HttpServer::on_connect`: a connection that is not a plain TCP stream came through TLS.
pub fn mark_tls(connection: &dyn Any, extensions: &mut Extensions) {
    if connection.downcast_ref::<TcpStream>().is_none() {
        extensions.insert(ViaTls);
    }
}
