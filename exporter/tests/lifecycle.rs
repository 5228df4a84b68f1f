//! Binding errors and graceful shutdown, over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::{read_response, start};
use prometheus::Registry;
use rpo_exporter::{ServerError, StatusBoard};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn bind_names_the_address_and_the_fix_when_in_use() {
    let taken = rpo_exporter::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = rpo_exporter::bind(&addr).await.unwrap_err();
    assert!(matches!(err, ServerError::AddrInUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("another process listens on {addr}")),
        "{msg}"
    );
    assert!(msg.contains("change [agent] listen"), "{msg}");
}

#[tokio::test]
async fn bind_rejects_a_malformed_address() {
    let err = rpo_exporter::bind("no-port-here").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no-port-here") && msg.contains("[agent] listen"),
        "{msg}"
    );
}

/// A request whose headers are half sent when shutdown begins still gets its
/// answer, and `serve` returns only after that.
#[tokio::test]
async fn shutdown_lets_a_request_in_flight_complete() {
    let mut srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Let the server accept and start reading before we ask it to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;

    srv.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !srv.handle.is_finished(),
        "serve returned with a request in flight"
    );
    // The listener is closed: new clients are refused at once.
    assert!(TcpStream::connect(srv.addr).await.is_err());

    conn.write_all(b"\r\n").await.unwrap();
    let r = read_response(&mut conn).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    // Keep-alive is off once shutting down, so the client knows to go away.
    assert_eq!(r.header("connection"), Some("close"));

    tokio::time::timeout(Duration::from_secs(2), &mut srv.handle)
        .await
        .expect("serve returns once the last connection is done")
        .unwrap()
        .unwrap();
}

/// An idle keep-alive connection does not hold shutdown up.
#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections() {
    let mut srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::io::AsyncReadExt::read(&mut conn, &mut buf)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    srv.trigger_shutdown();
    tokio::time::timeout(Duration::from_secs(2), &mut srv.handle)
        .await
        .expect("an idle connection must not delay shutdown")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A client that never finishes its request cannot hold shutdown forever.
#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let mut srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    srv.trigger_shutdown();
    let limit = rpo_exporter::server::SHUTDOWN_GRACE + Duration::from_secs(2);
    tokio::time::timeout(limit, &mut srv.handle)
        .await
        .expect("serve must give up on stuck connections after the grace period")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= rpo_exporter::server::SHUTDOWN_GRACE - Duration::from_millis(100));
    drop(conn);
}
