//! Mutual TLS on the cluster port (docs/adr/0022). Both sides present a certificate the
//! cluster's CA signed; ractor_cluster's cookie check runs inside the encrypted session.
//!
//! ```text
//! peer ──TCP──► accept loop (this module, cluster.listen) ── handshake ≤ 5 s, ≤ 64 at once
//!                      │ client certificate verified against cluster.tls.ca
//!                      └── NetworkStream::TlsServer ──► NodeServer (cookie, session)
//! seed loop ── dial ── handshake ≤ 5 s (server name = the seed's host) ──► NodeServer
//! ```
//!
//! The files are read again every `cluster.tls.reload_ms` ([`ClusterTls::watch`]):
//! renewed contents that load are used by the next handshake either way; open sessions
//! keep theirs; contents that do not load are reported once and the old ones stay.
//!
//! recd accepts connections itself rather than handing ractor_cluster the acceptor: its
//! listener awaits each handshake in turn, so one peer that opens a connection and sends
//! nothing would stall every other join. ractor_cluster's own listener is bound to an
//! ephemeral loopback port (with TLS too) and is not announced.

use anyhow::Context;
use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsFiles;

/// Longest a TCP connect plus TLS handshake may take, either way.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// Handshakes in progress at once on the accept side; more connections wait.
const MAX_HANDSHAKES: usize = 64;

/// The acceptor and connector of one node, from its PEM files. Clones share them:
/// [`ClusterTls::watch`] swaps in a renewed certificate for every clone at once.
#[derive(Clone)]
pub struct ClusterTls {
    files: TlsFiles,
    current: Arc<RwLock<Loaded>>,
}

/// What one reading of the files made.
#[derive(Clone)]
struct Loaded {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// The three files' bytes this was made from, or that last failed to load (so a bad
    /// renewal is reported once, not every poll).
    seen: Arc<[Vec<u8>; 3]>,
}

impl ClusterTls {
    /// Loads the CA, this node's chain and key; refuses unreadable or empty files.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        let bytes = read(files)?;
        let (acceptor, connector) = configs(files, &bytes)?;
        let current = Loaded {
            acceptor,
            connector,
            seen: Arc::new(bytes),
        };
        Ok(Self {
            files: files.clone(),
            current: Arc::new(RwLock::new(current)),
        })
    }

    /// The server side now: requires a client certificate from the CA.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.now().acceptor
    }

    fn now(&self) -> Loaded {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again: `Ok(true)` when their contents changed and loaded (new
    /// handshakes use them; open sessions keep theirs), `Ok(false)` when nothing changed,
    /// `Err` when changed contents do not load (the previous certificate stays).
    pub fn reload(&self) -> anyhow::Result<bool> {
        let bytes = read(&self.files)?;
        if *self.now().seen == bytes {
            return Ok(false);
        }
        let loaded = configs(&self.files, &bytes);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        current.seen = Arc::new(bytes);
        let (acceptor, connector) = loaded?;
        (current.acceptor, current.connector) = (acceptor, connector);
        Ok(true)
    }

    /// Reloads every `cluster.tls.reload_ms` (never when 0) until the task is dropped;
    /// file reads and parsing run on a blocking thread.
    pub async fn watch(self) {
        if self.files.reload_ms == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(self.files.reload_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.reload()).await {
                Ok(Ok(true)) => tracing::info!(
                    cert = %self.files.cert.display(),
                    "cluster TLS reloaded: new handshakes present the renewed certificate"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "cluster TLS files changed but do not load: the previous certificate stays"
                ),
                Err(e) => tracing::error!(error = %e, "cluster TLS reload task failed"),
            }
        }
    }

    /// Dials `seed` (`host:port`), verifies it as `host`, and hands the session to the
    /// node server. Bounded by [`HANDSHAKE`].
    pub async fn connect(
        &self,
        server: &ActorRef<NodeServerMessage>,
        seed: &str,
    ) -> anyhow::Result<()> {
        let (host, _) = seed.rsplit_once(':').context("seed without a port")?;
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .with_context(|| format!("seed {seed}: not a server name"))?;
        let dial = async {
            let tcp = TcpStream::connect(seed).await?;
            tcp.set_nodelay(true)?;
            let (peer_addr, local_addr) = (tcp.peer_addr()?, tcp.local_addr()?);
            let stream = self.now().connector.connect(name, tcp).await?;
            anyhow::Ok(NetworkStream::TlsClient {
                peer_addr,
                local_addr,
                stream,
            })
        };
        let stream = tokio::time::timeout(HANDSHAKE, dial)
            .await
            .map_err(|_| anyhow::anyhow!("connect and handshake took over {HANDSHAKE:?}"))??;
        server.cast(NodeServerMessage::ConnectionOpened {
            stream: Box::new(stream),
            is_server: false,
        })?;
        tracing::info!("TCP Session opened for {seed} (TLS, dialled)");
        Ok(())
    }

    /// Accepts peers on `listener` until the node server stops: each handshake on its own
    /// task, bounded in time and in number; a peer that fails it is logged and dropped.
    pub async fn serve(self, listener: TcpListener, server: ActorRef<NodeServerMessage>) {
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (tcp, peer_addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, server) = (self.acceptor(), server.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match accept(&acceptor, tcp, peer_addr).await {
                    Ok(stream) => {
                        let opened = NodeServerMessage::ConnectionOpened {
                            stream: Box::new(stream),
                            is_server: true,
                        };
                        let _ = server.cast(opened);
                        tracing::info!("TCP Session opened for {peer_addr} (TLS, accepted)");
                    }
                    Err(e) => {
                        tracing::warn!(%peer_addr, error = %e, "cluster peer refused: TLS handshake failed")
                    }
                }
            });
        }
    }
}

