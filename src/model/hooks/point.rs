//! Typed hook names (TransformerLens encoder convention) that parse from and print back to strings.

use std::fmt;
use std::str::FromStr;

use crate::error::GenolensError;

/// A site inside encoder block `l`, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockSite {
    /// `blocks.{l}.hook_resid_pre` [b,t,d]: the block input (= HF hidden_states[l]).
    ResidPre,
    /// `blocks.{l}.attn.hook_q` [b,t,h,d_head].
    Q,
    /// `blocks.{l}.attn.hook_k` [b,t,h,d_head].
    K,
    /// `blocks.{l}.attn.hook_v` [b,t,h,d_head].
    V,
    /// `blocks.{l}.attn.hook_rot_q` [b,t,h,d_head]: q after the rotary embedding (NT v2).
    RotQ,
    /// `blocks.{l}.attn.hook_rot_k` [b,t,h,d_head]: k after the rotary embedding (NT v2).
    RotK,
    /// `blocks.{l}.attn.hook_attn_scores` [b,h,q,k]: scaled, masked, before softmax.
    AttnScores,
    /// `blocks.{l}.attn.hook_pattern` [b,h,q,k]: softmax probabilities (HF `attentions[l]`).
    Pattern,
    /// `blocks.{l}.attn.hook_z` [b,t,h,d_head]: per-head A·V, before the output projection.
    Z,
    /// `blocks.{l}.attn.hook_result` [b,t,h,d_model]: per-head z·W_O, before b_O (computed only when asked).
    Result,
    /// `blocks.{l}.hook_attn_out` [b,t,d]: z·W_O + b_O.
    AttnOut,
    /// `blocks.{l}.hook_resid_mid` [b,t,d]: resid_pre + attn_out, the sum BEFORE the
    /// post-attention LayerNorm (TransformerLens `BertBlock`).
    ResidMid,
    /// `blocks.{l}.ln1.hook_normalized` [b,t,d]: LN1(resid_mid), the stream the MLP reads.
    Ln1Normalized,
    /// `blocks.{l}.mlp.hook_pre` [b,t,d_mlp]: input to the activation (a gated MLP's gate).
    MlpPre,
    /// `blocks.{l}.mlp.hook_pre_linear` [b,t,d_mlp]: a gated MLP's linear half (GEGLU, SwiGLU).
    MlpPreLinear,
    /// `blocks.{l}.mlp.hook_post` [b,t,d_mlp]: after the activation.
    MlpPost,
    /// `blocks.{l}.hook_mlp_out` [b,t,d]: MLP output projection incl. bias.
    MlpOut,
    /// `blocks.{l}.hook_resid_post` [b,t,d]: ln1.hook_normalized + mlp_out, the sum BEFORE the
    /// output LayerNorm (TransformerLens `BertBlock`).
    ResidPost,
    /// `blocks.{l}.ln2.hook_normalized` [b,t,d]: LN2(resid_post), inside the LayerNorm.
    Ln2Normalized,
    /// `blocks.{l}.hook_normalized_resid_post` [b,t,d]: the block output (= HF
    /// hidden_states[l+1] = the next block's hook_resid_pre); applied after ln2.hook_normalized.
    NormalizedResidPost,
}

impl BlockSite {
    /// Every block site, in forward order.
    pub const ALL: [BlockSite; 20] = [
        BlockSite::ResidPre,
        BlockSite::Q,
        BlockSite::K,
        BlockSite::V,
        BlockSite::RotQ,
        BlockSite::RotK,
        BlockSite::AttnScores,
        BlockSite::Pattern,
        BlockSite::Z,
        BlockSite::Result,
        BlockSite::AttnOut,
        BlockSite::ResidMid,
        BlockSite::Ln1Normalized,
        BlockSite::MlpPre,
        BlockSite::MlpPreLinear,
        BlockSite::MlpPost,
        BlockSite::MlpOut,
        BlockSite::ResidPost,
        BlockSite::Ln2Normalized,
        BlockSite::NormalizedResidPost,
    ];

