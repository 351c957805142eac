//! DNABERT-2 (MosaicBERT) and the Nucleotide Transformer v1/v2 (ESM) against their reference
//! implementations: tiny random models laid out as the hub repositories ship them, reference
//! outputs from the hub's own DNABERT-2 code and HF's ESM (tests/reference/
//! make_family_fixtures.py, committed). Every hidden state, attention probability and MLM logit
//! within 1e-4 relative; token ids exactly; padding changes no sequence's outputs.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::max_error_on_valid;
use genolens::model::{
    load_dir, Architecture, Batch, BlockSite, HeadKind, HookPoint, HookedModel, Hooks, LoadOptions,
    ModelConfig,
};

const FAMILIES: [&str; 3] = ["dnabert2-mlm", "nt-v1-mlm", "nt-v2-mlm"];
/// The same families with a sequence-classification head (DNABERT-2's bert_layers
/// BertForSequenceClassification, HF's EsmForSequenceClassification).
const CLASSIFIERS: [&str; 3] = ["dnabert2-cls", "nt-v1-cls", "nt-v2-cls"];

fn family_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/families")
        .join(name)
}

fn family_reference(name: &str) -> HashMap<String, Tensor> {
    let path = family_dir(&format!("{name}.reference.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn batch_of(name: &str, reference: &HashMap<String, Tensor>) -> Batch {
    let ids = reference["input_ids"]
        .to_dtype(candle_core::DType::U32)
        .unwrap();
    let mask = reference["attention_mask"]
        .to_dtype(candle_core::DType::U32)
        .unwrap();
    let lengths = mask
        .to_vec2::<u32>()
        .unwrap()
        .iter()
        .map(|row| row.iter().filter(|&&m| m == 1).count())
        .collect();
    // DNABERT-2 closes with [SEP]; the NT has no closing token.
    let ends_with_special = !name.starts_with("nt");
    Batch {
        ids,
        attention_mask: mask,
        lengths,
        ends_with_special,
    }
}

/// Largest |reference| (the scale a relative tolerance is taken against, at least 1).
fn scale(reference: &Tensor) -> f32 {
    reference
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .fold(1f32, |m, v| m.max(v.abs()))
}

/// (name, |Δ| / scale) of every compared tensor.
fn relative_errors(
    name: &str,
    model: &HookedModel,
    reference: &HashMap<String, Tensor>,
) -> Vec<(String, f32)> {
    let batch = batch_of(name, reference);
    let lengths = batch.lengths.clone();
    let pre_norm = model.config().architecture.pre_norm();
    let mut hooks = Hooks::none()
        .capture("blocks.*.hook_resid_pre")
        .unwrap()
        .capture("blocks.*.attn.hook_pattern")
        .unwrap()
        .capture("blocks.*.hook_resid_post")
        .unwrap();
    hooks = if pre_norm {
        hooks.capture("ln_final.hook_normalized").unwrap()
    } else {
        hooks
            .capture("blocks.*.hook_normalized_resid_post")
            .unwrap()
    };
    let output = model.forward(&batch, &hooks).unwrap();
    let layers = model.config().num_hidden_layers;
    let mut errors = Vec::new();
    let mut compare = |name: String, ours: &Tensor, token_axes: &[usize]| {
        let theirs = &reference[&name];
        let error = max_error_on_valid(ours, theirs, &lengths, token_axes) / scale(theirs);
        errors.push((name, error));
    };
    for layer in 0..layers {
        compare(
            format!("hidden_states.{layer}"),
            output
                .cache
                .get_point(HookPoint::block(layer, BlockSite::ResidPre))
                .unwrap(),
            &[1],
        );
        // Valid query rows (DNABERT-2 never computes pad queries), every key column.
        compare(
            format!("attentions.{layer}"),
            output
                .cache
                .get_point(HookPoint::block(layer, BlockSite::Pattern))
                .unwrap(),
            &[2],
        );
    }
    let last = HookPoint::block(
        layers - 1,
        if pre_norm {
            BlockSite::ResidPost
        } else {
            BlockSite::NormalizedResidPost
        },
    );
    compare(
        "last_layer_output".into(),
        output.cache.get_point(last).unwrap(),
        &[1],
    );
    // HF's last hidden state: after ESM's final LayerNorm; the last block's output otherwise.
    let final_point = if pre_norm { HookPoint::LnFinal } else { last };
    compare(
        format!("hidden_states.{layers}"),
        output.cache.get_point(final_point).unwrap(),
        &[1],
    );
    compare(
        format!("hidden_states.{layers}"),
        &output.last_hidden_state,
        &[1],
    );
    let logits = output.logits.as_ref().unwrap();
    let token_axes: &[usize] = if logits.rank() == 3 { &[1] } else { &[] };
    compare("logits".into(), logits, token_axes);
    // Without hooks the fused kernels run (attention with ALiBi in one op, the gated MLP in one
    // pass): the same logits.
    let fused = model.forward(&batch, &Hooks::none()).unwrap();
    compare("logits".into(), fused.logits.as_ref().unwrap(), token_axes);
    errors
}

#[test]
fn every_family_matches_its_reference_implementation() {
    for name in FAMILIES.into_iter().chain(CLASSIFIERS) {
        let loaded = load_dir(&family_dir(name), name, &LoadOptions::default()).unwrap();
        let errors = relative_errors(name, &loaded.model, &family_reference(name));
        let layers = loaded.model.config().num_hidden_layers;
        assert_eq!(errors.len(), 2 * layers + 5, "{name}: {errors:?}");
        let failed: Vec<_> = errors
            .iter()
            .filter(|(_, e)| e.is_nan() || *e > 1e-4)
            .collect();
        assert!(failed.is_empty(), "{name} differs: {failed:?}");
        eprintln!(
            "{name}: {}",
            errors
                .iter()
                .map(|(n, e)| format!("{n} {e:.1e}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

#[test]
fn architectures_and_heads_are_detected() {
    let expected = [
        ("dnabert2-mlm", Architecture::MosaicBert),
        ("nt-v1-mlm", Architecture::Esm),
        ("nt-v2-mlm", Architecture::Esm),
    ];
    for (name, architecture) in expected {
        let loaded = load_dir(&family_dir(name), name, &LoadOptions::default()).unwrap();
        assert_eq!(loaded.model.config().architecture, architecture, "{name}");
        assert_eq!(loaded.model.head_kind(), HeadKind::MaskedLm, "{name}");
        let name = name.replace("mlm", "cls");
        let loaded = load_dir(&family_dir(&name), &name, &LoadOptions::default()).unwrap();
        assert_eq!(loaded.model.config().architecture, architecture, "{name}");
        assert_eq!(
            loaded.model.head_kind(),
            HeadKind::SequenceClassification { num_labels: 2 },
            "{name}"
        );
        assert_eq!(
            loaded.model.config().class_names(),
            Some(vec!["background".to_string(), "promoter".to_string()])
        );
    }
    let v2 = load_dir(&family_dir("nt-v2-mlm"), "v2", &LoadOptions::default()).unwrap();
    assert!(v2.model.config().rotary() && v2.model.config().gated_mlp());
    for skipped in [
        "esm.embeddings.position_embeddings.weight",
        "esm.contact_head.regression.weight",
        "esm.encoder.layer.1.attention.self.rotary_embeddings.inv_freq",
    ] {
        assert!(
            v2.notes.iter().any(|n| n.contains(skipped)),
            "{skipped} not reported as skipped: {:?}",
            v2.notes
        );
    }
    let v1 = load_dir(&family_dir("nt-v1-mlm"), "v1", &LoadOptions::default()).unwrap();
    assert!(v1.model.config().token_dropout && !v1.model.config().rotary());
    assert!(v1.notes.iter().any(|n| n.contains("position_ids")));
}

#[test]
fn token_ids_equal_the_reference_tokenizers() {
    for name in FAMILIES {
        let loaded = load_dir(&family_dir(name), name, &LoadOptions::default()).unwrap();
        let text = std::fs::read_to_string(family_dir(&format!("{name}.tokens.json"))).unwrap();
        let expected: std::collections::BTreeMap<String, Vec<u32>> =
            serde_json::from_str(&text).unwrap();
        for (sequence, ids) in &expected {
            if sequence.chars().any(|c| c.is_ascii_lowercase()) {
                // The reference tokenizer has no normaliser: each lower-case base is one
                // [UNK] there. genolens upper-cases first, as everywhere.
                let unk = loaded.tokenizer.special().unk;
                let lower = sequence.chars().filter(|c| c.is_ascii_lowercase()).count();
                assert_eq!(
                    ids.iter().filter(|&&i| i == unk).count(),
                    lower + 2,
                    "{name}"
                );
                let ours = loaded.tokenizer.tokenize("s", sequence).unwrap();
                let upper = loaded
                    .tokenizer
                    .tokenize("s", &sequence.to_ascii_uppercase())
                    .unwrap();
                assert_eq!(ours.ids, upper.ids, "{name}");
                continue;
            }
            let tokens = loaded.tokenizer.tokenize("s", sequence).unwrap();
            assert_eq!(&tokens.ids, ids, "{name} {sequence}");
            // Spans tile the sequence: special tokens have none, the rest cover it in order.
            let covered: Vec<_> = tokens.spans.iter().flatten().cloned().collect();
            assert_eq!(covered.first().map(|s| s.start), Some(0), "{name}");
            assert_eq!(
                covered.last().map(|s| s.end),
                Some(sequence.len()),
                "{name}"
            );
            assert!(covered.windows(2).all(|w| w[0].end == w[1].start), "{name}");
        }
    }
}

#[test]
fn padding_changes_no_sequence_and_an_n_is_a_token() {
    for name in FAMILIES {
        let loaded = load_dir(&family_dir(name), name, &LoadOptions::default()).unwrap();
        let reference = family_reference(name);
        let batch = batch_of(name, &reference);
        let all = loaded.model.forward(&batch, &Hooks::none()).unwrap();
        let ids = batch.ids.to_vec2::<u32>().unwrap();
        for (row, &length) in batch.lengths.iter().enumerate() {
            let alone = Batch::from_ids(&[ids[row][..length].to_vec()], 0, &Device::Cpu).unwrap();
            let single = loaded.model.forward(&alone, &Hooks::none()).unwrap();
            let padded = all
                .last_hidden_state
                .narrow(0, row, 1)
                .unwrap()
                .narrow(1, 0, length)
                .unwrap();
            let difference = common::max_abs_difference(&single.last_hidden_state, &padded);
            assert!(difference < 1e-5, "{name} row {row}: {difference}");
        }
        // The second test sequence has an N: NT gives it its own token, DNABERT-2 an [UNK].
        let tokens = loaded
            .tokenizer
            .tokenize("with-n", "TTGACNGTACGATCGATTACAGGCT")
            .unwrap();
        assert_eq!(tokens.ambiguous_bases, 1, "{name}");
        let n_token = tokens
            .spans
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.contains(&5)))
            .unwrap();
        let text = loaded.tokenizer.token(tokens.ids[n_token]).unwrap();
        if name.starts_with("nt") {
            assert_eq!(text, "N", "{name}");
        } else {
            assert_eq!(text, "[UNK]", "{name}");
            assert_eq!(tokens.unknown_tokens, 1);
        }
    }
}

#[test]
fn token_dropout_scales_by_the_mask_fraction() {
    // NT v1's reference batch has a row with two <mask> tokens: its embeddings are scaled by
    // 0.88 / (1 − 2/len) rather than 0.88 — checked through hidden_states.0 above; here the
    // scale itself, from the word embeddings of an unmasked token.
    let loaded = load_dir(&family_dir("nt-v1-mlm"), "v1", &LoadOptions::default()).unwrap();
    let reference = family_reference("nt-v1-mlm");
    let batch = batch_of("nt-v1-mlm", &reference);
    let rows = batch.size();
    let masked_row = rows - 1;
    let length = batch.lengths[masked_row];
    let hooks = Hooks::none()
        .capture("hook_embed")
        .unwrap()
        .capture("hook_pos_embed")
        .unwrap()
        .capture("blocks.0.hook_resid_pre")
        .unwrap();
    let output = loaded.model.forward(&batch, &hooks).unwrap();
    let word = output.cache.get_point(HookPoint::Embed).unwrap();
    let position = output.cache.get_point(HookPoint::PosEmbed).unwrap();
    let embedded = output
        .cache
        .get_point(HookPoint::block(0, BlockSite::ResidPre))
        .unwrap();
    let at = |t: &Tensor, row: usize, token: usize| -> Vec<f32> {
        t.narrow(0, row.min(t.dim(0).unwrap() - 1), 1)
            .unwrap()
            .narrow(1, token, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let expected_scale = 0.88f32 / (1.0 - 2.0 / length as f32);
    let (w, p, e) = (
        at(word, masked_row, 1),
        at(position, 0, 1),
        at(embedded, masked_row, 1),
    );
    for i in 0..w.len() {
        assert!((e[i] - (w[i] * expected_scale + p[i])).abs() < 1e-5);
    }
    // The <mask> rows themselves carry only their position.
    let (p3, e3) = (at(position, 0, 3), at(embedded, masked_row, 3));
    assert!(p3.iter().zip(&e3).all(|(a, b)| (a - b).abs() < 1e-6));
}

#[test]
fn real_shapes_have_the_published_parameter_counts() {
    // DNABERT-2-117M and NT-v2-50m-multi-species, built at their real shapes (random weights).
    let dnabert2 = ModelConfig::from_json(
        r#"{"alibi_starting_size":512,"attention_probs_dropout_prob":0.0,
        "auto_map":{"AutoConfig":"configuration_bert.BertConfig","AutoModel":"bert_layers.BertModel",
        "AutoModelForMaskedLM":"bert_layers.BertForMaskedLM"},"hidden_act":"gelu","hidden_size":768,
        "intermediate_size":3072,"layer_norm_eps":1e-12,"max_position_embeddings":512,
        "num_attention_heads":12,"num_hidden_layers":12,"type_vocab_size":2,"vocab_size":4096}"#,
    )
    .unwrap();
    let model = HookedModel::random(&dnabert2, HeadKind::MaskedLm, 1, &Device::Cpu).unwrap();
    assert_eq!(model.parameter_count(), 117_074_176);
    drop(model);
    let nt_v2 = ModelConfig::from_json(
        r#"{"add_bias_fnn":false,"architectures":["EsmForMaskedLM"],
        "auto_map":{"AutoModelForMaskedLM":"modeling_esm.EsmForMaskedLM"},"emb_layer_norm_before":false,
        "hidden_size":512,"intermediate_size":2048,"layer_norm_eps":1e-12,"mask_token_id":2,
        "max_position_embeddings":2050,"num_attention_heads":16,"num_hidden_layers":12,"pad_token_id":1,
        "position_embedding_type":"rotary","tie_word_embeddings":false,"token_dropout":false,"vocab_size":4107}"#,
    )
    .unwrap();
    let model = HookedModel::random(&nt_v2, HeadKind::MaskedLm, 1, &Device::Cpu).unwrap();
    // 55,904,972 without the unused position table and contact head of the hub file.
    assert_eq!(model.parameter_count(), 55_904_972 - 2050 * 512 - 193);
}

#[test]
fn unknown_architectures_and_missing_tensors_are_clear_errors() {
    let err = ModelConfig::from_json(
        r#"{"model_type":"roberta","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,
        "intermediate_size":8,"max_position_embeddings":16,"vocab_size":69}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("roberta")
            && err.contains("DNABERT-2")
            && err.contains("Nucleotide Transformer"),
        "{err}"
    );
    // DNABERT-2 weights read as stock BERT (a config without its auto_map): refused, naming
    // the tensors, never random-initialised (DNABERT_2 issue #31).
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(family_dir("dnabert2-mlm").join("config.json")).unwrap(),
    )
    .unwrap();
    config.as_object_mut().unwrap().remove("auto_map");
    let config = ModelConfig::from_json(&config.to_string()).unwrap();
    assert_eq!(config.architecture, Architecture::Bert);
    let err = genolens::model::load::load_weights(
        &config,
        &family_dir("dnabert2-mlm").join("pytorch_model.bin"),
        &LoadOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("attention.self.query.weight") && err.contains("Wqkv"),
        "{err}"
    );
}

/// Two sequences one SNV apart that tokenize into the same layout (for BPE, the first offset
/// where the substitution keeps the merges).
fn snv_pair(loaded: &genolens::model::LoadedModel) -> (String, String) {
    let clean = "ACGTAGCATCGGATCTATCTATCGACACTTGGTTATCGATCTACGAGCATC".to_string();
    for offset in (10..clean.len()).rev() {
        let mut corrupt = clean.clone().into_bytes();
        corrupt[offset] = if corrupt[offset] == b'A' { b'G' } else { b'A' };
        let corrupt = String::from_utf8(corrupt).unwrap();
        if genolens::analysis::patching::same_token_layout(&loaded.tokenizer, &clean, &corrupt)
            .unwrap()
        {
            return (clean, corrupt);
        }
    }
    panic!("no SNV keeps the token layout");
}

#[test]
fn patching_keeps_its_invariants_on_every_family() {
    use genolens::analysis::patching::{PairRuns, Patch, PatchSite, PatchSource};
    use genolens::model::Intervention;
    for name in FAMILIES {
        let loaded = load_dir(&family_dir(name), name, &LoadOptions::default()).unwrap();
        let model = &loaded.model;
        let (clean, corrupt) = snv_pair(&loaded);
        let batch = |s: &str| {
            let tokens = loaded.tokenizer.tokenize("s", s).unwrap();
            Batch::from_tokenized(&[tokens], loaded.tokenizer.special().pad, &Device::Cpu).unwrap()
        };
        let (clean_batch, corrupt_batch) = (batch(&clean), batch(&corrupt));
        let runs = PairRuns::new(model, &clean_batch, &corrupt_batch).unwrap();
        let layers = model.config().num_hidden_layers;
        let output_site = PatchSite::NormalizedResidPost.on(model);
        let whole = |site, layer| Patch {
            site,
            layer,
            position: None,
            head: None,
        };
        // The clean run's whole input or output of any layer restores the clean outputs.
        let patches = [
            whole(PatchSite::ResidPre, 0),
            whole(PatchSite::ResidPre, layers - 1),
            whole(output_site, 0),
        ];
        let clean_cls = runs.clean_cls().unwrap();
        for patched in runs.patch(model, &patches, PatchSource::Clean, 4).unwrap() {
            let error = clean_cls
                .iter()
                .zip(&patched.cls)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(error < 1e-5, "{name} {:?}: {error}", patched.patch);
        }
        // A run patched with its own values is that run, bit for bit.
        let corrupt_cls = runs.corrupt_cls().unwrap();
        for patched in runs
            .patch(model, &patches, PatchSource::Corrupt, 4)
            .unwrap()
        {
            assert_eq!(patched.cls, corrupt_cls, "{name}");
        }
        // One token of attn_out equals a hooked forward that replaces that row.
        let position = runs.tokens() / 2;
        let patch = Patch {
            site: PatchSite::AttnOut,
            layer: 0,
            position: Some(position),
            head: None,
        };
        let patched = runs
            .patch(model, &[patch], PatchSource::Clean, 4)
            .unwrap()
            .remove(0);
        let point = HookPoint::block(0, BlockSite::AttnOut);
        let clean_value = model
            .forward(&clean_batch, &Hooks::none().capture_point(point))
            .unwrap()
            .cache
            .get_point(point)
            .unwrap()
            .clone();
        let replace = Intervention::Custom(std::sync::Arc::new(move |a: &Tensor| {
            let before = a.narrow(1, 0, position)?;
            let row = clean_value.narrow(1, position, 1)?;
            let after = a.narrow(1, position + 1, a.dim(1)? - position - 1)?;
            Tensor::cat(&[&before, &row, &after], 1)
        }));
        let naive = model
            .forward(&corrupt_batch, &Hooks::none().intervene(point, replace))
            .unwrap();
        let naive_cls: Vec<f32> = naive.cls.flatten_all().unwrap().to_vec1().unwrap();
        let error = naive_cls
            .iter()
            .zip(&patched.cls)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(error < 1e-5, "{name}: {error}");
        assert!(
            corrupt_cls.iter().zip(&patched.cls).any(|(a, b)| a != b),
            "{name}: the patch changed nothing"
        );
    }
}

/// A Parquet table of string and integer columns (test inputs).
fn write_table(
    path: &std::path::Path,
    columns: Vec<(&str, Vec<String>)>,
    integers: Vec<(&str, Vec<i64>)>,
) {
    use std::sync::Arc;
    let mut fields = Vec::new();
    let mut arrays: Vec<arrow_array::ArrayRef> = Vec::new();
    for (name, values) in columns {
        fields.push(arrow_schema::Field::new(
            name,
            arrow_schema::DataType::Utf8,
            false,
        ));
        arrays.push(Arc::new(arrow_array::StringArray::from(values)));
    }
    for (name, values) in integers {
        fields.push(arrow_schema::Field::new(
            name,
            arrow_schema::DataType::Int64,
            false,
        ));
        arrays.push(Arc::new(arrow_array::Int64Array::from(values)));
    }
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let batch = arrow_array::RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Seeded random DNA.
fn random_dna(n: usize, seed: u64) -> String {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b"ACGT"[(state >> 33) as usize % 4] as char
        })
        .collect()
}

#[test]
fn tokenize_attention_patch_attribute_and_sae_run_on_every_family() {
    let dir = tempfile::tempdir().unwrap();
    // Labelled windows (a TATA box in class 1), located on chr20 by their ids.
    let sequences: Vec<String> = (0..24)
        .map(|i| {
            let mut s = random_dna(96, i as u64 + 1);
            if i % 2 == 1 {
                s.replace_range(40..48, "TATAAAAG");
            }
            s
        })
        .collect();
    let ids: Vec<String> = (0..24)
        .map(|i| format!("chr20:{}-{}(+)", 1000 + 200 * i, 1096 + 200 * i))
        .collect();
    let labels: Vec<i64> = (0..24).map(|i| i % 2).collect();
    let names: Vec<String> = labels
        .iter()
        .map(|&l| ["background", "promoter"][l as usize].to_string())
        .collect();
    let splits: Vec<String> = (0..24)
        .map(|i| if i % 3 == 0 { "test" } else { "train" }.to_string())
        .collect();
    let windows = dir.path().join("windows.parquet");
    write_table(
        &windows,
        vec![
            ("id", ids.clone()),
            ("sequence", sequences.clone()),
            ("label_name", names),
            ("split", splits),
        ],
        vec![("label", labels), ("variant_offset", vec![44; 24])],
    );
    // SNVs at base 44.
    let alts: Vec<String> = sequences
        .iter()
        .map(|s| {
            let mut alt = s.clone().into_bytes();
            alt[44] = if alt[44] == b'A' { b'C' } else { b'A' };
            String::from_utf8(alt).unwrap()
        })
        .collect();
    let variants = dir.path().join("variants.parquet");
    write_table(
        &variants,
        vec![("id", ids), ("sequence", sequences), ("alt_sequence", alts)],
        vec![("variant_offset", vec![44; 24])],
    );
    let run = |args: &[&str]| {
        let output = common::genolens(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let read = |path: std::path::PathBuf| genolens::report::ParquetTable::read(&path).unwrap();
    for (mlm, classifier) in FAMILIES.into_iter().zip(CLASSIFIERS) {
        let (mlm_dir, cls_dir) = (family_dir(mlm), family_dir(classifier));
        let (mlm_dir, cls_dir) = (mlm_dir.to_str().unwrap(), cls_dir.to_str().unwrap());
        let out = |what: &str| dir.path().join(format!("{mlm}-{what}"));
        let windows = windows.to_str().unwrap();

        run(&[
            "tokenize",
            "--model",
            mlm_dir,
            "--data",
            windows,
            "--out",
            out("tokens").to_str().unwrap(),
        ]);
        let tokens = read(out("tokens").join("tokens.parquet"));
        assert!(tokens.rows() > 24 * 10, "{mlm}");

        run(&[
            "attention",
            "--model",
            cls_dir,
            "--data",
            windows,
            "--split",
            "all",
            "--permutations",
            "5",
            "--out",
            out("attention").to_str().unwrap(),
        ]);
        let stats = read(out("attention").join("head_stats.parquet"));
        let heads = if mlm.starts_with("dnabert2") { 12 } else { 4 };
        assert_eq!(
            stats.rows(),
            24 * 2 * heads,
            "{mlm}: sequences x layers x heads"
        );

        run(&[
            "patch",
            "--model",
            mlm_dir,
            "--data",
            variants.to_str().unwrap(),
            "--out",
            out("patch").to_str().unwrap(),
        ]);
        let patching = read(out("patch").join("patching.parquet"));
        let (sweeps, sites, layers) = (
            patching.strings("sweep").unwrap(),
            patching.strings("site").unwrap(),
            patching.integers("layer").unwrap(),
        );
        let restored = patching.f64s("fraction_restored").unwrap();
        let mut whole_inputs = 0;
        for i in 0..patching.rows() {
            if sweeps[i] == "layer" && sites[i] == "resid_pre" && layers[i] == 0 {
                assert!((restored[i] - 1.0).abs() < 1e-4, "{mlm}: {}", restored[i]);
                whole_inputs += 1;
            }
        }
        assert!(whole_inputs > 0, "{mlm}: no pair was patched");

        run(&[
            "attribute",
            "--model",
            cls_dir,
            "--data",
            windows,
            "--split",
            "all",
            "--limit",
            "2",
            "--baseline",
            "mask",
            "--out",
            out("attribute").to_str().unwrap(),
        ]);
        let checks = read(out("attribute").join("attribution_checks.parquet"));
        let methods = checks.strings("method").unwrap();
        for method in [
            "attnlrp",
            "cp-lrp",
            "integrated_gradients",
            "ism",
            "grad_x_input",
        ] {
            assert!(
                methods.iter().any(|m| m == method),
                "{classifier}: no {method}"
            );
        }
        let nucleotides = read(out("attribute").join("nucleotide_attributions.parquet"));
        assert!(nucleotides.rows() > 0, "{classifier}");

        run(&[
            "sae",
            "train",
            "--model",
            mlm_dir,
            "--data",
            windows,
            "--hook",
            "blocks.1.hook_resid_post",
            "--rows",
            "tokens",
            "--latents",
            "16",
            "--epochs",
            "3",
            "--no-motifs",
            "--out",
            out("sae").to_str().unwrap(),
        ]);
        let metrics = read(out("sae").join("sae_metrics.parquet"));
        assert_eq!(metrics.rows(), 2, "{mlm}");
    }
}