async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer_addr: SocketAddr,
) -> anyhow::Result<NetworkStream> {
    tcp.set_nodelay(true)?;
    let local_addr = tcp.local_addr()?;
    let stream = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp))
        .await
        .map_err(|_| anyhow::anyhow!("no handshake within {HANDSHAKE:?}"))??;
    Ok(NetworkStream::TlsServer {
        peer_addr,
        local_addr,
        stream,
    })
}

/// The bytes of the CA, certificate and key files.
fn read(files: &TlsFiles) -> anyhow::Result<[Vec<u8>; 3]> {
    let read = |what: &str, p: &Path| {
        std::fs::read(p).with_context(|| format!("cluster.tls.{what}: reading {}", p.display()))
    };
    Ok([
        read("ca", &files.ca)?,
        read("cert", &files.cert)?,
        read("key", &files.key)?,
    ])
}

/// The server and client configurations of `[ca, cert, key]` (PEM bytes of `files`).
fn configs(
    files: &TlsFiles,
    [ca, cert, key]: &[Vec<u8>; 3],
) -> anyhow::Result<(TlsAcceptor, TlsConnector)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&files.ca, ca)? {
        roots
            .add(ca)
            .context("cluster.tls.ca: not a usable CA certificate")?;
    }
    let roots = Arc::new(roots);
    let chain = certs(&files.cert, cert)?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .with_context(|| format!("cluster.tls.key: no private key in {}", files.key.display()))?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .context("cluster.tls.ca: client verifier")?;
    // our own chain must pass the check peers make of it: a certificate of another CA (or
    // expired) is refused here, not at every handshake after it was swapped in
    let (leaf, intermediates) = chain.split_first().context("cluster.tls.cert: empty")?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(|e| {
            anyhow::anyhow!(
                "cluster.tls.cert {} does not verify against cluster.tls.ca {}: {e}",
                files.cert.display(),
                files.ca.display()
            )
        })?;
    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .context("cluster.tls.cert/key: they do not match")?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("cluster.tls.cert/key: they do not match")?;
    Ok((
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    ))
}

/// Every certificate of the PEM `bytes` read from `path` (at least one).
fn certs(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let all: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(bytes).collect();
    let all = all.with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(!all.is_empty(), "{}: no certificate", path.display());
    Ok(all)
}
