//! The binaries as processes a test starts and stops: a generated stream,
//! the HTTP ingest, workers; and the small HTTP and port helpers they need.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A generated stream being published by a background producer.
pub struct Stream {
    pub(crate) child: Child,
    /// Where the producer writes the expected totals when it is done.
    pub expected: PathBuf,
}

impl Stream {
    /// Waits for the producer and asserts every event was acknowledged.
    pub fn finish(mut self) -> Self {
        let status = self.child.wait().expect("waiting for the producer");
        assert!(status.success(), "the producer failed: {status}");
        self
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server a test started: `newsflow-producer serve` (its HTTP ingest)
/// or `newsflow-footer serve`.
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// Port of its API (`POST /v1/events`, or the footer routes).
    pub port: u32,
    /// Port of /metrics, /healthz, /readyz.
    pub metrics_port: u32,
}

/// `newsflow-producer serve` started by a test.
pub type Ingest = ServerProcess;

impl ServerProcess {
    /// The URL of the events endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/events", self.port)
    }

    /// The endpoint's /metrics text.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        http_get(self.metrics_port, "/readyz").is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    }

    /// The most memory the process has held (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the process status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib / 1024.0
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits up to `within` for the process to exit, and returns how.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker process started by a test.
pub struct Worker {
    /// The process.
    pub child: Child,
    /// Port of its /metrics.
    pub port: u32,
}

impl Worker {
    /// Sends SIGKILL: the crash no drain can soften.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the worker");
    }

    /// Sends SIGTERM and asserts a clean exit (drain, flush, commit, 0).
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for worker") {
                assert!(
                    status.success(),
                    "worker exited with {status} after SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `/readyz` answers 200, and its body.
    pub fn readiness(&self) -> (bool, String) {
        let response = http_get(self.port, "/readyz").unwrap_or_default();
        (response.starts_with("HTTP/1.1 200"), response)
    }

    /// Waits until `/readyz` answers not-ready with every one of `reasons`
    /// in its body (what the test made fail); fails the test after `timeout`.
    pub fn wait_until_not_ready(&self, reasons: &[&str], timeout: Duration) {
        crate::wait_for(
            &format!("the worker to turn not-ready saying {reasons:?}"),
            timeout,
            || {
                let (ready, body) = self.readiness();
                !ready && reasons.iter().all(|reason| body.contains(reason))
            },
        );
    }

    /// The worker's /metrics text, or an empty string while it is not yet
    /// listening.
    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics").unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP GET on loopback, so the tests need no HTTP client crate.
pub fn http_get(port: u32, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port as u16))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// Reads what a server writes on `stream` until it closes the connection;
/// `None` when `within` passes with nothing read.
pub fn read_answer(stream: &mut std::net::TcpStream, within: Duration) -> Option<String> {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(n) if n > 0 => answer.extend_from_slice(&buffer[..n]),
            Err(e)
                if answer.is_empty()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                return None
            }
            // Closed, reset, or a timeout after part of an answer.
            _ => return Some(String::from_utf8_lossy(&answer).into_owned()),
        }
    }
}

/// The value of a metric sample line, e.g. `newsflow_partitions_assigned`.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every series of metric `name` that carries each of `labels`
/// (`label="value"`), whatever its other labels: with none, e.g. all of
/// `newsflow_events_consumed_total{topic=...,event_type=...}`.
pub fn metric_total(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(label, value)| l.contains(&format!("{label}=\"{value}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A port nothing listens on now.
pub fn free_port() -> u32 {
    // Ports come from below the ephemeral range (32768 and up on Linux),
    // which outgoing connections draw their local ports from: a port asked
    // of the OS could be taken by some Kafka client's socket before the
    // process meant to listen on it binds it, and that process would fail
    // with "address in use". A counter keeps the tests of one binary apart,
    // the process id keeps concurrent binaries apart, and a port something
    // already holds is skipped.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const BLOCK: u32 = 1000;
    let base = 20_000 + (std::process::id() % 12) * BLOCK;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % BLOCK;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port;
        }
    }
}