    /// The sites of a post-LN BERT block (DNABERT, DNABERT-2), in forward order.
    pub const POST_NORM: [BlockSite; 17] = [
        BlockSite::ResidPre,
        BlockSite::Q,
        BlockSite::K,
        BlockSite::V,
        BlockSite::AttnScores,
        BlockSite::Pattern,
        BlockSite::Z,
        BlockSite::Result,
        BlockSite::AttnOut,
        BlockSite::ResidMid,
        BlockSite::Ln1Normalized,
        BlockSite::MlpPre,
        BlockSite::MlpPost,
        BlockSite::MlpOut,
        BlockSite::ResidPost,
        BlockSite::Ln2Normalized,
        BlockSite::NormalizedResidPost,
    ];

    /// The sites of a pre-LN block (ESM, TransformerLens's names), in forward order.
    pub const PRE_NORM: [BlockSite; 15] = [
        BlockSite::ResidPre,
        BlockSite::Ln1Normalized,
        BlockSite::Q,
        BlockSite::K,
        BlockSite::V,
        BlockSite::AttnScores,
        BlockSite::Pattern,
        BlockSite::Z,
        BlockSite::Result,
        BlockSite::AttnOut,
        BlockSite::ResidMid,
        BlockSite::Ln2Normalized,
        BlockSite::MlpPre,
        BlockSite::MlpPost,
        BlockSite::MlpOut,
    ];

    /// The name after `blocks.{l}.`.
    pub fn suffix(self) -> &'static str {
        match self {
            BlockSite::ResidPre => "hook_resid_pre",
            BlockSite::Q => "attn.hook_q",
            BlockSite::K => "attn.hook_k",
            BlockSite::V => "attn.hook_v",
            BlockSite::RotQ => "attn.hook_rot_q",
            BlockSite::RotK => "attn.hook_rot_k",
            BlockSite::AttnScores => "attn.hook_attn_scores",
            BlockSite::Pattern => "attn.hook_pattern",
            BlockSite::Z => "attn.hook_z",
            BlockSite::Result => "attn.hook_result",
            BlockSite::AttnOut => "hook_attn_out",
            BlockSite::ResidMid => "hook_resid_mid",
            BlockSite::Ln1Normalized => "ln1.hook_normalized",
            BlockSite::MlpPre => "mlp.hook_pre",
            BlockSite::MlpPreLinear => "mlp.hook_pre_linear",
            BlockSite::MlpPost => "mlp.hook_post",
            BlockSite::MlpOut => "hook_mlp_out",
            BlockSite::ResidPost => "hook_resid_post",
            BlockSite::Ln2Normalized => "ln2.hook_normalized",
            BlockSite::NormalizedResidPost => "hook_normalized_resid_post",
        }
    }

    /// How the axes of this site's activation are laid out.
    pub fn layout(self) -> ActivationLayout {
        match self {
            BlockSite::Q
            | BlockSite::K
            | BlockSite::V
            | BlockSite::RotQ
            | BlockSite::RotK
            | BlockSite::Z
            | BlockSite::Result => ActivationLayout::TokenHead,
            BlockSite::AttnScores | BlockSite::Pattern => ActivationLayout::HeadQueryKey,
            _ => ActivationLayout::Token,
        }
    }
}

/// Which hooks a model has: its block count and the parts that differ between architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookLayout {
    /// Encoder blocks.
    pub layers: usize,
    /// Pre-LN blocks (ESM) rather than post-LN (BERT, MosaicBERT).
    pub pre_norm: bool,
    /// A learned position table (`hook_pos_embed`).
    pub learned_positions: bool,
    /// A token-type table (`hook_token_type_embed`).
    pub token_type: bool,
    /// Rotary embeddings (`attn.hook_rot_q/k`).
    pub rotary: bool,
    /// A gated MLP (`mlp.hook_pre_linear`).
    pub gated_mlp: bool,
    /// A tanh pooler (`hook_pooled`).
    pub pooler: bool,
}

impl HookLayout {
    /// DNABERT (BERT), with every optional hook it can have.
    pub fn bert(layers: usize) -> Self {
        HookLayout {
            layers,
            pre_norm: false,
            learned_positions: true,
            token_type: true,
            rotary: false,
            gated_mlp: false,
            pooler: true,
        }
    }
}

