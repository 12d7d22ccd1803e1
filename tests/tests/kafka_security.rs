//! Kafka over SASL_SSL: a second local Apache Kafka broker with a SASL_SSL
//! listener (SCRAM-SHA-512 over TLS, client certificates required), with
//! certificates and the SCRAM user created here. The golden stream goes
//! through it; a wrong password and an untrusted CA each stop the binaries
//! at once with an error that names the problem; and the password appears
//! in no log line, error, /metrics or configuration dump.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use newsflow_e2e::{current_totals, http_get, wait_for, workspace, TestEnv};

const PASSWORD: &str = "scram-pw-7d1e4b";
const ARTICLE: &str = "politik.2026-11-01.russland-nordkorea-buendnis";
const PLAINTEXT_PORT: u16 = 19192;
const CONTROLLER_PORT: u16 = 19193;
const SASL_SSL_PORT: u16 = 19194;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl (install it with `make deps`)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn self_signed_ca(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            subject,
        ],
    );
}

/// A key and a certificate signed by `ca`, valid for localhost and 127.0.0.1.
fn signed(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// The secured broker; stopped when dropped.
struct SecureBroker {
    state: PathBuf,
    tls: PathBuf,
}

impl SecureBroker {
    fn kafka_sh(&self, verb: &str) -> Output {
        Command::new("bash")
            .arg(workspace().join("deploy/local/kafka.sh"))
            .arg(verb)
            .env("KAFKA_STATE_DIR", &self.state)
            .env("KAFKA_PORT", PLAINTEXT_PORT.to_string())
            .env("KAFKA_CONTROLLER_PORT", CONTROLLER_PORT.to_string())
            .env("KAFKA_SASL_SSL_PORT", SASL_SSL_PORT.to_string())
            .env("KAFKA_TLS_DIR", &self.tls)
            .env("KAFKA_SCRAM_USERS", format!("newsflow={PASSWORD}"))
            .env("KAFKA_HEAP", "512m")
            .output()
            .expect("running kafka.sh")
    }

    fn start(root: &Path) -> Self {
        let tls = root.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        self_signed_ca(&tls, "ca", "/CN=newsflow test CA");
        self_signed_ca(&tls, "other-ca", "/CN=a CA nobody trusts");
        signed(&tls, "broker", "/CN=localhost");
        signed(&tls, "client", "/CN=newsflow");
        let keystore = [
            std::fs::read_to_string(tls.join("broker.key")).unwrap(),
            std::fs::read_to_string(tls.join("broker.crt")).unwrap(),
        ]
        .concat();
        std::fs::write(tls.join("broker-keystore.pem"), keystore).unwrap();
        let broker = SecureBroker {
            state: root.join("state"),
            tls,
        };
        let output = broker.kafka_sh("up");
        assert!(
            output.status.success(),
            "the SASL_SSL broker did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        broker
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.kafka_sh("down");
    }
}

/// Runs a binary to completion with the test's environment and `vars`.
fn run(env: &TestEnv, binary: &str, args: &[&str], vars: &[(String, String)]) -> Output {
    env.command(binary)
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running a newsflow binary")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_golden_stream_flows_over_sasl_ssl_and_bad_credentials_fail_fast() {
    let root = tempfile::tempdir().unwrap();
    let broker = SecureBroker::start(root.path());
    let tls = &broker.tls;
    let password_file = root.path().join("kafka-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let file = |name: &str| tls.join(name).display().to_string();
    let secure = |ca: &str| -> Vec<(String, String)> {
        [
            (
                "NEWSFLOW__KAFKA__BROKERS",
                format!("127.0.0.1:{SASL_SSL_PORT}"),
            ),
            ("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "sasl_ssl".into()),
            ("NEWSFLOW__KAFKA__SASL__MECHANISM", "SCRAM-SHA-512".into()),
            ("NEWSFLOW__KAFKA__SASL__USERNAME", "newsflow".into()),
            ("NEWSFLOW__KAFKA__TLS__CA_FILE", file(ca)),
            ("NEWSFLOW__KAFKA__TLS__CERT_FILE", file("client.crt")),
            ("NEWSFLOW__KAFKA__TLS__KEY_FILE", file("client.key")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let with = |mut vars: Vec<(String, String)>, key: &str, value: &str| {
        vars.push((key.to_string(), value.to_string()));
        vars
    };
    let good = with(
        secure("ca.pem"),
        "NEWSFLOW__KAFKA__SASL__PASSWORD_FILE",
        &password_file.display().to_string(),
    );
    let env = TestEnv::new("sasl-ssl", 3);
    let mut everything_printed = String::new();

    // The golden stream, both ways through SASL_SSL with mutual TLS.
    let fixture = workspace().join("tests/fixtures/seed-article.ndjson");
    let replay = run(
        &env,
        "newsflow-producer",
        &["replay", fixture.to_str().unwrap()],
        &good,
    );
    everything_printed += &text(&replay);
    assert!(
        replay.status.success(),
        "replay over SASL_SSL: {}",
        text(&replay)
    );
    let consume = run(
        &env,
        "newsflow-consumer",
        &["run", "--exit-when-caught-up"],
        &good,
    );
    everything_printed += &text(&consume);
    assert!(
        consume.status.success(),
        "worker over SASL_SSL: {}",
        text(&consume)
    );
    let footer = &current_totals(env.lake_path())[ARTICLE];
    assert_eq!(
        (
            footer.confirming_sources,
            footer.social_comments,
            footer.forum_posts
        ),
        (16, 166, 37)
    );

    // A running worker's /metrics and the configuration dump.
    let env_vars: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let worker = env.spawn_worker_with(&env_vars);
    wait_for(
        "the secured worker to be ready",
        Duration::from_secs(60),
        || worker.readiness().0,
    );
    everything_printed += &http_get(worker.port, "/metrics").unwrap();
    worker.terminate();
    for binary in ["newsflow-consumer", "newsflow-producer"] {
        let inline = with(
            secure("ca.pem"),
            "NEWSFLOW__KAFKA__SASL__PASSWORD",
            PASSWORD,
        );
        let dump = run(&env, binary, &["config"], &inline);
        assert!(dump.status.success());
        assert!(text(&dump).contains("[redacted]"), "{}", text(&dump));
        everything_printed += &text(&dump);
    }

    // A wrong password (from the environment) and an untrusted CA.
    let wrong_password = "not-the-password-93b1";
    for (vars, names_the_problem) in [
        (
            with(
                secure("ca.pem"),
                "NEWSFLOW__KAFKA__SASL__PASSWORD",
                wrong_password,
            ),
            "refused our credentials",
        ),
        (
            with(
                secure("other-ca.pem"),
                "NEWSFLOW__KAFKA__SASL__PASSWORD",
                PASSWORD,
            ),
            "TLS handshake failed",
        ),
    ] {
        for (binary, args) in [
            ("newsflow-consumer", &["run"][..]),
            ("newsflow-producer", &["generate", "--count", "10"][..]),
        ] {
            let started = Instant::now();
            let output = run(&env, binary, args, &vars);
            let printed = text(&output);
            assert!(!output.status.success(), "{binary} {args:?} started anyway");
            assert!(printed.contains(names_the_problem), "{binary}: {printed}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{binary} took {:?} to give up",
                started.elapsed()
            );
            assert!(
                !printed.contains(wrong_password),
                "{binary} printed the password it was given"
            );
            everything_printed += &printed;
        }
    }
    assert!(
        !everything_printed.contains(PASSWORD),
        "the SCRAM password appeared in output"
    );
    drop(broker);
}
