//! Motif-to-motif comparison with p-values (TOMTOM's task: Gupta et al. 2007, complete scores).
//!
//! For each query column the null distribution of its similarity score is its score against every
//! column of every target (both strands when asked): these scores are centred on their median,
//! put on an integer grid of `score_bins` bins shared by all columns of the query, and
//! histogrammed. The score of an alignment is the sum over aligned query columns of the centred
//! similarity; an unaligned query column scores the median (0 after centring), so overhanging
//! alignments are comparable with full ones ("complete" scores). The null distribution of the
//! sum over every span of query columns follows by convolution, and the p-value of the best
//! alignment of a target of width w is that of the maximum over all of its allowed alignments,
//! taken as independent: p = 1 − Π_k P(S_k < s). With both strands the better strand is
//! reported and p becomes 1 − (1 − p)², as in MEME's tomtom and memelite.
//!
//! Conventions follow memelite's `tomtom` (the reference `tests/motifs.rs` compares with): the
//! Euclidean similarity is −‖q − t‖₂, the grid is `floor(bins / (max − floor(min)))` steps per
//! unit, and `offset` places query column 0 at target column `offset` on the reported strand's
//! orientation of the target. Differences, all deliberate: the median is exact (memelite bins
//! it), alignments shorter than `min_overlap` columns count neither as matches nor in the null
//! (memelite allows overlap 1), the product of the alignment CDFs is formed in logs so p-values
//! far below 1e-16 keep their digits (memelite's 1 − CDF stops near 1e-16), a tie between two
//! alignments keeps the longer overlap (memelite compares the offset with the overlap). A
//! strand tie reports the reverse strand, as memelite does. Pearson column similarity (MEME's default) is the
//! Pearson correlation of the four entries; a constant column correlates 0 with everything.

use rayon::prelude::*;

use crate::motif::scan::Strand;
use crate::stats::hypothesis::benjamini_hochberg;

/// How two motif columns are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnSimilarity {
    /// Pearson correlation of the four entries (MEME tomtom's default, `-dist pearson`).
    Pearson,
    /// Minus the Euclidean distance (tomtom-lite / memelite).
    Euclidean,
}

impl ColumnSimilarity {
    /// `pearson` or `euclidean`.
    pub fn name(self) -> &'static str {
        match self {
            ColumnSimilarity::Pearson => "pearson",
            ColumnSimilarity::Euclidean => "euclidean",
        }
    }

    /// Parses `pearson` or `euclidean`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pearson" => Some(ColumnSimilarity::Pearson),
            "euclidean" => Some(ColumnSimilarity::Euclidean),
            _ => None,
        }
    }

    /// Similarity of two columns (the reference formula; `tomtom` evaluates it in bulk).
    pub fn score(self, query: &[f64; 4], target: &[f64; 4]) -> f64 {
        match self {
            ColumnSimilarity::Euclidean => {
                let d: f64 = (0..4).map(|k| (query[k] - target[k]).powi(2)).sum();
                -d.sqrt()
            }
            ColumnSimilarity::Pearson => {
                let mq = query.iter().sum::<f64>() / 4.0;
                let mt = target.iter().sum::<f64>() / 4.0;
                let (mut sqt, mut sqq, mut stt) = (0.0, 0.0, 0.0);
                for k in 0..4 {
                    let (a, b) = (query[k] - mq, target[k] - mt);
                    sqt += a * b;
                    sqq += a * a;
                    stt += b * b;
                }
                if sqq <= 0.0 || stt <= 0.0 {
                    0.0
                } else {
                    (sqt / (sqq * stt).sqrt()).clamp(-1.0, 1.0)
                }
            }
        }
    }
}

/// Options of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TomtomOptions {
    /// Column similarity.
    pub similarity: ColumnSimilarity,
    /// Bins of the integer score grid (TOMTOM's `t`; memelite's `n_score_bins`; 1 to 65 536).
    pub score_bins: usize,
    /// Alignments with fewer aligned columns are not considered (capped at the shorter motif).
    pub min_overlap: usize,
    /// Compare with the reverse complement of every target too.
    pub both_strands: bool,
}

impl Default for TomtomOptions {
    /// Pearson, 100 bins, minimum overlap 5, both strands.
    fn default() -> Self {
        TomtomOptions {
            similarity: ColumnSimilarity::Pearson,
            score_bins: 100,
            min_overlap: 5,
            both_strands: true,
        }
    }
}

/// The best alignment of one query with one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TomtomMatch {
    /// Index of the target.
    pub target: usize,
    /// p-value of the best alignment (both strands merged when asked).
    pub p_value: f64,
    /// Score on the integer grid (memelite's score: includes `query width × grid offset`).
    pub grid_score: i64,
    /// The same score in similarity units: Σ over aligned columns of similarity − column median.
    pub score: f64,
    /// Target column (on `strand`) that query column 0 faces; negative when the query overhangs.
    pub offset: i64,
    /// Aligned columns.
    pub overlap: usize,
    /// Target strand of the best alignment.
    pub strand: Strand,
}

/// A motif as columns of four values (A, C, G, T), 5' to 3'.
pub type Columns = [[f64; 4]];

/// Reverse complement of a matrix: columns reversed, A↔T and C↔G.
pub fn reverse_complement(columns: &Columns) -> Vec<[f64; 4]> {
    columns
        .iter()
        .rev()
        .map(|c| [c[3], c[2], c[1], c[0]])
        .collect()
}

