//! Writes EMF documents where `[emf] to` says: stdout, or the CloudWatch
//! agent's EMF listener over TCP or UDP.
//!
//! Why a module of its own: the failure modes are the destination's, not the
//! measurement's. A CloudWatch agent that restarts must not lose a period nor
//! block the scheduler, so TCP keeps a bounded backlog and retries at the
//! next period; UDP is fire-and-forget, as the CloudWatch agent expects.
//! Every document is one line (stdout, TCP) or one datagram (UDP).

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::emf::Destination;

/// What a TCP backlog may hold while the CloudWatch agent is away: about
/// an hour of 200 pairs at one document a minute. Beyond it the oldest
/// documents are dropped (and counted).
pub const MAX_BACKLOG_BYTES: usize = 16 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many documents a `write` delivered, and how many it gave up on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub written: u64,
    pub dropped: u64,
    /// Still queued for the next attempt (TCP only).
    pub queued: u64,
}

pub struct Sink {
    to: Destination,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
    backlog: VecDeque<String>,
    backlog_bytes: usize,
    /// The last error, logged once until the destination works again.
    failing: Option<String>,
}

impl Sink {
    pub fn new(to: Destination) -> Self {
        Sink {
            to,
            tcp: None,
            udp: None,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            failing: None,
        }
    }

    /// Writes `lines` (one document each, without newline). Never fails:
    /// errors are logged (once until recovery) and show in the outcome.
    pub async fn write(&mut self, lines: Vec<String>) -> Outcome {
        let result = match self.to.clone() {
            Destination::Stdout => self.stdout(lines).await,
            Destination::Udp(addr) => self.udp(&addr, lines).await,
            Destination::Tcp(addr) => self.tcp(&addr, lines).await,
        };
        match &result {
            Ok(_) => {
                if self.failing.take().is_some() {
                    tracing::info!(to = %self.describe(), "EMF destination works again");
                }
            }
            Err((_, e)) => {
                let msg = e.to_string();
                if self.failing.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(to = %self.describe(), error = %msg,
                        "cannot write EMF documents; retrying at the next period");
                    self.failing = Some(msg);
                }
            }
        }
        match result {
            Ok(o) | Err((o, _)) => o,
        }
    }

    fn describe(&self) -> String {
        match &self.to {
            Destination::Stdout => "stdout".into(),
            Destination::Tcp(a) => format!("tcp://{a}"),
            Destination::Udp(a) => format!("udp://{a}"),
        }
    }

    async fn stdout(&mut self, lines: Vec<String>) -> Result<Outcome, (Outcome, io::Error)> {
        let n = lines.len() as u64;
        let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.push_str(&l);
            buf.push('\n');
        }
        let mut out = tokio::io::stdout();
        match async {
            out.write_all(buf.as_bytes()).await?;
            out.flush().await
        }
        .await
        {
            Ok(()) => Ok(Outcome {
                written: n,
                ..Outcome::default()
            }),
            Err(e) => Err((
                Outcome {
                    dropped: n,
                    ..Outcome::default()
                },
                e,
            )),
        }
    }

    async fn udp(
        &mut self,
        addr: &str,
        lines: Vec<String>,
    ) -> Result<Outcome, (Outcome, io::Error)> {
        let mut o = Outcome::default();
        let mut last_err = None;
        for l in lines {
            if self.udp.is_none() {
                match connect_udp(addr).await {
                    Ok(s) => self.udp = Some(s),
                    Err(e) => {
                        o.dropped += 1;
                        last_err = Some(e);
                        continue;
                    }
                }
            }
            let sock = self.udp.as_ref().expect("connected above");
            match sock.send(l.as_bytes()).await {
                Ok(_) => o.written += 1,
                Err(e) => {
                    // ECONNREFUSED from an earlier datagram: nobody listens now.
                    o.dropped += 1;
                    self.udp = None;
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            None => Ok(o),
            Some(e) => Err((o, e)),
        }
    }

    async fn tcp(
        &mut self,
        addr: &str,
        lines: Vec<String>,
    ) -> Result<Outcome, (Outcome, io::Error)> {
        let mut o = Outcome::default();
        for l in lines {
            self.backlog_bytes += l.len() + 1;
            self.backlog.push_back(l);
        }
        while self.backlog_bytes > MAX_BACKLOG_BYTES {
            let Some(old) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= old.len() + 1;
            o.dropped += 1;
        }
        let res = async {
            if self.tcp.is_none() {
                let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
                s.set_nodelay(true)?;
                self.tcp = Some(s);
            }
            let mut buf = String::with_capacity(self.backlog_bytes);
            for l in &self.backlog {
                buf.push_str(l);
                buf.push('\n');
            }
            let s = self.tcp.as_mut().expect("connected above");
            tokio::time::timeout(WRITE_TIMEOUT, s.write_all(buf.as_bytes()))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
            Ok::<(), io::Error>(())
        }
        .await;
        match res {
            Ok(()) => {
                o.written += self.backlog.len() as u64;
                self.backlog.clear();
                self.backlog_bytes = 0;
                Ok(o)
            }
            Err(e) => {
                // A partial write may have delivered a prefix; the listener
                // drops a torn line, and the whole backlog is sent again
                // (EMF tolerates a duplicate better than a gap).
                self.tcp = None;
                o.queued = self.backlog.len() as u64;
                Err((o, e))
            }
        }
    }
}

async fn connect_udp(addr: &str) -> io::Result<UdpSocket> {
    let target = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(target).await?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn tcp_keeps_documents_while_the_listener_is_away() {
        // Reserve a port, then free it: nothing listens there yet.
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap().to_string();
        drop(probe);
        let mut sink = Sink::new(Destination::Tcp(addr.clone()));
        let o = sink.write(vec!["{\"a\":1}".into()]).await;
        assert_eq!((o.written, o.queued), (0, 1));

        let listener = TcpListener::bind(&addr).await.unwrap();
        let o = sink.write(vec!["{\"a\":2}".into()]).await;
        assert_eq!((o.written, o.queued, o.dropped), (2, 0, 0));
        let (conn, _) = listener.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::new(conn).lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "{\"a\":1}");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "{\"a\":2}");
    }

    #[tokio::test]
    async fn udp_sends_one_datagram_per_document() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = rx.local_addr().unwrap().to_string();
        let mut sink = Sink::new(Destination::Udp(addr));
        let o = sink
            .write(vec!["{\"a\":1}".into(), "{\"b\":2}".into()])
            .await;
        assert_eq!(o.written, 2);
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"{\"a\":1}");
        let n = rx.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"{\"b\":2}");
    }
}
