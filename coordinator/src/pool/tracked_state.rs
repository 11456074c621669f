//! Shared state whose changes are counted: the active sessions and the
//! bans. A stats snapshot records the count it was built at and stays
//! current while the count does, so a quiet pool answers its public
//! figures without walking every session per request.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A mutex whose writers bump a change count shared with other [`Tracked`]s.
pub(crate) struct Tracked<T> {
    value: Mutex<T>,
    changes: Arc<AtomicU64>,
}

/// A held [`Tracked`]; a writer's counts one change when dropped (while
/// still held, so whoever reads the count and then the value sees it).
pub(crate) struct TrackedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    changes: Option<&'a AtomicU64>,
}

impl<T> Tracked<T> {
    pub(crate) fn new(value: T, changes: Arc<AtomicU64>) -> Self {
        Tracked { value: Mutex::new(value), changes }
    }

    /// For a change (or a read that may change it).
    pub(crate) fn lock(&self) -> TrackedGuard<'_, T> {
        TrackedGuard { guard: self.value.lock().expect("tracked state lock"), changes: Some(&self.changes) }
    }

    /// For a change no snapshot shows (a session seen again): counts nothing.
    pub(crate) fn lock_quietly(&self) -> TrackedGuard<'_, T> {
        TrackedGuard { guard: self.value.lock().expect("tracked state lock"), changes: None }
    }

    /// For reading only: counts nothing.
    pub(crate) fn read(&self) -> impl Deref<Target = T> + '_ {
        self.value.lock().expect("tracked state lock")
    }
}

impl<T> Deref for TrackedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for TrackedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for TrackedGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(changes) = self.changes {
            changes.fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_count_changes_and_readers_do_not() {
        let changes = Arc::new(AtomicU64::new(0));
        let (a, b) = (Tracked::new(vec![1], changes.clone()), Tracked::new(0u8, changes.clone()));
        assert_eq!(a.read().len(), 1);
        assert_eq!(changes.load(Ordering::Acquire), 0);
        a.lock().push(2);
        *b.lock() = 7;
        assert_eq!(changes.load(Ordering::Acquire), 2, "both count into the one shared count");
        assert_eq!((a.read().clone(), *b.read()), (vec![1, 2], 7));
    }
}