/// Compares every query with every target: one row per query, one match per target (in target
/// order). Queries run in parallel on rayon's pool. Empty motifs are an error of the caller:
/// every query and target needs at least one column.
pub fn tomtom(
    queries: &[Vec<[f64; 4]>],
    targets: &[Vec<[f64; 4]>],
    options: &TomtomOptions,
) -> Vec<Vec<TomtomMatch>> {
    let database = TargetColumns::new(targets, options.both_strands, options.similarity);
    queries
        .par_iter()
        .map_init(Workspace::default, |work, query| {
            compare_query(query, &database, options, work)
        })
        .collect()
}

/// Buffers one thread reuses from query to query.
#[derive(Default)]
struct Workspace {
    scores: Vec<f64>,
    grid: Vec<i32>,
    bins: Vec<u16>,
    scratch: Vec<f64>,
    sums: Vec<i32>,
    best_score: Vec<i32>,
    best_overlap: Vec<u32>,
    best_diagonal: Vec<u32>,
    overhangs: Vec<f64>,
    overhang: Vec<f64>,
}

/// Benjamini–Hochberg q-values of one query's matches (over all of its targets, as MEME's tomtom
/// estimates them per query), in the matches' order.
pub fn q_values(matches: &[TomtomMatch]) -> Vec<f64> {
    let p: Vec<f64> = matches.iter().map(|m| m.p_value).collect();
    benjamini_hochberg(&p)
}

/// All target columns, forward targets and (with both strands) their reverse complements, stored
/// by letter (structure of arrays) so the similarity loops vectorise. Targets of equal width form
/// a group whose columns are stored position-major — column k of member j at
/// `start + k · members + j` — so the alignment sums of a whole group advance in one vector loop.
/// (The order of columns does not matter to the null distributions, which take every column.)
struct TargetColumns {
    /// Per letter, every column's value; for Pearson the column centred and scaled to norm 1
    /// (a constant column is all 0), so the correlation is a dot product.
    letters: [Vec<f64>; 4],
    /// Squared norms (Euclidean).
    norms: Vec<f64>,
    /// Targets (and strands) by width, widths ascending.
    groups: Vec<WidthGroup>,
    /// Per target (forward strand), its group.
    group_of: Vec<usize>,
    targets: usize,
    both_strands: bool,
}

/// The targets and strands of one width.
struct WidthGroup {
    width: usize,
    /// First column of the group.
    start: usize,
    /// Target-strand indices: target t's forward strand is t, its reverse `targets + t`.
    members: Vec<usize>,
}

impl TargetColumns {
    fn new(targets: &[Vec<[f64; 4]>], both_strands: bool, similarity: ColumnSimilarity) -> Self {
        let mut motifs: Vec<Vec<[f64; 4]>> = targets.to_vec();
        if both_strands {
            motifs.extend(targets.iter().map(|t| reverse_complement(t)));
        }
        let mut by_width: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (index, motif) in motifs.iter().enumerate() {
            by_width.entry(motif.len()).or_default().push(index);
        }
        let mut columns: Vec<[f64; 4]> = Vec::with_capacity(motifs.iter().map(Vec::len).sum());
        let mut groups = Vec::with_capacity(by_width.len());
        let mut group_of = vec![0; targets.len()];
        for (width, members) in by_width {
            for &member in &members {
                if member < targets.len() {
                    group_of[member] = groups.len();
                }
            }
            let start = columns.len();
            let motifs = &motifs;
            columns.extend(
                (0..width).flat_map(|k| members.iter().map(move |&member| motifs[member][k])),
            );
            groups.push(WidthGroup {
                width,
                start,
                members,
            });
        }
        if similarity == ColumnSimilarity::Pearson {
            for c in columns.iter_mut() {
                *c = standardised(c);
            }
        }
        let letters = std::array::from_fn(|k| columns.iter().map(|c| c[k]).collect());
        let norms = columns
            .iter()
            .map(|c| c.iter().map(|v| v * v).sum())
            .collect();
        TargetColumns {
            letters,
            norms,
            groups,
            group_of,
            targets: targets.len(),
            both_strands,
        }
    }

    fn len(&self) -> usize {
        self.norms.len()
    }

    /// Similarity of query column `q` with every target column, into `row`; returns (min, max).
    #[inline(always)]
    fn similarities(
        &self,
        q: &[f64; 4],
        similarity: ColumnSimilarity,
        row: &mut [f64],
    ) -> (f64, f64) {
        let [extremes] = self.similarities_n(&[*q], similarity, [row]);
        extremes
    }

    /// [`TargetColumns::similarities`] of four query columns in one pass over the targets (each
    /// target column is loaded once for four rows: the single-column loop was bound by those
    /// loads). Same expressions, so the same values.
    #[inline(always)]
    fn similarities4(
        &self,
        qs: &[[f64; 4]; 4],
        similarity: ColumnSimilarity,
        rows: [&mut [f64]; 4],
    ) -> [(f64, f64); 4] {
        self.similarities_n(qs, similarity, rows)
    }

