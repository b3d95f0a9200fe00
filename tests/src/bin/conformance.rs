//! `conformance`: runs every iscsi-test-cu suite (ALL.* and iSCSI.*) against a fresh gatewayd
//! each and prints the table of passed, failed and skipped-with-reason.
//!
//! Usage: `cargo run --release -p gw-tests --bin conformance [SUITE...]` (after
//! `cargo build --release -p gateway`). Exits 1 when any test failed. With
//! `CONFORMANCE_OUTPUT` set in the environment, each suite's whole log is printed too.

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let suites: Vec<String> = gw_tests::conformance::list_suites()
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s))
        .collect();
    let mut rows = Vec::with_capacity(suites.len());
    for s in &suites {
        let row = gw_tests::conformance::run_suite(s);
        if std::env::var_os("CONFORMANCE_OUTPUT").is_some() {
            // iscsi-test-cu's own log, for diagnosing a failure.
            eprintln!("{}", row.output);
        }
        eprintln!(
            "{s}: {} run, {} passed, {} failed",
            row.run,
            row.passed,
            row.failures.len()
        );
        rows.push(row);
    }
    print!("{}", gw_tests::conformance::table(&rows));
    if rows.iter().any(|r| !r.failures.is_empty()) {
        std::process::exit(1);
    }
}
