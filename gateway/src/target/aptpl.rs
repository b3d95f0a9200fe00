//! Persistent reservations that outlive the daemon (APTPL, SPC-4 §5.9.4): each LU's state is
//! written atomically (temporary file, fsync, rename, fsync of the directory) whenever a
//! PERSISTENT RESERVE OUT changes it while APTPL is set, removed when APTPL is cleared, and
//! read back when the LU is served again.
//!
//! The files are small and change only on PR OUT commands, so the target thread writes them
//! itself, before the command's status leaves: an initiator told GOOD can rely on it.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::TargetThread;

/// The directory holding one target's reservation files under the state directory.
pub fn target_dir(state_dir: &Path, target_name: &str) -> PathBuf {
    state_dir
        .join("reservations")
        .join(target_name.replace('/', "_"))
}

fn lun_file(dir: &Path, lun: u64) -> PathBuf {
    dir.join(format!("lun{lun}.pr"))
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .expect("reservation files live in a directory");
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("pr.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

impl TargetThread {
    /// Loads the saved reservations of `lun`, if any.
    pub(super) fn restore_reservations(&mut self, lun: u64) {
        let Some(dir) = &self.pr_dir else {
            return;
        };
        let path = lun_file(dir, lun);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(tid = self.tid, lun, path = %path.display(), "cannot read saved reservations: {e}");
                return;
            }
        };
        match self.scsi.restore_reservations(lun, &bytes) {
            Ok(()) => {
                tracing::info!(
                    tid = self.tid,
                    lun,
                    "persistent reservations restored (APTPL)"
                )
            }
            Err(e) => tracing::error!(
                tid = self.tid,
                lun,
                path = %path.display(),
                "saved reservations are unreadable and were ignored: {e}"
            ),
        }
    }

    /// Saves (or removes) the state of every LU whose persistent reservations changed.
    pub(super) fn save_reservations(&mut self) {
        let dirty = self.scsi.take_dirty_reservations();
        let Some(dir) = &self.pr_dir else {
            return;
        };
        for lun in dirty {
            let path = lun_file(dir, lun);
            let result = match self.scsi.reservation_state(lun) {
                Some(bytes) => write_atomically(&path, &bytes),
                None => match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(e) = result {
                tracing::error!(tid = self.tid, lun, path = %path.display(), "cannot save persistent reservations: {e}");
            }
        }
    }
}
