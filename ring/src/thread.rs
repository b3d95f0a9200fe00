//! Named threads pinned to a core.

use std::thread::JoinHandle;

/// Spawns a thread named `name` (the kernel keeps 15 bytes of it, visible in
/// `/proc/PID/task/*/comm`), pinned to `core` when given, running `f`. Returns once the
/// pinning is done, with its error if it failed (then `f` never runs). The handle yields
/// `Some(result)`; `None` only if pinning failed, which this function already reported.
pub fn spawn_pinned<F, T>(
    name: String,
    core: Option<usize>,
    f: F,
) -> std::io::Result<JoinHandle<Option<T>>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if let Some(id) = core {
        if !allowed_cpus().contains(&id) {
            return Err(std::io::Error::other(format!(
                "cannot pin thread {name} to CPU {id}: this process may only run on CPUs {:?} (see --cpus)",
                allowed_cpus()
            )));
        }
    }
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel::<bool>();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let ok = match core {
                Some(id) => core_affinity::set_for_current(core_affinity::CoreId { id }),
                None => true,
            };
            let _ = pinned_tx.send(ok);
            ok.then(f)
        })?;
    if pinned_rx.recv().unwrap_or(false) {
        return Ok(handle);
    }
    let _ = handle.join();
    Err(std::io::Error::other(format!(
        "cannot pin thread {name} to CPU {}: is that CPU in this process's allowed set (see --cpus)?",
        core.unwrap_or(0)
    )))
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_pinned() {
        let cpu = *allowed_cpus().last().expect("at least one CPU");
        let h = spawn_pinned("ring-test/7".into(), Some(cpu), move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap();
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
            let cpus = status
                .lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string();
            (comm.trim().to_string(), cpus)
        })
        .unwrap();
        let (comm, cpus) = h.join().unwrap().unwrap();
        assert_eq!(comm, "ring-test/7");
        assert_eq!(cpus, cpu.to_string());
    }

    #[test]
    fn pinning_to_a_missing_cpu_fails() {
        let e = spawn_pinned("ring-test/x".into(), Some(100_000), || ()).unwrap_err();
        assert!(e.to_string().contains("cannot pin"), "{e}");
    }
}
