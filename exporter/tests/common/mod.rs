//! Shared by the integration tests: a real server on 127.0.0.1:0 and a raw
//! HTTP/1.1 client that reads status, headers and body off the socket.
//!
//! The raw client is deliberately not `healthcheck::get_text`, so that the
//! server is checked by something other than our own client code.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use rpo_exporter::{Exposition, ReplicaLabels, ReplicaStatus, StatusBoard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    pub board: StatusBoard,
    stop: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<Result<(), rpo_exporter::ServerError>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Resolves the shutdown future given to `serve`.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Triggers shutdown and waits (bounded) for `serve` to return.
    pub async fn stop(mut self) {
        self.trigger_shutdown();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("serve did not return within 10 s of shutdown")
            .expect("serve panicked")
            .expect("serve failed");
    }
}

/// Serves `metrics` (a `Registry`, or `Metrics::exposition()`) and `board`.
pub async fn start(metrics: impl Into<Exposition>, board: StatusBoard) -> Running {
    let listener = rpo_exporter::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(rpo_exporter::serve(
        listener,
        metrics.into(),
        board.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        addr,
        board,
        stop: Some(tx),
        handle,
    }
}

pub fn labels(target: &str, kind: &str) -> ReplicaLabels {
    ReplicaLabels {
        target: target.into(),
        kind: kind.into(),
        source_region: "ap-northeast-1".into(),
        replica_region: "ap-northeast-3".into(),
    }
}

/// Two pairs: "orders" healthy and within objective, "invoices" breaching
/// with an error message that tries to inject a script.
pub fn populated_board() -> StatusBoard {
    let board = StatusBoard::new("task-0123abcd", "0.1.0");
    let l = labels("orders", "dynamodb");
    let mut ok = ReplicaStatus::new(&l, 60.0);
    ok.rpo_seconds = Some(1.234);
    ok.upper_bound_seconds = Some(3.9);
    ok.last_lag_seconds = Some(0.84);
    ok.last_uncertainty_seconds = Some(0.12);
    ok.pending = 1;
    ok.written = 1520;
    ok.observed = 1519;
    ok.up = true;
    board.update(&l, ok);

    let l = labels("invoices", "s3");
    let mut bad = ReplicaStatus::new(&l, 900.0);
    bad.rpo_seconds = Some(1245.0);
    bad.upper_bound_seconds = Some(1250.5);
    bad.last_lag_seconds = Some(14.2);
    bad.last_uncertainty_seconds = Some(2.5);
    bad.pending = 12;
    bad.written = 310;
    bad.observed = 296;
    bad.lost = 2;
    bad.failed = 1;
    bad.up = false;
    bad.last_error =
        Some("HeadObject invoices-osaka: 503 SlowDown <script>alert('pwned')</script>".into());
    board.update(&l, bad);
    board.set_ready(true);
    board
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with `Connection: close` and reads the whole answer.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut s).await
}

/// Reads one response from a connection the server will close after it.
pub async fn read_response(s: &mut TcpStream) -> RawResponse {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .expect("read");
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}
