//! A bounded cache with a time-to-live, owned by one feature shard (no locking: the
//! shard actor is its only user). Eviction is first-in-first-out when full; an entry
//! older than the TTL is never served and is derived again.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// TTL + max-entries cache.
pub struct TtlCache<K, V> {
    map: HashMap<K, (V, Instant, u64)>,
    /// Insertion order as (key, generation); stale generations are skipped.
    order: VecDeque<(K, u64)>,
    generation: u64,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// A cache holding at most `max_entries` for at most `ttl` each.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            ttl,
            max_entries: max_entries.max(1),
        }
    }

    /// The fresh value of `key`; an expired entry is removed and reported as a miss.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        self.get_younger_than(key, self.ttl, now)
    }

    /// The value of `key` if it is at most `max_age` old (and within the TTL); an
    /// entry past the TTL is removed, one past `max_age` only is kept for others.
    pub fn get_younger_than(&mut self, key: &K, max_age: Duration, now: Instant) -> Option<V> {
        let (value, at, _) = self.map.get(key)?;
        let age = now.saturating_duration_since(*at);
        if age > self.ttl {
            self.map.remove(key);
            return None;
        }
        (age <= max_age).then(|| value.clone())
    }

    /// Inserts or refreshes `key`, evicting the oldest insertions beyond the bound.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        self.generation += 1;
        let gen = self.generation;
        self.map.insert(key.clone(), (value, now, gen));
        self.order.push_back((key, gen));
        while self.map.len() > self.max_entries {
            let Some((k, g)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|e| e.2 == g) {
                self.map.remove(&k);
            }
        }
        if self.order.len() > 2 * self.max_entries {
            let map = &self.map;
            self.order
                .retain(|(k, g)| map.get(k).is_some_and(|e| e.2 == *g));
        }
    }

    /// Forgets `key` (its queue slot is skipped later).
    pub fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// Entries held (fresh or not yet noticed as expired).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_after_ttl() {
        let mut c = TtlCache::new(Duration::from_secs(10), 10);
        let t0 = Instant::now();
        c.insert("a", 1, t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(10)), Some(1));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(11)), None);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_fifo_eviction_and_refresh() {
        let mut c = TtlCache::new(Duration::from_secs(100), 2);
        let t0 = Instant::now();
        c.insert("a", 1, t0);
        c.insert("b", 2, t0);
        c.insert("a", 3, t0 + Duration::from_millis(1)); // refresh: a is now newest
        c.insert("c", 4, t0 + Duration::from_millis(2)); // evicts b
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"b", t0), None);
        assert_eq!(c.get(&"a", t0), Some(3));
        assert_eq!(c.get(&"c", t0), Some(4));
        for i in 0..100 {
            c.insert("a", i, t0);
        }
        assert!(c.order.len() <= 4, "order compacted: {}", c.order.len());
    }

    #[test]
    fn max_age_is_per_lookup() {
        let mut c = TtlCache::new(Duration::from_secs(100), 10);
        let t0 = Instant::now();
        c.insert("a", 1, t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            c.get_younger_than(&"a", Duration::from_secs(1), later),
            None
        );
        assert_eq!(
            c.get_younger_than(&"a", Duration::from_secs(10), later),
            Some(1)
        );
        assert_eq!(
            c.len(),
            1,
            "too old for one lane is still fresh for another"
        );
    }
}