    /// Similarities of N query columns with every target column, one row each, in one pass over
    /// the targets; returns each row's (min, max).
    #[inline(always)]
    fn similarities_n<const N: usize>(
        &self,
        qs: &[[f64; 4]; N],
        similarity: ColumnSimilarity,
        rows: [&mut [f64]; N],
    ) -> [(f64, f64); N] {
        let [a, c, g, t] = &self.letters;
        let n = self.len();
        let mut rows = rows.map(|row| &mut row[..n]);
        match similarity {
            ColumnSimilarity::Pearson => {
                let q = qs.map(|q| standardised(&q));
                for j in 0..n {
                    let (aj, cj, gj, tj) = (a[j], c[j], g[j], t[j]);
                    for (row, q) in rows.iter_mut().zip(&q) {
                        let r = q[0] * aj + q[1] * cj + q[2] * gj + q[3] * tj;
                        row[j] = r.clamp(-1.0, 1.0);
                    }
                }
            }
            ColumnSimilarity::Euclidean => {
                let qn = qs.map(|q| q.iter().map(|v| v * v).sum::<f64>());
                let q2 = qs.map(|q| q.map(|v| 2.0 * v));
                for j in 0..n {
                    let (nj, aj, cj, gj, tj) = (self.norms[j], a[j], c[j], g[j], t[j]);
                    for ((row, qn), q2) in rows.iter_mut().zip(&qn).zip(&q2) {
                        let z = qn + nj - q2[0] * aj - q2[1] * cj - q2[2] * gj - q2[3] * tj;
                        row[j] = -(z.max(0.0)).sqrt();
                    }
                }
            }
        }
        rows.map(|row| {
            row.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                })
        })
    }
}

/// A column centred on its mean and scaled to norm 1 (all 0 when constant).
#[inline(always)]
fn standardised(column: &[f64; 4]) -> [f64; 4] {
    let mean = column.iter().sum::<f64>() / 4.0;
    let centred = column.map(|v| v - mean);
    let norm = centred.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm <= 1e-12 {
        [0.0; 4]
    } else {
        centred.map(|v| v / norm)
    }
}

/// The null distribution of the score of every span of query columns, as survival functions.
struct SpanNulls {
    width: usize,
    /// Grid offset: the integer score of a column at its median.
    grid_offset: i64,
    /// Indexed by `span_index(i, j)`: first grid value with mass, and P(S ≥ first + k).
    survivals: Vec<(i64, Vec<f64>)>,
}

impl SpanNulls {
    fn span_index(&self, i: usize, j: usize) -> usize {
        i * self.width + j
    }

    /// ln P(S_{i..j} < s) for a complete score s (unaligned columns at the grid offset).
    #[inline(always)]
    fn log_below(&self, i: usize, j: usize, s: i64) -> f64 {
        let unaligned = (self.width - (j - i + 1)) as i64;
        let v = s - unaligned * self.grid_offset;
        let (first, survival) = &self.survivals[self.span_index(i, j)];
        let k = v - first;
        if k <= 0 {
            // ln 0: no score of the span reaches s… from below.
            return f64::NEG_INFINITY;
        }
        match survival.get(k as usize) {
            // The tail is empty: ln 1 (most overhangs of a good score; no libm call).
            None | Some(0.0) => 0.0,
            Some(&tail) => (-tail).ln_1p(),
        }
    }

    /// ln P(every overhanging alignment scores below `s`), cumulative over the overlap: entry
    /// `o − m0` sums the alignments with `m0..o` columns aligned at either end of the query
    /// (`m0` the minimum overlap capped at the query width), for o = m0..=width. Shared by all
    /// target widths, which take the entry of their own full overlap.
    #[inline(always)]
    fn log_overhangs(&self, m0: usize, s: i64, out: &mut Vec<f64>) {
        let nq = self.width;
        out.clear();
        let mut total = 0.0;
        out.push(total);
        for o in m0..nq {
            total += self.log_below(0, o - 1, s);
            total += self.log_below(nq - o, nq - 1, s);
            out.push(total);
        }
    }

    /// p-value of the best of the allowed alignments of a target of `target_width` columns
    /// reaching complete score `s`, given [`SpanNulls::log_overhangs`] for `s` and `m0`.
    #[inline(always)]
    fn p_value(&self, target_width: usize, m0: usize, s: i64, overhangs: &[f64]) -> f64 {
        let nq = self.width;
        let full = target_width.min(nq);
        // Alignments with `full` aligned columns: every span of that length inside the query
        // (target shorter), or the whole query once per placement (target longer).
        let mut log_all_below = if target_width < nq {
            (0..=nq - target_width)
                .map(|i| self.log_below(i, i + target_width - 1, s))
                .sum()
        } else {
            (target_width - nq + 1) as f64 * self.log_below(0, nq - 1, s)
        };
        // Overhangs on either end, with m0..full columns aligned (none when the target is
        // narrower than the minimum overlap: then only full alignments count).
        if full > m0 {
            log_all_below += overhangs[full - m0];
        }
        (-(log_all_below.exp_m1())).clamp(0.0, 1.0)
    }
}

