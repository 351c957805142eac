//! Motif discovery from nucleotide attributions: seqlets, clusters, trimmed PWMs/CWMs.
//!
//! Seqlets are called with tangermeme's recursive algorithm (`recursive_seqlets`, as tangermeme
//! 1.6.0 computes it; `tests/faithfulness.rs` checks the seqlets and p-values against it): every
//! attribution of every sequence is binned (1000 bins between the smallest and largest value), a
//! span's statistic is the sum of its positions' bins, its null is the L-fold convolution of the
//! bin histogram (positions taken as independent) and its p-value P(S ≥ s). A span is a seqlet
//! when its p-value, that of every span it starts (shorter, same start) and that of every span
//! inside it sharing its end, down to the minimum length, are below the threshold (p 0.01,
//! lengths 4–25). Spans are taken longest first, most significant first; the positions of a
//! seqlet cannot be part of another.
//!
//! Seqlets are then clustered greedily, strongest first: a seqlet joins the cluster whose
//! running contribution-weight matrix (CWM: mean attribution of each base at each column) it
//! matches best, on either strand and any offset that keeps ¾ of the shorter of the two aligned,
//! when the cosine similarity between its contribution (attribution × one-hot) and the CWM over
//! the aligned columns, normalised by the seqlet's whole contribution, reaches the threshold (0.6);
//! otherwise it starts a cluster. Clusters with fewer than `min_seqlets` members are dropped. A
//! cluster's PWM counts the bases of its aligned members per column (columns covered by fewer
//! than half of them dropped), and both matrices are trimmed to the columns from the first to the
//! last with information content ≥ 0.6 bits, widened to at least 6 columns around that core
//! within the covered columns; a cluster that cannot give 6 columns is dropped.

use crate::motif::tomtom::reverse_complement;
use crate::motif::Strand;

/// Options of the recursive seqlet caller (tangermeme's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeqletSettings {
    /// A span and every span inside it ending at its end must have p below this.
    pub threshold: f64,
    /// Shortest seqlet.
    pub min_length: usize,
    /// Longest seqlet.
    pub max_length: usize,
    /// Positions added on each side once a seqlet is called (not used to prevent overlaps).
    pub additional_flanks: usize,
    /// Bins of the attribution histogram.
    pub bins: usize,
}

impl Default for SeqletSettings {
    /// p 0.01, lengths 4–25, no flanks, 1000 bins.
    fn default() -> Self {
        SeqletSettings {
            threshold: 0.01,
            min_length: 4,
            max_length: 25,
            additional_flanks: 0,
            bins: 1000,
        }
    }
}

/// A span of high attribution in one sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seqlet {
    /// Index of the sequence.
    pub sequence: usize,
    /// First position (0-based).
    pub start: usize,
    /// One past the last position.
    pub end: usize,
    /// Sum of the attributions over the span.
    pub attribution: f64,
    /// p-value of the span as called (before flanks): its sum's tail probability under the null
    /// of its length.
    pub p_value: f64,
}

