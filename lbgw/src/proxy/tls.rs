//! TLS termination for HTTPS listeners: SNI picks the listener, and so the certificate.
//!
//! The handshake is started lazily: the ClientHello is read first, its server name chooses
//! the most specific HTTPS listener of the connection's port, and that listener's
//! certificate answers. TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1` (RFC 7301).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::error::ProxyError;
use crate::gateway::{ListenerModel, ListenerProtocol};
use crate::route::hostname::normalize_host;

/// How long a client may take to complete the handshake.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Cached server configurations beyond which the cache starts over (after many reloads).
const MAX_CACHED_CONFIGS: usize = 1024;

/// The index, among `listeners`, of the HTTPS listener with a certificate that serves
/// `name`, the most specific first: GatewaySpec.listeners "Exact matches MUST be processed
/// before wildcard matches, and wildcard matches MUST be processed before fallback (empty
/// Hostname value) matches", and between wildcards the one with more labels. Without a name
/// (no SNI, or an IP address) only a listener without hostname serves. Ties go to the first.
pub fn select_listener<'a>(
    listeners: impl IntoIterator<Item = (usize, &'a ListenerModel)>,
    name: Option<&str>,
) -> Option<usize> {
    let name = name.map(normalize_host).unwrap_or_default();
    let name = name.trim_end_matches('.');
    let mut best = None;
    for (index, listener) in listeners {
        if listener.protocol != ListenerProtocol::Https || listener.certificate.is_none() {
            continue;
        }
        let Some(score) = listener.hostname.listener_score(name) else {
            continue;
        };
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, index));
        }
    }
    best.map(|(_, index)| index)
}

/// A cached configuration with the certificate it presents.
type CachedConfig = (Arc<CertifiedKey>, Arc<ServerConfig>);

/// Server configurations, one per certificate, kept across connections so that session
/// resumption works and configurations are not rebuilt for every handshake.
#[derive(Debug, Default)]
pub struct TlsConfigs {
    /// Keyed by the certificate's address; the entry holds the `Arc` so the address stays
    /// taken while it is cached.
    cache: Mutex<HashMap<usize, CachedConfig>>,
}

impl TlsConfigs {
    /// The configuration that presents `cert`.
    pub fn config_for(&self, cert: &Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, rustls::Error> {
        let key = Arc::as_ptr(cert) as usize;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, config)) = cache.get(&key) {
            return Ok(Arc::clone(config));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::clone(cert))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if cache.len() >= MAX_CACHED_CONFIGS {
            cache.clear();
        }
        cache.insert(key, (Arc::clone(cert), Arc::clone(&config)));
        Ok(config)
    }

    /// Forgets the configurations of certificates `model` no longer has (after a reload,
    /// e.g. a rotated Secret): new handshakes present the new certificate, connections made
    /// with the old one go on.
    pub fn retain(&self, model: &crate::gateway::GatewayModel) {
        let live: std::collections::HashSet<usize> = model
            .listeners()
            .filter_map(|l| l.certificate.as_ref())
            .map(|c| Arc::as_ptr(c) as usize)
            .collect();
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| live.contains(key));
    }
}

/// The reason label of a failed handshake, for `lbgw_tls_handshake_failures_total`.
pub fn failure_reason(err: &ProxyError) -> &'static str {
    match err {
        ProxyError::NoCertificate { .. } => "no_certificate",
        ProxyError::Handshake { source, .. } => {
            if source.kind() == std::io::ErrorKind::TimedOut {
                return "timeout";
            }
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                return "eof";
            }
            match source
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::AlertReceived(_)) => "alert_received",
                Some(rustls::Error::NoApplicationProtocol) => "no_application_protocol",
                Some(rustls::Error::PeerIncompatible(_)) => "peer_incompatible",
                Some(rustls::Error::InvalidMessage(_)) => "invalid_message",
                Some(_) => "protocol_error",
                None => "io_error",
            }
        }
        _ => "other",
    }
}

/// Always the same certificate: the listener was chosen before the handshake went on.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Completes the handshake on `io`, choosing among `listeners` (index, listener) by SNI.
/// Returns the stream and the index of the chosen listener.
pub async fn accept<'a, IO>(
    io: IO,
    peer: SocketAddr,
    listeners: impl IntoIterator<Item = (usize, &'a ListenerModel)>,
    configs: &TlsConfigs,
) -> Result<(TlsStream<IO>, usize), ProxyError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        let handshake_err = |source| ProxyError::Handshake { peer, source };
        let start = LazyConfigAcceptor::new(Acceptor::default(), io)
            .await
            .map_err(handshake_err)?;
        let sni = start.client_hello().server_name().map(str::to_owned);
        let candidates: Vec<(usize, &ListenerModel)> = listeners.into_iter().collect();
        let index = select_listener(candidates.iter().copied(), sni.as_deref())
            .ok_or_else(|| ProxyError::NoCertificate { sni: sni.clone() })?;
        let cert = candidates
            .iter()
            .find(|(i, _)| *i == index)
            .and_then(|(_, l)| l.certificate.as_ref())
            .ok_or(ProxyError::NoCertificate { sni })?;
        let config = configs
            .config_for(cert)
            .map_err(|e| handshake_err(std::io::Error::other(e)))?;
        let stream = start.into_stream(config).await.map_err(handshake_err)?;
        Ok((stream, index))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|elapsed| ProxyError::Handshake {
            peer,
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, elapsed),
        })?
}