crate::simd_dispatch! {
/// One query against the database (compiled per vector unit; the helpers it calls are inlined).
fn compare_query(
    query: &[[f64; 4]],
    database: &TargetColumns,
    options: &TomtomOptions,
    work: &mut Workspace,
) -> Vec<TomtomMatch> {
    let nq = query.len();
    let n_columns = database.len();
    // The grid needs at least one bin, and its values must fit the i32 sums below.
    let score_bins = options.score_bins.clamp(1, 1 << 16);
    // Similarity of every query column with every target column, and its median.
    let Workspace {
        scores,
        grid,
        bins: bin_buffer,
        scratch,
        ..
    } = work;
    scores.resize(nq * n_columns, 0.0);
    let mut medians = vec![0.0f64; nq];
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut extremes = vec![(0.0, 0.0); nq];
    // Four query columns a pass, then the rest one by one.
    let blocks = nq / 4;
    for (b, rows) in scores[..blocks * 4 * n_columns]
        .chunks_mut(4 * n_columns)
        .enumerate()
    {
        let (r0, rest) = rows.split_at_mut(n_columns);
        let (r1, rest) = rest.split_at_mut(n_columns);
        let (r2, r3) = rest.split_at_mut(n_columns);
        let qs = [query[4 * b], query[4 * b + 1], query[4 * b + 2], query[4 * b + 3]];
        let found = database.similarities4(&qs, options.similarity, [r0, r1, r2, r3]);
        extremes[4 * b..4 * b + 4].copy_from_slice(&found);
    }
    for i in blocks * 4..nq {
        let row = &mut scores[i * n_columns..(i + 1) * n_columns];
        extremes[i] = database.similarities(&query[i], options.similarity, row);
    }
    for (i, &(lo, hi)) in extremes.iter().enumerate() {
        let row = &scores[i * n_columns..(i + 1) * n_columns];
        let median = median_of(row, lo, hi, bin_buffer, scratch);
        medians[i] = median;
        low = low.min(lo - median);
        high = high.max(hi - median);
    }
    // The integer grid: memelite's `i_min`, `bin_scale` and offset.
    let i_min = low.floor();
    let range = high - i_min;
    let bins = score_bins as f64;
    let scale = if range > 0.0 {
        (bins / range).floor().max(1.0)
    } else {
        1.0
    };
    let grid_offset = (-i_min * scale) as i64;
    // Grid values (0..=bins) minus the offset, per query column (rows contiguous over target
    // columns so every loop below vectorises), and each query column's histogram.
    grid.resize(nq * n_columns, 0);
    let mut histograms = vec![vec![0.0f64; score_bins + 1]; nq];
    let weight = 1.0 / n_columns as f64;
    let mut counts = vec![0u32; score_bins + 1];
    let top = score_bins as f64;
    for i in 0..nq {
        let shift = medians[i] + i_min;
        let row = &mut grid[i * n_columns..(i + 1) * n_columns];
        // floor(v + 0.5) clamped to [0, bins]: truncation equals floor for v ≥ 0, and anything
        // below 0 clamps to 0 either way.
        for (x, &score) in row
            .iter_mut()
            .zip(&scores[i * n_columns..(i + 1) * n_columns])
        {
            // max/min return the other operand for NaN, so v is finite and in [0, bins].
            let v = ((score - shift) * scale + 0.5).max(0.0).min(top);
            // SAFETY: v is finite and within i32's range (bins is a usize below 2³¹ here).
            *x = unsafe { v.to_int_unchecked::<i32>() };
        }
        count_into(row, |x| x as usize, &mut counts);
        for (h, &c) in histograms[i].iter_mut().zip(&counts) {
            *h = c as f64 * weight;
        }
        for x in row.iter_mut() {
            *x -= grid_offset as i32;
        }
    }
    let nulls = span_nulls(&histograms, grid_offset);

    // Best alignment of every target and strand, a width group at a time: diagonal
    // d = k + nq − 1 − q aligns target column k with query column q, and every member's sum
    // on a diagonal is one lane of a vector add.
    let strands = if database.both_strands { 2 } else { 1 };
    let mut found = vec![(0i32, 0u32, 0u32); database.targets * strands];
    // Per group, the lowest best score and the count of scores up to the highest.
    let mut score_spans: Vec<(i64, usize)> = Vec::with_capacity(database.groups.len());
    let Workspace {
        sums,
        best_score,
        best_overlap,
        best_diagonal,
        ..
    } = work;
    for group in &database.groups {
        let (width, n) = (group.width, group.members.len());
        let m = options.min_overlap.min(nq).min(width).max(1);
        let diagonals = width + nq - 1;
        sums.clear();
        sums.resize(diagonals * n, nq as i32 * grid_offset as i32);
        for q in 0..nq {
            let row = &grid[q * n_columns + group.start..][..width * n];
            for k in 0..width {
                let d = k + nq - 1 - q;
                for (sum, &value) in sums[d * n..(d + 1) * n].iter_mut().zip(&row[k * n..]) {
                    *sum += value;
                }
            }
        }
        // The highest sum, a tie to the longer overlap, then to the first diagonal.
        best_score.clear();
        best_score.resize(n, i32::MIN);
        best_overlap.clear();
        best_overlap.resize(n, 0);
        best_diagonal.clear();
        best_diagonal.resize(n, 0);
        for d in 0..diagonals {
            let overlap = (d + 1).min(nq) - (d + 1).saturating_sub(width);
            if overlap < m {
                continue;
            }
            let (overlap, diagonal) = (overlap as u32, d as u32);
            for (((&s, best), best_o), best_d) in sums[d * n..(d + 1) * n]
                .iter()
                .zip(best_score.iter_mut())
                .zip(best_overlap.iter_mut())
                .zip(best_diagonal.iter_mut())
            {
                let better = s > *best || (s == *best && overlap > *best_o);
                *best = if better { s } else { *best };
                *best_o = if better { overlap } else { *best_o };
                *best_d = if better { diagonal } else { *best_d };
            }
        }
        for (j, &member) in group.members.iter().enumerate() {
            found[member] = (best_score[j], best_diagonal[j], best_overlap[j]);
        }
        let low = best_score.iter().copied().min().unwrap_or(0);
        let high = best_score.iter().copied().max().unwrap_or(0);
        score_spans.push((low as i64, (high - low) as usize + 1));
    }
    // p-values depend on the target's width and the score only: each is computed once per query
    // (a table per width group over the score range when that is small), and the overhanging
    // alignments' part once per score, for every width.
    let score_range = nq * score_bins + 1;
    let memo_len = if score_range <= 1 << 14 { score_range } else { 0 };
    // The p-value memo: per group, a slot per score between its lowest and highest best score.
    let mut memo_start = Vec::with_capacity(score_spans.len());
    let mut memo_size = 0;
    for &(_, count) in &score_spans {
        memo_start.push(memo_size);
        memo_size += count;
    }
    let mut memo = vec![f64::NAN; memo_size];
    let m0 = options.min_overlap.min(nq).max(1);
    // Where each score's overhang sums start in `overhangs` (u32::MAX: not computed yet).
    let mut overhang_of = vec![u32::MAX; memo_len];
    let mut overhang_of_wide: std::collections::HashMap<i64, usize> = Default::default();
    let (overhangs, overhang) = (&mut work.overhangs, &mut work.overhang);
    overhangs.clear();
    let mut matches = Vec::with_capacity(database.targets);
    for target in 0..database.targets {
        // A tie goes to the reverse strand (memelite's rule).
        let (forward, reverse) = (found[target], found.get(target + database.targets));
        let ((score, diagonal, overlap), strand) = match reverse {
            Some(&r) if strands == 2 && r.0 >= forward.0 => (r, Strand::Reverse),
            _ => (forward, Strand::Forward),
        };
        let score = score as i64;
        let group = database.group_of[target];
        let nt = database.groups[group].width;
        let slot = memo_start[group] + (score - score_spans[group].0) as usize;
        let mut p = match memo[slot] {
            p if !p.is_nan() => p,
            _ => {
                let mut compute = || {
                    nulls.log_overhangs(m0, score, overhang);
                    overhangs.extend_from_slice(overhang);
                    overhangs.len() - overhang.len()
                };
                let dense = (0..memo_len as i64).contains(&score);
                let at = match dense {
                    true => match overhang_of[score as usize] {
                        u32::MAX => {
                            let at = compute();
                            overhang_of[score as usize] = at as u32;
                            at
                        }
                        at => at as usize,
                    },
                    false => *overhang_of_wide.entry(score).or_insert_with(compute),
                };
                let p = nulls.p_value(nt, m0, score, &overhangs[at..at + nq - m0 + 1]);
                memo[slot] = p;
                p
            }
        };
        if database.both_strands {
            p *= 2.0 - p;
        }
        matches.push(TomtomMatch {
            target,
            p_value: p,
            grid_score: score,
            score: (score - nq as i64 * grid_offset) as f64 / scale,
            offset: diagonal as i64 - nq as i64 + 1,
            overlap: overlap as usize,
            strand,
        });
    }
    matches
}
}

