//! Headless Chromium from a test: a screenshot of a local file and the
//! list of every URL the page asked for (Chromium's own net log), so a
//! test can prove a page renders and makes no request of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const INSTALL_HINT: &str = "Chromium is required for this test and was not found \
(looked for $CHROMIUM, /usr/bin/chromium, chromium on PATH). \
Install it with: apt-get update && apt-get install -y chromium";

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/bin/chromium");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("chromium")
}

/// What Chromium made of one page.
pub struct Rendered {
    /// The PNG bytes of the screenshot.
    pub png: Vec<u8>,
    /// Every URL the page itself asked for (the net log's requests with
    /// an initiator origin; Chromium's own update and account checks have
    /// none, and a file:// page's own load is not a network request).
    pub requested: Vec<String>,
    /// Events in the net log (proof that it was written).
    pub netlog_events: usize,
}

/// Renders `page` (a local file) at `width`×`height` into `work`.
pub fn render(page: &Path, work: &Path, width: u32, height: u32) -> Rendered {
    std::fs::create_dir_all(work).unwrap();
    let profile = work.join("chromium-profile");
    let png = work.join("shot.png");
    let netlog = work.join("netlog.json");
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_file(&png);
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--net-log-capture-mode=Everything")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("{INSTALL_HINT}")
            }
            panic!("cannot start chromium: {e}")
        });
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let png =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    let log = read_netlog(&std::fs::read_to_string(&netlog).unwrap_or_default());
    let events = log["events"].as_array().cloned().unwrap_or_default();
    Rendered {
        png,
        requested: page_requests(&events),
        netlog_events: events.len(),
    }
}

/// The net log as JSON. Chromium may exit before it writes the closing
/// brackets of its event list; they are added then.
fn read_netlog(text: &str) -> serde_json::Value {
    if let Ok(v) = serde_json::from_str(text) {
        return v;
    }
    let cut = text.trim_end().trim_end_matches(',');
    serde_json::from_str(&format!("{cut}]}}")).unwrap_or_default()
}

/// URLs of the requests that a page initiated.
fn page_requests(events: &[serde_json::Value]) -> Vec<String> {
    let mut out: Vec<String> = events
        .iter()
        .filter_map(|e| {
            let p = &e["params"];
            let initiator = p["initiator"].as_str()?;
            let url = p["url"].as_str()?;
            (initiator != "not an origin").then(|| url.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// True if the PNG is not one flat colour: its compressed image data is
/// larger than a blank page of that size ever is.
pub fn looks_drawn(png: &[u8], min_bytes: usize) -> bool {
    png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > min_bytes
}
