//! Model cards (MODEL.md) for trained models: data, settings, seeds, machine, wall time, results.

use std::fmt::Write;

use crate::datasets::baseline::BaselineComparison;
use crate::model::HookedModel;
use crate::train::classify::{ClassifierEvaluation, ClassifyReport, ClassifySettings};
use crate::train::kmer_init::InitScheme;
use crate::train::mlm::{MlmReport, MlmSettings};

/// The accelerator's name as the NVIDIA driver reports it (candle does not expose it).
fn gpu_name() -> String {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|text| text.lines().next().map(|l| l.trim().to_string()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "CUDA device".into())
}

/// The CPU model and thread count, or the accelerator, this process trains on.
pub fn machine_description(device: &candle_core::Device) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = rayon::current_num_threads();
    match device {
        candle_core::Device::Cpu => format!("CPU: {cpu}, {threads} threads"),
        _ => format!(
            "GPU: {} via candle's cuda feature (host CPU: {cpu}, {threads} threads)",
            gpu_name()
        ),
    }
}

fn architecture(model: &HookedModel) -> String {
    let c = model.config();
    format!(
        "DNABERT architecture ({}): {} layers, hidden {}, {} heads, MLP {}, vocab {} ({}-mers + 5 specials), {} positions, erf GELU, post-LN; {} parameters",
        model.head_kind().hf_class(),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.intermediate_size,
        c.vocab_size,
        c.dnabert_k().unwrap_or(0),
        c.max_position_embeddings,
        model.parameter_count()
    )
}

/// Facts about a pretraining run that its card states besides the settings and report.
pub struct MlmFacts<'a> {
    /// Held-out accuracy of the conditional k-mer frequency baseline.
    pub baseline_accuracy: f64,
    /// sha256 of the training corpus file.
    pub corpus_sha256: &'a str,
    /// Bases in the training corpus.
    pub corpus_bases: usize,
    /// [`machine_description`].
    pub machine: &'a str,
}