/// Axis layout of an activation, which tells interventions where positions and heads are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationLayout {
    /// [b,t,...]: positions on axis 1, no head axis.
    Token,
    /// [b,t,h,...]: positions on axis 1, heads on axis 2.
    TokenHead,
    /// [b,h,q,k]: heads on axis 1, query positions on axis 2.
    HeadQueryKey,
    /// [b,...]: one vector per sequence (no positions, no heads).
    Sequence,
}

/// A named place in the forward pass where activations can be captured or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `hook_embed` [b,t,d]: word-embedding rows W_E[ids] (HF `inputs_embeds`).
    Embed,
    /// `hook_pos_embed` [1,t,d]: position-embedding rows.
    PosEmbed,
    /// `hook_token_type_embed` [1,t,d]: token-type row 0 at every position.
    TokenTypeEmbed,
    /// A site inside encoder block `layer`.
    Block {
        /// 0-based layer.
        layer: usize,
        /// Which site.
        site: BlockSite,
    },
    /// `ln_final.hook_normalized` [b,t,d]: the final LayerNorm of pre-LN models (ESM's
    /// `emb_layer_norm_after`; HF's last hidden state).
    LnFinal,
    /// `hook_cls` [b,d]: final-layer [CLS] vector (HF `last_hidden_state[:, 0]`).
    Cls,
    /// `hook_pooled` [b,d]: tanh pooler output (models with a pooler).
    Pooled,
    /// `hook_logits`: [b,t,V] for masked-LM heads, [b,labels] for classifiers.
    Logits,
}

impl HookPoint {
    /// Shorthand for a block site.
    pub fn block(layer: usize, site: BlockSite) -> Self {
        HookPoint::Block { layer, site }
    }

    /// The layer of a block hook.
    pub fn layer(self) -> Option<usize> {
        match self {
            HookPoint::Block { layer, .. } => Some(layer),
            _ => None,
        }
    }

    /// Axis layout of the activation at this hook.
    pub fn layout(self) -> ActivationLayout {
        match self {
            HookPoint::Block { site, .. } => site.layout(),
            HookPoint::Cls | HookPoint::Pooled => ActivationLayout::Sequence,
            _ => ActivationLayout::Token,
        }
    }

    /// Every hook point of a DNABERT (BERT) model with `num_layers` blocks, in forward order.
    pub fn all(num_layers: usize) -> Vec<HookPoint> {
        Self::all_of(&HookLayout::bert(num_layers))
    }

    /// Every hook point of a model laid out as `layout`, in forward order.
    pub fn all_of(layout: &HookLayout) -> Vec<HookPoint> {
        let mut points = vec![HookPoint::Embed];
        if layout.learned_positions {
            points.push(HookPoint::PosEmbed);
        }
        if layout.token_type {
            points.push(HookPoint::TokenTypeEmbed);
        }
        let sites: Vec<BlockSite> = if layout.pre_norm {
            let mut sites = BlockSite::PRE_NORM.to_vec();
            sites.push(BlockSite::ResidPost);
            sites
        } else {
            BlockSite::POST_NORM.to_vec()
        };
        for layer in 0..layout.layers {
            for &site in &sites {
                points.push(HookPoint::Block { layer, site });
                if site == BlockSite::V && layout.rotary {
                    points.push(HookPoint::block(layer, BlockSite::RotQ));
                    points.push(HookPoint::block(layer, BlockSite::RotK));
                }
                if site == BlockSite::MlpPre && layout.gated_mlp {
                    points.push(HookPoint::block(layer, BlockSite::MlpPreLinear));
                }
            }
        }
        if layout.pre_norm {
            points.push(HookPoint::LnFinal);
        }
        points.push(HookPoint::Cls);
        if layout.pooler {
            points.push(HookPoint::Pooled);
        }
        points.push(HookPoint::Logits);
        points
    }

