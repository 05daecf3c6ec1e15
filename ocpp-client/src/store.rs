//! Durable offline queue for transaction-related messages (OCPP 2.0.1 E12,
//! 1.6 §4.7): messages are kept until the CSMS has answered them, and sent
//! again in order after a reconnect.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

/// One queued CALL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Position in the queue (increasing).
    pub seq: u64,
    /// Action name.
    pub action: String,
    /// Request payload, JSON text.
    pub payload: String,
}

/// Where queued messages live until the CSMS answers them.
pub trait OfflineStore: Send + Sync + 'static {
    /// Appends a message; durable when this returns.
    ///
    /// # Errors
    ///
    /// The storage's I/O error.
    fn push(&self, action: &str, payload: &str) -> io::Result<u64>;
    /// The oldest message, if any.
    ///
    /// # Errors
    ///
    /// The storage's I/O error.
    fn front(&self) -> io::Result<Option<QueuedMessage>>;
    /// Removes a delivered (or abandoned) message.
    ///
    /// # Errors
    ///
    /// The storage's I/O error.
    fn remove(&self, seq: u64) -> io::Result<()>;
    /// Messages waiting.
    fn len(&self) -> usize;
    /// Whether none are waiting.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A queue in memory: survives reconnects, not restarts.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<(u64, VecDeque<QueuedMessage>)>,
}

impl MemoryStore {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }
}

impl OfflineStore for MemoryStore {
    fn push(&self, action: &str, payload: &str) -> io::Result<u64> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let seq = g.0;
        g.1.push_back(QueuedMessage {
            seq,
            action: action.to_owned(),
            payload: payload.to_owned(),
        });
        Ok(seq)
    }
    fn front(&self) -> io::Result<Option<QueuedMessage>> {
        Ok(self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .front()
            .cloned())
    }
    fn remove(&self, seq: u64) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .retain(|m| m.seq != seq);
        Ok(())
    }
    fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1.len()
    }
}

/// A queue in an append-only file: survives restarts and power loss.
///
/// Each push and removal is one JSON line, synced to disk before the call
/// returns; opening the file replays it and rewrites it compactly. A torn
/// last line (power cut mid-write) is ignored.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    inner: Mutex<FileInner>,
}

#[derive(Debug)]
struct FileInner {
    file: File,
    next: u64,
    queue: VecDeque<QueuedMessage>,
}

impl FileStore {
    /// Opens (or creates) the queue at `path`.
    ///
    /// # Errors
    ///
    /// The file's I/O error.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut queue = VecDeque::new();
        let mut next = 0;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line?) else {
                    continue;
                };
                if let Some(ack) = v.get("ack").and_then(|a| a.as_u64()) {
                    queue.retain(|m: &QueuedMessage| m.seq != ack);
                } else if let (Some(seq), Some(action), Some(payload)) = (
                    v.get("seq").and_then(|s| s.as_u64()),
                    v.get("action").and_then(|a| a.as_str()),
                    v.get("payload"),
                ) {
                    next = next.max(seq);
                    queue.push_back(QueuedMessage {
                        seq,
                        action: action.to_owned(),
                        payload: payload.to_string(),
                    });
                }
            }
        }
        // Compact: rewrite only the live entries, then swap the file in.
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            for m in &queue {
                writeln!(f, "{}", entry_line(m)?)?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            path,
            inner: Mutex::new(FileInner { file, next, queue }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn entry_line(m: &QueuedMessage) -> io::Result<String> {
    let payload: serde_json::Value = serde_json::from_str(&m.payload).map_err(io::Error::other)?;
    Ok(json!({"seq": m.seq, "action": m.action, "payload": payload}).to_string())
}

impl OfflineStore for FileStore {
    fn push(&self, action: &str, payload: &str) -> io::Result<u64> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let m = QueuedMessage {
            seq: g.next + 1,
            action: action.to_owned(),
            payload: payload.to_owned(),
        };
        let line = entry_line(&m)?;
        writeln!(g.file, "{line}")?;
        g.file.sync_data()?;
        g.next = m.seq;
        let seq = m.seq;
        g.queue.push_back(m);
        Ok(seq)
    }
    fn front(&self) -> io::Result<Option<QueuedMessage>> {
        Ok(self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue
            .front()
            .cloned())
    }
    fn remove(&self, seq: u64) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(g.file, "{}", json!({ "ack": seq }))?;
        g.file.sync_data()?;
        g.queue.retain(|m| m.seq != seq);
        Ok(())
    }
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_survives_reopen_and_torn_lines() {
        let dir = std::env::temp_dir().join(format!("ocpp-client-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("queue.log");
        let _ = std::fs::remove_file(&path);
        {
            let s = FileStore::open(&path).unwrap();
            let a = s.push("TransactionEvent", r#"{"seqNo":0}"#).unwrap();
            s.push("TransactionEvent", r#"{"seqNo":1}"#).unwrap();
            s.push("TransactionEvent", r#"{"seqNo":2}"#).unwrap();
            s.remove(a).unwrap();
        }
        // a torn write at the end
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":9,\"act")
            .unwrap();
        let s = FileStore::open(&path).unwrap();
        assert_eq!(s.len(), 2);
        let front = s.front().unwrap().unwrap();
        assert_eq!(front.payload, r#"{"seqNo":1}"#);
        let next = s.push("MeterValues", "{}").unwrap();
        assert_eq!(next, 4, "sequence continues after reopen");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
