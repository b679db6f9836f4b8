//! Two containers that keep a week of traffic small: slots for what is in flight, and a
//! histogram for the latencies, each sized by what happens at once rather than by the run.

/// Values in reusable slots: a freed slot's index is handed out again.
pub(super) struct Slots<T> {
    values: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    pub fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.values[slot] = Some(value);
                slot
            }
            None => {
                self.values.push(Some(value));
                self.values.len() - 1
            }
        }
    }

    pub fn get(&self, slot: usize) -> Option<&T> {
        self.values.get(slot)?.as_ref()
    }

    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let value = self.values.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some(value)
    }
}

/// The engine reads only slots it holds: an empty one is a bug in the engine.
impl<T> std::ops::Index<usize> for Slots<T> {
    type Output = T;
    fn index(&self, slot: usize) -> &T {
        self.get(slot).expect("a slot the engine holds")
    }
}

impl<T> std::ops::IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, slot: usize) -> &mut T {
        self.values
            .get_mut(slot)
            .and_then(Option::as_mut)
            .expect("a slot the engine holds")
    }
}

/// Counts of whole milliseconds: the nearest-rank percentiles of every value recorded, exact,
/// in memory that grows with the largest value rather than with the count.
#[derive(Default)]
pub(super) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    pub fn record(&mut self, ms: u64) {
        let index = usize::try_from(ms).unwrap_or(usize::MAX);
        if index >= self.counts.len() {
            self.counts.resize(index.saturating_add(1), 0);
        }
        self.counts[index] += 1;
        self.total += 1;
    }

    /// The same value `warmpool_core::metrics::nearest_rank` gives for the recorded values.
    pub fn nearest_rank(&self, pct: f64) -> Option<u64> {
        let rank = warmpool_core::metrics::rank_of(self.total, pct)?;
        let mut seen = 0;
        for (ms, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return u64::try_from(ms).ok();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::metrics::nearest_rank;

    #[test]
    fn the_histogram_gives_the_percentiles_of_the_values_themselves() {
        let values: Vec<u64> = (0..1_000u64).map(|i| (i * 7_919) % 3_001).collect();
        let mut histogram = Histogram::default();
        values.iter().for_each(|v| histogram.record(*v));
        for pct in [1.0, 50.0, 95.0, 99.0, 99.9, 100.0] {
            assert_eq!(histogram.nearest_rank(pct), nearest_rank(&values, pct), "p{pct}");
        }
        assert_eq!(Histogram::default().nearest_rank(50.0), None);
    }

    #[test]
    fn a_freed_slot_is_reused_and_no_longer_readable() {
        let mut slots = Slots::default();
        let (a, b) = (slots.insert("a"), slots.insert("b"));
        assert_eq!(slots.remove(a), Some("a"));
        assert_eq!(slots.get(a), None);
        assert_eq!(slots.remove(a), None);
        assert_eq!(slots.insert("c"), a);
        assert_eq!(slots.get(b), Some(&"b"));
    }
}
