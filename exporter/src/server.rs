//! The agent's HTTP server: accepts connections and hands requests to `routes`.
//!
//! Prometheus scrapes `/metrics`, ECS and Kubernetes probe `/healthz` and
//! `/readyz`, people open `/`. One task per connection (HTTP/1.1 only: the
//! clients are scrapers and browsers on a private network, nothing gains from
//! HTTP/2 here). Shutdown is graceful so that a scrape in flight when the task
//! is stopped still gets its last, most interesting sample.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::Exposition;
use crate::routes::{self, State};
use crate::status::StatusBoard;

/// How long `serve` waits for in-flight connections once shutdown began.
/// ECS gives a container 30 s between SIGTERM and SIGKILL by default; this
/// stays well under it, leaving the agent time to flush its own state.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client must send its request headers within this time; it bounds what
/// an idle or stuck connection holds.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start or run. Each message names the address
/// and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: another process listens on {addr}; change [agent] listen (or stop the other process)")]
    AddrInUse { addr: String },

    #[error("cannot listen on {addr}: permission denied (ports below 1024 need privileges); change [agent] listen to a port such as 9464")]
    PermissionDenied { addr: String },

    #[error("cannot listen on {addr}: that address is not one of this machine's; change [agent] listen (0.0.0.0:PORT listens on all of them)")]
    AddrNotAvailable { addr: String },

    #[error(
        "cannot listen on {addr}: {source}; [agent] listen must be HOST:PORT, e.g. 0.0.0.0:9464"
    )]
    InvalidAddr { addr: String, source: io::Error },

    #[error("cannot listen on {addr}: {source}; check [agent] listen")]
    Bind { addr: String, source: io::Error },
}

/// Binds the listening socket. Separate from `serve` so that the agent fails
/// fast at start-up (before probing anything) and so that tests can bind
/// `127.0.0.1:0` and learn the port.
pub async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| {
        let addr = addr.to_string();
        match source.kind() {
            io::ErrorKind::AddrInUse => ServerError::AddrInUse { addr },
            io::ErrorKind::PermissionDenied => ServerError::PermissionDenied { addr },
            io::ErrorKind::AddrNotAvailable => ServerError::AddrNotAvailable { addr },
            // Unparsable "host:port", or a host name that does not resolve.
            io::ErrorKind::InvalidInput => ServerError::InvalidAddr { addr, source },
            _ if source.raw_os_error().is_none() => ServerError::InvalidAddr { addr, source },
            _ => ServerError::Bind { addr, source },
        }
    })
}

/// Serves the routes on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to [`SHUTDOWN_GRACE`] for connections in flight.
///
/// Accept errors (e.g. too many open files) are logged and retried, never
/// fatal: losing the metrics endpoint would hide exactly the incident that
/// caused the pressure.
pub async fn serve(
    listener: TcpListener,
    metrics: impl Into<Exposition>,
    board: StatusBoard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = State {
        exposition: metrics.into(),
        board,
    };
    let graceful = GracefulShutdown::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP server listening");
    }
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            // Shutdown first: once asked to stop, take no new connection.
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection; retrying");
                    // Back off so that a persistent error (EMFILE) does not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let resp = routes::route(&state, &req);
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Clients hanging up mid-request is routine; not worth a warning.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    // Closing the listener now makes new clients fail fast instead of queueing.
    drop(listener);
    tracing::info!("HTTP server stopping; draining connections in flight");
    match tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await {
        Ok(()) => tracing::info!("HTTP server stopped"),
        Err(_) => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "HTTP server stopped with connections still open"
        ),
    }
    Ok(())
}