/// Recursive seqlets of every sequence's per-position attributions (sequences may differ in
/// length). Only positive spans are called; run on negated scores for negative ones.
pub fn recursive_seqlets(scores: &[Vec<f64>], settings: &SeqletSettings) -> Vec<Seqlet> {
    let values = scores.iter().flatten().copied().filter(|v| v.is_finite());
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut count = 0usize;
    for v in values {
        low = low.min(v);
        high = high.max(v);
        count += 1;
    }
    let (min_len, max_len) = (settings.min_length.max(1), settings.max_length);
    if count == 0 || high <= low || max_len < min_len || settings.bins < 2 {
        return Vec::new();
    }
    let bins = settings.bins;
    let width = (high - low) / (bins - 1) as f64;
    // A position's bin; a span's statistic is the sum of its positions' bins (what the null
    // below is the distribution of).
    let bin_of = |x: f64| -> usize { (((x - low) / width).max(0.0) as usize).min(bins - 1) };
    // Histogram of single positions, then survival functions of span sums by length.
    let mut f = vec![0.0f64; bins];
    for v in scores.iter().flatten().filter(|v| v.is_finite()) {
        f[bin_of(*v)] += 1.0;
    }
    for p in f.iter_mut() {
        *p /= count as f64;
    }
    let mut survival: Vec<Vec<f64>> = vec![Vec::new(); max_len + 1];
    let mut pdf = f.clone();
    for (length, slot) in survival.iter_mut().enumerate().skip(1) {
        if length > 1 {
            let mut next = vec![0.0f64; bins * length];
            for (i, &a) in pdf.iter().enumerate() {
                if a == 0.0 {
                    continue;
                }
                for (out, &b) in next[i..i + bins].iter_mut().zip(&f) {
                    *out += a * b;
                }
            }
            pdf = next;
        }
        // P(S ≥ k), summed from the top so small tails keep their digits (tangermeme's `rcdfs`).
        let mut s = vec![0.0f64; bins * length];
        let mut tail = 0.0f64;
        for k in (0..s.len()).rev() {
            tail += pdf[k];
            s[k] = tail;
        }
        *slot = s;
    }

    let mut seqlets = Vec::new();
    for (index, sequence) in scores.iter().enumerate() {
        let l = sequence.len();
        if l < min_len {
            continue;
        }
        let mut csum = vec![0.0f64; l + 1];
        let mut bin_csum = vec![0usize; l + 1];
        for (j, v) in sequence.iter().enumerate() {
            let v = if v.is_finite() { *v } else { 0.0 };
            csum[j + 1] = csum[j] + v;
            bin_csum[j + 1] = bin_csum[j] + bin_of(v);
        }
        let span_p = |start: usize, length: usize| -> f64 {
            survival[length][bin_csum[start + length] - bin_csum[start]]
        };
        // p[length][start]; lengths below the minimum pass (0), as in tangermeme.
        let mut p = vec![vec![1.0f64; l]; max_len + 1];
        for row in p.iter_mut().take(min_len) {
            row.fill(0.0);
        }
        for length in min_len..=max_len.min(l) {
            let (shorter, longer) = p.split_at_mut(length);
            let previous = &shorter[length - 1];
            for (k, value) in longer[0][..=l - length].iter_mut().enumerate() {
                *value = span_p(k, length).max(previous[k]);
            }
        }
        for length in (min_len..=max_len.min(l)).rev() {
            loop {
                let (start, best) = p[length].iter().copied().enumerate().fold(
                    (0, f64::INFINITY),
                    |acc, (k, v)| if v < acc.1 { (k, v) } else { acc },
                );
                p[length][start] = 1.0;
                if best >= settings.threshold {
                    break;
                }
                let inner_pass = (1..length).all(|k| p[length - k][start + k] < settings.threshold);
                if !inner_pass {
                    continue;
                }
                for position in start..start + length {
                    for row in p.iter_mut() {
                        row[position] = 1.0;
                    }
                }
                // The seqlet's own p-value (its span's tail probability), as tangermeme reports.
                let own = span_p(start, length);
                let first = start.saturating_sub(settings.additional_flanks);
                let end = (start + length + settings.additional_flanks).min(l);
                seqlets.push(Seqlet {
                    sequence: index,
                    start: first,
                    end,
                    attribution: csum[end] - csum[first],
                    p_value: own,
                });
            }
        }
    }
    seqlets
}

/// Options of seqlet clustering and trimming.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterSettings {
    /// Cosine similarity a seqlet needs to join a cluster.
    pub similarity: f64,
    /// Clusters with fewer members are dropped.
    pub min_seqlets: usize,
    /// Columns with less information (bits) are trimmed from the ends.
    pub min_information: f64,
    /// Trimmed motifs are widened to at least this many columns (within the columns most members
    /// cover); a cluster that cannot reach it is dropped.
    pub min_width: usize,
    /// Widest cluster (columns); members extend a cluster up to this.
    pub max_width: usize,
}

