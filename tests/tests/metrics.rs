//! The metrics endpoint: scraped around a fio run, its counters move exactly as fio's own
//! totals say; `gatewayadm --op show --mode stats` prints the same counters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}

/// The value of `metric` for target 1.
fn value(text: &str, metric: &str) -> f64 {
    let prefix = format!("{metric}{{tid=\"1\",");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metric} for tid 1 missing:\n{text}"))
}

#[test]
fn counters_follow_fio_totals() {
    let d = Daemon::start_full(
        "metrics",
        &[TargetSpec::new(vec![LunSpec::new(64 * MIB)])],
        &[],
        &["--metrics", "127.0.0.1:0"],
    );
    let addr = d.metrics.expect("the daemon printed its metrics address");
    // During a run the counters move: scraped while fio writes, the written bytes grow.
    std::thread::scope(|scope| {
        let job = scope.spawn(|| {
            d.fio(
                0,
                1,
                &[
                    "--rw=randwrite",
                    "--bs=4k",
                    "--size=8m",
                    "--iodepth=4",
                    "--runtime=3",
                    "--time_based",
                ],
            )
        });
        let mut seen = Vec::new();
        while !job.is_finished() {
            seen.push(value(&scrape(addr), "gateway_written_bytes_total"));
            std::thread::sleep(Duration::from_millis(300));
        }
        job.join().expect("fio thread");
        assert!(
            seen.windows(2).filter(|w| w[1] > w[0]).count() >= 2,
            "written bytes did not grow during the run: {seen:?}"
        );
    });
    // fio's session ends asynchronously; the totals below are deltas, so that is harmless.
    let before = scrape(addr);
    // 8 MiB of 4 KiB random reads, then 4 MiB of 64 KiB sequential writes.
    d.fio(
        0,
        1,
        &["--rw=randread", "--bs=4k", "--size=8m", "--iodepth=8"],
    );
    d.fio(
        0,
        1,
        &["--rw=write", "--bs=64k", "--size=4m", "--iodepth=4"],
    );
    // fio has logged out when it returns, but the session's end reaches the counters
    // asynchronously: wait (bounded) for the gauge to settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let t = scrape(addr);
        if value(&t, "gateway_sessions") == 0.0 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let delta = |m: &str| value(&after, m) - value(&before, m);
    assert_eq!(delta("gateway_read_bytes_total"), (8 * MIB) as f64);
    assert_eq!(delta("gateway_written_bytes_total"), (4 * MIB) as f64);
    let ios = (8 * MIB / 4096 + 4 * MIB / 65536) as f64;
    let commands = delta("gateway_commands_total");
    assert!(commands >= ios, "{commands} commands for {ios} I/Os");
    assert!(commands < ios + 100.0, "{commands} commands for {ios} I/Os");
    assert_eq!(
        delta("gateway_command_latency_seconds_count"),
        commands,
        "every command lands in the histogram"
    );
    assert_eq!(value(&after, "gateway_sessions"), 0.0);
    assert_eq!(value(&after, "gateway_in_flight"), 0.0);
    assert!(delta("gateway_ring_completions_total") >= ios);
    assert_eq!(value(&after, "gateway_ring_cq_overflows_total"), 0.0);

    let table = d.admin("gatewayadm", &["--op", "show", "--mode", "stats"]);
    assert!(table.ok(), "{}", table.stderr);
    let row = table
        .stdout
        .lines()
        .find(|l| l.ends_with(&d.targets[0]))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    let written = value(&after, "gateway_written_bytes_total") as u64;
    assert!(row.contains(&written.to_string()), "{row}");

    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}
