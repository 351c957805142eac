//! Variants with reference context: VCF (noodles) or GTEx/GV-Rep-style QTL tables, plus a
//! reference FASTA, become fixed-length REF/ALT windows with the variant at a stated offset.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::data::{file_kind, open_text, FileKind};
use crate::error::{GenolensError, Result};

/// One SNV, 0-based position.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Identifier (VCF ID, GTEx variant_id, or chrom:pos:ref:alt).
    pub id: String,
    /// Chromosome as the source names it.
    pub chrom: String,
    /// 0-based position.
    pub pos: i64,
    /// Reference base(s).
    pub reference: String,
    /// Alternative base(s).
    pub alternative: String,
    /// Source line, for error messages.
    pub line: usize,
}

/// How a QTL table's rows become labels (seed-code-pitfalls.md §4: GV-Rep's default is the slope
/// sign, which is not "is this variant functional"; genolens makes the caller choose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QtlLabelRule {
    /// 1 if pval_nominal < pval_nominal_threshold, else 0.
    Significance,
    /// 1 if slope ≥ 0, else 0.
    SlopeSign,
}

/// A variant with its label from a QTL table.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledVariant {
    /// The variant.
    pub variant: Variant,
    /// 0/1 label from the chosen rule.
    pub label: i64,
}

/// REF and ALT windows of one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantWindow {
    /// The variant.
    pub variant: Variant,
    /// Reference bases chrom[pos − offset, pos − offset + length), N-padded off the chromosome.
    pub reference_sequence: String,
    /// The same window with ALT in place of REF (SNVs: same length).
    pub alternative_sequence: String,
    /// Index of the variant in the window.
    pub offset: usize,
}

/// A data error at `line` of `path`, or the corruption of a gzip / bgzip file when that is what
/// the reader really met.
fn data_error(path: &Path, line: usize, message: String) -> GenolensError {
    crate::data::blame_compression(
        path,
        GenolensError::Data {
            path: path.to_path_buf(),
            line,
            message,
        },
    )
}

/// Reads the SNVs of a VCF (plain or bgzip). Multi-allelic sites give one variant per ALT;
/// non-SNV alleles (indels, symbolic `<…>`, `*`) are skipped and counted in the second value.
pub fn read_vcf(path: &Path) -> Result<(Vec<Variant>, usize)> {
    let header_lines = open_text(path)?
        .lines()
        .take_while(|l| l.as_ref().is_ok_and(|l| l.starts_with('#')))
        .count();
    let mut reader = noodles_vcf::io::Reader::new(open_text(path)?);
    reader
        .read_header()
        .map_err(|e| data_error(path, 1, format!("unreadable VCF header: {e}")))?;
    let mut variants = Vec::new();
    let mut skipped = 0usize;
    let mut record = noodles_vcf::Record::default();
    let mut line = header_lines;
    loop {
        line += 1;
        let read = reader
            .read_record(&mut record)
            .map_err(|e| data_error(path, line, format!("unreadable VCF record: {e}")))?;
        if read == 0 {
            break;
        }
        // noodles reads POS 0 (VCF's telomere marker) as "no position".
        let position = record
            .variant_start()
            .ok_or_else(|| {
                data_error(
                    path,
                    line,
                    "POS 0: VCF positions are 1-based, so POS must be ≥ 1 (0 marks a telomere, \
                     which has no base to vary)"
                        .into(),
                )
            })?
            .map_err(|e| {
                data_error(
                    path,
                    line,
                    format!("POS is not a 1-based position ≥ 1 ({e})"),
                )
            })?;
        let pos = usize::from(position) as i64 - 1;
        let reference = record.reference_bases().to_ascii_uppercase();
        let ids = record.ids();
        let id = ids
            .as_ref()
            .split(';')
            .next()
            .filter(|s| *s != ".")
            .map(str::to_string);
        for alternative in record.alternate_bases().as_ref().split(',') {
            let alternative = alternative.to_ascii_uppercase();
            let snv = |s: &str| s.len() == 1 && matches!(s, "A" | "C" | "G" | "T");
            if !snv(&reference) || !snv(&alternative) {
                skipped += 1;
                continue;
            }
            let chrom = record.reference_sequence_name().to_string();
            variants.push(Variant {
                id: id
                    .clone()
                    .unwrap_or_else(|| format!("{chrom}:{}:{reference}:{alternative}", pos + 1)),
                chrom,
                pos,
                reference: reference.clone(),
                alternative,
                line,
            });
        }
    }
    Ok((variants, skipped))
}