/// Counts of each value of `values` (as indices below `counts.len()`), in four interleaved tables
/// so that repeated values do not wait on each other's increments. The tables have a power-of-two
/// size and indices are masked to it, which spares a bounds check per value (callers guarantee
/// the range; a debug build checks it).
#[inline(always)]
fn count_into<T: Copy>(values: &[T], index: impl Fn(T) -> usize, counts: &mut [u32]) {
    let n = counts.len();
    let size = n.next_power_of_two();
    let mask = size - 1;
    let at = |v: T| {
        let i = index(v);
        debug_assert!(i < n, "count_into: index {i} outside 0..{n}");
        i & mask
    };
    let mut tables = vec![0u32; 4 * size];
    let (t0, rest) = tables.split_at_mut(size);
    let (t1, rest) = rest.split_at_mut(size);
    let (t2, t3) = rest.split_at_mut(size);
    let chunks = values.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        t0[at(c[0])] += 1;
        t1[at(c[1])] += 1;
        t2[at(c[2])] += 1;
        t3[at(c[3])] += 1;
    }
    for &v in tail {
        t0[at(v)] += 1;
    }
    for (k, count) in counts.iter_mut().enumerate() {
        *count = t0[k] + t1[k] + t2[k] + t3[k];
    }
}

/// Exact median (mean of the two middle values for an even count) of `values`, all within
/// [low, high]: a 1024-bin histogram finds the bins holding the middle ranks, and only their
/// values are sorted. `bins` and `scratch` are reused buffers.
#[inline(always)]
fn median_of(
    values: &[f64],
    low: f64,
    high: f64,
    bins: &mut Vec<u16>,
    scratch: &mut Vec<f64>,
) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if high <= low {
        return low;
    }
    const BINS: usize = 1024;
    let scale = (BINS - 1) as f64 / (high - low);
    // Bin indices in their own loop (it vectorises); every value is in [low, high].
    bins.clear();
    let top = (BINS - 1) as f64;
    bins.extend(values.iter().map(|&v| {
        // max/min return the other operand for NaN: finite and in [0, BINS − 1].
        let b = ((v - low) * scale).max(0.0).min(top);
        // SAFETY: b is finite and within u16's range.
        unsafe { b.to_int_unchecked::<u16>() }
    }));
    let mut counts = [0u32; BINS];
    count_into(bins, |b| b as usize, &mut counts);
    // Ranks (0-based) of the middle values.
    let (r_low, r_high) = ((n - 1) / 2, n / 2);
    let mut below = 0usize;
    let mut first_bin = 0usize;
    while below + counts[first_bin] as usize <= r_low {
        below += counts[first_bin] as usize;
        first_bin += 1;
    }
    let mut last_bin = first_bin;
    let mut through = below + counts[first_bin] as usize;
    while through <= r_high {
        last_bin += 1;
        through += counts[last_bin] as usize;
    }
    // One unsigned comparison per value (a value outside the middle bins wraps above `span`):
    // the branch is then almost never taken, where two comparisons split values 50/50.
    let (first_bin, span) = (first_bin as u16, (last_bin - first_bin) as u16);
    // Blocks of 32 are tested in a vector loop first; only the few with a hit are walked.
    scratch.clear();
    let is_middle = |b: u16| b.wrapping_sub(first_bin) <= span;
    let (value_blocks, bin_blocks) = (values.chunks(32), bins.chunks(32));
    for (block, block_bins) in value_blocks.zip(bin_blocks) {
        if block_bins.iter().fold(false, |hit, &b| hit | is_middle(b)) {
            for (&v, &b) in block.iter().zip(block_bins) {
                if is_middle(b) {
                    scratch.push(v);
                }
            }
        }
    }
    scratch.sort_unstable_by(|a, b| a.total_cmp(b));
    (scratch[r_low - below] + scratch[r_high - below]) / 2.0
}

