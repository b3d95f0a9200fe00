//! Each target runs on its own pinned thread `tgt/<tid>`, and a connection's I/O is served on
//! its target's thread.

use gw_tests::{thread_cpu_ticks, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn ticks_of(pid: u32, name: &str) -> u64 {
    thread_cpu_ticks(pid)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, t, _)| t)
        .unwrap_or_else(|| panic!("no thread {name}"))
}

#[test]
fn target_threads_are_named_pinned_and_serve_their_own_connections() {
    let targets: Vec<TargetSpec> = (0..3)
        .map(|_| TargetSpec::new(vec![LunSpec::new(64 * MIB)]))
        .collect();
    let d = Daemon::start("threads", &targets);
    let pid = d.pid();
    let threads = thread_cpu_ticks(pid);
    for tid in 1..=3 {
        let name = format!("tgt/{tid}");
        let (_, _, cpus) = threads
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("thread {name} missing: {threads:?}"));
        assert!(
            !cpus.is_empty() && cpus.parse::<usize>().is_ok(),
            "{name} is pinned to exactly one CPU, has Cpus_allowed_list {cpus:?}"
        );
    }
    let before: Vec<u64> = (1..=3)
        .map(|t| ticks_of(pid, &format!("tgt/{t}")))
        .collect();
    d.fio(
        1,
        1,
        &[
            "--rw=randread",
            "--bs=4k",
            "--iodepth=32",
            "--size=64m",
            "--io_size=512m",
        ],
    );
    let after: Vec<u64> = (1..=3)
        .map(|t| ticks_of(pid, &format!("tgt/{t}")))
        .collect();
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    println!("CPU ticks spent per target thread during I/O to target 2: {delta:?}");
    assert!(delta[1] >= 20, "tgt/2 served the I/O: {delta:?}");
    assert!(
        delta[0] <= 2 && delta[2] <= 2,
        "tgt/1 and tgt/3 stayed idle: {delta:?}"
    );
}
