//! A process-local memo of recent reads: what a server reuses for a short, fixed time instead
//! of reading it again on every request (a verified access token, a session, an account, an
//! organization, a membership, an API key).
//!
//! The bound is the point: an entry is reused for at most `ttl` **from the moment its read
//! began** (the caller takes the time before reading), so a change committed on any server is
//! seen by every server within `ttl` of the change: a read that began before the change
//! expires no later than `ttl` after it, and a read that began after it sees it. A change made
//! through this process forgets every entry at once ([`Memo::forget_all`]), and a read that was
//! under way during the forgetting is not kept (a generation counter), so on the server that
//! made it a change is immediate. Entries are stamped with the domain clock, so a manual clock
//! moved ahead expires them as real time would; a clock that moved back expires them too.
//!
//! Bounded: at most `capacity` entries, or, for a memo of values whose sizes vary
//! ([`Memo::weighed`]), at most a total weight (the least useful are evicted first, by
//! `quick_cache`'s S3-FIFO policy; a value heavier than a sixteenth of the total is not kept).
//! A `ttl` of zero keeps nothing: every call reads.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

#[derive(Clone)]
struct Entry<V> {
    read_at: OffsetDateTime,
    weight: u64,
    value: V,
}

/// An entry weighs what its value was weighed at when it was kept.
#[derive(Clone, Copy)]
struct EntryWeight;

impl<K, V> quick_cache::Weighter<K, Entry<V>> for EntryWeight {
    fn weight(&self, _: &K, entry: &Entry<V>) -> u64 {
        entry.weight
    }
}

/// A bounded, time-limited memo of values by key. See the module docs.
pub struct Memo<K, V> {
    entries: Option<quick_cache::sync::Cache<K, Entry<V>, EntryWeight>>,
    ttl: time::Duration,
    generation: AtomicU64,
    /// A value's weight (1 for every value unless [`Memo::weighed`]).
    weigh: fn(&V) -> u64,
    /// The heaviest value kept.
    max_weight: u64,
}

