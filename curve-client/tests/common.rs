//! Helpers shared by this crate's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use curve_client::{Completion, CompletionSink};

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("curve-client-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Waits for `n` completions the way a ring does: drain only after the eventfd fired. A lost
/// wake-up shows as a timeout with completions still queued.
pub fn collect(sink: &Arc<CompletionSink>, n: usize, timeout: Duration) -> Vec<Completion> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        if sink.take_signal() > 0 {
            sink.drain(&mut out);
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} completions after {timeout:?}: a wake-up was lost or a request never answered",
            out.len()
        );
        std::thread::yield_now();
    }
    out
}

/// Compiles the fake libcbd from tests/fake-libcbd into `dir`.
pub fn build_fake_libcbd(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fake-libcbd/fake_libcbd.c");
    let out = dir.join("libcbd-fake.so");
    let status = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) is needed to build the fake libcbd; install gcc");
    assert!(status.success(), "compiling {} failed", src.display());
    out
}
