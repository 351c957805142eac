//! MEME minimal motif format (what JASPAR, HOCOMOCO and the MEME suite export): reader.

use std::io::BufRead;
use std::path::Path;

use crate::error::{GenolensError, Result};

/// One position probability matrix: per column, the probabilities of A, C, G, T.
#[derive(Debug, Clone, PartialEq)]
pub struct Motif {
    /// Matrix id, the first word after `MOTIF` (e.g. `MA0139.2`).
    pub id: String,
    /// Alternate name, the second word (e.g. `CTCF`), or the id when absent.
    pub name: String,
    /// Columns of [A, C, G, T] probabilities, 5' to 3'.
    pub columns: Vec<[f64; 4]>,
}

impl Motif {
    /// Number of columns.
    pub fn width(&self) -> usize {
        self.columns.len()
    }
}

/// Reads every motif of a MEME file (plain text, DNA alphabet).
///
/// Errors name the file and line: a non-DNA alphabet (`ALPHABET=` other than ACGT / ACGU, a
/// protein-like alphabet definition, `alength=` other than 4), a matrix row without 4 numbers, a
/// negative or non-numeric probability, a row that does not sum to 1 (± 0.01), a `w=` that
/// disagrees with the rows, or a file with no motif at all.
pub fn read_meme(path: &Path) -> Result<Vec<Motif>> {
    let file = std::fs::File::open(path).map_err(|e| GenolensError::io(path, e))?;
    parse_meme(std::io::BufReader::new(file), path)
}

/// MEME minimal format text of `motifs` (DNA, uniform background), readable by `read_meme`,
/// MEME suite tools and memelite. `sites` is written as `nsites=` when given.
pub fn meme_text(motifs: &[Motif], sites: Option<&[usize]>) -> String {
    let mut text = String::from(
        "MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\n\
         Background letter frequencies\nA 0.25 C 0.25 G 0.25 T 0.25\n\n",
    );
    for (index, motif) in motifs.iter().enumerate() {
        text.push_str(&format!("MOTIF {} {}\n", motif.id, motif.name));
        let nsites = sites.map(|s| s[index]).unwrap_or(20);
        text.push_str(&format!(
            "letter-probability matrix: alength= 4 w= {} nsites= {nsites} E= 0\n",
            motif.width()
        ));
        for column in &motif.columns {
            let row: Vec<String> = column.iter().map(|p| format!("{p:.6}")).collect();
            text.push_str(&format!(" {}\n", row.join("  ")));
        }
        text.push('\n');
    }
    text
}

fn parse_meme(reader: impl BufRead, path: &Path) -> Result<Vec<Motif>> {
    let error = |line: usize, message: String| GenolensError::Data {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut motifs: Vec<Motif> = Vec::new();
    // The motif being read: its header line, declared width, and rows read so far.
    let mut current: Option<(usize, Motif, Option<usize>)> = None;
    let mut in_matrix = false;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| GenolensError::io(path, e))?;
        let trimmed = line.trim();
        if trimmed.starts_with("ALPHABET") {
            check_alphabet(trimmed).map_err(|m| error(number, m))?;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("MOTIF") {
            if let Some(done) = current.take() {
                motifs.push(finish_motif(done, path)?);
            }
            let mut words = rest.split_whitespace();
            let id = words
                .next()
                .ok_or_else(|| error(number, "MOTIF line without an id".into()))?
                .to_string();
            let name = words.next().unwrap_or(&id).to_string();
            let motif = Motif {
                id,
                name,
                columns: Vec::new(),
            };
            current = Some((number, motif, None));
            in_matrix = false;
            continue;
        }
        let Some((_, motif, width)) = current.as_mut() else {
            continue;
        };
        if trimmed.starts_with("letter-probability") {
            let alength = declared_value(trimmed, "alength=").map_err(|m| error(number, m))?;
            if let Some(alength) = alength {
                if alength != 4 {
                    return Err(error(
                        number,
                        format!(
                            "motif {} has alength= {alength}; genolens reads DNA motifs, which \
                             need alength= 4 (A C G T)",
                            motif.id
                        ),
                    ));
                }
            }
            *width = declared_width(trimmed)
                .map(Some)
                .map_err(|m| error(number, m))?;
            in_matrix = true;
            continue;
        }
        if !in_matrix {
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with("URL") {
            if !motif.columns.is_empty() {
                in_matrix = false;
            }
            continue;
        }
        let values: Vec<f64> = trimmed
            .split_whitespace()
            .map(|v| v.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                error(
                    number,
                    format!(
                        "matrix row {trimmed:?} of motif {} is not 4 numbers",
                        motif.id
                    ),
                )
            })?;
        if values.len() != 4 || values.iter().any(|v| v.is_nan() || *v < 0.0) {
            return Err(error(
                number,
                format!(
                    "matrix row {trimmed:?} of motif {}: expected 4 probabilities ≥ 0 (A C G T)",
                    motif.id
                ),
            ));
        }
        let sum: f64 = values.iter().sum();
        if (sum - 1.0).abs() > 0.01 {
            return Err(error(
                number,
                format!("matrix row of motif {} sums to {sum}, expected 1", motif.id),
            ));
        }
        motif
            .columns
            .push([values[0], values[1], values[2], values[3]]);
        if Some(motif.columns.len()) == *width {
            in_matrix = false;
        }
    }
    if let Some(done) = current.take() {
        motifs.push(finish_motif(done, path)?);
    }
    if motifs.is_empty() {
        return Err(error(
            0,
            "no MOTIF found; expected a MEME motif file".into(),
        ));
    }
    Ok(motifs)
}

