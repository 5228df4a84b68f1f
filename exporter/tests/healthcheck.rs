//! The `rpo-agent healthcheck` client against a live server and a dead port.

mod common;

use std::time::Duration;

use common::start;
use prometheus::Registry;
use rpo_exporter::healthcheck::{check, get_text};
use rpo_exporter::{HealthcheckError, StatusBoard};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn live_server_is_healthy() {
    let srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    check(&srv.url("/healthz"), T).await.unwrap();
    // A bare base URL means its /healthz.
    check(&format!("http://{}", srv.addr), T).await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn non_200_is_an_error_with_the_status() {
    let srv = start(Registry::new(), StatusBoard::new("a", "v")).await;
    let err = check(&srv.url("/readyz"), T).await.unwrap_err();
    match &err {
        HealthcheckError::Status { status, .. } => assert_eq!(*status, 503),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("503"), "{err}");
    srv.stop().await;
}

#[tokio::test]
async fn closed_port_says_no_agent_answers() {
    // Bind then drop: the port is free and nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = check(&format!("http://127.0.0.1:{port}/healthz"), T)
        .await
        .unwrap_err();
    assert!(matches!(err, HealthcheckError::NoAgent { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "no agent answers on 127.0.0.1:{port}: is it running, and is [agent] listen set to it?"
        )
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let err = check(
        &format!("http://{addr}/healthz"),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HealthcheckError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("within 300ms"), "{err}");
    hold.abort();
}

#[tokio::test]
async fn get_text_returns_any_status_and_body() {
    let srv = start(Registry::new(), common::populated_board()).await;
    let (status, body) = get_text(&srv.url("/status.json"), T).await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["agent_id"], "task-0123abcd");
    let (status, body) = get_text(&srv.url("/nope"), T).await.unwrap();
    assert_eq!(status, 404);
    assert!(body.starts_with("not found"));
    srv.stop().await;
}
