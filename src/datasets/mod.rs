//! Derived study datasets, rebuilt reproducibly from the raw source files `just data` fetches
//! (scripts/data.sh). `genolens data build` writes every committed table under data/, the
//! pretraining corpus into the cache, data/README.md and data/SHA256SUMS.

pub mod annotation_tables;
pub mod annotations;
pub mod baseline;
pub mod corpus;
pub mod fly_promoters;
pub mod genome;
pub mod human_promoters;
pub mod intervals;
pub mod model_data;
pub mod motif_panel;
pub mod rows;
pub mod tf_peaks;
pub mod variants;

use std::path::{Path, PathBuf};

use crate::error::{GenolensError, Result};
use crate::model::load::sha256_file;
use crate::report::{DataFile, Provenance};

/// The folder of raw inputs (`data/cache/raw/` after `just data`).
#[derive(Debug, Clone)]
pub struct RawInputs {
    dir: PathBuf,
}

impl RawInputs {
    /// Checks that the folder exists.
    pub fn new(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(GenolensError::Data {
                path: dir.to_path_buf(),
                line: 0,
                message: "raw input folder not found; run `just data` (scripts/data.sh) to \
                          fetch and extract the raw inputs"
                    .into(),
            });
        }
        Ok(RawInputs {
            dir: dir.to_path_buf(),
        })
    }

    /// A raw file by its path relative to the folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Dataset provenance naming these raw files (relative paths, with sha256).
    pub fn provenance(&self, seed: u64, files: &[&str]) -> Result<Provenance> {
        let sources = files
            .iter()
            .map(|relative| {
                let path = self.path(relative);
                if !path.exists() {
                    return Err(GenolensError::MissingFile {
                        dir: self.dir.display().to_string(),
                        file: relative.to_string(),
                        hint: "run `just data` to fetch the raw inputs".into(),
                    });
                }
                Ok(DataFile {
                    path: relative.to_string(),
                    sha256: sha256_file(&path)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Provenance::for_dataset(seed, sources))
    }
}

/// What one builder produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// Dataset name.
    pub name: &'static str,
    /// Committed files, relative to the output folder.
    pub files: Vec<String>,
    /// Rows (or records / intervals) written.
    pub rows: usize,
    /// Markdown for data/README.md: derivation and counts.
    pub text: String,
}

impl Built {
    /// A dataset that is the one Parquet table `<name>.parquet`.
    pub fn table(name: &'static str, rows: usize, text: String) -> Self {
        Built {
            name,
            files: vec![format!("{name}.parquet")],
            rows,
            text,
        }
    }
}

/// Rebuilds every dataset from `raw` into `out` (normally `data/`), then data/README.md and
/// data/SHA256SUMS. The pretraining corpus goes to `corpus_dir` (git-ignored).
pub fn build_all(raw: &Path, out: &Path, corpus_dir: &Path) -> Result<Vec<Built>> {
    let raw = RawInputs::new(raw)?;
    std::fs::create_dir_all(out).map_err(|e| GenolensError::io(out, e))?;
    let step = |name: &str| tracing::info!("building {name}");
    step("chr20 reference");
    let chr20 = genome::Chromosome::read(&raw.path("hg19_chr20.fa.gz"), "20")?;
    let mut built = Vec::new();
    step(human_promoters::NAME);
    built.push(human_promoters::build(&chr20, &raw, out)?);
    step(tf_peaks::NAME);
    built.push(tf_peaks::build(&chr20, &raw, out)?);
    step(fly_promoters::NAME);
    built.push(fly_promoters::build(&raw, out)?);
    step(corpus::NAME);
    built.push(corpus::build(&chr20, &raw, corpus_dir)?);
    step(annotations::NAME);
    built.push(annotations::build(&chr20, &raw, out)?);
    step(variants::NAME);
    built.push(variants::build(&chr20, &raw, out)?);
    let checksums = checksums(out, &built)?;
    let sums: String = committed_files(&built)
        .into_iter()
        .map(|file| format!("{}  data/{file}\n", checksums[&file]))
        .collect();
    std::fs::write(out.join("SHA256SUMS"), sums).map_err(|e| GenolensError::io(out, e))?;
    std::fs::write(out.join("README.md"), readme(&built, &checksums))
        .map_err(|e| GenolensError::io(out, e))?;
    Ok(built)
}

/// The JASPAR motif files `just data` exports (committed; hashed with the datasets).
pub const JASPAR_FILES: [&str; 2] = [
    "jaspar/JASPAR2024_CORE_vertebrates.meme",
    "jaspar/JASPAR2024_CORE_insects.meme",
];

/// Every committed file under `out`: the JASPAR exports, then each dataset's files.
fn committed_files(built: &[Built]) -> Vec<String> {
    JASPAR_FILES
        .iter()
        .map(|f| f.to_string())
        .chain(built.iter().flat_map(|b| b.files.iter().cloned()))
        .collect()
}

/// sha256 of every committed file, by its path under `out`.
fn checksums(out: &Path, built: &[Built]) -> Result<std::collections::HashMap<String, String>> {
    committed_files(built)
        .into_iter()
        .map(|file| Ok((file.clone(), sha256_file(&out.join(&file))?)))
        .collect()
}

fn readme(built: &[Built], checksums: &std::collections::HashMap<String, String>) -> String {
    let mut text = String::from(include_str!("readme_header.md"));
    text.push_str("\nFiles (sha256):\n\n");
    for file in JASPAR_FILES {
        text.push_str(&format!("- `data/{file}` `{}`\n", checksums[file]));
    }
    for b in built {
        text.push_str(&format!("\n## `{}`\n\n{}\n", b.name, b.text.trim_end()));
        if !b.files.is_empty() {
            text.push_str("\nFiles (sha256, also in `data/SHA256SUMS`):\n\n");
            for file in &b.files {
                text.push_str(&format!("- `data/{file}` `{}`\n", checksums[file]));
            }
        }
    }
    text
}
