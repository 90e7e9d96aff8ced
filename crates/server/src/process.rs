//! Process metrics from `/proc/self` (Linux): CPU seconds, resident memory and
//! open file descriptors, in the names Prometheus client libraries use. Where
//! `/proc` is absent they are left out.

use std::fmt::Write as _;

/// Clock ticks per second in `/proc/self/stat` (USER_HZ: 100 on every Linux
/// architecture Rust targets).
const TICKS_PER_SECOND: f64 = 100.0;

/// Appends the process metrics that can be read.
pub(crate) fn render(out: &mut String) {
    if let Some(cpu) = cpu_seconds() {
        out.push_str(
            "# HELP process_cpu_seconds_total User and system CPU time.\n\
             # TYPE process_cpu_seconds_total counter\n",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    }
    if let Some(rss) = resident_bytes() {
        out.push_str(
            "# HELP process_resident_memory_bytes Resident memory.\n\
             # TYPE process_resident_memory_bytes gauge\n",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str(
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\n",
        );
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after ')').
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