impl Default for ClusterSettings {
    /// Similarity 0.6, 20 seqlets, 0.6 bits, 6 columns, at most 40 columns.
    fn default() -> Self {
        ClusterSettings {
            similarity: 0.6,
            min_seqlets: 20,
            min_information: 0.6,
            min_width: 6,
            max_width: 40,
        }
    }
}

/// A seqlet as placed in its cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// The seqlet.
    pub seqlet: Seqlet,
    /// Strand the seqlet reads the motif on (`Reverse`: its reverse complement matches).
    pub strand: Strand,
    /// Cluster column of the seqlet's first base (on `strand`), before trimming.
    pub column: i64,
    /// Similarity when it joined (1 for the founding seqlet).
    pub similarity: f64,
}

/// A discovered motif.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredMotif {
    /// Aligned members.
    pub members: Vec<Member>,
    /// Position probability matrix (A, C, G, T per column), trimmed.
    pub pwm: Vec<[f64; 4]>,
    /// Mean attribution of each base per column (0 where the base was not seen), trimmed.
    pub cwm: Vec<[f64; 4]>,
    /// Information content per column (bits), trimmed.
    pub information: Vec<f64>,
    /// First kept column of the untrimmed cluster.
    pub trim_start: usize,
}

impl DiscoveredMotif {
    /// Most likely base per column, lower case below 1 bit.
    pub fn consensus(&self) -> String {
        self.pwm
            .iter()
            .zip(&self.information)
            .map(|(c, &ic)| {
                let k = (0..4).max_by(|&a, &b| c[a].total_cmp(&c[b])).unwrap_or(0);
                let base = b"ACGT"[k] as char;
                if ic >= 1.0 {
                    base
                } else {
                    base.to_ascii_lowercase()
                }
            })
            .collect()
    }
}

fn base_index(base: u8) -> Option<usize> {
    match base.to_ascii_uppercase() {
        b'A' => Some(0),
        b'C' => Some(1),
        b'G' => Some(2),
        b'T' => Some(3),
        _ => None,
    }
}

/// The contribution matrix of a span: attribution at the observed base, 0 elsewhere (and at N).
fn contribution(sequence: &[u8], scores: &[f64], start: usize, end: usize) -> Vec<[f64; 4]> {
    (start..end)
        .map(|i| {
            let mut c = [0.0; 4];
            if let Some(k) = base_index(sequence[i]) {
                c[k] = scores[i];
            }
            c
        })
        .collect()
}

/// A cluster being grown: summed contributions and base counts per column.
struct Cluster {
    sums: Vec<[f64; 4]>,
    counts: Vec<[f64; 4]>,
    members: Vec<Member>,
}

impl Cluster {
    /// Mean contribution per column (over members covering it).
    fn cwm_column(&self, column: usize) -> [f64; 4] {
        let covered: f64 = self.counts[column].iter().sum();
        if covered == 0.0 {
            return [0.0; 4];
        }
        self.sums[column].map(|s| s / covered)
    }

    /// Best (similarity, strand, column of the seqlet's first base) of a contribution matrix.
    fn best_alignment(&self, forward: &[[f64; 4]], reverse: &[[f64; 4]]) -> (f64, Strand, i64) {
        let width = self.sums.len() as i64;
        let cwm: Vec<[f64; 4]> = (0..self.sums.len()).map(|c| self.cwm_column(c)).collect();
        let mut best = (f64::NEG_INFINITY, Strand::Forward, 0);
        for (strand, matrix) in [(Strand::Forward, forward), (Strand::Reverse, reverse)] {
            let length = matrix.len() as i64;
            let norm: f64 = matrix.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
            if norm == 0.0 {
                continue;
            }
            let need = ((3 * length.min(width)) as f64 / 4.0).ceil() as i64;
            for column in (need - length)..=(width - need) {
                let (mut dot, mut cnorm) = (0.0, 0.0);
                for (i, row) in matrix.iter().enumerate() {
                    let c = column + i as i64;
                    if c < 0 || c >= width {
                        continue;
                    }
                    let m = &cwm[c as usize];
                    dot += (0..4).map(|k| row[k] * m[k]).sum::<f64>();
                    cnorm += m.iter().map(|v| v * v).sum::<f64>();
                }
                if cnorm == 0.0 {
                    continue;
                }
                let similarity = dot / (norm * cnorm.sqrt());
                if similarity > best.0 {
                    best = (similarity, strand, column);
                }
            }
        }
        best
    }

