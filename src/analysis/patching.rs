//! Activation patching (methods.md §4): run the corrupt input, replace one activation with the
//! clean run's, and recompute every later layer. Clean and corrupt caches are computed once per
//! pair; patched runs that start at the same layer run as the rows of one batch. The shortcuts
//! that make a sweep fast are all exact (see [`PairRuns`]); a patch from a run into itself
//! changes nothing, bit for bit.

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::error::{GenolensError, Result};
use crate::model::rows::{RowBlock, RowHead, RowOverride, TokenRows};
use crate::model::{Batch, BlockSite, HookPoint, HookedModel, Hooks, Intervention, Output};

/// Where a clean activation is written into the corrupt run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatchSite {
    /// `blocks.{l}.hook_resid_pre`: the block input.
    ResidPre,
    /// `blocks.{l}.hook_normalized_resid_post`: the block output of post-LN models (DNABERT,
    /// DNABERT-2).
    NormalizedResidPost,
    /// `blocks.{l}.hook_resid_post`: the block output of pre-LN models (the Nucleotide
    /// Transformer).
    ResidPost,
    /// `blocks.{l}.hook_attn_out`.
    AttnOut,
    /// `blocks.{l}.hook_mlp_out`.
    MlpOut,
    /// `blocks.{l}.attn.hook_z`, one head (before W_O).
    Z,
}

impl PatchSite {
    /// Every site, in the order reports list them.
    pub const ALL: [PatchSite; 6] = [
        PatchSite::ResidPre,
        PatchSite::AttnOut,
        PatchSite::MlpOut,
        PatchSite::NormalizedResidPost,
        PatchSite::ResidPost,
        PatchSite::Z,
    ];

    /// The sites a model has: the block output is `normalized_resid_post` after a post-LN block,
    /// `resid_post` after a pre-LN one.
    pub fn of(model: &HookedModel) -> Vec<PatchSite> {
        let pre_norm = model.config().architecture.pre_norm();
        PatchSite::ALL
            .into_iter()
            .filter(|site| match site {
                PatchSite::NormalizedResidPost => !pre_norm,
                PatchSite::ResidPost => pre_norm,
                _ => true,
            })
            .collect()
    }

    /// This site on `model`: the block output named as the model names it.
    pub fn on(self, model: &HookedModel) -> PatchSite {
        let pre_norm = model.config().architecture.pre_norm();
        match self {
            PatchSite::NormalizedResidPost | PatchSite::ResidPost if pre_norm => {
                PatchSite::ResidPost
            }
            PatchSite::NormalizedResidPost | PatchSite::ResidPost => PatchSite::NormalizedResidPost,
            other => other,
        }
    }

    /// The name used in tables and on the command line (`resid_pre`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PatchSite::ResidPre => "resid_pre",
            PatchSite::NormalizedResidPost => "normalized_resid_post",
            PatchSite::ResidPost => "resid_post",
            PatchSite::AttnOut => "attn_out",
            PatchSite::MlpOut => "mlp_out",
            PatchSite::Z => "z",
        }
    }

    /// The hook site.
    pub fn block_site(self) -> BlockSite {
        match self {
            PatchSite::ResidPre => BlockSite::ResidPre,
            PatchSite::NormalizedResidPost => BlockSite::NormalizedResidPost,
            PatchSite::ResidPost => BlockSite::ResidPost,
            PatchSite::AttnOut => BlockSite::AttnOut,
            PatchSite::MlpOut => BlockSite::MlpOut,
            PatchSite::Z => BlockSite::Z,
        }
    }
}

impl std::str::FromStr for PatchSite {
    type Err = GenolensError;

    fn from_str(text: &str) -> Result<Self> {
        PatchSite::ALL
            .into_iter()
            .find(|site| site.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = PatchSite::ALL.iter().map(|s| s.name()).collect();
                GenolensError::argument(
                    format!("--site {text}"),
                    format!(
                        "unknown patching site; expected one of {}",
                        names.join(", ")
                    ),
                )
            })
    }
}

impl std::fmt::Display for PatchSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One patch: a site of a layer, at every position or one token position, and for `z` one head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// The site.
    pub site: PatchSite,
    /// 0-based layer.
    pub layer: usize,
    /// Token position ([CLS] = 0); `None` = every position.
    pub position: Option<usize>,
    /// Head (site `z` only; `None` = every head).
    pub head: Option<usize>,
}

/// Which run's activations are written into the corrupt run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchSource {
    /// The clean run (denoising: how much of the clean output does this activation restore?).
    Clean,
    /// The corrupt run itself (a control: changes nothing, exactly).
    Corrupt,
}

/// The clean and corrupt runs of one pair, with every activation patching reads.
///
/// A patched run's outputs are the final [CLS] vector and the classifier's logits, so the last
/// block runs only its [CLS] row (its keys and values over every token), row by row on the host
/// ([`RowBlock`]); the pair's reference outputs go through the same rows, so a patch that writes
/// the clean run's whole input gives back the clean outputs bit for bit. Two kinds of patch need
/// no forward pass at all, exactly: a patch whose values equal the corrupt run's (a token the
/// variant does not touch, before any attention has mixed it) leaves the corrupt run as it was,
/// and a patch of the last block's output at [CLS] gives the source run's outputs. A patch of
/// `attn_out`, `mlp_out` or `z` at one token changes only that token's row of its block's output:
/// that row is recomputed alone and the rest starts from the next layer.
pub struct PairRuns {
    clean: Output,
    corrupt: Output,
    corrupt_batch: Batch,
    layers: usize,
    heads: usize,
    width: usize,
    blocks: Vec<OnceLock<RowBlock>>,
    head: RowHead,
    host: Vec<OnceLock<Vec<f32>>>,
    /// The corrupt run's q, k, v per layer on the host (3 per layer).
    corrupt_qkv: Vec<OnceLock<Vec<f32>>>,
    clean_final: Final,
    corrupt_final: Final,
    /// Every patch runs as a hooked forward from its layer (DNABERT-2, NT): the row shortcuts
    /// are written for BERT's blocks.
    general: bool,
    sites: Vec<PatchSite>,
}

/// What a run ends with: the final [CLS] row and the classifier's logits.
#[derive(Debug, Clone)]
struct Final {
    cls: Vec<f32>,
    logits: Option<Vec<f32>>,
}

/// One patched run's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    /// The patch.
    pub patch: Patch,
    /// The final [CLS] vector (the last block's output at token 0).
    pub cls: Vec<f32>,
    /// The head's logits, when the model has a sequence-classification head.
    pub logits: Option<Vec<f32>>,
}

fn row(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}