impl<K, V> fmt::Debug for Memo<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memo")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A read about to begin: its start time and the memo's generation then.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    read_at: OffsetDateTime,
    generation: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Memo<K, V> {
    /// A memo reusing each read for `ttl`, holding at most about `capacity` entries. A `ttl`
    /// of zero (or a `capacity` of zero) keeps nothing.
    #[must_use]
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self::weighed(ttl, capacity, capacity as u64, |_| 1)
    }

    /// A memo reusing each read for `ttl`, holding values of at most `total` weight in all, as
    /// `weigh` weighs them (say, their approximate size in bytes); a value heavier than a
    /// sixteenth of `total` is never kept. `items` is the expected number of entries.
    #[must_use]
    pub fn weighed(ttl: Duration, items: usize, total: u64, weigh: fn(&V) -> u64) -> Self {
        let ttl = time::Duration::try_from(ttl).unwrap_or(time::Duration::ZERO);
        let keeps = ttl.is_positive() && items > 0 && total > 0;
        Self {
            entries: keeps
                .then(|| quick_cache::sync::Cache::with_weighter(items, total, EntryWeight)),
            ttl,
            generation: AtomicU64::new(0),
            weigh,
            max_weight: (total / 16).max(1),
        }
    }

    /// A memo that keeps nothing: every call reads.
    #[must_use]
    pub fn off() -> Self {
        Self::new(Duration::ZERO, 0)
    }

    /// The value read for `key` (or a borrowed form of it, such as `&str` for `String`) less
    /// than `ttl` before `now`, if any.
    #[must_use]
    pub fn get<Q>(&self, key: &Q, now: OffsetDateTime) -> Option<V>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        let entry = self.entries.as_ref()?.get(key)?;
        let age = now - entry.read_at;
        (!age.is_negative() && age < self.ttl).then_some(entry.value)
    }

    /// Marks the start of a read at `now` (take it before reading).
    #[must_use]
    pub fn ticket(&self, now: OffsetDateTime) -> Ticket {
        Ticket {
            read_at: now,
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// Keeps what a read that began at `ticket` found, unless something was forgotten since.
    pub fn put(&self, key: K, value: V, ticket: Ticket) {
        let Some(entries) = &self.entries else {
            return;
        };
        let weight = (self.weigh)(&value).max(1);
        if weight <= self.max_weight && self.generation.load(Ordering::Acquire) == ticket.generation
        {
            entries.insert(
                key,
                Entry {
                    read_at: ticket.read_at,
                    weight,
                    value,
                },
            );
        }
    }

    /// [`Memo::forget_all`] after a write, passing the write's `result` through (for port
    /// wrappers: `self.recent.forget_all_after(self.inner.delete(…).await)`).
    pub fn forget_all_after<T>(&self, result: T) -> T {
        self.forget_all();
        result
    }

    /// Forgets everything (after a change made through this process), including what reads
    /// under way now will find.
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    /// The value for `key`: reused when read less than `ttl` ago, else read with `load` (which
    /// began at `now`) and kept when it succeeds.
    ///
    /// # Errors
    /// Whatever `load` answers (errors are not kept).
    pub async fn get_or_load<E, F, Fut>(&self, key: K, now: OffsetDateTime, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.get(&key, now) {
            return Ok(v);
        }
        let ticket = self.ticket(now);
        let value = load().await?;
        self.put(key, value.clone(), ticket);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1_000.0 + secs)
    }

    #[test]
    fn an_entry_lives_ttl_from_the_start_of_its_read() {
        let memo: Memo<u32, &str> = Memo::new(Duration::from_millis(500), 16);
        let ticket = memo.ticket(at(0.0));
        memo.put(1, "a", ticket);
        assert_eq!(memo.get(&1, at(0.0)), Some("a"));
        assert_eq!(memo.get(&1, at(0.499)), Some("a"));
        assert_eq!(memo.get(&1, at(0.5)), None, "expired at read start + ttl");
        assert_eq!(
            memo.get(&1, at(-0.1)),
            None,
            "a clock moved back expires it"
        );
        assert_eq!(memo.get(&2, at(0.1)), None);
    }

    #[test]
    fn forgetting_drops_entries_and_reads_under_way() {
        let memo: Memo<u32, &str> = Memo::new(Duration::from_secs(5), 16);
        memo.put(1, "a", memo.ticket(at(0.0)));
        let under_way = memo.ticket(at(0.1));
        memo.forget_all();
        assert_eq!(memo.get(&1, at(0.2)), None);
        memo.put(2, "stale", under_way);
        assert_eq!(
            memo.get(&2, at(0.2)),
            None,
            "began before the change: not kept"
        );
        memo.put(2, "fresh", memo.ticket(at(0.3)));
        assert_eq!(memo.get(&2, at(0.4)), Some("fresh"));
    }

    #[test]
    fn a_weighed_memo_keeps_at_most_its_total_and_never_a_value_too_heavy() {
        let memo: Memo<u32, Vec<u8>> =
            Memo::weighed(Duration::from_secs(5), 16, 16_000, |v| v.len() as u64);
        memo.put(1, vec![0; 1_001], memo.ticket(at(0.0)));
        assert_eq!(
            memo.get(&1, at(0.1)),
            None,
            "heavier than a sixteenth: not kept"
        );
        memo.put(2, vec![0; 1_000], memo.ticket(at(0.0)));
        assert!(memo.get(&2, at(0.1)).is_some());
        for k in 10..200 {
            memo.put(k, vec![0; 1_000], memo.ticket(at(0.0)));
        }
        let kept = (10..200).filter(|k| memo.get(k, at(0.1)).is_some()).count();
        assert!(
            kept <= 16,
            "at most 16,000 bytes kept: {kept} values of 1,000"
        );
        assert!(kept > 0);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let memo: Memo<u32, &str> = Memo::off();
        memo.put(1, "a", memo.ticket(at(0.0)));
        assert_eq!(memo.get(&1, at(0.0)), None);
    }

    #[tokio::test]
    async fn get_or_load_reads_once_within_the_ttl_and_keeps_no_error() {
        let memo: Memo<u32, u32> = Memo::new(Duration::from_secs(1), 16);
        let reads = std::sync::atomic::AtomicU32::new(0);
        let load = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(7)
        };
        assert_eq!(memo.get_or_load(1, at(0.0), load).await, Ok(7));
        assert_eq!(memo.get_or_load(1, at(0.9), load).await, Ok(7));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(memo.get_or_load(1, at(1.0), load).await, Ok(7));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        let failing = || async { Err::<u32, _>("down") };
        assert_eq!(memo.get_or_load(9, at(1.0), failing).await, Err("down"));
        assert_eq!(memo.get(&9, at(1.0)), None);
    }
}
