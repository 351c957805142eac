//! The library's error type: every variant names the file, key, line or value that was wrong.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = GenolensError> = std::result::Result<T, E>;

/// A tensor whose shape in the checkpoint differs from what the config implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Normalised tensor name.
    pub name: String,
    /// Shape the config implies.
    pub expected: Vec<usize>,
    /// Shape found in the file.
    pub found: Vec<usize>,
}

/// Everything that can go wrong in genolens, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum GenolensError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A config.json that does not describe a supported model.
    #[error("{path}: invalid model config: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A required file is not in the model folder.
    #[error("{dir}: missing {file} ({hint})")]
    MissingFile {
        /// The model folder or hub id.
        dir: String,
        /// The missing file.
        file: String,
        /// What the file is for / what to do.
        hint: String,
    },
    /// The checkpoint's tensors do not match the architecture; never silently random-initialised.
    #[error("{}", weights_message(path, missing, unexpected, wrong_shape))]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Required tensors absent from the file (normalised names).
        missing: Vec<String>,
        /// Tensors in the file that the model does not use (normalised names).
        unexpected: Vec<String>,
        /// Tensors whose shape differs from the config.
        wrong_shape: Vec<ShapeMismatch>,
    },
    /// A torch < 1.6 (non-zip) pickle, which cannot be read here.
    #[error(
        "{path}: legacy (pre-1.6, non-zip) PyTorch pickle; genolens reads safetensors or zip-format .bin. \
         Convert it once with Python: `import torch; from safetensors.torch import save_file; \
         sd = torch.load('{path}', map_location='cpu'); \
         save_file({{k: v.contiguous() for k, v in sd.items()}}, 'model.safetensors')` \
         (then place model.safetensors beside config.json; shared tensors are untied by .contiguous() copies)",
        path = path.display()
    )]
    LegacyPickle {
        /// The .bin file.
        path: PathBuf,
    },
    /// A sequence that cannot be tokenised.
    #[error("sequence {sequence}: {message}")]
    Sequence {
        /// Sequence id (or index) as given by the user.
        sequence: String,
        /// What is wrong, with position and character.
        message: String,
    },
    /// A malformed input data file.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when not line-specific).
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// An unknown hook name or an intervention that does not fit its activation.
    #[error("hook {hook}: {message}")]
    Hook {
        /// The hook name or pattern.
        hook: String,
        /// What is wrong.
        message: String,
    },
    /// A setting or command-line value out of range (`--batch-size 0`, `--shard 4/3`).
    #[error("{name}: {message}")]
    Argument {
        /// The option or setting.
        name: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A figure that could not be drawn (empty or non-finite data, a drawing error).
    #[error("figure {figure}: {message}")]
    Figure {
        /// The figure's file name.
        figure: String,
        /// What went wrong.
        message: String,
    },
    /// A vocabulary file that is not a DNABERT k-mer vocabulary.
    #[error("{path}: {message}")]
    Vocab {
        /// The vocab file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Resolving a hub id failed.
    #[error("hub model {id}: {message}")]
    Hub {
        /// The hub id.
        id: String,
        /// What failed.
        message: String,
    },
    /// Writing a Parquet table failed.
    #[error("{path}: writing Parquet: {message}")]
    Parquet {
        /// The table file.
        path: PathBuf,
        /// The arrow/parquet error.
        message: String,
    },
    /// Reading a Parquet table failed (malformed file, missing or mistyped column).
    #[error("{path}: reading Parquet: {message}")]
    ParquetRead {
        /// The table file.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A tensor operation failed (shape bug or device error).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn weights_message(
    path: &std::path::Path,
    missing: &[String],
    unexpected: &[String],
    wrong_shape: &[ShapeMismatch],
) -> String {
    let mut text = format!(
        "{}: checkpoint does not match the model config ({} missing, {} unexpected, {} wrongly shaped); \
         refusing to load (no tensor is ever randomly initialised)",
        path.display(),
        missing.len(),
        unexpected.len(),
        wrong_shape.len()
    );
    for name in missing {
        text.push_str(&format!("\n  missing:     {name}"));
    }
    for name in unexpected {
        text.push_str(&format!("\n  unexpected:  {name}"));
    }
    for mismatch in wrong_shape {
        text.push_str(&format!(
            "\n  wrong shape: {} expected {:?} found {:?}",
            mismatch.name, mismatch.expected, mismatch.found
        ));
    }
    text
}

impl GenolensError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GenolensError::Io {
            path: path.into(),
            source,
        }
    }

    /// A bad setting.
    pub fn argument(name: impl std::fmt::Display, message: impl Into<String>) -> Self {
        GenolensError::Argument {
            name: name.to_string(),
            message: message.into(),
        }
    }

    /// A hook error.
    pub fn hook(hook: impl std::fmt::Display, message: impl Into<String>) -> Self {
        GenolensError::Hook {
            hook: hook.to_string(),
            message: message.into(),
        }
    }
}