/// `f` of a tensor's values as f32 on the host: borrowed from a contiguous CPU f32 tensor,
/// copied otherwise.
fn with_host<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = tensor.storage_and_layout();
        if let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[a..b]));
        }
    }
    Ok(f(&row(tensor)?))
}

/// The attention inputs the corrupt run keeps for reuse.
const QKV: [BlockSite; 3] = [BlockSite::Q, BlockSite::K, BlockSite::V];

/// Values written into a layer's input: every token's (`None` position) or one token's; `None`
/// writes nothing.
type Replacement = Option<(Option<usize>, Vec<f32>)>;

/// One token's new input row, if any.
type TokenEdit<'a> = Option<(usize, &'a [f32])>;

/// How one patch is run.
enum Job {
    /// The outputs are exactly those of a reference run.
    Copy(PatchSource),
    /// From layer `start`, whose input is the corrupt run's with `rows` replaced (every token
    /// when `position` is `None`); the last block's [CLS] row takes `tail` (a patch of the last
    /// block's attn_out / mlp_out / z).
    Residual {
        start: usize,
        replace: Replacement,
        tail: Option<Patch>,
    },
    /// A whole-layer attn_out / mlp_out / z patch before the last layer: an intervention hook.
    Intervene,
}

impl PairRuns {
    /// Runs `clean` and `corrupt` (one sequence each, the same number of tokens) once, capturing
    /// the patched sites at every layer.
    pub fn new(model: &HookedModel, clean: &Batch, corrupt: &Batch) -> Result<Self> {
        if clean.size() != 1 || corrupt.size() != 1 {
            return Err(GenolensError::argument(
                "patching pair",
                format!(
                    "one clean and one corrupt sequence expected, got batches of {} and {}",
                    clean.size(),
                    corrupt.size()
                ),
            ));
        }
        if clean.lengths != corrupt.lengths || clean.padded_len() != corrupt.padded_len() {
            return Err(GenolensError::argument(
                "patching pair",
                format!(
                    "clean and corrupt must have the same number of tokens ({} vs {})",
                    clean.lengths[0], corrupt.lengths[0]
                ),
            ));
        }
        let general = model.config().architecture != crate::model::Architecture::Bert;
        let sites = PatchSite::of(model);
        let mut hooks = Hooks::none();
        for site in &sites {
            hooks = hooks.capture(&format!("blocks.*.{}", site.block_site().suffix()))?;
        }
        let clean_output = model.forward(clean, &hooks)?;
        if !general {
            for site in QKV {
                hooks = hooks.capture(&format!("blocks.*.{}", site.suffix()))?;
            }
        }
        let corrupt_output = model.forward(corrupt, &hooks)?;
        let config = model.config();
        let layers = config.num_hidden_layers;
        let mut runs = PairRuns {
            clean: clean_output,
            corrupt: corrupt_output,
            corrupt_batch: corrupt.clone(),
            layers,
            heads: config.num_attention_heads,
            width: config.hidden_size,
            blocks: (0..layers).map(|_| OnceLock::new()).collect(),
            head: model.row_head()?,
            host: (0..2 * PatchSite::ALL.len() * layers)
                .map(|_| OnceLock::new())
                .collect(),
            corrupt_qkv: (0..3 * layers).map(|_| OnceLock::new()).collect(),
            clean_final: Final {
                cls: Vec::new(),
                logits: None,
            },
            corrupt_final: Final {
                cls: Vec::new(),
                logits: None,
            },
            general,
            sites,
        };
        if general {
            let last = |output: &Output| -> Result<Final> {
                Ok(Final {
                    cls: row(&output.cls)?,
                    logits: match model.head_kind() {
                        crate::model::HeadKind::SequenceClassification { .. } => {
                            output.logits.as_ref().map(row).transpose()?
                        }
                        _ => None,
                    },
                })
            };
            runs.clean_final = last(&runs.clean)?;
            runs.corrupt_final = last(&runs.corrupt)?;
            return Ok(runs);
        }
        let last = layers - 1;
        let inputs = Tensor::cat(
            &[
                runs.activation(PatchSource::Clean, PatchSite::ResidPre, last)?,
                runs.activation(PatchSource::Corrupt, PatchSite::ResidPre, last)?,
            ],
            0,
        )?;
        let mut finals = runs.finals(model, &inputs, &[None, None])?;
        runs.corrupt_final = finals.pop().expect("two rows");
        runs.clean_final = finals.pop().expect("two rows");
        Ok(runs)
    }

    /// The clean run's final [CLS] vector.
    pub fn clean_cls(&self) -> Result<Vec<f32>> {
        Ok(self.clean_final.cls.clone())
    }

    /// The corrupt run's final [CLS] vector.
    pub fn corrupt_cls(&self) -> Result<Vec<f32>> {
        Ok(self.corrupt_final.cls.clone())
    }

    /// The clean run's classifier logits, if any.
    pub fn clean_logits(&self) -> Result<Option<Vec<f32>>> {
        Ok(self.clean_final.logits.clone())
    }

    /// The corrupt run's classifier logits, if any.
    pub fn corrupt_logits(&self) -> Result<Option<Vec<f32>>> {
        Ok(self.corrupt_final.logits.clone())
    }

    /// Token count of the pair ([CLS] and [SEP] included).
    pub fn tokens(&self) -> usize {
        self.corrupt_batch.lengths[0]
    }

    fn activation(&self, source: PatchSource, site: PatchSite, layer: usize) -> Result<&Tensor> {
        let output = match source {
            PatchSource::Clean => &self.clean,
            PatchSource::Corrupt => &self.corrupt,
        };
        let point = HookPoint::block(layer, site.block_site());
        output.cache.get_point(point).ok_or_else(|| {
            GenolensError::hook(point.to_string(), "not captured by the pair's runs")
        })
    }

    /// An activation on the host as f32, [tokens · d] (z: heads side by side).
    fn host(&self, source: PatchSource, site: PatchSite, layer: usize) -> Result<&[f32]> {
        let site_index = PatchSite::ALL
            .iter()
            .position(|s| *s == site)
            .expect("every site is listed");
        let run = usize::from(source == PatchSource::Corrupt);
        let slot = &self.host[(run * PatchSite::ALL.len() + site_index) * self.layers + layer];
        if let Some(values) = slot.get() {
            return Ok(values);
        }
        let values = row(self.activation(source, site, layer)?)?;
        Ok(slot.get_or_init(|| values))
    }

    /// The corrupt run's q, k or v (`which` 0, 1, 2) at `layer` on the host, [tokens · d].
    fn corrupt_qkv(&self, layer: usize, which: usize) -> Result<&[f32]> {
        let slot = &self.corrupt_qkv[layer * 3 + which];
        if let Some(values) = slot.get() {
            return Ok(values);
        }
        let point = HookPoint::block(layer, QKV[which]);
        let tensor = self.corrupt.cache.get_point(point).ok_or_else(|| {
            GenolensError::hook(point.to_string(), "not captured by the pair's runs")
        })?;
        let values = row(tensor)?;
        Ok(slot.get_or_init(|| values))
    }

