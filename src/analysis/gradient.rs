//! Gradient × input at the word embeddings (Shrikumar et al. 2016; methods.md): the relevance
//! of token t for a class logit is Σ_d ∂logit/∂e_{t,d} · e_{t,d}, with e = W_E[ids] (HF
//! `inputs_embeds`, genolens `hook_embed`).

use candle_core::{Tensor, Var, D};

use crate::error::{GenolensError, Result};
use crate::model::{Batch, HookPoint, HookedModel, Hooks, Intervention};

/// The gradient of `class`'s logit at the word embeddings, and the embeddings: ([b,t,d], [b,t,d]).
/// Sequences in a batch are independent, so the gradient of the batch's summed logit is each
/// sequence's own gradient. Padding rows get gradient 0 (they are masked out of attention).
pub fn embedding_gradient(
    model: &HookedModel,
    batch: &Batch,
    class: usize,
) -> Result<(Tensor, Tensor)> {
    let embedding = model.word_embeddings(&batch.ids)?;
    let variable = Var::from_tensor(&embedding)?;
    let hooks = Hooks::none().intervene(
        HookPoint::Embed,
        Intervention::Replace {
            value: variable.as_tensor().clone(),
            positions: None,
            heads: None,
        },
    );
    let logits = model.forward(batch, &hooks)?.logits;
    let logits = match logits {
        Some(logits) if logits.rank() == 2 => logits,
        _ => {
            return Err(GenolensError::hook(
                "hook_logits",
                format!(
                    "gradient × input needs a sequence classifier, and this model is a {}",
                    model.head_kind().hf_class()
                ),
            ))
        }
    };
    let classes = logits.dim(1)?;
    if class >= classes {
        return Err(GenolensError::argument(
            "class",
            format!("{class} is out of range: the classifier has {classes} classes (0-based)"),
        ));
    }
    let objective = logits.narrow(1, class, 1)?.sum_all()?;
    let gradients = objective.backward()?;
    let gradient = gradients
        .get(variable.as_tensor())
        .ok_or_else(|| GenolensError::hook("hook_embed", "no gradient reached the embeddings"))?
        .clone();
    Ok((gradient, embedding))
}

/// Gradient × input relevance [b,t] of `class`'s logit per token (0 at padding).
pub fn gradient_x_input(model: &HookedModel, batch: &Batch, class: usize) -> Result<Tensor> {
    let (gradient, embedding) = embedding_gradient(model, batch, class)?;
    Ok((gradient * embedding)?.sum(D::Minus1)?)
}
