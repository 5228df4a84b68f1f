//! The lab's monitoring component (`tests/lab/lab_monitoring.py`) from a
//! test: Prometheus's HTTP API and the webhook receiver's log of the
//! notifications Alertmanager sent (`ALERT_WEBHOOK_LOG`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Lab;

/// Unix time in seconds (the webhook receiver's `lab_received_at` clock).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// GET `url` (plain `http://host:port/path?query`); returns (status, body).
/// HTTP/1.0, so the answer is never chunked.
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other(format!("not an http:// URL: {url}")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus + the webhook log of one lab.
pub struct Monitoring {
    pub prometheus: String,
    pub webhook_log: PathBuf,
}

impl Monitoring {
    pub fn of(lab: &Lab) -> Monitoring {
        Monitoring {
            prometheus: lab.get("PROMETHEUS_URL").to_string(),
            webhook_log: PathBuf::from(lab.get("ALERT_WEBHOOK_LOG")),
        }
    }

    /// `GET /api/v1/<path>`; the `data` of a successful answer.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}/api/v1/{path}", self.prometheus);
        let (status, body) = http_get(&url).map_err(|e| format!("GET {url}: {e}"))?;
        let v: Value =
            serde_json::from_str(&body).map_err(|e| format!("GET {url}: {status} {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("GET {url}: {status} {body}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query; the result vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("query?query={}", url_encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The first value of an instant query, if any series matched.
    pub fn query_value(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr).ok()?;
        r.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Every alert Prometheus has (pending or firing): `/api/v1/alerts`.
    pub fn alerts(&self) -> Result<Vec<Value>, String> {
        Ok(self.api("alerts")?["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The alerts Prometheus has in state `firing`.
    pub fn firing(&self) -> Result<Vec<Value>, String> {
        Ok(self
            .alerts()?
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .collect())
    }

    /// Every notification the webhook receiver got so far (one JSON object
    /// per line: Alertmanager's payload plus `lab_received_at`).
    pub fn notifications(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.webhook_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The raw text of the webhook log (for failure messages).
    pub fn webhook_log_text(&self) -> String {
        std::fs::read_to_string(&self.webhook_log).unwrap_or_default()
    }

    /// (received_at, alert) for every alert of every notification whose
    /// labels include all of `labels` and whose status is `status`
    /// ("firing" / "resolved").
    pub fn notified(&self, labels: &[(&str, &str)], status: &str) -> Vec<(f64, Value)> {
        self.notifications()
            .iter()
            .flat_map(|n| {
                let at = n["lab_received_at"].as_f64().unwrap_or(0.0);
                n["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| (at, a))
            })
            .filter(|(_, a)| {
                a["status"] == status
                    && labels
                        .iter()
                        .all(|(k, v)| a["labels"][*k].as_str() == Some(*v))
            })
            .collect()
    }
}

/// A one-line description of an alert (`alertname/severity/target=state`).
pub fn describe(alert: &Value) -> String {
    let l = &alert["labels"];
    format!(
        "{}/{}/{}={}",
        l["alertname"].as_str().unwrap_or("?"),
        l["severity"].as_str().unwrap_or(""),
        l["target"].as_str().unwrap_or(""),
        alert["state"]
            .as_str()
            .or(alert["status"].as_str())
            .unwrap_or("?")
    )
}