    /// Row `position` of a host activation.
    fn host_row(
        &self,
        source: PatchSource,
        site: PatchSite,
        layer: usize,
        position: usize,
    ) -> Result<&[f32]> {
        Ok(&self.host(source, site, layer)?[position * self.width..][..self.width])
    }

    fn block(&self, model: &HookedModel, layer: usize) -> Result<&RowBlock> {
        if let Some(block) = self.blocks[layer].get() {
            return Ok(block);
        }
        let block = model.row_block(layer)?;
        Ok(self.blocks[layer].get_or_init(|| block))
    }

    fn check(&self, patch: &Patch) -> Result<()> {
        let name = format!("{} layer {}", patch.site, patch.layer);
        if !self.sites.contains(&patch.site) {
            let names: Vec<&str> = self.sites.iter().map(|s| s.name()).collect();
            return Err(GenolensError::argument(
                name,
                format!("this model's sites are {}", names.join(", ")),
            ));
        }
        if patch.layer >= self.layers {
            return Err(GenolensError::argument(
                name,
                format!("the model has {} layers", self.layers),
            ));
        }
        if let Some(position) = patch.position {
            if position >= self.tokens() {
                return Err(GenolensError::argument(
                    name,
                    format!(
                        "position {position} is outside the {} tokens",
                        self.tokens()
                    ),
                ));
            }
        }
        match (patch.site, patch.head) {
            (PatchSite::Z, Some(head)) if head >= self.heads => Err(GenolensError::argument(
                name,
                format!("head {head}, the model has {} heads", self.heads),
            )),
            (PatchSite::Z, _) | (_, None) => Ok(()),
            (_, Some(_)) => Err(GenolensError::argument(
                name,
                "a head is only patched at site z",
            )),
        }
    }

    /// Whether the values `patch` writes from `source` are the corrupt run's own, bit for bit.
    fn writes_nothing_new(&self, patch: &Patch, source: PatchSource) -> Result<bool> {
        if source == PatchSource::Corrupt {
            return Ok(true);
        }
        let from = self.host(source, patch.site, patch.layer)?;
        let into = self.host(PatchSource::Corrupt, patch.site, patch.layer)?;
        let positions = match patch.position {
            Some(p) => p..p + 1,
            None => 0..self.tokens(),
        };
        let head_dim = self.width / self.heads;
        let columns = match patch.head {
            Some(h) => h * head_dim..(h + 1) * head_dim,
            None => 0..self.width,
        };
        Ok(positions.into_iter().all(|p| {
            let range = p * self.width + columns.start..p * self.width + columns.end;
            from[range.clone()] == into[range]
        }))
    }

    /// How `patch` runs.
    fn job(&self, model: &HookedModel, patch: &Patch, source: PatchSource) -> Result<Job> {
        if self.writes_nothing_new(patch, source)? {
            return Ok(Job::Copy(PatchSource::Corrupt));
        }
        let last = self.layers - 1;
        let layer = patch.layer;
        let whole = |site| -> Result<Vec<f32>> { Ok(self.host(source, site, layer)?.to_vec()) };
        let replace = |site| -> Result<Replacement> {
            Ok(Some(match patch.position {
                Some(p) => (Some(p), self.host_row(source, site, layer, p)?.to_vec()),
                None => (None, whole(site)?),
            }))
        };
        Ok(match patch.site {
            PatchSite::ResidPre => Job::Residual {
                start: layer,
                replace: replace(PatchSite::ResidPre)?,
                tail: None,
            },
            PatchSite::NormalizedResidPost if layer == last => match patch.position {
                // The last block's output at [CLS] is the run's output.
                None | Some(0) => Job::Copy(source),
                Some(_) => Job::Copy(PatchSource::Corrupt),
            },
            PatchSite::NormalizedResidPost => Job::Residual {
                start: layer + 1,
                replace: replace(PatchSite::NormalizedResidPost)?,
                tail: None,
            },
            // In the last block, only the [CLS] row reaches the output.
            _ if layer == last => match patch.position {
                None | Some(0) => Job::Residual {
                    start: last,
                    replace: None,
                    tail: Some(*patch),
                },
                Some(_) => Job::Copy(PatchSource::Corrupt),
            },
            _ => match patch.position {
                Some(p) => {
                    let change = self.row_override(patch, source, p)?;
                    let block = self.block(model, layer)?;
                    let output = block.finish_row(
                        self.host_row(PatchSource::Corrupt, PatchSite::ResidPre, layer, p)?,
                        self.host_row(PatchSource::Corrupt, PatchSite::Z, layer, p)?,
                        change,
                    );
                    Job::Residual {
                        start: layer + 1,
                        replace: Some((Some(p), output)),
                        tail: None,
                    }
                }
                None => Job::Intervene,
            },
        })
    }

