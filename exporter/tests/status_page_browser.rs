//! The status page as a browser renders it: headless Chromium loads it from
//! a live server, dumps the DOM and takes a screenshot.
//!
//! The screenshot stays in the cargo target dir (`tmp/status-page/status.png`)
//! so a person can look at it after a run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{populated_board, start};
use prometheus::Registry;
use tokio::process::Command;

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
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// Runs Chromium headless with a fresh profile; returns its stdout.
async fn run_chromium(work: &Path, name: &str, extra: &[String], url: &str) -> String {
    let profile = work.join(format!("profile-{name}"));
    let _ = std::fs::remove_dir_all(&profile);
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(e) => panic!("cannot start chromium: {e}"),
    };
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium did not finish within 90 s")
        .expect("chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&work).unwrap();
    let srv = start(Registry::new(), populated_board()).await;
    let url = srv.url("/");

    let dom = run_chromium(&work, "dom", &["--dump-dom".to_string()], &url).await;
    assert!(dom.contains("<title>rpo-agent</title>"), "{dom}");
    assert!(dom.contains("orders") && dom.contains("invoices"), "{dom}");
    assert!(dom.contains("BREACH"), "no breach badge in {dom}");
    assert!(dom.contains("OK"), "{dom}");
    // The error text is shown as text: escaped in the DOM, never a script element.
    assert!(
        dom.contains("&lt;script&gt;alert('pwned')&lt;/script&gt;"),
        "error not shown escaped in {dom}"
    );
    assert!(
        !dom.contains("<script"),
        "a script element made it into the DOM"
    );
    assert!(dom.contains("task-0123abcd"));

    let png = work.join("status.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &work,
        "shot",
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,700".to_string(),
        ],
        &url,
    )
    .await;
    srv.stop().await;

    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 1200x700 page compresses to a few KB; a rendered table is far more.
    assert!(
        bytes.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        bytes.len()
    );
    eprintln!("screenshot: {}", png.display());
}
