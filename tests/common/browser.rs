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
    /// Every URL of a request the net log recorded.
    pub requested: Vec<String>,
}

/// Renders `page` (a local file) at `width`×`height` into `work`.
pub fn render(page: &Path, work: &Path, width: u32, height: u32) -> Rendered {
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
    let png = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    Rendered {
        png,
        requested: urls_in_netlog(&std::fs::read_to_string(&netlog).unwrap_or_default()),
    }
}

/// Every `"url"` value in a net log (JSON; the file may end without its
/// closing brackets when Chromium exits fast, so it is scanned as text).
fn urls_in_netlog(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\"url\":\"") {
        rest = &rest[i + 7..];
        if let Some(j) = rest.find('"') {
            out.push(rest[..j].to_string());
            rest = &rest[j..];
        }
    }
    out.sort();
    out.dedup();
    out
}

/// True if the PNG is not one flat colour: its compressed image data is
/// larger than a blank page of that size ever is.
pub fn looks_drawn(png: &[u8], min_bytes: usize) -> bool {
    png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > min_bytes
}