    /// Adds a member at `column` (may be negative or past the end: the cluster grows, up to
    /// `max_width`; columns that would pass it are left out).
    fn add(
        &mut self,
        member: Member,
        matrix: &[[f64; 4]],
        bases: &[Option<usize>],
        max_width: usize,
    ) -> Member {
        let mut member = member;
        if member.column < 0 {
            let grow = (-member.column) as usize;
            let grow = grow.min(max_width.saturating_sub(self.sums.len()));
            let mut sums = vec![[0.0; 4]; grow];
            sums.extend_from_slice(&self.sums);
            self.sums = sums;
            let mut counts = vec![[0.0; 4]; grow];
            counts.extend_from_slice(&self.counts);
            self.counts = counts;
            for m in self.members.iter_mut() {
                m.column += grow as i64;
            }
            member.column += grow as i64;
        }
        let end = member.column + matrix.len() as i64;
        if end > self.sums.len() as i64 {
            let new_width = (end as usize).min(max_width.max(self.sums.len()));
            self.sums.resize(new_width, [0.0; 4]);
            self.counts.resize(new_width, [0.0; 4]);
        }
        for (i, (row, base)) in matrix.iter().zip(bases).enumerate() {
            let c = member.column + i as i64;
            if c < 0 || c >= self.sums.len() as i64 {
                continue;
            }
            let c = c as usize;
            for (sum, value) in self.sums[c].iter_mut().zip(row) {
                *sum += value;
            }
            if let Some(k) = base {
                self.counts[c][*k] += 1.0;
            }
        }
        self.members.push(member);
        member
    }
}

/// Clusters seqlets into motifs (strongest seqlets first; see the module notes). `sequences` and
/// `scores` are indexed by `Seqlet::sequence`. Motifs come out by member count, largest first.
pub fn cluster_seqlets(
    seqlets: &[Seqlet],
    sequences: &[&[u8]],
    scores: &[Vec<f64>],
    settings: &ClusterSettings,
) -> Vec<DiscoveredMotif> {
    let mut order: Vec<usize> = (0..seqlets.len()).collect();
    order.sort_by(|&a, &b| {
        seqlets[b]
            .attribution
            .total_cmp(&seqlets[a].attribution)
            .then(a.cmp(&b))
    });
    let mut clusters: Vec<Cluster> = Vec::new();
    for index in order {
        let seqlet = seqlets[index];
        let sequence = sequences[seqlet.sequence];
        let forward = contribution(sequence, &scores[seqlet.sequence], seqlet.start, seqlet.end);
        let reverse = reverse_complement(&forward);
        let forward_bases: Vec<Option<usize>> = sequence[seqlet.start..seqlet.end]
            .iter()
            .map(|&b| base_index(b))
            .collect();
        let reverse_bases: Vec<Option<usize>> = forward_bases
            .iter()
            .rev()
            .map(|b| b.map(|k| 3 - k))
            .collect();
        let mut best: Option<(usize, f64, Strand, i64)> = None;
        for (c, cluster) in clusters.iter().enumerate() {
            let (similarity, strand, column) = cluster.best_alignment(&forward, &reverse);
            if similarity >= settings.similarity && best.is_none_or(|b| similarity > b.1) {
                best = Some((c, similarity, strand, column));
            }
        }
        match best {
            Some((c, similarity, strand, column)) => {
                let (matrix, bases) = match strand {
                    Strand::Forward => (&forward, &forward_bases),
                    Strand::Reverse => (&reverse, &reverse_bases),
                };
                clusters[c].add(
                    Member {
                        seqlet,
                        strand,
                        column,
                        similarity,
                    },
                    matrix,
                    bases,
                    settings.max_width,
                );
            }
            None => {
                let mut cluster = Cluster {
                    sums: Vec::new(),
                    counts: Vec::new(),
                    members: Vec::new(),
                };
                cluster.add(
                    Member {
                        seqlet,
                        strand: Strand::Forward,
                        column: 0,
                        similarity: 1.0,
                    },
                    &forward,
                    &forward_bases,
                    settings.max_width.max(forward.len()),
                );
                clusters.push(cluster);
            }
        }
    }
    let mut motifs: Vec<DiscoveredMotif> = clusters
        .into_iter()
        .filter(|c| c.members.len() >= settings.min_seqlets.max(1))
        .filter_map(|c| finish(c, settings))
        .collect();
    motifs.sort_by_key(|m| std::cmp::Reverse(m.members.len()));
    motifs
}

