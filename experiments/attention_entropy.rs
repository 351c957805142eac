//! How focused is each head's [CLS] attention? Entropy of the [CLS] row per layer, head and
//! sequence (valid keys only), plus the mass the row puts on [CLS]/[SEP] (degenerate heads).
//! By default: the committed promoter classifier on the human-promoters test split.

use std::path::Path;

use anyhow::Context;
use genolens::model::{Batch, BlockSite, HookPoint, Hooks};
use genolens::experiment::ExperimentContext;

/// Shown by `genolens experiment --list`.
pub const DESCRIPTION: &str = "[CLS]-row attention entropy and special-token mass per layer/head/sequence";

const DEFAULT_MODEL: &str = genolens::defaults::MODEL;
const DEFAULT_DATA: &str = genolens::defaults::DATA;
const BATCH_SIZE: usize = 16;

genolens::table_row! {
    /// One head's [CLS] attention row on one sequence.
    pub struct ClsEntropyRow {
        pub sequence_id: String,
        pub layer: u32,
        pub head: u32,
        pub valid_keys: u32,
        pub cls_entropy_nats: f64,
        pub cls_entropy_normalised: f64,
        pub cls_mass_on_special: f64,
    }
}

/// Runs the study.
pub fn run(context: &mut ExperimentContext) -> anyhow::Result<()> {
    let loaded = context.load_model(DEFAULT_MODEL)?;
    let examples = context.sequences(Path::new(DEFAULT_DATA))?;
    let config = loaded.model.config().clone();
    let hooks = Hooks::none().capture("blocks.*.attn.hook_pattern")?;
    let mut table = context.table::<ClsEntropyRow>("cls_attention_entropy")?;
    let progress = genolens::progress::bar(examples.len() as u64, "attention entropy");
    for chunk in examples.chunks(BATCH_SIZE) {
        let tokenized = chunk
            .iter()
            .map(|e| loaded.tokenizer.tokenize(&e.id, &e.sequence))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = Batch::from_tokenized(&tokenized, loaded.tokenizer.vocab.special.pad, loaded.model.device())?;
        let output = loaded.model.forward(&batch, &hooks)?;
        // Per layer: [b,h,q,k] -> the [CLS] query row [b,h,k].
        let cls_rows = (0..config.num_hidden_layers)
            .map(|layer| {
                let pattern = output.cache.get_point(HookPoint::block(layer, BlockSite::Pattern)).context("pattern captured")?;
                Ok(pattern.narrow(2, 0, 1)?.squeeze(2)?.to_vec3::<f32>()?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (layer, rows_by_sequence) in cls_rows.iter().enumerate() {
            for (index, example) in chunk.iter().enumerate() {
                let valid = batch.lengths[index];
                for (head, row) in rows_by_sequence[index].iter().enumerate() {
                    let row = &row[..valid];
                    let entropy: f64 = row.iter().filter(|&&p| p > 0.0).map(|&p| -(p as f64) * (p as f64).ln()).sum();
                    table.write(&ClsEntropyRow {
                        sequence_id: example.id.clone(),
                        layer: layer as u32,
                        head: head as u32,
                        valid_keys: valid as u32,
                        cls_entropy_nats: entropy,
                        cls_entropy_normalised: entropy / (valid as f64).ln(),
                        cls_mass_on_special: (row[0] + row[valid - 1]) as f64,
                    })?;
                }
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    context.set_config("batch_size", BATCH_SIZE);
    table.finish()?;
    Ok(())
}
