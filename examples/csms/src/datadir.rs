//! The data directory is one process's: `csms` holds an exclusive lock on
//! `{data_dir}/csms.lock` while it runs (the OS drops it when the process
//! ends, however it ends) and writes its PID there, so a second instance
//! on the same directory stops at once and says who holds it. Taken with
//! PostgreSQL too: firmware images and station uploads live in the
//! directory whatever the store.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock's file name in the data directory.
pub const LOCK_FILE: &str = "csms.lock";

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the data directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("data directory {} is in use by {}", dir.display(), match pid {
        Some(p) => format!("PID {p}"),
        None => "another process".to_owned(),
    })]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// The holder's PID as it wrote it (none yet: it is starting).
        pid: Option<u32>,
    },
    /// The directory or its lock file could not be opened.
    #[error("data directory {}: {source}", dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Creates `dir` if needed and takes its lock, or says who holds it.
///
/// # Errors
///
/// [`LockError::InUse`] when another process (or another open of it in
/// this one) holds the lock; [`LockError::Io`] when it cannot be opened.
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::InUse {
                dir: dir.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on the same directory fails naming this process; it
    /// is free again once the first is dropped.
    #[test]
    fn one_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("csms-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = lock(&dir).unwrap();
        match lock(&dir) {
            Err(e @ LockError::InUse { pid: Some(p), .. }) => {
                assert_eq!(p, std::process::id());
                assert_eq!(
                    e.to_string(),
                    format!("data directory {} is in use by PID {p}", dir.display())
                );
            }
            other => panic!("a second lock: {other:?}"),
        }
        drop(held);
        let again = lock(&dir).unwrap();
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
