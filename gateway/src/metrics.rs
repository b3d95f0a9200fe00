//! The optional metrics endpoint: Prometheus text over HTTP (`gatewayd --metrics`), off by
//! default, on loopback unless told otherwise.
//!
//! It runs on its own small thread with blocking sockets, far from the data path: it only
//! reads the targets' relaxed atomic counters. The management thread publishes which targets
//! exist into a [`Registry`] whenever that changes.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::stats::{StatsSnapshot, TargetStats, LATENCY_BUCKETS_US, SENSE_KEY_NAMES};

/// Where `--metrics` listens when given no address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9860";
/// Largest HTTP request head read, in bytes.
pub const REQUEST_BYTES_MAX: usize = 8192;
/// How long a scraper may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One published target.
#[derive(Debug, Clone)]
pub struct Published {
    /// Target ID.
    pub tid: u32,
    /// IQN.
    pub name: String,
    /// Its counters.
    pub stats: Arc<TargetStats>,
}

/// The targets the endpoint reports.
#[derive(Debug, Default)]
pub struct Registry {
    targets: Mutex<Vec<Published>>,
}

impl Registry {
    /// Replaces the published targets.
    pub fn publish(&self, targets: Vec<Published>) {
        *self.targets.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// The published targets with a snapshot of each one's counters.
    pub fn snapshot(&self) -> Vec<(u32, String, StatsSnapshot)> {
        let targets = self
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        targets
            .into_iter()
            .map(|t| (t.tid, t.name, t.stats.snapshot()))
            .collect()
    }
}

/// Escapes a label value (Prometheus text format 0.0.4).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every target's counters as Prometheus text.
pub fn render(targets: &[(u32, String, StatsSnapshot)]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&StatsSnapshot) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (tid, target, s) in targets {
            let _ = writeln!(
                out,
                "{name}{{tid=\"{tid}\",target=\"{}\"}} {}",
                label(target),
                value(s)
            );
        }
    };
    family(
        "gateway_commands_total",
        "counter",
        "SCSI commands received.",
        &|s| s.commands,
    );
    family(
        "gateway_read_bytes_total",
        "counter",
        "Bytes read from backing stores and sent to initiators.",
        &|s| s.read_bytes,
    );
    family(
        "gateway_written_bytes_total",
        "counter",
        "Bytes written to backing stores.",
        &|s| s.written_bytes,
    );
    family(
        "gateway_errors_total",
        "counter",
        "Commands that ended with a status other than GOOD.",
        &|s| s.errors,
    );
    family("gateway_sessions", "gauge", "Sessions logged in.", &|s| {
        s.sessions
    });
    family("gateway_in_flight", "gauge", "Commands in flight.", &|s| {
        s.in_flight
    });
    family(
        "gateway_ring_submissions_total",
        "counter",
        "Submission queue entries the target ring handed to the kernel.",
        &|s| s.ring.submitted,
    );
    family(
        "gateway_ring_completions_total",
        "counter",
        "Completions the target ring reaped.",
        &|s| s.ring.completed,
    );
    family(
        "gateway_ring_cq_overflows_total",
        "counter",
        "Completions that overflowed the target ring's completion queue.",
        &|s| s.ring.cq_overflows,
    );
    family(
        "gateway_ring_enobufs_rearms_total",
        "counter",
        "Receives re-armed after the target ring ran out of receive buffers.",
        &|s| s.ring.enobufs_rearms,
    );
    let _ = writeln!(
        out,
        "# HELP gateway_check_conditions_total CHECK CONDITION statuses by sense key.\n# TYPE gateway_check_conditions_total counter"
    );
    for (tid, target, s) in targets {
        for (key, &n) in s.errors_by_sense_key.iter().enumerate() {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "gateway_check_conditions_total{{tid=\"{tid}\",target=\"{}\",sense_key=\"{}\"}} {n}",
                    label(target),
                    SENSE_KEY_NAMES[key]
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP gateway_command_latency_seconds Time from a command's arrival to its status.\n# TYPE gateway_command_latency_seconds histogram"
    );
    for (tid, target, s) in targets {
        let target = label(target);
        let mut cumulative = 0;
        for (i, &n) in s.latency_buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS_US
                .get(i)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(
                out,
                "gateway_command_latency_seconds_bucket{{tid=\"{tid}\",target=\"{target}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "gateway_command_latency_seconds_sum{{tid=\"{tid}\",target=\"{target}\"}} {}\ngateway_command_latency_seconds_count{{tid=\"{tid}\",target=\"{target}\"}} {cumulative}",
            s.latency_sum_ns as f64 / 1e9
        );
    }
    out
}

/// Renders the counters as the table `gatewayadm --op show --mode stats` prints.
pub fn table(targets: &[(u32, String, StatsSnapshot)]) -> String {
    let mut out = format!(
        "{:>4} {:>12} {:>16} {:>16} {:>8} {:>9} {:>8}  {}\n",
        "tid",
        "commands",
        "read_bytes",
        "written_bytes",
        "errors",
        "in_flight",
        "sessions",
        "target"
    );
    for (tid, name, s) in targets {
        let _ = writeln!(
            out,
            "{tid:>4} {:>12} {:>16} {:>16} {:>8} {:>9} {:>8}  {name}",
            s.commands, s.read_bytes, s.written_bytes, s.errors, s.in_flight, s.sessions
        );
    }
    out
}

fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 || head.len() + n > REQUEST_BYTES_MAX {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, kind, body) = if line.starts_with(b"GET /metrics ") {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&registry.snapshot()),
        )
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "gatewayd serves GET /metrics only\n".to_string(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Listens on `addr` and serves scrapes on a thread named `metrics` until the process ends.
pub fn serve(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &registry) {
                            tracing::debug!("metrics: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("metrics: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let stats = TargetStats::default();
        stats
            .commands
            .fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        stats.record(
            Duration::from_micros(40),
            Some(&[0x70, 0, 0x05, 0, 0, 0, 0, 10]),
        );
        let text = render(&[(1, "iqn.x:\"y\"".into(), stats.snapshot())]);
        assert!(text.contains("gateway_commands_total{tid=\"1\",target=\"iqn.x:\\\"y\\\"\"} 5"));
        assert!(text.contains("sense_key=\"ILLEGAL REQUEST\"} 1"));
        assert!(text.contains("le=\"0.00005\"} 1"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 1"));
        assert!(text.contains("# TYPE gateway_command_latency_seconds histogram"));
    }
}
