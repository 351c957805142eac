//! Patching between matched functional and background windows (methods.md §4: "matched
//! significant vs non-significant loci"): each promoter window (clean) is paired with the unused
//! background window of the same length and the closest GC content (corrupt), and the classifier's
//! logit difference (promoter − background) is restored layer by layer, token by token and head
//! by head. The matching is written to `promoter_pairs.parquet`; the null pairs each promoter with
//! a background window of another pair. Token offsets are counted from the TSS.

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};

use crate::analysis::patching::{
    same_token_layout, sweep_pair, PatchSite, PatchingRow, SweepPair, SweepSettings,
};
use crate::analysis::variant_pairs::Positions;
use crate::datasets::rows::read_sequence_rows;
use crate::experiment::ExperimentContext;

/// What the promoter patching study runs.
#[derive(Debug, Clone)]
pub struct PromoterPatching {
    /// Classifier when `--model` is not given.
    pub default_model: String,
    /// Labelled table when `--data` is not given (and the model records none).
    pub default_data: std::path::PathBuf,
    /// Class name of the functional windows (the clean runs).
    pub functional_class: String,
    /// 0-based index of the TSS in every window (offsets are counted from it).
    pub tss_index: usize,
    /// Positions of the layer × position sweep.
    pub positions: Positions,
    /// Pairs used when `--limit` is not given.
    pub default_pairs: Option<usize>,
}

impl Default for PromoterPatching {
    /// mini-dnabert6-promoters on human-promoters (TSS at index 200 of each 250-bp window), every
    /// token position, 24 pairs.
    fn default() -> Self {
        PromoterPatching {
            default_model: crate::defaults::PROMOTER_MODEL.to_string(),
            default_data: crate::defaults::DATA.into(),
            functional_class: "promoter".into(),
            tss_index: 200,
            positions: Positions::All,
            default_pairs: Some(24),
        }
    }
}

crate::table_row! {
    /// One matched pair: the functional window, its GC-matched background window and the null
    /// partner (another pair's background).
    pub struct PromoterPairRow {
        pub pair_id: String,
        pub functional_id: String,
        pub background_id: String,
        pub functional_gc: f64,
        pub background_gc: f64,
        pub gc_difference: f64,
        pub null_background_id: String,
    }
}

fn gc(sequence: &str) -> f64 {
    let bases = sequence.bytes().filter(|b| b"ACGTacgt".contains(b)).count();
    let gc = sequence.bytes().filter(|b| b"GCgc".contains(b)).count();
    gc as f64 / bases.max(1) as f64
}