/// Reads a GTEx / GV-Rep style QTL table (TSV or CSV, optionally gzipped) with columns `chr`,
/// `variant_pos` (1-based), `ref`, `alt`, `slope`, `pval_nominal`, `pval_nominal_threshold`
/// (and optionally `variant_id`); labels follow `rule`. Non-SNV rows are skipped and counted.
pub fn read_qtl_table(path: &Path, rule: QtlLabelRule) -> Result<(Vec<LabelledVariant>, usize)> {
    let delimiter = if file_kind(path) == FileKind::Csv {
        b','
    } else {
        b'\t'
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(open_text(path)?);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| data_error(path, 1, format!("unreadable header row: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let index = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            data_error(
                path,
                1,
                format!("no column {name:?}; a QTL table needs chr, variant_pos (1-based), ref, alt, slope, pval_nominal, pval_nominal_threshold; found: {}", headers.join(", ")),
            )
        })
    };
    let [chr, pos, reference, alternative] = [
        index("chr")?,
        index("variant_pos")?,
        index("ref")?,
        index("alt")?,
    ];
    let (slope, p, threshold) = match rule {
        QtlLabelRule::SlopeSign => (Some(index("slope")?), None, None),
        QtlLabelRule::Significance => (
            None,
            Some(index("pval_nominal")?),
            Some(index("pval_nominal_threshold")?),
        ),
    };
    let id_column = headers.iter().position(|h| h == "variant_id");
    let mut rows = Vec::new();
    let mut skipped = 0usize;
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| data_error(path, line, e.to_string()))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let number = |i: usize, what: &str| {
            field(i).parse::<f64>().map_err(|_| {
                data_error(path, line, format!("{what} {:?} is not a number", field(i)))
            })
        };
        let position: i64 = field(pos)
            .parse()
            .ok()
            .filter(|p: &i64| *p >= 1)
            .ok_or_else(|| {
                data_error(
                    path,
                    line,
                    format!("variant_pos {:?} is not a 1-based position", field(pos)),
                )
            })?;
        let (reference, alternative) = (
            field(reference).to_ascii_uppercase(),
            field(alternative).to_ascii_uppercase(),
        );
        if reference.len() != 1 || alternative.len() != 1 {
            skipped += 1;
            continue;
        }
        let label = match rule {
            QtlLabelRule::SlopeSign => (number(slope.expect("slope rule"), "slope")? >= 0.0) as i64,
            QtlLabelRule::Significance => {
                (number(p.expect("significance rule"), "pval_nominal")?
                    < number(
                        threshold.expect("significance rule"),
                        "pval_nominal_threshold",
                    )?) as i64
            }
        };
        let chrom = field(chr).to_string();
        rows.push(LabelledVariant {
            variant: Variant {
                id: id_column
                    .map(|i| field(i).to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("{chrom}:{position}:{reference}:{alternative}")),
                chrom,
                pos: position - 1,
                reference,
                alternative,
                line,
            },
            label,
        });
    }
    Ok((rows, skipped))
}

/// A reference FASTA read whole into memory by chromosome (plain or gzip), answering window
/// queries; chromosome names match with or without a `chr` prefix.
pub struct ReferenceGenome {
    path: PathBuf,
    chromosomes: HashMap<String, Vec<u8>>,
}

impl ReferenceGenome {
    /// Reads every record of a FASTA file.
    pub fn read(path: &Path) -> Result<Self> {
        ReferenceGenome::read_only(path, |_| true)
    }

    /// Reads only the records the variants need (a whole genome need not fit in memory).
    pub fn read_for(path: &Path, variants: &[Variant]) -> Result<Self> {
        let wanted: std::collections::HashSet<String> = variants
            .iter()
            .flat_map(|v| {
                let bare = v.chrom.strip_prefix("chr").unwrap_or(&v.chrom).to_string();
                [format!("chr{bare}"), bare]
            })
            .collect();
        ReferenceGenome::read_only(path, |name| wanted.contains(name))
    }

    fn read_only(path: &Path, keep: impl Fn(&str) -> bool) -> Result<Self> {
        let mut chromosomes = HashMap::new();
        for record in crate::data::fasta::FastaReader::open(path)?.unique_ids() {
            let record = record?;
            if keep(&record.id) {
                chromosomes.insert(record.id, record.sequence.into_bytes().to_ascii_uppercase());
            } else {
                chromosomes.insert(record.id, Vec::new());
            }
        }
        Ok(ReferenceGenome {
            path: path.to_path_buf(),
            chromosomes,
        })
    }

    fn chromosome(&self, name: &str) -> Option<&Vec<u8>> {
        let alias = match name.strip_prefix("chr") {
            Some(bare) => bare.to_string(),
            None => format!("chr{name}"),
        };
        let found = [name, alias.as_str()]
            .into_iter()
            .filter_map(|n| self.chromosomes.get(n))
            .find(|s| !s.is_empty());
        found
    }

