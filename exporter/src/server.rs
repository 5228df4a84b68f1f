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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::basic_auth::{BasicAuth, Verdict};
use crate::metrics::Exposition;
use crate::routes::{self, Body, State};
use crate::status::StatusBoard;
use crate::web_config::WebConfig;

/// How long `serve` waits for in-flight connections once shutdown began.
/// ECS gives a container 30 s between SIGTERM and SIGKILL by default; this
/// stays well under it, leaving the agent time to flush its own state.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client must send its request headers within this time; it bounds what
/// an idle or stuck connection holds.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A client must finish the TLS handshake within this time.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The one path that never asks for credentials: the container health
/// check (`rpo-agent healthcheck`, ECS) has none.
pub const OPEN_PATH: &str = "/healthz";

/// The realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "rpo-agent";

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
/// Plain HTTP without authentication; see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    metrics: impl Into<Exposition>,
    board: StatusBoard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(listener, metrics, board, None, shutdown).await
}

/// What the web configuration file asks of the server, ready to use.
#[derive(Clone, Default)]
struct Web {
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<BasicAuth>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl Web {
    fn of(web: Option<&WebConfig>) -> Web {
        let Some(w) = web else {
            return Web::default();
        };
        let auth = (!w.users.is_empty()).then(|| {
            let a = Arc::new(BasicAuth::new(w.users.clone()));
            a.prepare();
            a
        });
        Web {
            tls: w.tls.clone().map(TlsAcceptor::from),
            auth,
            headers: Arc::new(w.headers.clone()),
        }
    }
}

/// As [`serve`], with the web configuration file's TLS (a handshake, within
/// [`TLS_HANDSHAKE_TIMEOUT`], before HTTP/1 on every connection), basic
/// auth in front of every route but [`OPEN_PATH`], and extra headers.
///
/// Accept errors (e.g. too many open files) are logged and retried, never
/// fatal: losing the metrics endpoint would hide exactly the incident that
/// caused the pressure. A failed handshake only ends its connection.
pub async fn serve_with(
    listener: TcpListener,
    metrics: impl Into<Exposition>,
    board: StatusBoard,
    web: Option<WebConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = State {
        exposition: metrics.into(),
        board,
    };
    let web = Web::of(web.as_ref());
    let graceful = GracefulShutdown::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            tls = web.tls.is_some(),
            basic_auth = web.auth.is_some(),
            "HTTP server listening"
        );
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
        let (state, web) = (state.clone(), web.clone());
        // Counted from now: a handshake in flight delays shutdown (up to the grace).
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match web.tls.clone() {
                None => connection(stream, peer, state, web, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => connection(tls, peer, state, web, watcher).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(
                            %peer,
                            timeout = ?TLS_HANDSHAKE_TIMEOUT,
                            "TLS handshake timed out"
                        ),
                    }
                }
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

/// Serves HTTP/1 on one (plain or TLS) connection until it ends.
async fn connection<I>(io: I, peer: SocketAddr, state: State, web: Web, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let (state, web) = (state.clone(), web.clone());
        async move {
            let mut resp = match authorize(&web, &req, peer).await {
                Some(refusal) => refusal,
                None => routes::route(&state, &req),
            };
            for (name, value) in web.headers.iter() {
                resp.headers_mut().insert(name.clone(), value.clone());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        // Clients hanging up mid-request is routine; not worth a warning.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// `None` when the request may go on; else the refusal to send (401, or
/// 503 when too many verifications wait). Never logs what was sent.
async fn authorize<B>(web: &Web, req: &Request<B>, peer: SocketAddr) -> Option<Response<Body>> {
    let auth = web.auth.as_ref()?;
    if req.uri().path() == OPEN_PATH {
        return None;
    }
    let verdict = auth.check(req.headers().get(AUTHORIZATION)).await;
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
        *r.status_mut() = status;
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    match verdict {
        Verdict::Allowed => None,
        Verdict::Busy => {
            tracing::warn!(%peer, "too many basic-auth checks in flight; answering 503");
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many authentication attempts at once; retry\n",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            Some(r)
        }
        refused => {
            tracing::debug!(%peer, path = req.uri().path(), reason = ?refused, "basic auth refused");
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                "unauthorized: this agent needs basic auth (basic_auth_users of its web_config)\n",
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(concat!("Basic realm=\"", "rpo-agent", "\"")),
            );
            Some(r)
        }
    }
}
