//! The model loader: one thread of its own that scans the repository every
//! `models.poll_ms` and when the admin call asks (`POST /admin/models/reload`), loads
//! and warms new versions and frees replaced ones — all off the serving threads.

use super::repo::{Models, ScanReport};
use recd_runtime::RecdError;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long an admin reload waits for its scan (a large ONNX graph optimises for a while).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A handle on the loader thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct ModelLoader {
    models: Arc<Models>,
    asks: mpsc::Sender<oneshot::Sender<ScanReport>>,
}

impl ModelLoader {
    /// Starts the thread; its first scan happens after `poll` (the node scans once
    /// itself before it serves).
    pub fn spawn(models: Arc<Models>, poll: Duration) -> std::io::Result<Self> {
        let (asks, rx) = mpsc::channel::<oneshot::Sender<ScanReport>>();
        let m = Arc::clone(&models);
        std::thread::Builder::new()
            .name("recd-models".into())
            .spawn(move || loop {
                let waiting = match rx.recv_timeout(poll) {
                    Ok(first) => std::iter::once(first).chain(rx.try_iter()).collect(),
                    Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let report = m.scan();
                for w in waiting {
                    let _ = w.send(report.clone());
                }
                m.release_retired();
            })?;
        Ok(Self { models, asks })
    }

    /// The models the thread loads into.
    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    /// Scans now and answers what it did.
    pub async fn reload(&self) -> Result<ScanReport, RecdError> {
        let (tx, rx) = oneshot::channel();
        (self.asks.send(tx)).map_err(|_| RecdError::unavailable("the model loader has stopped"))?;
        match tokio::time::timeout(RELOAD_TIMEOUT, rx).await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(_)) => Err(RecdError::unavailable("the model loader has stopped")),
            Err(_) => Err(RecdError::deadline(
                "the model scan did not finish in 120 s",
            )),
        }
    }
}