/// The map step.
pub fn run_promoter_patching(
    context: &mut ExperimentContext,
    study: &PromoterPatching,
) -> anyhow::Result<()> {
    let loaded = context.load_model(&study.default_model)?;
    let names = loaded
        .model
        .config()
        .class_names()
        .context("the classifier's config.json has no id2label naming its classes")?;
    let target = names
        .iter()
        .position(|n| *n == study.functional_class)
        .with_context(|| {
            format!(
                "{} has no class {:?} (its classes: {})",
                loaded.source.id,
                study.functional_class,
                names.join(", ")
            )
        })?;
    if names.len() != 2 {
        bail!(
            "promoter patching contrasts two classes; {} has {}",
            loaded.source.id,
            names.len()
        );
    }
    let other = 1 - target;
    let path = context.data_file(&study.default_data)?;
    let rows = read_sequence_rows(&path)?;
    let split = context.split();
    let in_split = |r: &&crate::datasets::rows::SequenceRow| split == "all" || r.split == split;
    let functional: Vec<_> = rows
        .iter()
        .filter(in_split)
        .filter(|r| r.label == target as i64)
        .collect();
    let background: Vec<_> = rows
        .iter()
        .filter(in_split)
        .filter(|r| r.label != target as i64)
        .collect();
    let wanted = context
        .limit()
        .or(study.default_pairs)
        .unwrap_or(usize::MAX);
    // Greedy GC matching in table order, without replacement, same length only.
    let background_gc: Vec<f64> = background.iter().map(|b| gc(&b.sequence)).collect();
    let mut used = vec![false; background.len()];
    let mut pairs = Vec::new();
    for f in &functional {
        if pairs.len() == wanted {
            break;
        }
        let f_gc = gc(&f.sequence);
        let best = background
            .iter()
            .enumerate()
            .filter(|(j, b)| !used[*j] && b.sequence.len() == f.sequence.len())
            .min_by(|a, b| {
                (background_gc[a.0] - f_gc)
                    .abs()
                    .total_cmp(&(background_gc[b.0] - f_gc).abs())
            });
        if let Some((j, b)) = best {
            used[j] = true;
            pairs.push((*f, *b));
        }
    }
    if pairs.len() < 2 {
        bail!(
            "{}: {} matched pairs in split {split:?}; patching needs at least two (one for the null)",
            path.display(),
            pairs.len()
        );
    }
    let tss = study.tss_index;
    if let Some((f, _)) = pairs.iter().find(|(f, _)| f.sequence.len() <= tss) {
        bail!(
            "{}: row {} is {} bp, shorter than the TSS index {tss}",
            path.display(),
            f.id,
            f.sequence.len()
        );
    }
    context.set_config("split", split);
    context.set_config("pairs", pairs.len());
    context.set_config("tokenizer", loaded.tokenizer.name());
    context.set_config("architecture", loaded.model.config().architecture.name());
    if let Some(kmer) = loaded.tokenizer.as_kmer() {
        context.set_config("k", kmer.k());
    }
    context.set_config("positions", study.positions.to_string());
    context.set_config("tss_index", tss);
    context.set_config("anchor", "TSS");
    context.set_config("pairing", "gc-matched");
    context.set_config("clean_name", study.functional_class.clone());
    context.set_config("corrupt_name", names[other].clone());
    context.set_config(
        "report_title",
        format!(
            "Activation patching: {} → {} windows",
            study.functional_class, names[other]
        ),
    );
    context.set_config(
        "report_summary",
        format!(
            "Each {f} window (clean) is paired with the unused {b} window of the closest GC \
             content (corrupt; the matching is in promoter_pairs.parquet). The classifier runs on \
             the {b} window with one activation replaced by the {f} window's, every later layer \
             recomputed, and the logit difference ({f} − {b}) is compared: \
             logit_diff_fraction_restored = (m_patched − m_{b}) / (m_{f} − m_{b}), 1 = the \
             patch alone turns the {b} window into the {f} window for the classifier. {{pairs}} \
             pairs; token offsets are counted from the TSS (the k-mer starting at the TSS is 0).",
            f = study.functional_class,
            b = names[other],
        ),
    );

    let total = pairs.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(context.seed);
    let shift = rng.random_range(1..total);
    let mut matching = context.table::<PromoterPairRow>("promoter_pairs")?;
    for (i, (f, b)) in pairs.iter().enumerate() {
        let (fg, bg) = (gc(&f.sequence), gc(&b.sequence));
        matching.write(&PromoterPairRow {
            pair_id: f.id.clone(),
            functional_id: f.id.clone(),
            background_id: b.id.clone(),
            functional_gc: fg,
            background_gc: bg,
            gc_difference: fg - bg,
            null_background_id: pairs[(i + shift) % total].1.id.clone(),
        })?;
    }
    matching.finish()?;

    let tasks: Vec<usize> = context.take_part((0..total).collect(), 1);
    let settings = SweepSettings {
        positions: study.positions,
        position_sites: vec![PatchSite::ResidPre],
        ..SweepSettings::default()
    };
    let null_settings = settings.null();
    // The token whose k-mer starts at the TSS ([CLS] is token 0, the k-mer at base i is i + 1);
    // for BPE and NT 6-mers, the token that contains the TSS.
    let anchor_of = |id: &str, sequence: &str| -> anyhow::Result<std::ops::Range<usize>> {
        Ok(match loaded.tokenizer.as_kmer() {
            Some(_) => tss + 1..tss + 2,
            None => {
                let spans = loaded.tokenizer.tokenize(id, sequence)?.spans;
                let start = crate::tokenize::covering_positions(&spans, tss).start;
                start..start + 1
            }
        })
    };
    let mut skipped_layout = 0usize;
    let mut table = context.table::<PatchingRow>("patching")?;
    let progress = crate::progress::bar(tasks.len() as u64, "patching pairs");
    for index in tasks {
        let (f, b) = pairs[index];
        if !same_token_layout(&loaded.tokenizer, &f.sequence, &b.sequence)? {
            skipped_layout += 1;
            progress.inc(1);
            continue;
        }
        let matched = SweepPair {
            id: &f.id,
            pairing: "gc-matched",
            clean: &f.sequence,
            corrupt: &b.sequence,
            covering: Some(anchor_of(&f.id, &f.sequence)?),
            anchor_role: "tss",
            logit_classes: Some((target, other)),
        };
        for row in sweep_pair(&loaded, &matched, &settings)? {
            table.write(&row)?;
        }
        let partner = pairs[(index + shift) % total].1;
        if partner.sequence.len() != f.sequence.len()
            || !same_token_layout(&loaded.tokenizer, &f.sequence, &partner.sequence)?
        {
            progress.inc(1);
            continue;
        }
        let random = SweepPair {
            id: &f.id,
            pairing: "random",
            clean: &f.sequence,
            corrupt: &partner.sequence,
            covering: None,
            anchor_role: "tss",
            logit_classes: Some((target, other)),
        };
        for row in sweep_pair(&loaded, &random, &null_settings)? {
            table.write(&row)?;
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    if skipped_layout > 0 {
        tracing::warn!(
            "{skipped_layout} pairs skipped: the two windows tokenize into different token layouts"
        );
    }
    context.set_config("pairs_skipped_token_layout", skipped_layout);
    table.finish()?;
    Ok(())
}
