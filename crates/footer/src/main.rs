//! `newsflow-footer`: the footer under each story, served over HTTP.
//!
//! `serve` follows the `article_totals` table under `output.uri` (see
//! [`follow`]), holds the current footer of every article in memory (see
//! [`held`]) and answers the routes of [`api`] on `footer.listen`, behind
//! the same connection hardening as the ingest endpoint (`newsflow-http`).
//! `/metrics`, `/healthz` and `/readyz` are on `metrics.listen`; ready
//! once the first full load is done.

mod api;
mod follow;
mod held;
mod render;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use clap::{Parser, Subcommand};
use newsflow_http::{accept_until, unready_then_stop, CloseObserver, ConnectionLimits};
use newsflow_lake::FooterSource;
use newsflow_settings::Settings;
use newsflow_telemetry::{Binary, Health, Metrics};

use crate::api::Api;
use crate::follow::Follower;

// The footers are many small allocations while a table loads; see the
// worker.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Default metrics port of the footer service when `metrics.listen` is
/// not set.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9466";

#[derive(Parser)]
#[command(
    name = "newsflow-footer",
    version,
    about = "Serves each article's footer over HTTP, following article_totals."
)]
struct Cli {
    /// TOML configuration file; environment variables NEWSFLOW__SECTION__KEY override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow article_totals and answer the footer API on `footer.listen` until SIGTERM.
    Serve,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Arc::new(newsflow_settings::load(cli.config.as_deref())?);
    if let Command::Config = cli.command {
        println!("{settings:#?}");
        return Ok(());
    }
    newsflow_telemetry::init_logging(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("newsflow-footer")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Arc<Settings>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(Binary::Footer));
    metrics.preregister(&[]);
    let health = Health::new();
    health.set_problem(follow::LOADING, "loading the footers of article_totals");
    health.set_ready(); // started; the load is the other condition
    let listen = settings
        .metrics
        .listen
        .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.parse().expect("valid default"));
    newsflow_telemetry::bind_on_own_thread(listen, metrics.clone(), health.clone())?;

    let output = &settings.output;
    let source = FooterSource::open(&output.uri, &output.storage_options())?;
    tracing::info!(root = %source.root(), "following article_totals");
    let footer = &settings.footer;
    let (follower, shared) = Follower::new(
        source,
        metrics.clone(),
        health.clone(),
        footer.poll_interval,
    );
    let stop_following = Arc::new(AtomicBool::new(false));
    let following = {
        let stop = stop_following.clone();
        std::thread::Builder::new()
            .name("newsflow-follow".into())
            .spawn(move || follower.run(&stop))
            .context("starting the follower thread")?
    };

    let api = Arc::new(Api::new(footer, shared, metrics.clone()));
    let app = Router::new().fallback(api::handle).with_state(api);
    let listener = tokio::net::TcpListener::bind(footer.listen)
        .await
        .with_context(|| format!("footer.listen {}: cannot listen", footer.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "answering /v1/articles/{{id}}/footer");
    let limits = ConnectionLimits {
        header_timeout: footer.header_timeout,
        request_timeout: footer.request_timeout,
        max_connections: footer.max_connections,
        section: "footer",
    };
    let on_close: CloseObserver = {
        let metrics = metrics.clone();
        Arc::new(move |reason| metrics.footer_connection_closed(reason))
    };
    let stop_accepting = unready_then_stop(
        newsflow_telemetry::shutdown_signal(),
        health,
        footer.shutdown_delay,
        "footer",
    );
    accept_until(listener, app, limits, on_close, stop_accepting).await;
    stop_following.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || following.join()).await;
    tracing::info!("footer service stopped");
    Ok(())
}
