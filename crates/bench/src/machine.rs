//! What the report says about where it ran: the machine, the etcd under test
//! and the date.

use anyhow::{Context, Result};

use crate::etcd::BenchEtcd;

/// CPU, cores, memory, the work dir's disk and the etcd binary's version, as
/// Markdown list items.
pub fn describe() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("unknown".to_string(), |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let etcd = command_output("etcd", &["--version"])
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "etcd not found".into());
    let disk = command_output("df", &["-h", "--output=source,fstype,size", "."])
        .and_then(|s| s.lines().nth(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "- CPU: {cpu}, {cores} cores\n- Memory: {memory}\n- Disk (work dir): {disk}\n- {etcd}\n"
    )
}

/// The report's line on an external etcd: where, and the version it reports.
pub async fn external_etcd(endpoints: &[String]) -> Result<String> {
    let store = BenchEtcd::start(None).await.connect().await?;
    let status = store.client().status().await.context("etcd status")?;
    Ok(format!(
        "- etcd under test: the external cluster at {} (etcd {}), not spawned by this run\n",
        endpoints.join(", "),
        status.version()
    ))
}

/// The date in UTC, from the system clock, without a date crate.
pub fn now_utc() -> String {
    command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "an unknown date".into())
}

/// A command's standard output, if it ran and printed UTF-8.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program).args(args).output().ok()?;
    String::from_utf8(output.stdout).ok()
}
