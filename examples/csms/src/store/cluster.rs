//! Cluster mode: the store's caches (tokens, tariffs, master-pass groups)
//! kept in step across the nodes sharing the database. A node that changes
//! a cached table tells the cluster ([`Store::on_cached_change`]); the others forget what
//! they cached of it ([`Store::forget_cached`]) and read it again.

use tokio::sync::mpsc;

use super::Store;

impl Store {
    /// Cluster mode: `tell` gets a message each time this process changes
    /// a cached table (tokens, tariffs, a station's master-pass group), for
    /// the other nodes to drop their copies. Set once; later calls are ignored.
    pub fn on_cached_change(&self, tell: mpsc::UnboundedSender<()>) {
        let _ = self.cache.changed.set(tell);
    }

    /// A cached table was changed by this process (see
    /// [`Store::on_cached_change`]).
    pub(super) fn cached_changed(&self) {
        if let Some(tell) = self.cache.changed.get() {
            let _ = tell.send(());
        }
    }

    /// Another node changed a cached table: what is cached of tokens,
    /// tariffs and master-pass groups is forgotten and read again from the
    /// database when next needed.
    pub fn forget_cached(&self) {
        self.forget_master_pass(None);
        self.cache
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.cache
            .tariffs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