    /// The `length`-bp REF/ALT windows of a variant with the variant at `offset`, N-padded where
    /// the window leaves the chromosome. Errors name the source line when the chromosome is absent,
    /// the position is past its end or REF disagrees with the reference; a window that cannot
    /// hold the variant (`offset ≥ length`) is an argument error.
    pub fn window(
        &self,
        source: &Path,
        variant: &Variant,
        length: usize,
        offset: usize,
    ) -> Result<VariantWindow> {
        check_window(length, offset)?;
        let chromosome = self.chromosome(&variant.chrom).ok_or_else(|| {
            let mut names: Vec<&String> = self.chromosomes.keys().collect();
            names.sort();
            data_error(
                source,
                variant.line,
                format!(
                    "chromosome {:?} is not in the reference {} (it has: {})",
                    variant.chrom,
                    self.path.display(),
                    names
                        .iter()
                        .take(30)
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        if variant.pos < 0 || variant.pos as usize >= chromosome.len() {
            return Err(data_error(
                source,
                variant.line,
                format!(
                    "position {} (1-based) is past the end of chromosome {} of length {} in the \
                     reference {}; is it the right genome build?",
                    variant.pos + 1,
                    variant.chrom,
                    chromosome.len(),
                    self.path.display(),
                ),
            ));
        }
        let found = chromosome[variant.pos as usize];
        if variant.reference.as_bytes().first() != Some(&found) {
            return Err(data_error(
                source,
                variant.line,
                format!(
                    "REF {:?} at {}:{} (1-based) but the reference {} has {:?} there; is it the right genome build?",
                    variant.reference,
                    variant.chrom,
                    variant.pos + 1,
                    self.path.display(),
                    (found as char).to_string()
                ),
            ));
        }
        let start = variant.pos - offset as i64;
        let reference: Vec<u8> = (start..start + length as i64)
            .map(|i| {
                if i < 0 {
                    b'N'
                } else {
                    chromosome.get(i as usize).copied().unwrap_or(b'N')
                }
            })
            .collect();
        let mut alternative = reference.clone();
        alternative[offset] = variant.alternative.as_bytes()[0];
        Ok(VariantWindow {
            variant: variant.clone(),
            reference_sequence: String::from_utf8(reference).expect("ASCII"),
            alternative_sequence: String::from_utf8(alternative).expect("ASCII"),
            offset,
        })
    }
}

/// Refuses a window that cannot hold the variant: `length` must be ≥ 1 and `offset` inside it.
pub fn check_window(length: usize, offset: usize) -> Result<()> {
    if length == 0 {
        return Err(GenolensError::argument(
            "--length 0",
            "a window must hold the variant: give a length of at least 1 base",
        ));
    }
    if offset >= length {
        return Err(GenolensError::argument(
            format!("--length {length}"),
            format!("the variant's offset {offset} is outside a window of {length} bases"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(dir: &Path) -> PathBuf {
        let path = dir.join("ref.fa");
        std::fs::write(&path, ">chr1\nACGTACGTAC\nGTACGTACGT\n").unwrap();
        path
    }

    #[test]
    fn vcf_snvs_become_centred_windows() {
        let dir = tempfile::tempdir().unwrap();
        let genome = ReferenceGenome::read(&reference(dir.path())).unwrap();
        let vcf = dir.path().join("v.vcf");
        std::fs::write(
            &vcf,
            "##fileformat=VCFv4.3\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n\
             1\t3\trs1\tG\tA,T\t.\tPASS\t.\n1\t5\t.\tAC\tA\t.\tPASS\t.\n1\t11\t.\tT\tC\t.\tPASS\t.\n",
        )
        .unwrap();
        let (variants, skipped) = read_vcf(&vcf).unwrap();
        assert_eq!((variants.len(), skipped), (3, 1));
        assert_eq!(
            (variants[0].id.as_str(), variants[0].pos, variants[0].line),
            ("rs1", 2, 3)
        );
        let window = genome.window(&vcf, &variants[0], 6, 3).unwrap();
        assert_eq!(window.reference_sequence, "NACGTA");
        assert_eq!(window.alternative_sequence, "NACATA");
        // REF T at 1-based 11 disagrees with the reference's G: the error names line 5 and both bases.
        let err = genome
            .window(&vcf, &variants[2], 6, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("v.vcf:5") && err.contains("\"T\"") && err.contains("\"G\""),
            "{err}"
        );
    }

    #[test]
    fn qtl_tables_need_an_explicit_label_rule_and_columns() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("egenes.tsv");
        std::fs::write(
            &table,
            "chr\tvariant_pos\tref\talt\tslope\tpval_nominal\tpval_nominal_threshold\n\
             chr1\t3\tG\tA\t-0.5\t1e-8\t1e-5\nchr1\t4\tT\tC\t0.2\t0.1\t1e-5\n",
        )
        .unwrap();
        let (rows, _) = read_qtl_table(&table, QtlLabelRule::Significance).unwrap();
        assert_eq!(rows.iter().map(|r| r.label).collect::<Vec<_>>(), vec![1, 0]);
        let (rows, _) = read_qtl_table(&table, QtlLabelRule::SlopeSign).unwrap();
        assert_eq!(rows.iter().map(|r| r.label).collect::<Vec<_>>(), vec![0, 1]);
        let genome = ReferenceGenome::read(&reference(dir.path())).unwrap();
        assert_eq!(
            genome
                .window(&table, &rows[0].variant, 4, 2)
                .unwrap()
                .reference_sequence,
            "ACGT"
        );
        std::fs::write(&table, "chrom\tpos\n1\t2\n").unwrap();
        let err = read_qtl_table(&table, QtlLabelRule::SlopeSign)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("egenes.tsv:1") && err.contains("\"chr\""),
            "{err}"
        );
    }
}