    /// Every name any architecture has (for parsing and wildcard checks).
    fn universe(num_layers: usize) -> Vec<HookPoint> {
        let mut points = vec![
            HookPoint::Embed,
            HookPoint::PosEmbed,
            HookPoint::TokenTypeEmbed,
        ];
        for layer in 0..num_layers {
            points.extend(
                BlockSite::ALL
                    .iter()
                    .map(|&site| HookPoint::block(layer, site)),
            );
        }
        points.extend([
            HookPoint::LnFinal,
            HookPoint::Cls,
            HookPoint::Pooled,
            HookPoint::Logits,
        ]);
        points
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::Embed => f.write_str("hook_embed"),
            HookPoint::PosEmbed => f.write_str("hook_pos_embed"),
            HookPoint::TokenTypeEmbed => f.write_str("hook_token_type_embed"),
            HookPoint::Block { layer, site } => write!(f, "blocks.{layer}.{}", site.suffix()),
            HookPoint::LnFinal => f.write_str("ln_final.hook_normalized"),
            HookPoint::Cls => f.write_str("hook_cls"),
            HookPoint::Pooled => f.write_str("hook_pooled"),
            HookPoint::Logits => f.write_str("hook_logits"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = GenolensError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let simple = [
            HookPoint::Embed,
            HookPoint::PosEmbed,
            HookPoint::TokenTypeEmbed,
            HookPoint::LnFinal,
            HookPoint::Cls,
            HookPoint::Pooled,
            HookPoint::Logits,
        ];
        if let Some(point) = simple.iter().find(|p| p.to_string() == name) {
            return Ok(*point);
        }
        let unknown = || {
            GenolensError::hook(
                name,
                "unknown hook name; expected e.g. hook_embed, blocks.3.attn.hook_pattern, \
                 blocks.0.hook_normalized_resid_post, hook_cls (see `genolens inspect` for the full list)",
            )
        };
        let rest = name.strip_prefix("blocks.").ok_or_else(unknown)?;
        let (layer_text, suffix) = rest.split_once('.').ok_or_else(unknown)?;
        let layer: usize = layer_text.parse().map_err(|_| unknown())?;
        if layer.to_string() != layer_text {
            return Err(unknown());
        }
        let site = BlockSite::ALL
            .iter()
            .find(|site| site.suffix() == suffix)
            .ok_or_else(unknown)?;
        Ok(HookPoint::Block { layer, site: *site })
    }
}

/// A capture pattern over hook names: an exact name, or `*` wildcards (`blocks.*.attn.hook_pattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPattern {
    text: String,
}

impl HookPattern {
    /// Parses a pattern; names without `*` must be valid hook names.
    pub fn new(text: &str) -> Result<Self, GenolensError> {
        if !text.contains('*') {
            text.parse::<HookPoint>()?;
        } else if !HookPoint::universe(1000)
            .iter()
            .any(|p| glob_match(text, &p.to_string()))
        {
            return Err(GenolensError::hook(text, "pattern matches no hook name"));
        }
        Ok(HookPattern {
            text: text.to_string(),
        })
    }

    /// Whether this pattern selects `point`.
    pub fn matches(&self, point: HookPoint) -> bool {
        glob_match(&self.text, &point.to_string())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `*` matches any (possibly empty) run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_and_prints_back() {
        for point in HookPoint::all(12) {
            let name = point.to_string();
            assert_eq!(name.parse::<HookPoint>().unwrap(), point, "{name}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "blocks.x.hook_resid_pre",
            "blocks.01.hook_resid_pre",
            "blocks.0.attn.hook_patern",
            "hook_embeds",
            "",
        ] {
            assert!(bad.parse::<HookPoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_select_the_right_hooks() {
        let pattern = HookPattern::new("blocks.*.attn.hook_pattern").unwrap();
        let selected: Vec<_> = HookPoint::all(3)
            .into_iter()
            .filter(|p| pattern.matches(*p))
            .collect();
        assert_eq!(selected.len(), 3);
        assert!(selected.iter().all(|p| matches!(
            p,
            HookPoint::Block {
                site: BlockSite::Pattern,
                ..
            }
        )));
        let layer_one = HookPattern::new("blocks.1.*").unwrap();
        assert_eq!(
            HookPoint::all(3)
                .into_iter()
                .filter(|p| layer_one.matches(*p))
                .count(),
            17
        );
        assert!(HookPattern::new("blocks.*.attn.hook_nothing").is_err());
        assert!(HookPattern::new("blocks.0.nothing").is_err());
    }

    #[test]
    fn forward_order_is_the_sort_order() {
        let mut points = HookPoint::all(2);
        let original = points.clone();
        points.sort();
        assert_eq!(points, original);
    }
}
