//! A document's subscribers: a small map from connection to subscriber, kept as a `Vec` sorted by
//! connection id. Documents have few subscribers and visit all of them on every op; a `Vec`
//! walks them without the node hops of a `BTreeMap`, in the same (connection id) order.

/// Connection id → subscriber, sorted by connection id. The API is the subset of `BTreeMap`'s the
/// core uses.
#[derive(Debug)]
pub(super) struct Subscribers<K, V> {
    entries: Vec<(K, V)>,
}

impl<K: Ord + Copy, V> Subscribers<K, V> {
    pub(super) fn new() -> Self {
        Subscribers {
            entries: Vec::new(),
        }
    }

    fn find(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub(super) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    pub(super) fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.find(key).ok()?;
        let (_, value) = self.entries.remove(i);
        // Give the memory back once most of it is unused (a crowd left).
        if self.entries.capacity() > 16 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        Some(value)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Behaves like a `BTreeMap` under a random sequence of operations.
    #[test]
    fn behaves_like_a_btree_map() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut ours = Subscribers::new();
        let mut reference = BTreeMap::new();
        for step in 0..20_000u64 {
            let key = next() % 64;
            match next() % 4 {
                0 | 1 => assert_eq!(ours.insert(key, step), reference.insert(key, step)),
                2 => assert_eq!(ours.remove(&key), reference.remove(&key)),
                _ => {
                    if let (Some(a), Some(b)) = (ours.get_mut(&key), reference.get_mut(&key)) {
                        *a += 1;
                        *b += 1;
                    }
                }
            }
            assert_eq!(ours.len(), reference.len());
            assert_eq!(ours.is_empty(), reference.is_empty());
            assert_eq!(ours.contains_key(&key), reference.contains_key(&key));
            assert_eq!(ours.get(&key), reference.get(&key));
        }
        assert!(ours.iter().eq(reference.iter()));
        assert!(ours.values().eq(reference.values()));
    }
}
