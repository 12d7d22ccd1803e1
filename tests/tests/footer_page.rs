//! The example page of `deploy/footer-example/` in a real browser
//! (headless Chromium): the seed article's text, with the footer under it
//! fetched from `newsflow-footer` across origins, as a news site would.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use newsflow_e2e::{free_port, social_comment, wait_for, workspace, TestEnv};

/// The seed article of `tests/fixtures/seed-article.ndjson`.
const SEED: &str = "politik.2026-11-01.russland-nordkorea-buendnis";

/// A static file server for the example page, on an origin of its own.
struct PageServer {
    child: Child,
    port: u32,
}

impl PageServer {
    fn start(folder: &Path) -> PageServer {
        let python = std::env::var("NEWSFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = free_port();
        let child = Command::new(python)
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(folder)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python's http.server for the example page");
        wait_for("the page server", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_ok()
        });
        PageServer { child, port }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page at `url` as Chromium renders it, scripts run and their
/// fetches answered: the DOM, serialized.
fn rendered_dom(url: &str) -> String {
    let chromium = std::env::var("NEWSFLOW_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox", // CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            // Virtual time waits for the page's fetch to be answered.
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .unwrap_or_else(|e| {
            panic!("running {chromium} failed ({e}); `make deps-test` installs Debian's chromium")
        });
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

/// The text of the footer's lines in a rendered DOM.
fn footer_lines(dom: &str) -> Vec<String> {
    let Some(start) = dom.find("<div class=\"newsflow-footer\"") else {
        return Vec::new();
    };
    let block = &dom[start..];
    let block = &block[..block.find("</div>").unwrap_or(block.len())];
    block
        .split("<p>")
        .skip(1)
        .map(|p| p.split("</p>").next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_example_page_shows_the_footer_under_the_story_and_it_moves() {
    let env = TestEnv::new("footer-page", 1);
    env.replay_seed_article();
    env.consume_until_caught_up();
    let page = PageServer::start(&workspace().join("deploy/footer-example"));
    let footer = env.spawn_footer(&[("NEWSFLOW__FOOTER__CORS_ORIGINS", page.origin().as_str())]);
    let url = format!(
        "{}/index.html?api=http://127.0.0.1:{}",
        page.origin(),
        footer.port
    );

    let dom = rendered_dom(&url);
    assert!(
        dom.contains("Neue strategische Allianz"),
        "the page holds the story"
    );
    assert_eq!(
        footer_lines(&dom),
        [
            "Analysierte Quellen, die diese Meldung bestätigen: 16",
            "Analysierte Kommentare in sozialen Medien: 166",
            "Analysierte Forenbeiträge: 37",
        ],
        "the footer under the story, as rendered: {dom}"
    );

    // Two more comments are counted; the page, loaded again, shows them.
    env.publish(&format!(
        "{}\n{}\n",
        social_comment("page-new-1", SEED),
        social_comment("page-new-2", SEED)
    ));
    env.consume_until_caught_up();
    wait_for(
        "the service to hold the new count",
        Duration::from_secs(60),
        || {
            footer
                .footer_of(SEED)
                .is_some_and(|f| f.social_comments == 168)
        },
    );
    let lines = footer_lines(&rendered_dom(&url));
    assert_eq!(lines[1], "Analysierte Kommentare in sozialen Medien: 168");
    assert_eq!(
        lines[0],
        "Analysierte Quellen, die diese Meldung bestätigen: 16"
    );
}