    /// What `patch` writes into token `position`'s row of its block.
    fn row_override(
        &self,
        patch: &Patch,
        source: PatchSource,
        position: usize,
    ) -> Result<RowOverride<'_>> {
        let value = self.host_row(source, patch.site, patch.layer, position)?;
        Ok(match patch.site {
            PatchSite::AttnOut => RowOverride::AttnOut(value),
            PatchSite::MlpOut => RowOverride::MlpOut(value),
            PatchSite::Z => RowOverride::Z {
                head: patch.head,
                value,
            },
            PatchSite::ResidPre | PatchSite::NormalizedResidPost | PatchSite::ResidPost => {
                RowOverride::None
            }
        })
    }

    /// Final [CLS] rows and logits of runs whose last-block inputs are `inputs` [rows,t,d]; row i's
    /// [CLS] row takes patch `tails[i]` from the clean run.
    fn finals(
        &self,
        model: &HookedModel,
        inputs: &Tensor,
        tails: &[Option<Patch>],
    ) -> Result<Vec<Final>> {
        let last = self.layers - 1;
        let (keys, values) = model.keys_values(last, inputs)?;
        let cls = row(&inputs.narrow(1, 0, 1)?)?;
        let stride = inputs.dim(1)? * self.width;
        let changes = tails
            .iter()
            .map(|tail| match tail {
                Some(patch) => self.row_override(patch, PatchSource::Clean, 0),
                None => Ok(RowOverride::None),
            })
            .collect::<Result<Vec<_>>>()?;
        let block = self.block(model, last)?;
        with_host(&keys, |keys| {
            with_host(&values, |values| {
                (0..tails.len())
                    .into_par_iter()
                    .map(|i| {
                        let tokens = TokenRows {
                            keys: &keys[i * stride..][..stride],
                            values: &values[i * stride..][..stride],
                            replaced: None,
                        };
                        self.final_row(
                            block,
                            &cls[i * self.width..][..self.width],
                            tokens,
                            changes[i],
                        )
                    })
                    .collect()
            })
        })?
    }

    /// The last block's [CLS] row and the logits.
    fn final_row(
        &self,
        block: &RowBlock,
        resid_pre: &[f32],
        tokens: TokenRows,
        change: RowOverride,
    ) -> Final {
        let cls = block.row(resid_pre, tokens, self.tokens(), change);
        let logits = self.head.logits(&cls);
        Final { cls, logits }
    }

    /// Runs every patch, `variants_per_batch` patched runs per forward pass, writing activations of
    /// `source` into the corrupt run. Results are in the order of `patches`.
    pub fn patch(
        &self,
        model: &HookedModel,
        patches: &[Patch],
        source: PatchSource,
        variants_per_batch: usize,
    ) -> Result<Vec<Patched>> {
        patches.iter().try_for_each(|p| self.check(p))?;
        if source == PatchSource::Corrupt {
            // A run patched with its own values is that run.
            return Ok(patches
                .iter()
                .map(|patch| self.copied(patch, PatchSource::Corrupt))
                .collect());
        }
        let variants_per_batch = variants_per_batch.max(1);
        if self.general {
            return self.patch_in_general(model, patches, source, variants_per_batch);
        }
        let jobs = patches
            .iter()
            .map(|patch| self.job(model, patch, source))
            .collect::<Result<Vec<_>>>()?;
        let mut results: Vec<Option<Patched>> = vec![None; patches.len()];
        // Residual jobs grouped by their first layer, interventions by (layer, site).
        let mut residual: Vec<usize> = Vec::new();
        let mut intervene: Vec<usize> = Vec::new();
        for (index, job) in jobs.iter().enumerate() {
            match job {
                Job::Copy(from) => results[index] = Some(self.copied(&patches[index], *from)),
                Job::Residual { .. } => residual.push(index),
                Job::Intervene => intervene.push(index),
            }
        }
        // (first layer, whether every token is replaced): groups of one kind, so that groups of
        // single-token replacements take the reuse path.
        let key_of = |i: usize| match &jobs[i] {
            Job::Residual { start, replace, .. } => (*start, matches!(replace, Some((None, _)))),
            _ => unreachable!("only residual jobs"),
        };
        residual.sort_by_key(|&i| key_of(i));
        for group in runs_of(&residual, variants_per_batch, |&i| key_of(i)) {
            let outputs = self.run_residual(model, group, &jobs, key_of(group[0]).0)?;
            for (&index, last) in group.iter().zip(outputs) {
                results[index] = Some(Patched {
                    patch: patches[index],
                    cls: last.cls,
                    logits: last.logits,
                });
            }
        }
        intervene.sort_by_key(|&i| (patches[i].layer, patches[i].site));
        for group in runs_of(&intervene, variants_per_batch, |&i| {
            (patches[i].layer, patches[i].site)
        }) {
            let group_patches: Vec<Patch> = group.iter().map(|&i| patches[i]).collect();
            let outputs = self.run_intervention(model, &group_patches, source)?;
            for (&index, patched) in group.iter().zip(outputs) {
                results[index] = Some(patched);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every patch ran"))
            .collect())
    }

    /// Every patch as a hooked forward from its layer, patches sharing a layer and site as the
    /// rows of one batch (a patch that writes the corrupt run's own values is that run).
    fn patch_in_general(
        &self,
        model: &HookedModel,
        patches: &[Patch],
        source: PatchSource,
        variants_per_batch: usize,
    ) -> Result<Vec<Patched>> {
        let mut results: Vec<Option<Patched>> = vec![None; patches.len()];
        let mut pending = Vec::new();
        for (index, patch) in patches.iter().enumerate() {
            if self.writes_nothing_new(patch, source)? {
                results[index] = Some(self.copied(patch, PatchSource::Corrupt));
            } else {
                pending.push(index);
            }
        }
        pending.sort_by_key(|&i| (patches[i].layer, patches[i].site));
        for group in runs_of(&pending, variants_per_batch, |&i| {
            (patches[i].layer, patches[i].site)
        }) {
            let group_patches: Vec<Patch> = group.iter().map(|&i| patches[i]).collect();
            let layer = group_patches[0].layer;
            let (hooks, residual, batch) = self.intervention_rows(model, &group_patches, source)?;
            let output = model.forward_layers(layer, self.layers, &residual, &batch, &hooks)?;
            let (cls, logits) = model.cls_and_classifier_logits(&output)?;
            let cls = cls.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let logits = logits
                .map(|l| l.to_dtype(DType::F32)?.to_vec2::<f32>())
                .transpose()?;
            for (row_index, &index) in group.iter().enumerate() {
                results[index] = Some(Patched {
                    patch: patches[index],
                    cls: cls[row_index].clone(),
                    logits: logits.as_ref().map(|l| l[row_index].clone()),
                });
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every patch ran"))
            .collect())
    }

    fn copied(&self, patch: &Patch, from: PatchSource) -> Patched {
        let reference = match from {
            PatchSource::Clean => &self.clean_final,
            PatchSource::Corrupt => &self.corrupt_final,
        };
        Patched {
            patch: *patch,
            cls: reference.cls.clone(),
            logits: reference.logits.clone(),
        }
    }

    /// One forward pass from layer `start` for residual jobs, one row each. When every job
    /// replaces at most one token, layer `start` reuses the corrupt run's q, k, v for the other
    /// tokens and computes the replaced token's alone (in the last layer, only the [CLS] row runs,
    /// with no batch at all).
    fn run_residual(
        &self,
        model: &HookedModel,
        group: &[usize],
        jobs: &[Job],
        start: usize,
    ) -> Result<Vec<Final>> {
        let rows = group.len();
        let last = self.layers - 1;
        let base = self.host(PatchSource::Corrupt, PatchSite::ResidPre, start)?;
        let tokens = base.len() / self.width;
        let edits: Vec<(&Replacement, Option<Patch>)> = group
            .iter()
            .map(|&index| match &jobs[index] {
                Job::Residual { replace, tail, .. } => (replace, *tail),
                _ => unreachable!("only residual jobs"),
            })
            .collect();
        // Some(positions): each row differs from the corrupt run at most at one token.
        let sparse: Option<Vec<TokenEdit>> = edits
            .iter()
            .map(|(replace, _)| match replace {
                Some((Some(p), values)) => Some(Some((*p, values.as_slice()))),
                Some((None, _)) => None,
                None => Some(None),
            })
            .collect();
        let block = self.block(model, start)?;
        if let (true, Some(sparse)) = (start == last, &sparse) {
            let keys = self.corrupt_qkv(last, 1)?;
            let values = self.corrupt_qkv(last, 2)?;
            let tails = edits
                .iter()
                .map(|(_, tail)| match tail {
                    Some(patch) => self.row_override(patch, PatchSource::Clean, 0),
                    None => Ok(RowOverride::None),
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(sparse
                .par_iter()
                .zip(tails)
                .map(|(edit, change)| {
                    let fresh = edit.map(|(p, row)| (p, row, block.qkv(row)));
                    let tokens_rows = TokenRows {
                        keys,
                        values,
                        replaced: fresh
                            .as_ref()
                            .map(|(p, _, [_, k, v])| (*p, k.as_slice(), v.as_slice())),
                    };
                    let cls_in = match &fresh {
                        Some((0, row, _)) => row,
                        _ => &base[..self.width],
                    };
                    self.final_row(block, cls_in, tokens_rows, change)
                })
                .collect());
        }
        let mut residual = crate::ops::row_ops::repeated_rows(base, rows);
        for (i, (replace, _)) in edits.iter().enumerate() {
            match replace {
                Some((Some(p), values)) => residual[i * base.len() + p * self.width..]
                    [..self.width]
                    .copy_from_slice(values),
                Some((None, values)) => {
                    residual[i * base.len()..][..base.len()].copy_from_slice(values)
                }
                None => {}
            }
        }
        let qkv = match &sparse {
            Some(sparse) => {
                let cached = [
                    self.corrupt_qkv(start, 0)?,
                    self.corrupt_qkv(start, 1)?,
                    self.corrupt_qkv(start, 2)?,
                ];
                let mut qkv = cached.map(|values| crate::ops::row_ops::repeated_rows(values, rows));
                let fresh: Vec<Option<[Vec<f32>; 3]>> = sparse
                    .par_iter()
                    .map(|edit| edit.map(|(_, row)| block.qkv(row)))
                    .collect();
                for (i, (edit, fresh)) in sparse.iter().zip(fresh).enumerate() {
                    if let (Some((p, _)), Some(fresh)) = (edit, fresh) {
                        for (out, fresh) in qkv.iter_mut().zip(fresh) {
                            out[i * base.len() + p * self.width..][..self.width]
                                .copy_from_slice(&fresh);
                        }
                    }
                }
                Some(qkv)
            }
            None => None,
        };
        let device = model.device();
        let dtype = self
            .activation(PatchSource::Corrupt, PatchSite::ResidPre, start)?
            .dtype();
        let to_tensor = |values: Vec<f32>, shape: &[usize]| -> Result<Tensor> {
            Ok(Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
        };
        let residual = to_tensor(residual, &[rows, tokens, self.width])?;
        let tails: Vec<Option<Patch>> = edits.iter().map(|(_, tail)| *tail).collect();
        let batch = repeat_batch(&self.corrupt_batch, rows)?;
        let (first_full, input) = match qkv {
            Some(qkv) => {
                let head_shape = [rows, tokens, self.heads, self.width / self.heads];
                let [q, k, v] = qkv.map(|values| to_tensor(values, &head_shape));
                let output =
                    model.forward_layer_with_qkv(start, &residual, [q?, k?, v?], &batch)?;
                (start + 1, output)
            }
            None => (start, residual),
        };
        let inputs = model.forward_layers(first_full, last, &input, &batch, &Hooks::none())?;
        self.finals(model, &inputs, &tails)
    }

    /// For `patches` sharing a site and layer, one row each: the hook that writes each row's
    /// patch from `source`, the corrupt run's input of that layer, and the corrupt batch.
    fn intervention_rows(
        &self,
        model: &HookedModel,
        patches: &[Patch],
        source: PatchSource,
    ) -> Result<(Hooks, Tensor, Batch)> {
        let rows = patches.len();
        let (site, layer) = (patches[0].site, patches[0].layer);
        let batch = repeat_batch(&self.corrupt_batch, rows)?;
        let patched_value = self.activation(source, site, layer)?;
        let mask = selection_mask(patches, patched_value.dims(), model.device())?;
        let patched_rows = repeat_rows(patched_value, rows)?;
        let intervention = Intervention::Custom(std::sync::Arc::new(move |activation: &Tensor| {
            mask.broadcast_as(activation.shape())?
                .where_cond(&patched_rows, activation)
        }));
        let hooks =
            Hooks::none().intervene(HookPoint::block(layer, site.block_site()), intervention);
        let residual = repeat_rows(
            self.activation(PatchSource::Corrupt, PatchSite::ResidPre, layer)?,
            rows,
        )?;
        Ok((hooks, residual, batch))
    }

    /// One forward pass for whole-layer attn_out / mlp_out / z patches sharing a site and layer
    /// (before the last layer), one row each.
    fn run_intervention(
        &self,
        model: &HookedModel,
        patches: &[Patch],
        source: PatchSource,
    ) -> Result<Vec<Patched>> {
        let rows = patches.len();
        let layer = patches[0].layer;
        let (hooks, residual, batch) = self.intervention_rows(model, patches, source)?;
        let inputs = model.forward_layers(layer, self.layers - 1, &residual, &batch, &hooks)?;
        let finals = self.finals(model, &inputs, &vec![None; rows])?;
        Ok(patches
            .iter()
            .zip(finals)
            .map(|(patch, last)| Patched {
                patch: *patch,
                cls: last.cls,
                logits: last.logits,
            })
            .collect())
    }
}

/// Consecutive runs of `items` with the same key, at most `limit` long.
fn runs_of<T, K: PartialEq>(items: &[T], limit: usize, key: impl Fn(&T) -> K) -> Vec<&[T]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let first = key(&items[start]);
        let mut end = start + 1;
        while end < items.len() && end - start < limit && key(&items[end]) == first {
            end += 1;
        }
        groups.push(&items[start..end]);
        start = end;
    }
    groups
}

/// `batch` (one sequence) repeated `rows` times.
fn repeat_batch(batch: &Batch, rows: usize) -> Result<Batch> {
    Ok(Batch {
        ids: batch.ids.repeat((rows, 1))?,
        attention_mask: batch.attention_mask.repeat((rows, 1))?,
        lengths: vec![batch.lengths[0]; rows],
        ends_with_special: batch.ends_with_special,
    })
}

/// An activation of one sequence [1, ...] repeated `rows` times [rows, ...].
fn repeat_rows(activation: &Tensor, rows: usize) -> Result<Tensor> {
    let mut repeats = vec![1; activation.rank()];
    repeats[0] = rows;
    Ok(activation.repeat(repeats.as_slice())?)
}

/// A u8 mask, 1 where row i's patch writes: [rows, t, 1] for [1,t,d] activations, [rows, t, h, 1]
/// for `z` ([1,t,h,d_head]).
fn selection_mask(patches: &[Patch], dims: &[usize], device: &Device) -> Result<Tensor> {
    let tokens = dims[1];
    let heads = if dims.len() == 4 { dims[2] } else { 1 };
    let mut mask = vec![0u8; patches.len() * tokens * heads];
    for (row, patch) in patches.iter().enumerate() {
        for position in 0..tokens {
            if patch.position.is_some_and(|p| p != position) {
                continue;
            }
            for head in 0..heads {
                if patch.head.is_some_and(|h| h != head) {
                    continue;
                }
                mask[(row * tokens + position) * heads + head] = 1;
            }
        }
    }
    let shape: Vec<usize> = if dims.len() == 4 {
        vec![patches.len(), tokens, heads, 1]
    } else {
        vec![patches.len(), tokens, 1]
    };
    Ok(Tensor::from_vec(mask, shape, device)?)
}

/// Euclidean distance.
pub fn l2_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Cosine similarity (NaN when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// methods.md §4's encoder metrics of one patched run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchMetrics {
    /// ‖cls_patched − cls_clean‖₂.
    pub cls_l2_to_clean: f64,
    /// cos(cls_patched, cls_clean).
    pub cls_cos_to_clean: f64,
    /// 1 − ‖cls_patched − cls_clean‖ / ‖cls_corrupt − cls_clean‖ (NaN when clean = corrupt).
    pub fraction_restored: f64,
    /// ‖cls_patched − cls_corrupt‖₂.
    pub delta_cls_l2: f64,
    /// cos(cls_patched, cls_corrupt).
    pub delta_cls_cos: f64,
}

impl PatchMetrics {
    /// The metrics of `patched` given the pair's clean and corrupt [CLS] vectors.
    pub fn new(patched: &[f32], clean: &[f32], corrupt: &[f32]) -> Self {
        let cls_l2_to_clean = l2_distance(patched, clean);
        let gap = l2_distance(corrupt, clean);
        PatchMetrics {
            cls_l2_to_clean,
            cls_cos_to_clean: cosine(patched, clean),
            fraction_restored: if gap > 0.0 {
                1.0 - cls_l2_to_clean / gap
            } else {
                f64::NAN
            },
            delta_cls_l2: l2_distance(patched, corrupt),
            delta_cls_cos: cosine(patched, corrupt),
        }
    }
}

/// Logit difference `target − other` of a two-class (or more) classifier's logits.
pub fn logit_diff(logits: &[f32], target: usize, other: usize) -> f64 {
    f64::from(logits[target]) - f64::from(logits[other])
}

/// Fraction of a metric restored: (m_patched − m_corrupt) / (m_clean − m_corrupt) (NaN when the
/// clean and corrupt runs agree).
pub fn metric_fraction_restored(patched: f64, clean: f64, corrupt: f64) -> f64 {
    if clean == corrupt {
        f64::NAN
    } else {
        (patched - corrupt) / (clean - corrupt)
    }
}

crate::table_row! {
    /// One patched run of one pair (long format: one row per pair × sweep × site × layer ×
    /// position × head). `position` and `head` are null when the patch covers every position /
    /// head. Token positions index the token sequence, [CLS] = 0.
    pub struct PatchingRow {
        pub pair_id: String,
        pub pairing: String,
        pub sweep: String,
        pub site: String,
        pub layer: u32,
        pub position: Option<i64>,
        pub position_role: String,
        pub offset_from_variant: Option<i64>,
        pub head: Option<i64>,
        pub cls_l2_to_clean: f64,
        pub cls_cos_to_clean: f64,
        pub fraction_restored: f64,
        pub delta_cls_l2: f64,
        pub delta_cls_cos: f64,
        pub logit_diff: Option<f64>,
        pub logit_diff_fraction_restored: Option<f64>,
    }
}

/// What to patch for each pair.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Sites of the layer sweep (every position at once).
    pub layer_sites: Vec<PatchSite>,
    /// Sites of the layer × position sweep.
    pub position_sites: Vec<PatchSite>,
    /// Positions of the layer × position sweep.
    pub positions: crate::analysis::variant_pairs::Positions,
    /// Run the layer × head sweep (`z`, every position at once).
    pub heads: bool,
    /// Patched runs per forward pass.
    pub variants_per_batch: usize,
}

impl Default for SweepSettings {
    /// Layer sweep at resid_pre, attn_out, mlp_out and normalized_resid_post; layer × position at
    /// resid_pre in a window of 10 tokens each side of the variant; layer × head at z; 32 runs a
    /// pass.
    fn default() -> Self {
        SweepSettings {
            layer_sites: vec![
                PatchSite::ResidPre,
                PatchSite::AttnOut,
                PatchSite::MlpOut,
                PatchSite::NormalizedResidPost,
            ],
            position_sites: vec![PatchSite::ResidPre],
            positions: crate::analysis::variant_pairs::Positions::Window(10),
            heads: true,
            variants_per_batch: 32,
        }
    }
}

impl SweepSettings {
    /// The same settings for a random-pair null: the layer sweep only (no positions, no heads).
    pub fn null(&self) -> SweepSettings {
        SweepSettings {
            position_sites: Vec::new(),
            heads: false,
            ..self.clone()
        }
    }
}

/// A pair to sweep: its id, how it was paired, the two sequences, and the model positions of the
/// tokens covering the variant (for the position sweep; `None` runs only the layer and head
/// sweeps, as for random pairs).
pub struct SweepPair<'a> {
    /// Id written to `pair_id`.
    pub id: &'a str,
    /// `matched` (REF vs ALT of one variant) or `random` (REF of one, ALT of another: the null).
    pub pairing: &'a str,
    /// The clean sequence.
    pub clean: &'a str,
    /// The corrupt sequence.
    pub corrupt: &'a str,
    /// Model positions covering the variant (or another anchor, such as the TSS).
    pub covering: Option<std::ops::Range<usize>>,
    /// `position_role` of the covering positions (`variant`, `tss`, ...).
    pub anchor_role: &'a str,
    /// (target, other) classes of `logit_diff`; `None` = the clean run's predicted class and the
    /// best other class.
    pub logit_classes: Option<(usize, usize)>,
}

