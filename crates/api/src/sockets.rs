//! The open WebSockets of this process, per client address: the count behind
//! `chat.ws_max_per_address`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The open WebSockets of this process, per client address (`chat.ws_max_per_address`).
///
/// Per server on purpose: a count in the shared cache would outlive a server that died with
/// sockets open (nothing would give their places back), and leases to prevent that would cost
/// a cache write per socket and interval. A cluster of `n` servers lets an address hold up to
/// `n` times the cap.
#[derive(Debug, Default)]
pub(crate) struct OpenSockets(Mutex<HashMap<String, usize>>);

impl OpenSockets {
    /// A place for one more socket of `ip`, or `None` when it holds `max` already.
    pub(crate) fn open(self: &Arc<Self>, ip: &str, max: usize) -> Option<SocketSlot> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if open.get(ip).copied().unwrap_or(0) >= max {
            return None;
        }
        *open.entry(ip.to_owned()).or_insert(0) += 1;
        Some(SocketSlot {
            sockets: Arc::clone(self),
            ip: ip.to_owned(),
        })
    }
}

/// One socket's place in [`OpenSockets`], given back when dropped: when the socket's task ends
/// (a close, an abrupt disconnect, a server stop) or when the upgrade fails.
#[derive(Debug)]
pub(crate) struct SocketSlot {
    sockets: Arc<OpenSockets>,
    ip: String,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self
            .sockets
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
