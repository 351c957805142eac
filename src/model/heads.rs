//! Which output head a model carries, and how it is recognised from checkpoint tensor names.

use serde::Serialize;

/// The task head on top of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HeadKind {
    /// Encoder only (BertModel); `pooler` says whether the tanh pooler is present.
    Encoder {
        /// Whether `bert.pooler.dense` is loaded (gives `hook_pooled`).
        pooler: bool,
    },
    /// BertForMaskedLM: transform + decoder tied to the word embeddings.
    MaskedLm,
    /// BertForSequenceClassification: pooler + linear classifier.
    SequenceClassification {
        /// Number of classes.
        num_labels: usize,
    },
}

impl HeadKind {
    /// Recognises the head from (normalised) tensor names and the classifier's row count.
    pub fn detect<'a>(
        mut names: impl Iterator<Item = &'a str> + Clone,
        classifier_rows: Option<usize>,
    ) -> Self {
        if let Some(num_labels) = classifier_rows {
            return HeadKind::SequenceClassification { num_labels };
        }
        if names
            .clone()
            .any(|n| n.starts_with("cls.predictions.") || n.starts_with("lm_head."))
        {
            return HeadKind::MaskedLm;
        }
        HeadKind::Encoder {
            pooler: names.any(|n| n.starts_with("bert.pooler.")),
        }
    }

    /// Whether this head needs the pooler.
    pub fn uses_pooler(self) -> bool {
        matches!(
            self,
            HeadKind::SequenceClassification { .. } | HeadKind::Encoder { pooler: true }
        )
    }

    /// The HF class this head corresponds to.
    pub fn hf_class(self) -> &'static str {
        match self {
            HeadKind::Encoder { .. } => "BertModel",
            HeadKind::MaskedLm => "BertForMaskedLM",
            HeadKind::SequenceClassification { .. } => "BertForSequenceClassification",
        }
    }
}
