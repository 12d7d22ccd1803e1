//! `newsflow-lake`: the lake's upkeep, run beside the workers (a
//! Kubernetes CronJob, or by hand). Every command is safe while workers
//! write; what each may and may not touch is documented in
//! `newsflow-lake`'s `maintenance` module.
//!
//! Each command prints one JSON report on stdout (logs go to stderr), so a
//! job's outcome can be read by tools as well as people.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use newsflow_lake::{CompactionLimits, Lake, TableFailure};
use newsflow_settings::Settings;
use serde_json::{json, Value};

// The workers' allocator: compaction decodes, sorts and encodes bins of
// hundreds of MB; peak RSS on a 5M-event lake was the same as with glibc
// (0.8 GB), and one allocator for all binaries is one less surprise.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "newsflow-lake",
    version,
    about = "Upkeep of newsflow's Delta tables beside the workers: compaction, log checkpoints, vacuum."
)]
struct Cli {
    /// TOML configuration file; environment variables NEWSFLOW__SECTION__KEY override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Bin-pack small data files into files of `compaction.target_file_size`,
    /// rows ordered by article_id, then write a log checkpoint.
    Compact,
    /// Write a log checkpoint of every table.
    Checkpoint,
    /// Delete data files, log entries and shard files older than
    /// `vacuum.retention` / `vacuum.log_retention` that nothing can need.
    Vacuum,
    /// Compact, checkpoint, then vacuum: what the CronJob runs.
    Maintain,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = newsflow_settings::load(cli.config.as_deref())?;
    newsflow_telemetry::init_logging(&settings.log);
    let lake = Lake::open(&settings.output.uri, &settings.output.storage_options())
        .with_context(|| format!("opening the lake at {}", settings.output.uri))?;
    let started = Instant::now();
    let mut report = serde_json::Map::new();
    report.insert("lake".into(), json!(lake.root()));
    let mut failed = Vec::new();
    if matches!(cli.command, Command::Compact | Command::Maintain) {
        report.insert("compaction".into(), compact(&lake, &settings, &mut failed)?);
    }
    if cli.command != Command::Vacuum {
        report.insert("log_checkpoints".into(), checkpoint(&lake, &mut failed)?);
    }
    if matches!(cli.command, Command::Vacuum | Command::Maintain) {
        report.insert("vacuum".into(), vacuum(&lake, &settings, &mut failed)?);
    }
    let failures = failed.len();
    report.insert("errors".into(), Value::Array(failed));
    report.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));
    println!("{}", Value::Object(report));
    if failures > 0 {
        anyhow::bail!(
            "{failures} table step(s) failed (named in the report's errors); the other tables' upkeep was done"
        );
    }
    Ok(())
}

/// Logs each table that failed a step and adds it to the report's errors.
fn record_failures(step: &str, failures: &[TableFailure], report: &mut Vec<Value>) {
    for failure in failures {
        let error = with_causes(&failure.error);
        tracing::error!(table = failure.table, step, %error, "upkeep of a table failed; the other tables go on");
        let transient = failure.error.is_transient();
        report.push(
            json!({ "table": failure.table, "step": step, "error": error, "transient": transient }),
        );
    }
}

/// An error with every cause below it, as one line. Our errors show their
/// direct cause in their own text already; a cause is added only where
/// the text does not hold it yet.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let shown = e.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        cause = e.source();
    }
    text
}

fn compact(lake: &Lake, settings: &Settings, failed: &mut Vec<Value>) -> anyhow::Result<Value> {
    let limits = CompactionLimits {
        target_file_size: settings.compaction.target_file_size,
        max_bin_memory: settings.compaction.max_bin_memory,
    };
    let tables = lake.compact(limits);
    record_failures("compaction", &tables.failed, failed);
    log_each("compacted", &tables.done)?;
    Ok(json!({
        "target_file_size": limits.target_file_size,
        "max_bin_memory": limits.max_bin_memory,
        "tables": tables.done,
    }))
}

fn checkpoint(lake: &Lake, failed: &mut Vec<Value>) -> anyhow::Result<Value> {
    let written = lake.checkpoint_logs();
    record_failures("log_checkpoint", &written.failed, failed);
    Ok(serde_json::to_value(written.done)?)
}

fn vacuum(lake: &Lake, settings: &Settings, failed: &mut Vec<Value>) -> anyhow::Result<Value> {
    let retention = settings.vacuum.retention;
    let log_retention = settings.vacuum.log_retention;
    let done = lake.vacuum(retention, log_retention).context("vacuuming")?;
    record_failures("vacuum", &done.failed, failed);
    log_each("vacuumed", &done.tables)?;
    Ok(json!({
        "retention": humantime::format_duration(retention).to_string(),
        "log_retention": humantime::format_duration(log_retention).to_string(),
        "tables": done.tables,
        "shard_files_deleted": done.shard_files.files_deleted,
    }))
}

/// One log line per table with its report, the same fields as the JSON.
fn log_each<T: serde::Serialize>(what: &str, tables: &[T]) -> anyhow::Result<()> {
    for table in tables {
        tracing::info!(report = %serde_json::to_string(table)?, "{what}");
    }
    Ok(())
}
