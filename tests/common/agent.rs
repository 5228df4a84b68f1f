//! A running `rpo-agent run` process under test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::metrics::{parse, Sample};

pub struct Agent {
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
    pub addr: String,
    _config: tempfile::NamedTempFile,
}

impl Agent {
    /// Starts the agent with `config` (TOML; `listen` should be
    /// "127.0.0.1:0") and `env` added to its environment.
    pub fn start(config: &str, env: &std::collections::HashMap<String, String>) -> Agent {
        Agent::start_with_stdout(config, env, Stdio::null())
    }

    /// As `start`, with the agent's stdout (EMF documents) going to `stdout`.
    pub fn start_with_stdout(
        config: &str,
        env: &std::collections::HashMap<String, String>,
        stdout: Stdio,
    ) -> Agent {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(config.as_bytes()).unwrap();
        let mut child = Command::new(super::agent_bin())
            .args(["--log-format", "json", "run", "--config"])
            .arg(file.path())
            .envs(env)
            .env("RPO_LOG", "warn,rpo_agent=debug,rpo_exporter=info")
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rpo-agent");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "raw": line }));
                sink.lock().unwrap().push(v);
            }
        });
        let mut agent = Agent {
            child,
            logs,
            addr: String::new(),
            _config: file,
        };
        let started = agent
            .wait_log(Duration::from_secs(20), |l| {
                l["message"] == "rpo-agent starting"
            })
            .unwrap_or_else(|| panic!("the agent did not start; logs: {:?}", agent.logs()));
        agent.addr = started["listen"].as_str().unwrap().to_string();
        agent
    }

    /// All log lines so far (JSON objects).
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log line matching `pred`.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs().into_iter().find(|l| pred(l)) {
                return Some(v);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path`; returns (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        let status = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The current samples of `/metrics`.
    pub fn metrics(&self) -> Vec<Sample> {
        let (status, body) = self.get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }

    /// The value of `name` whose labels include every pair of `labels`
    /// (summed over the rest).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        super::metrics::sum(&self.metrics(), name, labels)
    }

    /// Polls `value` until `pred` holds; returns the last value.
    pub fn wait_value(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        let end = Instant::now() + timeout;
        loop {
            let v = self.value(name, labels);
            if v.is_some_and(&pred) {
                return v;
            }
            if Instant::now() > end {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `sig` (SIGKILL, SIGSTOP, SIGCONT…) to the agent.
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
