//! `genolens tokenize`: each sequence's tokens with the nucleotide span each one covers, for any
//! model family (DNABERT k-mers, DNABERT-2 BPE, NT 6-mers): the map every token-level result is
//! read against.

use std::path::{Path, PathBuf};

use crate::data::{open_sequences, TableColumns};
use crate::error::{GenolensError, Result};
use crate::model::LoadedModel;
use crate::report::provenance::now_rfc3339;
use crate::report::{Provenance, RunRecord, TableWriter};

crate::table_row! {
    /// One token of one sequence.
    pub struct TokenRow {
        /// 0-based position of the sequence in the input file.
        pub sequence_index: u64,
        /// Sequence id from the input.
        pub sequence_id: String,
        /// 0-based token position; the first special token ([CLS] / `<cls>`) is 0.
        pub token_index: u32,
        /// Token id in the model's vocabulary.
        pub token_id: u32,
        /// Token text.
        pub token: String,
        /// First nucleotide the token covers (0-based); null for special tokens.
        pub start: Option<u32>,
        /// One past the last nucleotide it covers; null for special tokens.
        pub end: Option<u32>,
        /// Whether this is a special token ([CLS], [SEP], `<cls>`).
        pub special: bool,
    }
}

/// What `tokenize` wrote.
pub struct Tokenized {
    /// Sequences read.
    pub sequences: usize,
    /// Tokens written.
    pub tokens: usize,
    /// Tokens that became [UNK] / `<unk>`.
    pub unknown: usize,
    /// The table.
    pub table: PathBuf,
    /// The tokenizer, in words.
    pub kind: String,
}

impl std::fmt::Display for Tokenized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tokenized {} sequences into {} tokens ({} unknown) with {} -> {}",
            self.sequences,
            self.tokens,
            self.unknown,
            self.kind,
            self.table.display()
        )
    }
}

/// The default output folder: reports/tokenize/<data stem>.
pub fn default_out(data: &Path) -> PathBuf {
    let stem = data.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
    PathBuf::from("reports").join("tokenize").join(stem)
}

/// Tokenizes every sequence of `data` into `out/tokens.parquet` (then `out/run.json`).
pub fn run_tokenize(
    loaded: &LoadedModel,
    data: &Path,
    columns: &TableColumns,
    out: &Path,
    seed: u64,
) -> Result<Tokenized> {
    let started_at = now_rfc3339();
    crate::interrupt::prepare_run_dir(out, "run.json", |_| true)?;
    let provenance = Provenance::current(seed)
        .with_model(&loaded.source)
        .with_data_file(data)?;
    let table = out.join("tokens.parquet");
    let mut writer = TableWriter::<TokenRow>::create(&table, &provenance)?;
    let tokenizer = &loaded.tokenizer;
    let (mut sequences, mut tokens, mut unknown) = (0usize, 0usize, 0usize);
    for example in open_sequences(data, columns)? {
        let example = example?;
        let tokenized = tokenizer.tokenize(&example.id, &example.sequence)?;
        for (index, (&id, span)) in tokenized.ids.iter().zip(&tokenized.spans).enumerate() {
            writer.write(&TokenRow {
                sequence_index: sequences as u64,
                sequence_id: example.id.clone(),
                token_index: index as u32,
                token_id: id,
                token: tokenizer.token(id).unwrap_or_default(),
                start: span.as_ref().map(|s| s.start as u32),
                end: span.as_ref().map(|s| s.end as u32),
                special: span.is_none(),
            })?;
        }
        tokens += tokenized.ids.len();
        unknown += tokenized.unknown_tokens;
        sequences += 1;
    }
    if sequences == 0 {
        return Err(GenolensError::Data {
            path: data.to_path_buf(),
            line: 0,
            message: "no sequences".into(),
        });
    }
    writer.finish()?;
    RunRecord {
        provenance,
        command: "tokenize".into(),
        config: serde_json::json!({
            "data": data,
            "tokenizer": tokenizer.name(),
            "sequences": sequences,
            "tokens": tokens,
            "unknown_tokens": unknown,
        }),
        started_at,
        finished_at: now_rfc3339(),
        outputs: vec!["tokens.parquet".into()],
    }
    .write(out)?;
    Ok(Tokenized {
        sequences,
        tokens,
        unknown,
        table,
        kind: tokenizer.kind(),
    })
}