/// Target and contrast class for the logit difference: the clean run's predicted class and the
/// best other class.
fn logit_classes(clean_logits: &[f32]) -> (usize, usize) {
    let mut order: Vec<usize> = (0..clean_logits.len()).collect();
    order.sort_by(|&a, &b| clean_logits[b].total_cmp(&clean_logits[a]));
    (order[0], order.get(1).copied().unwrap_or(order[0]))
}

/// Whether two sequences tokenize into the same layout (the same token spans): what
/// position-wise patching between them needs. Always true for DNABERT's k-mers and NT's 6-mers
/// of equal-length sequences without N; DNABERT-2's BPE can merge a variant's neighbourhood
/// differently on REF and ALT.
pub fn same_token_layout(tokenizer: &crate::tokenize::Tokenizer, a: &str, b: &str) -> Result<bool> {
    Ok(tokenizer.tokenize("a", a)?.spans == tokenizer.tokenize("b", b)?.spans)
}

/// Every patched run of one pair, as table rows.
pub fn sweep_pair(
    loaded: &crate::model::LoadedModel,
    pair: &SweepPair,
    settings: &SweepSettings,
) -> Result<Vec<PatchingRow>> {
    let device = loaded.model.device();
    let clean_tokens = loaded
        .tokenizer
        .tokenize(&format!("{} (clean)", pair.id), pair.clean)?;
    let corrupt_tokens = loaded
        .tokenizer
        .tokenize(&format!("{} (corrupt)", pair.id), pair.corrupt)?;
    if clean_tokens.spans != corrupt_tokens.spans {
        return Err(GenolensError::argument(
            format!("pair {}", pair.id),
            format!(
                "the clean and corrupt sequences tokenize into different layouts ({} vs {} \
                 tokens, or different spans): patching writes activations token by token, so \
                 both need the same tokens (see same_token_layout)",
                clean_tokens.ids.len(),
                corrupt_tokens.ids.len()
            ),
        ));
    }
    let pad = loaded.tokenizer.special().pad;
    let clean = Batch::from_tokenized(std::slice::from_ref(&clean_tokens), pad, device)?;
    let corrupt = Batch::from_tokenized(&[corrupt_tokens], pad, device)?;
    let runs = PairRuns::new(&loaded.model, &clean, &corrupt)
        .map_err(|e| GenolensError::argument(format!("pair {}", pair.id), e.to_string()))?;
    let config = loaded.model.config();
    let (layers, heads, tokens) = (
        config.num_hidden_layers,
        config.num_attention_heads,
        runs.tokens(),
    );
    let model = &loaded.model;
    let mut patches: Vec<(&'static str, Patch)> = Vec::new();
    for layer in 0..layers {
        for site in settings.layer_sites.iter().map(|s| s.on(model)) {
            patches.push((
                "layer",
                Patch {
                    site,
                    layer,
                    position: None,
                    head: None,
                },
            ));
        }
        if let Some(covering) = &pair.covering {
            for site in settings.position_sites.iter().map(|s| s.on(model)) {
                for position in settings.positions.select(tokens, covering.clone()) {
                    patches.push((
                        "position",
                        Patch {
                            site,
                            layer,
                            position: Some(position),
                            head: None,
                        },
                    ));
                }
            }
        }
        if settings.heads {
            for head in 0..heads {
                patches.push((
                    "head",
                    Patch {
                        site: PatchSite::Z,
                        layer,
                        position: None,
                        head: Some(head),
                    },
                ));
            }
        }
    }
    let only: Vec<Patch> = patches.iter().map(|(_, p)| *p).collect();
    let results = runs.patch(
        &loaded.model,
        &only,
        PatchSource::Clean,
        settings.variants_per_batch,
    )?;
    let (clean_cls, corrupt_cls) = (runs.clean_cls()?, runs.corrupt_cls()?);
    let clean_logits = runs.clean_logits()?;
    let corrupt_logits = runs.corrupt_logits()?;
    let classes = pair
        .logit_classes
        .or_else(|| clean_logits.as_deref().map(logit_classes));
    Ok(patches
        .iter()
        .zip(results)
        .map(|((sweep, patch), patched)| {
            let metrics = PatchMetrics::new(&patched.cls, &clean_cls, &corrupt_cls);
            let (role, offset) = match (patch.position, &pair.covering) {
                (None, _) => ("all", None),
                (Some(0), _) => ("cls", None),
                (Some(p), _) if clean_tokens.spans[p].is_none() => ("sep", None),
                (Some(p), Some(covering)) => (
                    if covering.contains(&p) {
                        pair.anchor_role
                    } else {
                        "flank"
                    },
                    Some(p as i64 - covering.start as i64),
                ),
                (Some(_), None) => ("token", None),
            };
            let logit = match (&patched.logits, &clean_logits, &corrupt_logits, classes) {
                (Some(p), Some(c), Some(r), Some((target, other))) => {
                    let diff = logit_diff(p, target, other);
                    Some((
                        diff,
                        metric_fraction_restored(
                            diff,
                            logit_diff(c, target, other),
                            logit_diff(r, target, other),
                        ),
                    ))
                }
                _ => None,
            };
            PatchingRow {
                pair_id: pair.id.to_string(),
                pairing: pair.pairing.to_string(),
                sweep: sweep.to_string(),
                site: patch.site.name().to_string(),
                layer: patch.layer as u32,
                position: patch.position.map(|p| p as i64),
                position_role: role.to_string(),
                offset_from_variant: offset,
                head: patch.head.map(|h| h as i64),
                cls_l2_to_clean: metrics.cls_l2_to_clean,
                cls_cos_to_clean: metrics.cls_cos_to_clean,
                fraction_restored: metrics.fraction_restored,
                delta_cls_l2: metrics.delta_cls_l2,
                delta_cls_cos: metrics.delta_cls_cos,
                logit_diff: logit.map(|l| l.0),
                logit_diff_fraction_restored: logit.map(|l| l.1),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeadKind, LoadedModel, ModelConfig};
    use crate::tokenize::KmerVocab;

    fn model() -> LoadedModel {
        let config = ModelConfig::bert(69, 3, 32, 4, 64, 64);
        let model = HookedModel::random(
            &config,
            HeadKind::SequenceClassification { num_labels: 2 },
            7,
            &Device::Cpu,
        )
        .unwrap();
        LoadedModel::in_memory(
            model,
            crate::tokenize::KmerTokenizer::new(KmerVocab::dnabert(3), 64),
        )
    }

    fn pair(loaded: &LoadedModel) -> PairRuns {
        let batch = |s: &str| {
            let (batch, _) = crate::analysis::tokenize_batch(
                &loaded.tokenizer,
                [("x", s)],
                loaded.model.device(),
            )
            .unwrap();
            batch
        };
        PairRuns::new(
            &loaded.model,
            &batch("ACGTTGCATGCAAATCGGCTAGCT"),
            &batch("ACGTTGCATGCTAATCGGCTAGCT"),
        )
        .unwrap()
    }

    fn every_patch(runs: &PairRuns) -> Vec<Patch> {
        let mut patches = Vec::new();
        for layer in 0..3 {
            for site in runs.sites.clone() {
                let heads: Vec<Option<usize>> = if site == PatchSite::Z {
                    (0..4).map(Some).collect()
                } else {
                    vec![None]
                };
                for head in heads {
                    patches.push(Patch {
                        site,
                        layer,
                        position: None,
                        head,
                    });
                    for position in 0..runs.tokens() {
                        patches.push(Patch {
                            site,
                            layer,
                            position: Some(position),
                            head,
                        });
                    }
                }
            }
        }
        patches
    }

    #[test]
    fn patching_the_corrupt_run_with_itself_restores_nothing_exactly() {
        let loaded = model();
        let runs = pair(&loaded);
        let (clean, corrupt) = (runs.clean_cls().unwrap(), runs.corrupt_cls().unwrap());
        assert!(l2_distance(&clean, &corrupt) > 0.0);
        let patches = every_patch(&runs);
        for patched in runs
            .patch(&loaded.model, &patches, PatchSource::Corrupt, 16)
            .unwrap()
        {
            assert_eq!(patched.cls, corrupt, "{:?}", patched.patch);
            let metrics = PatchMetrics::new(&patched.cls, &clean, &corrupt);
            assert_eq!(metrics.fraction_restored, 0.0);
            assert_eq!(metrics.delta_cls_l2, 0.0);
        }
    }

    #[test]
    fn patching_the_whole_input_or_output_with_the_clean_run_restores_exactly() {
        let loaded = model();
        let runs = pair(&loaded);
        let (clean, corrupt) = (runs.clean_cls().unwrap(), runs.corrupt_cls().unwrap());
        let whole = |site, layer| Patch {
            site,
            layer,
            position: None,
            head: None,
        };
        let patches = [
            whole(PatchSite::ResidPre, 0),
            whole(PatchSite::NormalizedResidPost, 2),
            whole(PatchSite::NormalizedResidPost, 0),
        ];
        let results = runs
            .patch(&loaded.model, &patches, PatchSource::Clean, 4)
            .unwrap();
        for patched in &results {
            let metrics = PatchMetrics::new(&patched.cls, &clean, &corrupt);
            assert_eq!(metrics.fraction_restored, 1.0, "{:?}", patched.patch);
            assert_eq!(patched.cls, clean);
            assert_eq!(patched.logits, runs.clean_logits().unwrap());
        }
        // One position of the input restores part of the way, not all of it.
        let one = runs
            .patch(
                &loaded.model,
                &[Patch {
                    position: Some(11),
                    ..whole(PatchSite::ResidPre, 1)
                }],
                PatchSource::Clean,
                1,
            )
            .unwrap();
        let fraction = PatchMetrics::new(&one[0].cls, &clean, &corrupt).fraction_restored;
        assert!(fraction < 1.0, "{fraction}");
    }

    /// The plain way: the whole corrupt forward with a hook writing the clean values.
    fn naive(loaded: &LoadedModel, runs: &PairRuns, patch: &Patch) -> (Vec<f32>, Vec<f32>) {
        let clean = runs
            .activation(PatchSource::Clean, patch.site, patch.layer)
            .unwrap()
            .clone();
        let mask = selection_mask(std::slice::from_ref(patch), clean.dims(), &Device::Cpu).unwrap();
        let intervention = Intervention::Custom(std::sync::Arc::new(move |a: &Tensor| {
            mask.broadcast_as(a.shape())?.where_cond(&clean, a)
        }));
        let hooks = Hooks::none().intervene(
            HookPoint::block(patch.layer, patch.site.block_site()),
            intervention,
        );
        let output = loaded.model.forward(&runs.corrupt_batch, &hooks).unwrap();
        (
            row(&output.cls).unwrap(),
            row(output.logits.as_ref().unwrap()).unwrap(),
        )
    }

    #[test]
    fn every_shortcut_agrees_with_the_whole_hooked_forward() {
        // Copies (untouched tokens, the last block's output), single rows of attn_out / mlp_out /
        // z, the last block's [CLS] row alone: each against the full forward with a hook.
        let loaded = model();
        let runs = pair(&loaded);
        let patches = every_patch(&runs);
        let results = runs
            .patch(&loaded.model, &patches, PatchSource::Clean, 16)
            .unwrap();
        let mut copies = 0;
        for patched in &results {
            let (cls, logits) = naive(&loaded, &runs, &patched.patch);
            let error = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max)
            };
            assert!(error(&patched.cls, &cls) < 1e-5, "{:?}", patched.patch);
            assert!(
                error(patched.logits.as_ref().unwrap(), &logits) < 1e-5,
                "{:?}",
                patched.patch
            );
            if patched.cls == runs.corrupt_cls().unwrap() {
                copies += 1;
            }
        }
        // The SNV touches 3 of the 24 3-mers: most layer-0 input patches write nothing new.
        assert!(copies > 20, "{copies}");
    }

    #[test]
    fn batched_patches_equal_one_at_a_time_bit_for_bit() {
        let loaded = model();
        let runs = pair(&loaded);
        let patches = every_patch(&runs);
        let batched = runs
            .patch(&loaded.model, &patches, PatchSource::Clean, 32)
            .unwrap();
        let single = runs
            .patch(&loaded.model, &patches, PatchSource::Clean, 1)
            .unwrap();
        assert_eq!(batched.len(), patches.len());
        for (a, b) in batched.iter().zip(&single) {
            assert_eq!(a.patch, b.patch);
            assert_eq!(a.cls, b.cls, "{:?}", a.patch);
            assert_eq!(a.logits, b.logits, "{:?}", a.patch);
        }
    }

    #[test]
    fn bad_patches_are_named() {
        let loaded = model();
        let runs = pair(&loaded);
        let bad = [
            Patch {
                site: PatchSite::AttnOut,
                layer: 3,
                position: None,
                head: None,
            },
            Patch {
                site: PatchSite::MlpOut,
                layer: 0,
                position: Some(99),
                head: None,
            },
            Patch {
                site: PatchSite::MlpOut,
                layer: 0,
                position: None,
                head: Some(1),
            },
            Patch {
                site: PatchSite::Z,
                layer: 0,
                position: None,
                head: Some(4),
            },
        ];
        for patch in bad {
            let error = runs
                .patch(&loaded.model, &[patch], PatchSource::Clean, 1)
                .unwrap_err();
            assert!(error.to_string().contains(patch.site.name()), "{error}");
        }
        assert!("resid_mid".parse::<PatchSite>().is_err());
        assert_eq!(
            "normalized_resid_post".parse::<PatchSite>().unwrap(),
            PatchSite::NormalizedResidPost
        );
    }
}
