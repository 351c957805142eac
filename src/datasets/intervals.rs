//! Genomic intervals (0-based, half-open) and the overlap / distance queries dataset building needs.

/// A 0-based half-open interval on one chromosome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First base.
    pub start: i64,
    /// One past the last base.
    pub end: i64,
}

impl Interval {
    /// [start, end).
    pub fn new(start: i64, end: i64) -> Self {
        Interval { start, end }
    }

    /// Whether two intervals share at least one base.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Merged, sorted, non-overlapping intervals answering "does [a, b) touch any of them?" in log time.
#[derive(Debug, Clone, Default)]
pub struct IntervalSet {
    merged: Vec<Interval>,
}

impl IntervalSet {
    /// Sorts and merges the intervals (touching ones included).
    pub fn new(mut intervals: Vec<Interval>) -> Self {
        intervals.sort();
        let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
        for interval in intervals {
            match merged.last_mut() {
                Some(last) if interval.start <= last.end => last.end = last.end.max(interval.end),
                _ => merged.push(interval),
            }
        }
        IntervalSet { merged }
    }

    /// Whether [start, end) overlaps any interval.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        // The first merged interval ending after `start` is the only candidate.
        let index = self.merged.partition_point(|i| i.end <= start);
        self.merged.get(index).is_some_and(|i| i.start < end)
    }

    /// Whether base `position` is covered.
    pub fn contains(&self, position: i64) -> bool {
        self.overlaps(position, position + 1)
    }

    /// The merged intervals.
    pub fn intervals(&self) -> &[Interval] {
        &self.merged
    }

    /// Bases covered.
    pub fn covered_bases(&self) -> i64 {
        self.merged.iter().map(|i| i.end - i.start).sum()
    }
}

/// Sorted positions answering "how far is the nearest one?".
#[derive(Debug, Clone, Default)]
pub struct PointSet {
    sorted: Vec<i64>,
}

impl PointSet {
    /// Sorts the positions.
    pub fn new(mut positions: Vec<i64>) -> Self {
        positions.sort_unstable();
        positions.dedup();
        PointSet { sorted: positions }
    }

    /// Distance from `position` to the nearest point (i64::MAX if there are none).
    pub fn distance(&self, position: i64) -> i64 {
        let index = self.sorted.partition_point(|&p| p < position);
        let after = self.sorted.get(index).map(|p| p - position);
        let before = index
            .checked_sub(1)
            .and_then(|i| self.sorted.get(i))
            .map(|p| position - p);
        after.into_iter().chain(before).min().unwrap_or(i64::MAX)
    }

    /// Distance from the interval [start, end) to the nearest point (0 if one lies inside).
    pub fn distance_to_interval(&self, start: i64, end: i64) -> i64 {
        let index = self.sorted.partition_point(|&p| p < start);
        match self.sorted.get(index) {
            Some(&p) if p < end => 0,
            _ => self.distance(start).min(self.distance(end - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_overlap_queries() {
        let set = IntervalSet::new(vec![
            Interval::new(10, 20),
            Interval::new(15, 30),
            Interval::new(40, 50),
        ]);
        assert_eq!(set.intervals().len(), 2);
        assert!(set.overlaps(29, 31) && !set.overlaps(30, 40) && set.overlaps(0, 11));
        assert!(set.contains(49) && !set.contains(50));
        assert_eq!(set.covered_bases(), 30);
    }

    #[test]
    fn nearest_point_distances() {
        let points = PointSet::new(vec![100, 10, 50]);
        assert_eq!(points.distance(40), 10);
        assert_eq!(points.distance(1000), 900);
        assert_eq!(points.distance_to_interval(45, 60), 0);
        assert_eq!(points.distance_to_interval(60, 70), 10);
        assert_eq!(PointSet::default().distance(3), i64::MAX);
    }
}
