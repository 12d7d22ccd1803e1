//! The local S3 server the tests use (`make s3-up`, deploy/local/s3.sh),
//! and servers of a test's own that it may stop and start.

use std::process::Command;

use crate::{free_port, workspace};

/// The shared server's endpoint.
pub fn endpoint() -> String {
    std::env::var("NEWSFLOW_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}

/// The bucket `make s3-up` creates.
pub const BUCKET: &str = "newsflow";

/// The variables every S3 client here reads (the worker, the
/// readers), for the server at `endpoint`.
pub fn vars(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "newsflow".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "newsflow-local-secret".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Fails the test, naming the make target, unless the server answers.
pub fn assert_answers(url: &str) {
    let host = url.trim_start_matches("http://");
    let answered = std::net::TcpStream::connect_timeout(
        &host.parse().expect("the S3 endpoint is host:port"),
        std::time::Duration::from_secs(2),
    );
    assert!(
        answered.is_ok(),
        "no S3 server answers at {url}; start one with `make s3-up`"
    );
}

/// An S3 server of a test's own, so stopping it disturbs no other
/// test.
pub struct OwnS3Server {
    /// Its port.
    pub port: u32,
    /// Its state folder (its pid file, its objects).
    pub state: tempfile::TempDir,
}

impl OwnS3Server {
    /// Starts it on a free port.
    pub fn start() -> OwnS3Server {
        let own = OwnS3Server {
            port: free_port(),
            state: tempfile::tempdir().unwrap(),
        };
        own.up();
        own
    }

    fn script(&self, verb: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(workspace().join("deploy/local/s3.sh"))
            .arg(verb)
            .env("S3_PORT", self.port.to_string())
            .env("S3_STATE_DIR", self.state.path());
        command
    }

    /// Runs `s3.sh verb` for this server and asserts it succeeded.
    fn run(&self, verb: &str) {
        let output = self.script(verb).output().unwrap();
        assert!(
            output.status.success(),
            "s3.sh {verb}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts it again.
    pub fn up(&self) {
        self.run("up");
    }

    /// Stops it.
    pub fn down(&self) {
        self.run("down");
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnS3Server {
    fn drop(&mut self) {
        let _ = self.script("down").output();
    }
}