/// This process's command line, program name reduced to `genolens` (the path is machine-specific).
fn command_line() -> String {
    std::iter::once("genolens".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Title, architecture line and the "Data" heading every card starts with.
fn card_header(name: &str, model: &HookedModel) -> String {
    format!("# {name}\n\n{}.\n\n## Data\n\n", architecture(model))
}

/// MODEL.md of a pretrained MLM.
pub fn mlm_card(
    name: &str,
    model: &HookedModel,
    settings: &MlmSettings,
    report: &MlmReport,
    facts: &MlmFacts,
) -> String {
    let MlmFacts {
        baseline_accuracy,
        corpus_sha256,
        corpus_bases,
        machine,
    } = *facts;
    let tokens = settings.window - model.config().dnabert_k().unwrap_or(1) + 1 + 2;
    let mut text = card_header(name, model);
    let _ = writeln!(
        text,
        "MLM pretraining on `{}` (sha256 `{corpus_sha256}`, {corpus_bases} bases: hg19 chr20 < 45 Mb, see data/README.md `pretrain-corpus`). \
         Windows of {} bp ({tokens} tokens with [CLS]/[SEP]) drawn uniformly over the corpus, reverse-complemented half the time; \
         held-out evaluation on {} fixed windows of `{}` (chr20 ≥ 45 Mb).\n",
        settings.corpus.display(),
        settings.window,
        settings.eval_windows,
        settings.heldout.display()
    );
    let _ = writeln!(text, "## Training\n");
    let _ = writeln!(
        text,
        "- {} steps × {} windows; AdamW (β 0.9/0.999, ε 1e-8, weight decay {} except biases and LayerNorm), peak learning rate {}, {:.0} % linear warm-up then linear decay to 0\n\
         - masking: DNABERT spans of k tokens, {:.0} % of k-mer tokens, 80 % [MASK] / 10 % random / 10 % kept; loss on masked tokens only\n\
         - init: {}\n\
         - no dropout; f32; seed {} (init, batches and masks; a resumed run reproduces an uninterrupted one bit for bit)\n\
         - machine: {machine}; wall time {:.1} min\n\
         - command: `{}`\n",
        report.step,
        settings.batch_size,
        settings.adamw.weight_decay,
        settings.learning_rate,
        100.0 * settings.warmup_fraction,
        100.0 * settings.mask_rate,
        init_description(settings),
        settings.seed,
        report.wall_seconds / 60.0,
        command_line()
    );
    let _ = writeln!(text, "## Results (held-out chr20 ≥ 45 Mb)\n");
    let _ = writeln!(
        text,
        "| | masked-token accuracy | cross-entropy (nats) |\n|---|---|---|\n| {name} | {:.4} | {:.4} |\n| k-mer frequency baseline (most frequent k-mer consistent with the bases the unmasked neighbours reveal) | {baseline_accuracy:.4} | |\n\n\
         {} masked tokens scored. Training loss over the last 50 steps: {:.4}.\n",
        report.heldout.accuracy, report.heldout.loss, report.heldout.tokens, report.recent_train_loss
    );
    text
}

fn dropout_sentence(rate: f64) -> String {
    if rate > 0.0 {
        format!("dropout {rate} while training at HF BERT's sites (embeddings, attention probabilities, attention and MLP outputs, pooled output)")
    } else {
        "no dropout".to_string()
    }
}

/// The init line: the scheme of a fresh run, or the model a continued run starts from.
fn init_description(settings: &MlmSettings) -> String {
    match &settings.from {
        Some(from) => format!(
            "continued from `{}` (its weights, including the tied decoder, with a fresh AdamW state and learning-rate schedule; how that run started and trained: its MODEL.md)",
            from.display()
        ),
        None => init_sentence(settings.init).to_string(),
    }
}

fn init_sentence(init: InitScheme) -> &'static str {
    match init {
        InitScheme::Bert => "`bert`: HF BERT's `_init_weights` (every weight and embedding N(0, 0.02), biases 0, LayerNorm 1/0, decoder tied to the word embeddings)",
        InitScheme::Kmer => "`kmer`: BERT's init except the embeddings: each k-mer's word embedding is the sum of one N(0, 0.02²/k) vector per (offset, base), so its bases are linearly readable from step 0, and position embeddings start as sinusoids (RMS 0.02); all trained freely (why: src/train/kmer_init.rs; in side-by-side runs here, BERT's init stayed on the k-mer-frequency plateau where this one left it)",
    }
}

/// "`title`: AUROC … (CI), accuracy …" and the per-class accuracy table.
pub fn evaluation_table(title: &str, evaluation: &ClassifierEvaluation) -> String {
    let mut text = format!(
        "{title}: AUROC **{:.3}** (95 % bootstrap CI {:.3}–{:.3}), accuracy {:.3}\n\n| class | correct / total | accuracy |\n|---|---|---|\n",
        evaluation.auroc.value, evaluation.auroc.low, evaluation.auroc.high, evaluation.accuracy
    );
    for (label, name, correct, total) in &evaluation.per_class {
        let _ = writeln!(
            text,
            "| {label} ({name}) | {correct} / {total} | {:.3} |",
            *correct as f64 / (*total).max(1) as f64
        );
    }
    text
}

/// MODEL.md of a fine-tuned classifier, with the k-mer logistic baseline on the same test split.
pub fn classifier_card(
    name: &str,
    model: &HookedModel,
    settings: &ClassifySettings,
    report: &ClassifyReport,
    data_sha256: &str,
    baseline: &BaselineComparison,
    machine: &str,
) -> String {
    let mut text = card_header(name, model);
    let _ = writeln!(
        text,
        "Fine-tuned from `{}` on `{}` (sha256 `{data_sha256}`; splits, derivation and class balance in data/README.md).\n",
        settings.init.display(),
        settings.data.display()
    );
    let _ = writeln!(text, "## Training\n");
    let _ = writeln!(
        text,
        "- {} epochs, batch {}, {} steps; AdamW (weight decay {} except biases and LayerNorm), peak learning rate {}, {:.0} % warm-up then linear decay\n\
         - new parameters drawn from seed {} with BERT's init: {}\n\
         - {}; f32; shuffling and dropout seed {}\n\
         - machine: {machine}; wall time {:.1} min\n\
         - command: `{}`\n",
        settings.epochs,
        settings.batch_size,
        report.steps,
        settings.adamw.weight_decay,
        settings.learning_rate,
        100.0 * settings.warmup_fraction,
        settings.seed,
        report.initialised.join(", "),
        dropout_sentence(settings.dropout),
        settings.seed,
        report.wall_seconds / 60.0,
        command_line()
    );
    let _ = writeln!(text, "## Results\n");
    text.push_str(&evaluation_table("Test split", &report.test));
    let _ = writeln!(text, "\n{}\n", baseline.sentence());
    if let Some(last) = report.valid.last() {
        text.push('\n');
        text.push_str(&evaluation_table(
            "Validation split (after the last epoch)",
            last,
        ));
    }
    text
}

/// Appends `section` (markdown starting with its `## ` heading) to `dir/MODEL.md`.
pub fn append_to_card(dir: &std::path::Path, section: &str) -> crate::error::Result<()> {
    let path = dir.join("MODEL.md");
    let mut card = std::fs::read_to_string(&path).unwrap_or_default();
    card.push_str(section);
    crate::report::write_atomic(&path, card.as_bytes())
}