/// Null distributions of Σ_{c=i..j} x_c for every span i ≤ j, by convolving the columns'
/// histograms left to right from each start, each kept over its support only.
#[inline(always)]
fn span_nulls(histograms: &[Vec<f64>], grid_offset: i64) -> SpanNulls {
    let nq = histograms.len();
    let supports: Vec<(usize, usize)> = histograms
        .iter()
        .map(|h| {
            let first = h.iter().position(|&p| p > 0.0).unwrap_or(0);
            let last = h.iter().rposition(|&p| p > 0.0).unwrap_or(0);
            (first, last)
        })
        .collect();
    let mut survivals = vec![(0i64, Vec::new()); nq * nq];
    let mut pdf: Vec<f64> = Vec::new();
    let mut next: Vec<f64> = Vec::new();
    for i in 0..nq {
        let (lo, hi) = supports[i];
        pdf.clear();
        pdf.extend_from_slice(&histograms[i][lo..=hi]);
        let mut first = lo;
        survivals[i * nq + i] = (first as i64, survival_of(&pdf));
        for j in i + 1..nq {
            let (flo, fhi) = supports[j];
            next.clear();
            next.resize(pdf.len() + fhi - flo, 0.0);
            for (l, &f) in histograms[j][flo..=fhi].iter().enumerate() {
                if f == 0.0 {
                    continue;
                }
                for (out, &a) in next[l..l + pdf.len()].iter_mut().zip(&pdf) {
                    *out += f * a;
                }
            }
            std::mem::swap(&mut pdf, &mut next);
            first += flo;
            survivals[i * nq + j] = (first as i64, survival_of(&pdf));
        }
    }
    SpanNulls {
        width: nq,
        grid_offset,
        survivals,
    }
}