fn declared_width(line: &str) -> std::result::Result<usize, String> {
    Ok(declared_value(line, "w=")?.unwrap_or(0))
}

/// The number after `key` (`w=`, `alength=`) on a `letter-probability matrix:` line, written
/// `key N` or `keyN`; `None` when the line has no such key.
fn declared_value(line: &str, key: &str) -> std::result::Result<Option<usize>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    for (index, word) in words.iter().enumerate() {
        let value = if *word == key {
            match words.get(index + 1) {
                Some(value) => *value,
                None => continue,
            }
        } else {
            match word.strip_prefix(key).filter(|v| !v.is_empty()) {
                Some(value) => value,
                None => continue,
            }
        };
        return value
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("{key} {value:?} is not a number"));
    }
    Ok(None)
}

/// Accepts a DNA (or RNA, read as DNA) alphabet line: `ALPHABET= ACGT` / `ACGU` in any case or
/// an alphabet definition header `ALPHABET "name" DNA-LIKE` / `RNA-LIKE`; refuses any other
/// (protein, custom) alphabet, whose columns are not A C G T.
fn check_alphabet(line: &str) -> std::result::Result<(), String> {
    let rest = line.strip_prefix("ALPHABET").unwrap_or(line).trim_start();
    if let Some(letters) = rest.strip_prefix('=') {
        let letters = letters.trim();
        return match letters.to_ascii_uppercase().as_str() {
            "ACGT" | "ACGU" => Ok(()),
            _ => Err(format!(
                "ALPHABET= {letters:?} is not DNA; genolens reads DNA motifs (expected \
                 ALPHABET= ACGT, or ACGU for RNA)"
            )),
        };
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.iter().any(|w| *w == "DNA-LIKE" || *w == "RNA-LIKE") {
        return Ok(());
    }
    Err(format!(
        "alphabet {:?} is not DNA; genolens reads DNA motifs (expected ALPHABET= ACGT or an \
         alphabet definition marked DNA-LIKE)",
        line
    ))
}

fn finish_motif((line, motif, width): (usize, Motif, Option<usize>), path: &Path) -> Result<Motif> {
    let error = |message: String| GenolensError::Data {
        path: path.to_path_buf(),
        line,
        message,
    };
    if motif.columns.is_empty() {
        return Err(error(format!("motif {} has no matrix rows", motif.id)));
    }
    if let Some(width) = width.filter(|w| *w > 0) {
        if width != motif.columns.len() {
            return Err(error(format!(
                "motif {} declares w= {width} but has {} rows",
                motif.id,
                motif.columns.len()
            )));
        }
    }
    Ok(motif)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF MA0001.1 FIRST
letter-probability matrix: alength= 4 w= 2 nsites= 10 E= 0
 1.0 0.0 0.0 0.0
 0.25 0.25 0.25 0.25

MOTIF MA0002.1
letter-probability matrix: alength= 4 w= 1 nsites= 10 E= 0
 0.0 0.0 0.0 1.0
";

    fn parse(text: &str) -> Result<Vec<Motif>> {
        parse_meme(text.as_bytes(), Path::new("m.meme"))
    }

    #[test]
    fn reads_ids_names_and_columns() {
        let motifs = parse(TWO).unwrap();
        assert_eq!(motifs.len(), 2);
        assert_eq!(motifs[0].id, "MA0001.1");
        assert_eq!(motifs[0].name, "FIRST");
        assert_eq!(motifs[0].columns[1], [0.25; 4]);
        assert_eq!(motifs[1].name, "MA0002.1");
        assert_eq!(motifs[1].width(), 1);
    }

    #[test]
    fn written_motifs_read_back() {
        let motifs = parse(TWO).unwrap();
        let again = parse(&meme_text(&motifs, Some(&[7, 9]))).unwrap();
        assert_eq!(again, motifs);
        assert!(meme_text(&motifs, Some(&[7, 9])).contains("w= 1 nsites= 9"));
    }

    #[test]
    fn bad_rows_name_the_line() {
        let bad = TWO.replace(" 0.25 0.25 0.25 0.25", " 0.25 0.25 x 0.25");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("m.meme:13") && err.contains("MA0001.1"),
            "{err}"
        );
        let short = TWO.replace(" 0.25 0.25 0.25 0.25\n", "");
        let err = parse(&short).unwrap_err().to_string();
        assert!(err.contains("w= 2") && err.contains("1 rows"), "{err}");
        let unnormalised = TWO.replace(" 1.0 0.0 0.0 0.0", " 1.0 0.5 0.0 0.0");
        assert!(parse(&unnormalised)
            .unwrap_err()
            .to_string()
            .contains("sums to 1.5"));
        assert!(parse("hello\n")
            .unwrap_err()
            .to_string()
            .contains("no MOTIF"));
    }
}