/// Information content (bits) of a probability column.
pub fn information_content(column: &[f64; 4]) -> f64 {
    2.0 + column
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.log2())
        .sum::<f64>()
}

fn finish(cluster: Cluster, settings: &ClusterSettings) -> Option<DiscoveredMotif> {
    let members = cluster.members.len() as f64;
    // Columns most members cover.
    let covered: Vec<bool> = cluster
        .counts
        .iter()
        .map(|c| c.iter().sum::<f64>() >= members / 2.0)
        .collect();
    let first = covered.iter().position(|&c| c)?;
    let last = covered.iter().rposition(|&c| c)?;
    let pwm_all: Vec<[f64; 4]> = cluster
        .counts
        .iter()
        .map(|c| {
            let total: f64 = c.iter().sum();
            if total == 0.0 {
                [0.25; 4]
            } else {
                c.map(|v| v / total)
            }
        })
        .collect();
    let information: Vec<f64> = pwm_all.iter().map(information_content).collect();
    let strong: Vec<usize> = (first..=last)
        .filter(|&c| information[c] >= settings.min_information)
        .collect();
    let (mut start, mut end) = match (strong.first(), strong.last()) {
        (Some(&a), Some(&b)) => (a, b + 1),
        _ => return None,
    };
    // Widen to the minimum width, towards the more informative neighbour, within coverage.
    while end - start < settings.min_width {
        let left = (start > first).then(|| information[start - 1]);
        let right = (end <= last).then(|| information[end]);
        match (left, right) {
            (Some(l), Some(r)) if l >= r => start -= 1,
            (Some(_), None) => start -= 1,
            (_, Some(_)) => end += 1,
            (None, None) => break,
        }
    }
    // A cluster whose members agree on fewer columns is not a motif (and TOMTOM's minimum
    // overlap could not compare it): its seqlets stay unassigned.
    if end - start < settings.min_width {
        return None;
    }
    let cwm = (start..end).map(|c| cluster.cwm_column(c)).collect();
    Some(DiscoveredMotif {
        members: cluster.members,
        pwm: pwm_all[start..end].to_vec(),
        cwm,
        information: information[start..end].to_vec(),
        trim_start: start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Random sequences with noise attributions; `motif` planted (forward or reverse) in some,
    /// with high attribution on its bases.
    fn planted(
        n: usize,
        length: usize,
        motifs: &[&str],
        seed: u64,
    ) -> (Vec<Vec<u8>>, Vec<Vec<f64>>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut sequences = Vec::new();
        let mut scores = Vec::new();
        for i in 0..n {
            let mut s: Vec<u8> = (0..length)
                .map(|_| b"ACGT"[rng.random_range(0..4)])
                .collect();
            let mut a: Vec<f64> = (0..length)
                .map(|_| rng.random::<f64>() * 0.2 - 0.1)
                .collect();
            let motif = motifs[i % motifs.len()].as_bytes();
            let text: Vec<u8> = if rng.random::<bool>() {
                motif.to_vec()
            } else {
                motif
                    .iter()
                    .rev()
                    .map(|b| match b {
                        b'A' => b'T',
                        b'C' => b'G',
                        b'G' => b'C',
                        _ => b'A',
                    })
                    .collect()
            };
            let at = rng.random_range(5..length - text.len() - 5);
            s[at..at + text.len()].copy_from_slice(&text);
            for v in a[at..at + text.len()].iter_mut() {
                *v = 1.0 + rng.random::<f64>() * 0.5;
            }
            sequences.push(s);
            scores.push(a);
        }
        (sequences, scores)
    }

    #[test]
    fn seqlets_cover_planted_spans_and_nothing_else() {
        let (sequences, scores) = planted(40, 100, &["ATGCAAAT"], 1);
        let seqlets = recursive_seqlets(&scores, &SeqletSettings::default());
        assert!(seqlets.len() >= 38, "{}", seqlets.len());
        for s in &seqlets {
            let text = std::str::from_utf8(&sequences[s.sequence][s.start..s.end]).unwrap();
            assert!(s.end - s.start >= 4 && s.end - s.start <= 25);
            assert!(
                text.contains("GCAA") || text.contains("TTGC"),
                "{text} is not in the planted site"
            );
            assert!(s.p_value < 0.01);
        }
        // No two seqlets of one sequence overlap.
        for a in &seqlets {
            for b in &seqlets {
                if a != b && a.sequence == b.sequence {
                    assert!(a.end <= b.start || b.end <= a.start);
                }
            }
        }
    }

    #[test]
    fn noise_alone_gives_seqlets_at_about_the_threshold_rate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let scores: Vec<Vec<f64>> = (0..50)
            .map(|_| (0..100).map(|_| rng.random::<f64>() - 0.5).collect())
            .collect();
        // 50 × 97 windows of the minimum length: at p < 0.01 about 49 pass on their own, and a
        // seqlet needs every shorter span with its end to pass too.
        let loose = recursive_seqlets(&scores, &SeqletSettings::default()).len();
        assert!(loose <= 49, "{loose}");
        let strict = SeqletSettings {
            threshold: 0.001,
            ..SeqletSettings::default()
        };
        let strict = recursive_seqlets(&scores, &strict).len();
        assert!(strict * 4 <= loose.max(4), "{strict} vs {loose}");
    }

    #[test]
    fn two_planted_motifs_make_two_clusters_on_one_strand_each() {
        let (sequences, scores) = planted(120, 80, &["ATGCAAAT", "TGCTGACTCAGCA"], 3);
        let seqlets = recursive_seqlets(&scores, &SeqletSettings::default());
        let refs: Vec<&[u8]> = sequences.iter().map(|s| s.as_slice()).collect();
        let motifs = cluster_seqlets(&seqlets, &refs, &scores, &ClusterSettings::default());
        assert_eq!(
            motifs.len(),
            2,
            "{:?}",
            motifs.iter().map(|m| m.consensus()).collect::<Vec<_>>()
        );
        let consensus: Vec<String> = motifs
            .iter()
            .map(|m| m.consensus().to_uppercase())
            .collect();
        let rc = |s: &str| -> String {
            s.bytes()
                .rev()
                .map(|b| match b {
                    b'A' => 'T',
                    b'C' => 'G',
                    b'G' => 'C',
                    _ => 'A',
                })
                .collect()
        };
        for site in ["ATGCAAAT", "TGCTGACTCAGCA"] {
            assert!(
                consensus
                    .iter()
                    .any(|c| c.contains(site) || c.contains(&rc(site))),
                "{site} not in {consensus:?}"
            );
        }
        for m in &motifs {
            assert!(m.members.len() >= 55, "{}", m.members.len());
            assert!(m
                .information
                .iter()
                .all(|&ic| (0.0..=2.0 + 1e-12).contains(&ic)));
            assert!(m.pwm.len() >= 6);
        }
    }
}
