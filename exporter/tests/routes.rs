//! Every route over a real socket: status codes, content types, bodies.

mod common;

use common::{populated_board, request, start};
use prometheus::Registry;
use rpo_exporter::{Metrics, StatusBoard, METRICS_CONTENT_TYPE};

#[tokio::test]
async fn metrics_is_prometheus_text() {
    let registry = Registry::new();
    let m = Metrics::new(&registry, "0.1.0").unwrap();
    m.replica(&common::labels("orders", "dynamodb"))
        .rpo
        .set(2.5);
    let srv = start(m.exposition(), StatusBoard::new("a", "0.1.0")).await;

    let r = request(srv.addr, "GET", "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(METRICS_CONTENT_TYPE));
    assert_eq!(
        METRICS_CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(r.body.contains("# TYPE rpo_seconds gauge"), "{}", r.body);
    assert!(r.body.contains("target=\"orders\"} 2.5"), "{}", r.body);
    assert!(r.body.contains("rpo_agent_build_info{version=\"0.1.0\"} 1"));
    srv.stop().await;
}

#[tokio::test]
async fn healthz_answers_ok() {
    let srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    let r = request(srv.addr, "GET", "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    srv.stop().await;
}

#[tokio::test]
async fn readyz_follows_set_ready() {
    let board = StatusBoard::new("a", "v");
    let srv = start(Registry::new(), board.clone()).await;

    let r = request(srv.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("not ready: "), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    board.set_ready(true);
    let r = request(srv.addr, "GET", "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    board.set_ready(false);
    assert_eq!(request(srv.addr, "GET", "/readyz").await.status, 503);
    srv.stop().await;
}

#[tokio::test]
async fn status_page_is_html_and_escapes_errors() {
    let srv = start(Registry::new(), populated_board()).await;
    let r = request(srv.addr, "GET", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let html = &r.body;
    assert!(html.contains("<title>rpo-agent</title>"));
    assert!(html.contains("task-0123abcd") && html.contains("0.1.0"));
    assert!(html.contains("orders") && html.contains("invoices"));
    assert!(html.contains("BREACH") && html.contains(">OK<"));
    // Human durations: 1245 s as minutes, 1.234 s with two decimals.
    assert!(
        html.contains("20 m 45 s") && html.contains("1.23 s"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    assert!(!html.contains("<script"), "unescaped script in page");
    srv.stop().await;
}

#[tokio::test]
async fn status_page_empty_state() {
    let srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    let r = request(srv.addr, "GET", "/").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("no targets configured"));
    srv.stop().await;
}

#[tokio::test]
async fn status_json_has_board_and_agent() {
    let srv = start(Registry::new(), populated_board()).await;
    let r = request(srv.addr, "GET", "/status.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["agent_id"], "task-0123abcd");
    assert_eq!(v["version"], "0.1.0");
    assert_eq!(v["ready"], true);
    let replicas = v["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2);
    // The board orders by target: "invoices" < "orders".
    assert_eq!(replicas[0]["target"], "invoices");
    assert_eq!(replicas[0]["within_objective"], false);
    assert_eq!(replicas[0]["lost"], 2);
    assert_eq!(replicas[1]["target"], "orders");
    assert_eq!(replicas[1]["within_objective"], true);
    assert_eq!(replicas[1]["rpo_seconds"], 1.234);
    srv.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404_and_other_methods_405() {
    let srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    assert_eq!(request(srv.addr, "GET", "/nope").await.status, 404);
    assert_eq!(request(srv.addr, "GET", "/metrics/x").await.status, 404);
    for method in ["POST", "PUT", "DELETE"] {
        let r = request(srv.addr, method, "/metrics").await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    srv.stop().await;
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    let r = request(srv.addr, "HEAD", "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, "");
    srv.stop().await;
}

#[tokio::test]
async fn query_strings_do_not_change_the_route() {
    let srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    assert_eq!(request(srv.addr, "GET", "/healthz?x=1").await.status, 200);
    srv.stop().await;
}

/// Undoes `Transfer-Encoding: chunked` (sizes in hex, each chunk + CRLF).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
}

#[tokio::test]
async fn a_large_metrics_answer_is_streamed_in_pieces_and_complete() {
    let registry = Registry::new();
    let m = Metrics::new(&registry, "0.1.0").unwrap();
    for i in 0..1000 {
        let r = m.replica(&common::labels(&format!("t{i:04}"), "dynamodb"));
        r.rpo.set(i as f64);
        r.lag.observe(0.3);
        r.written.inc_by(i);
    }
    let whole = m.exposition().encode().unwrap();
    assert!(whole.len() > 4 * 1024 * 1024, "{} bytes", whole.len());
    let srv = start(m.exposition(), StatusBoard::new("a", "0.1.0")).await;
    let r = request(srv.addr, "GET", "/metrics").await;
    srv.stop().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-type"), Some(METRICS_CONTENT_TYPE));
    let body = dechunk(&r.body);
    assert_eq!(body.len(), whole.len());
    assert!(
        body == whole,
        "the streamed text differs from the text written at once"
    );
    assert!(body.contains("rpo_seconds{kind=\"dynamodb\",replica_region=\"ap-northeast-3\",source_region=\"ap-northeast-1\",target=\"t0999\"} 999\n"));
}
