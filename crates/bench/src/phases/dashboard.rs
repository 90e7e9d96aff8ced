//! The dashboard: its first load as a browser with an empty cache makes it,
//! and what 20 open dashboards cost `ifc serve` in memory.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::latency::{histogram, record, summary};
use crate::realtime::{ChildServer, VIEWER_TOKEN};
use crate::report::{Report, verdict};

/// The overview page's first API calls.
const OVERVIEW_CALLS: &[&str] = &[
    "/v1/swarms",
    "/v1/queues",
    "/v1/stats/throughput",
    "/v1/blockers?open=true",
    "/v1/tasks?state=dead&limit=100",
    "/v1/witness/verify?max_chains=1000",
];

pub async fn run(report: &mut Report, smoke: bool) -> Result<()> {
    report.section(
        "Dashboard",
        "`ifc serve` (this build, its own process, an empty embedded store) serving its \
         dashboard. First load: a new connection and an empty cache fetch `/`, every asset it \
         references (found by following the HTML's `src`/`href` and the modules' imports) and \
         the overview's first API calls with the viewer token, one after another as a browser \
         would at worst. Memory: the server's RSS before and after 20 dashboards open their \
         event stream (`/v1/events`, what a dashboard keeps open). Targets: first load p50 \
         ≤ 100 ms on loopback; 20 dashboards ≤ 5 MB.",
    );
    let Some(server) = ChildServer::start(100).await? else {
        report.line("Not measured: build `ifc` next to `ifc-bench` (`cargo build -p ifc`).");
        return Ok(());
    };
    let assets = discover_assets(&server.url).await?;
    let loads = if smoke { 3 } else { 20 };
    let mut h = histogram();
    let mut bytes = 0;
    for _ in 0..loads {
        // A fresh client: a new connection and nothing cached.
        let fresh = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        let started = Instant::now();
        bytes = 0;
        for path in std::iter::once("/").chain(assets.iter().map(String::as_str)) {
            bytes += fetch(&fresh, &server.url, path, None).await?.len();
        }
        for path in OVERVIEW_CALLS {
            fetch(&fresh, &server.url, path, Some(VIEWER_TOKEN)).await?;
        }
        record(&mut h, started);
    }
    let load = summary(&h);
    report.latency_table(&[("dashboard first load (page, assets, 6 API calls)", load, None)]);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss()?;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/events", server.url))
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "events stream: {}", response.status());
        streams.push(response);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss()?;
    drop(streams);
    let extra_mb = after.saturating_sub(before) as f64 / 1e6;
    report.line(&format!(
        "\n{} files ({:.1} KiB) and {} API calls per load. RSS {:.1} MB idle, {:.1} MB with 20 \
         dashboards' event streams open: +{extra_mb:.2} MB.\n\nVerdict: first load p50 {:.1} ms \
         (≤ 100: {}); 20 dashboards +{extra_mb:.2} MB (≤ 5: {}).",
        assets.len() + 1,
        bytes as f64 / 1024.0,
        OVERVIEW_CALLS.len(),
        before as f64 / 1e6,
        after as f64 / 1e6,
        load.p50 / 1000.0,
        verdict(load.p50 <= 100_000.0),
        verdict(extra_mb <= 5.0),
    ));
    Ok(())
}

/// One GET that must succeed; its body.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Vec<u8>> {
    let mut request = client.get(format!("{url}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("GET {path}"))?;
    anyhow::ensure!(response.status().is_success(), "GET {path}: {}", response.status());
    Ok(response.bytes().await?.to_vec())
}

/// Every `/ui/` file the page loads: the HTML's `src`/`href` under `/ui/`,
/// then each module's relative imports, transitively.
async fn discover_assets(url: &str) -> Result<BTreeSet<String>> {
    let client = reqwest::Client::new();
    let html = String::from_utf8_lossy(&fetch(&client, url, "/", None).await?).into_owned();
    let mut found: BTreeSet<String> = quoted_after(&html, &["src=\"", "href=\""])
        .into_iter()
        .filter(|p| p.starts_with("/ui/"))
        .collect();
    let mut pending: Vec<String> = found.iter().filter(|p| p.ends_with(".js")).cloned().collect();
    while let Some(module) = pending.pop() {
        let text = String::from_utf8_lossy(&fetch(&client, url, &module, None).await?).into_owned();
        for import in quoted_after(&text, &["from \"./", "import(\"./"]) {
            let path = format!("/ui/{import}");
            if found.insert(path.clone()) {
                pending.push(path);
            }
        }
    }
    Ok(found)
}

/// The text up to the next `"` after each occurrence of any of `openers`.
fn quoted_after(text: &str, openers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for opener in openers {
        for (at, _) in text.match_indices(opener) {
            let rest = &text[at + opener.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}
