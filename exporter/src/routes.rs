//! Maps a request to its response: the agent's five routes.
//!
//! Kept apart from the connection handling in `server` so that routing is a
//! plain function of (method, path, shared state), with no I/O of its own:
//! every handler only reads the metrics or the status board.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::metrics::{Chunks, Exposition};
use crate::page;
use crate::status::{ReplicaStatus, StatusBoard};

/// Content type of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// What every handler may read. Cloning is cheap (both are `Arc` inside).
#[derive(Clone)]
pub(crate) struct State {
    pub exposition: Exposition,
    pub board: StatusBoard,
}

/// A whole answer, or `/metrics` sent in pieces as it is written.
pub(crate) type Body = Either<Full<Bytes>, MetricsBody>;

/// Answers one request. Never fails: problems become 4xx/5xx responses.
pub(crate) fn route<B>(state: &State, req: &Request<B>) -> Response<Body> {
    // HEAD is answered like GET; hyper drops the body and keeps the headers.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET\n",
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/metrics" => metrics(&state.exposition),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readyz(&state.board),
        "/" => respond(
            StatusCode::OK,
            HTML,
            page::render(
                &state.board.agent_id(),
                &state.board.version(),
                state.board.is_ready(),
                &state.board.snapshot(),
            ),
        ),
        "/status.json" => status_json(&state.board),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /, /metrics, /status.json, /healthz or /readyz\n",
        ),
    }
}

/// Small answers go whole (with a `Content-Length`); a large one (many
/// targets) is written piece by piece while hyper sends it (chunked).
fn metrics(exposition: &Exposition) -> Response<Body> {
    match exposition.chunks() {
        Ok(mut chunks) => {
            let first = chunks.next_chunk().unwrap_or_default();
            if chunks.is_done() {
                return respond(StatusCode::OK, METRICS_CONTENT_TYPE, first);
            }
            let mut resp = Response::new(Either::Right(MetricsBody {
                first: Some(first),
                rest: chunks,
            }));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            // Only possible with an inconsistent metric family, i.e. a bug.
            tracing::error!(error = %e, "cannot encode metrics");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}\n"),
            )
        }
    }
}

fn readyz(board: &StatusBoard) -> Response<Body> {
    if board.is_ready() {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the targets' start-up checks have not all finished\n",
        )
    }
}

/// One row of `/status.json`: the board's status plus the verdict the page shows.
#[derive(Serialize)]
struct JsonReplica {
    #[serde(flatten)]
    status: ReplicaStatus,
    within_objective: bool,
}

#[derive(Serialize)]
struct JsonStatus {
    agent_id: String,
    version: String,
    ready: bool,
    replicas: Vec<JsonReplica>,
}

fn status_json(board: &StatusBoard) -> Response<Body> {
    let doc = JsonStatus {
        agent_id: board.agent_id(),
        version: board.version(),
        ready: board.is_ready(),
        replicas: board
            .snapshot()
            .into_iter()
            .map(|status| JsonReplica {
                within_objective: status.within_objective(),
                status,
            })
            .collect(),
    };
    match serde_json::to_vec_pretty(&doc) {
        Ok(body) => respond(StatusCode::OK, JSON, body),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode status: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, TEXT, body)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Either::Left(Full::new(body.into())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Every answer is "now"; a cached status page during an incident misleads.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The body of a large `/metrics` answer: each poll writes the next piece.
pub(crate) struct MetricsBody {
    first: Option<String>,
    rest: Chunks,
}

impl hyper::body::Body for MetricsBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let next = this.first.take().or_else(|| this.rest.next_chunk());
        std::task::Poll::Ready(next.map(|c| Ok(hyper::body::Frame::data(Bytes::from(c)))))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_done()
    }
}