/// P(S ≥ first + k) for every k, summed from the upper tail so small tails keep their digits.
#[inline(always)]
fn survival_of(pdf: &[f64]) -> Vec<f64> {
    let mut survival = vec![0.0; pdf.len()];
    let mut tail = 0.0;
    for k in (0..pdf.len()).rev() {
        tail += pdf[k];
        survival[k] = tail;
    }
    // The whole mass sums to 1 up to rounding; the first entry is 1 by definition.
    if let Some(first) = survival.first_mut() {
        *first = 1.0;
    }
    survival
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(sequence: &str) -> Vec<[f64; 4]> {
        sequence
            .bytes()
            .map(|b| {
                let mut c = [0.02; 4];
                let k = match b {
                    b'A' => 0,
                    b'C' => 1,
                    b'G' => 2,
                    _ => 3,
                };
                c[k] = 0.94;
                c
            })
            .collect()
    }

    fn random_motifs(n: usize, seed: u64) -> Vec<Vec<[f64; 4]>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let width = rng.random_range(6..15);
                (0..width)
                    .map(|_| {
                        let mut c = [0.0; 4];
                        for v in c.iter_mut() {
                            *v = rng.random::<f64>().powi(3) + 0.01;
                        }
                        let s: f64 = c.iter().sum();
                        c.map(|v| v / s)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn median_is_exact() {
        let (mut bins, mut scratch) = (Vec::new(), Vec::new());
        assert_eq!(
            median_of(&[3.0, 1.0, 2.0], 1.0, 3.0, &mut bins, &mut scratch),
            2.0
        );
        assert_eq!(
            median_of(&[4.0, 1.0, 3.0, 2.0], 1.0, 4.0, &mut bins, &mut scratch),
            2.5
        );
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for n in [1usize, 2, 5, 1000, 1001, 20_000] {
            let mut v: Vec<f64> = (0..n)
                .map(|_| (rng.random::<f64>() * 10.0).round() / 3.0)
                .collect();
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let m = median_of(&v, lo, hi, &mut bins, &mut scratch);
            v.sort_by(|a, b| a.total_cmp(b));
            assert_eq!(m, (v[(n - 1) / 2] + v[n / 2]) / 2.0, "{n}");
        }
    }

    #[test]
    fn similarities_equal_the_column_formulas() {
        let targets = random_motifs(30, 5);
        let queries = random_motifs(3, 6);
        for similarity in [ColumnSimilarity::Pearson, ColumnSimilarity::Euclidean] {
            let database = TargetColumns::new(&targets, true, similarity);
            // Columns in the database's order: width groups, position-major within each.
            let mut motifs = targets.clone();
            motifs.extend(targets.iter().map(|t| reverse_complement(t)));
            let all: Vec<[f64; 4]> = database
                .groups
                .iter()
                .flat_map(|g| {
                    let motifs = &motifs;
                    (0..g.width).flat_map(move |k| g.members.iter().map(move |&j| motifs[j][k]))
                })
                .collect();
            assert_eq!(all.len(), database.len());
            // Four columns a pass: the same values and extremes, bit for bit.
            let columns: Vec<[f64; 4]> = queries.iter().flatten().copied().collect();
            let n = database.len();
            for qs in columns.chunks_exact(4) {
                let qs = [qs[0], qs[1], qs[2], qs[3]];
                let mut rows = vec![0.0; 4 * n];
                let (r0, rest) = rows.split_at_mut(n);
                let (r1, rest) = rest.split_at_mut(n);
                let (r2, r3) = rest.split_at_mut(n);
                let extremes = database.similarities4(&qs, similarity, [r0, r1, r2, r3]);
                for (k, q) in qs.iter().enumerate() {
                    let mut single = vec![0.0; n];
                    let one = database.similarities(q, similarity, &mut single);
                    assert_eq!(&rows[k * n..(k + 1) * n], &single[..]);
                    assert_eq!(extremes[k], one);
                }
            }
            let mut row = vec![0.0; database.len()];
            for q in queries.iter().flatten() {
                database.similarities(q, similarity, &mut row);
                for (value, t) in row.iter().zip(&all) {
                    assert!((value - similarity.score(q, t)).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn span_nulls_are_distributions() {
        let h = vec![vec![0.25, 0.5, 0.25], vec![0.0, 0.5, 0.5]];
        let nulls = span_nulls(&h, 0);
        // S = x0 + x1 ranges over 1..=4: P(S ≥ 1) = 1, P(S ≥ 4) = 0.25 × 0.5.
        assert!((nulls.log_below(0, 1, 1)).is_infinite());
        let p4 = -(nulls.log_below(0, 1, 4).exp_m1());
        assert!((p4 - 0.125).abs() < 1e-15);
        assert_eq!(nulls.log_below(0, 1, 5), 0.0);
    }

    #[test]
    fn a_planted_copy_is_the_top_match_on_both_strands() {
        let mut targets = random_motifs(60, 7);
        let planted = one_hot("TTGCATAACAATG");
        targets[17] = planted.clone();
        let query = one_hot("GCATAACAA");
        let rc = reverse_complement(&query);
        for similarity in [ColumnSimilarity::Pearson, ColumnSimilarity::Euclidean] {
            let options = TomtomOptions {
                similarity,
                ..TomtomOptions::default()
            };
            let rows = tomtom(&[query.clone(), rc.clone()], &targets, &options);
            for (row, strand) in rows.iter().zip([Strand::Forward, Strand::Reverse]) {
                let best = row
                    .iter()
                    .min_by(|a, b| a.p_value.total_cmp(&b.p_value))
                    .unwrap();
                assert_eq!(best.target, 17, "{similarity:?}");
                assert_eq!(best.strand, strand);
                assert_eq!(best.overlap, 9);
                assert!(best.p_value < 1e-6, "{}", best.p_value);
                let q = q_values(row);
                assert!(q[17] < 0.01);
            }
            let forward = rows[0][17];
            assert_eq!(forward.offset, 2, "query column 0 faces target column 2");
            // On the reverse strand the reversed target is TTGCATAACAATG's complement read
            // backwards, CATTGTTATGCAA; the query's complement GTTGTTATGC... starts at 2 too.
            assert_eq!(rows[1][17].offset, 2);
        }
    }

    /// The best alignment and p-value of every target by brute force over all alignments, on
    /// the module's similarity rows and exact medians: checks the width groups' vector search,
    /// its tie rules and the memoised p-values against the plain definitions.
    #[test]
    fn width_grouped_search_equals_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let mut targets = random_motifs(70, 22);
        // Widths 1 to 20: narrower than the minimum overlap, narrower, as wide and wider than
        // the queries; repeated columns make ties.
        for t in targets.iter_mut().take(20) {
            let width = rng.random_range(1..21);
            t.truncate(width);
            while t.len() < width {
                let c = t[rng.random_range(0..t.len())];
                t.push(c);
            }
        }
        targets.push(one_hot("ACGTACGTACGT"));
        targets.push(one_hot("AAAA"));
        let mut queries = random_motifs(6, 23);
        queries.push(one_hot("CGTACG"));
        queries.push(one_hot("ACGTACGTACGTACGTACG"));
        for similarity in [ColumnSimilarity::Euclidean, ColumnSimilarity::Pearson] {
            for (min_overlap, both_strands, score_bins) in [
                (1, true, 100),
                (5, true, 100),
                (5, false, 37),
                (3, true, 1000),
            ] {
                let options = TomtomOptions {
                    similarity,
                    score_bins,
                    min_overlap,
                    both_strands,
                };
                let rows = tomtom(&queries, &targets, &options);
                let database = TargetColumns::new(&targets, both_strands, similarity);
                let mut motifs = targets.clone();
                if both_strands {
                    motifs.extend(targets.iter().map(|t| reverse_complement(t)));
                }
                // Column index of (target-strand, k) in the database.
                let mut column_of = vec![Vec::new(); motifs.len()];
                for g in &database.groups {
                    for (j, &member) in g.members.iter().enumerate() {
                        column_of[member] = (0..g.width)
                            .map(|k| g.start + k * g.members.len() + j)
                            .collect();
                    }
                }
                for (query, row) in queries.iter().zip(&rows) {
                    let nq = query.len();
                    let n = database.len();
                    let (mut bins, mut scratch) = (Vec::new(), Vec::new());
                    let mut sims = vec![vec![0.0; n]; nq];
                    let mut medians = vec![0.0; nq];
                    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
                    for (i, q) in query.iter().enumerate() {
                        let (lo, hi) = database.similarities(q, similarity, &mut sims[i]);
                        medians[i] = median_of(&sims[i], lo, hi, &mut bins, &mut scratch);
                        low = low.min(lo - medians[i]);
                        high = high.max(hi - medians[i]);
                    }
                    let i_min = low.floor();
                    let range = high - i_min;
                    let top = score_bins as f64;
                    let scale = if range > 0.0 {
                        (top / range).floor().max(1.0)
                    } else {
                        1.0
                    };
                    let offset = (-i_min * scale) as i64;
                    let grid = |i: usize, c: usize| -> i64 {
                        let v = (sims[i][c] - (medians[i] + i_min)) * scale + 0.5;
                        v.max(0.0).min(top).floor() as i64
                    };
                    let mut histograms = vec![vec![0.0; score_bins + 1]; nq];
                    for (i, h) in histograms.iter_mut().enumerate() {
                        for c in 0..n {
                            h[grid(i, c) as usize] += 1.0 / n as f64;
                        }
                    }
                    let nulls = span_nulls(&histograms, offset);
                    for m in row {
                        let nt = targets[m.target].len();
                        let min_o = min_overlap.min(nq).min(nt).max(1);
                        // Higher score, then longer overlap, then the first offset; the reverse
                        // strand wins a score tie.
                        let mut best: Option<(i64, usize, i64, Strand)> = None;
                        let strands = if both_strands { 2 } else { 1 };
                        for strand in 0..strands {
                            let cols = &column_of[m.target + strand * targets.len()];
                            let mut strand_best: Option<(i64, usize, i64)> = None;
                            for off in -(nq as i64) + 1..nt as i64 {
                                let mut score = 0i64;
                                let mut overlap = 0;
                                for q in 0..nq {
                                    let k = off + q as i64;
                                    if (0..nt as i64).contains(&k) {
                                        score += grid(q, cols[k as usize]);
                                        overlap += 1;
                                    } else {
                                        score += offset;
                                    }
                                }
                                if overlap < min_o {
                                    continue;
                                }
                                if strand_best.is_none_or(|(s, o, _)| {
                                    score > s || (score == s && overlap > o)
                                }) {
                                    strand_best = Some((score, overlap, off));
                                }
                            }
                            let (s, o, off) = strand_best.unwrap();
                            let strand = [Strand::Forward, Strand::Reverse][strand];
                            if best.is_none_or(|(b, ..)| s >= b) {
                                best = Some((s, o, off, strand));
                            }
                        }
                        let (score, overlap, off, strand) = best.unwrap();
                        assert_eq!(
                            (m.grid_score, m.overlap, m.offset, m.strand),
                            (score, overlap, off, strand),
                            "{similarity:?} min overlap {min_overlap} target {}",
                            m.target
                        );
                        // The p-value by its definition, every alignment's CDF in turn.
                        let full = nt.min(nq);
                        let mut log_below = 0.0;
                        if nt < nq {
                            for i in 0..=nq - nt {
                                log_below += nulls.log_below(i, i + nt - 1, score);
                            }
                        } else {
                            log_below += (nt - nq + 1) as f64 * nulls.log_below(0, nq - 1, score);
                        }
                        for o in min_o..full {
                            log_below += nulls.log_below(0, o - 1, score);
                            log_below += nulls.log_below(nq - o, nq - 1, score);
                        }
                        let mut p = -log_below.exp_m1().clamp(-1.0, 0.0);
                        if both_strands {
                            p *= 2.0 - p;
                        }
                        assert!(
                            (m.p_value - p).abs() <= 1e-12 * p.max(1e-300),
                            "{} vs {p}",
                            m.p_value
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn min_overlap_excludes_short_alignments() {
        let targets = random_motifs(40, 3);
        let query = one_hot("ACGTAC");
        let options = TomtomOptions {
            min_overlap: 5,
            ..TomtomOptions::default()
        };
        for row in tomtom(&[query], &targets, &options) {
            for m in row {
                assert!(m.overlap >= 5.min(targets[m.target].len()));
                assert!((0.0..=1.0).contains(&m.p_value));
            }
        }
    }

    #[test]
    fn p_values_are_roughly_uniform_for_unrelated_motifs() {
        let targets = random_motifs(200, 11);
        let queries = random_motifs(20, 12);
        let rows = tomtom(&queries, &targets, &TomtomOptions::default());
        let p: Vec<f64> = rows.iter().flatten().map(|m| m.p_value).collect();
        let below = p.iter().filter(|&&v| v < 0.05).count() as f64 / p.len() as f64;
        // Independence of overlapping alignments makes TOMTOM somewhat conservative.
        assert!(below < 0.1, "{below}");
    }
}
