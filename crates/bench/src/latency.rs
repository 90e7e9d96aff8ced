//! Latency recording: nanosecond histograms summarised in microseconds, and the
//! interleaving of one of our operations with its floor.

use std::time::Instant;

use anyhow::Result;
use hdrhistogram::Histogram;

/// Latency summary in microseconds.
#[derive(Clone, Copy)]
pub struct Summary {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

pub fn summary(h: &Histogram<u64>) -> Summary {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Summary {
        p50: us(0.5),
        p95: us(0.95),
        p99: us(0.99),
        max: h.max() as f64 / 1000.0,
        count: h.len(),
    }
}

/// A histogram of nanoseconds, from 1 ns to a minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Records the time since `started`.
pub fn record(h: &mut Histogram<u64>, started: Instant) {
    let _ = h.record(started.elapsed().as_nanos().max(1) as u64);
}

/// Runs `ours(i)` and `floor(i)` for every `i` in `0..n`, timing each, so both
/// see the same conditions. Which goes first alternates, so neither always
/// follows the other's fsync. Returns (ours, floor).
pub async fn interleave(
    n: usize,
    mut ours: impl AsyncFnMut(usize) -> Result<()>,
    mut floor: impl AsyncFnMut(usize) -> Result<()>,
) -> Result<(Summary, Summary)> {
    let (mut h_ours, mut h_floor) = (histogram(), histogram());
    for i in 0..n {
        for ours_turn in [i % 2 == 1, i % 2 == 0] {
            let t = Instant::now();
            if ours_turn {
                ours(i).await?;
                record(&mut h_ours, t);
            } else {
                floor(i).await?;
                record(&mut h_floor, t);
            }
        }
    }
    Ok((summary(&h_ours), summary(&h_floor)))
}
