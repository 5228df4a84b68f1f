//! Graceful shutdown, fanned out to every task (as in tokio's mini-redis).
//!
//! `main` owns the sender and flips it on SIGTERM/SIGINT; each task holds a
//! `Shutdown` and either polls `is_shutdown()` or awaits `recv()`.

use tokio::sync::watch;

/// A task's handle on the shutdown signal.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A new signal and the sender that triggers it.
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { rx })
    }

    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is requested (or the sender is gone).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|s| *s).await;
    }
}
