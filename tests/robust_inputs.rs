//! Bad input met at the command line: every case is refused with an error that names the file,
//! line or option, the value and what was expected, and nothing panics (exit code 101).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use common::{fixture_model, genolens};

/// Standard output and error of a finished command.
fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs genolens with `args`, asserts that it failed cleanly (not a panic) and that its output
/// names every one of `expected`; returns the output text.
fn refused(args: &[&str], expected: &[&str]) -> String {
    let output = genolens(args);
    let message = text(&output);
    assert!(!output.status.success(), "{args:?} succeeded:\n{message}");
    assert_ne!(
        output.status.code(),
        Some(101),
        "{args:?} panicked:\n{message}"
    );
    for item in expected {
        assert!(
            message.contains(item),
            "{args:?}: missing {item:?} in\n{message}"
        );
    }
    message
}

/// `genolens embed --model MODEL --data DATA --out OUT` is refused with every `expected` piece.
fn refused_embed(model: &str, data: &str, out: &str, expected: &[&str]) -> String {
    refused(
        &["embed", "--model", model, "--data", data, "--out", out],
        expected,
    )
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `text` gzip-compressed at level 0 (stored blocks: the bytes appear verbatim), with the byte
/// at the first occurrence of `target` (+ `at`) replaced by `by`: a flipped byte the gzip
/// checksum catches only at the end of the member.
fn corrupt_gzip(path: &Path, text: &str, target: &str, at: usize, by: u8) {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    encoder.write_all(text.as_bytes()).unwrap();
    let mut bytes = encoder.finish().unwrap();
    let start = bytes
        .windows(target.len())
        .position(|w| w == target.as_bytes())
        .expect("level 0 stores the text verbatim");
    bytes[start + at] = by;
    std::fs::write(path, bytes).unwrap();
}

const VCF_HEADER: &str = "##fileformat=VCFv4.3\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n";

/// Writes a Parquet table of string columns.
fn write_parquet(path: &Path, columns: &[(&str, Vec<&str>)]) {
    let fields: Vec<arrow_schema::Field> = columns
        .iter()
        .map(|(name, _)| arrow_schema::Field::new(*name, arrow_schema::DataType::Utf8, false))
        .collect();
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let arrays: Vec<arrow_array::ArrayRef> = columns
        .iter()
        .map(|(_, values)| {
            Arc::new(arrow_array::StringArray::from(values.clone())) as arrow_array::ArrayRef
        })
        .collect();
    let batch = arrow_array::RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn data_variants_refuses_a_window_that_cannot_hold_the_variant() {
    let dir = tempfile::tempdir().unwrap();
    let reference = write(dir.path(), "ref.fa", ">1\nACGTACGTAC\n");
    let vcf = write(
        dir.path(),
        "ok.vcf",
        &format!("{VCF_HEADER}1\t3\trs1\tG\tA\t.\tPASS\t.\n"),
    );
    let out = dir.path().join("w.parquet");
    refused(
        &[
            "data",
            "variants",
            "--reference",
            s(&reference),
            "--vcf",
            s(&vcf),
            "--length",
            "0",
            "--out",
            s(&out),
        ],
        &["--length", "'0'", "at least 1", "variant"],
    );
    assert!(!out.exists());
    // The library refuses it too (no index out of bounds).
    let error = genolens::commands::variant_windows::run_variant_windows(
        &genolens::commands::variant_windows::VariantSource::Vcf(vcf.clone()),
        &reference,
        0,
        &out,
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("--length 0") && error.contains("at least 1"),
        "{error}"
    );
    assert!(!out.exists());
}

#[test]
fn a_vocabulary_with_a_repeated_kmer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let fixture = fixture_model("tiny-cls-k3");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), model.join(file)).unwrap();
    }
    // Line 8 (AAC) becomes a second AAA (line 6): as many lines as before, one k-mer fewer.
    let vocab = std::fs::read_to_string(fixture.join("vocab.txt")).unwrap();
    let mut lines: Vec<&str> = vocab.lines().collect();
    assert_eq!((lines[5], lines[7]), ("AAA", "AAC"));
    lines[7] = "AAA";
    std::fs::write(model.join("vocab.txt"), lines.join("\n") + "\n").unwrap();
    refused(
        &["inspect", "--model", s(&model)],
        &["vocab.txt", "line 8", "line 6", "\"AAA\"", "one to one"],
    );
}

#[test]
fn data_scan_refuses_p_thresholds_outside_0_1_and_non_dna_motifs() {
    let dir = tempfile::tempdir().unwrap();
    let sequences = write(dir.path(), "s.fa", ">s\nACGTACGTACGTTATAAAAG\n");
    let dna = "MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\n\
               MOTIF M1 TATA\nletter-probability matrix: alength= 4 w= 2 nsites= 10 E= 0\n\
               1.0 0.0 0.0 0.0\n0.0 0.0 0.0 1.0\n";
    let motifs = write(dir.path(), "m.meme", dna);
    let out = dir.path().join("hits.parquet");
    // `data scan` of `motifs`, with `--p-threshold=P` when given (so `-1` is a value).
    let scan = |motifs: &Path, threshold: Option<&str>| -> Vec<String> {
        let mut args: Vec<String> = ["data", "scan", "--motifs", s(motifs), "--sequences"]
            .map(String::from)
            .to_vec();
        args.extend([
            s(&sequences).to_string(),
            "--out".into(),
            s(&out).to_string(),
        ]);
        if let Some(threshold) = threshold {
            args.push(format!("--p-threshold={threshold}"));
        }
        args
    };
    let refused_scan = |motifs: &Path, threshold: Option<&str>, expected: &[&str]| {
        let owned = scan(motifs, threshold);
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        refused(&args, expected);
    };
    for threshold in ["2", "1", "nan", "0", "-1"] {
        let quoted = format!("'{threshold}'");
        refused_scan(
            &motifs,
            Some(threshold),
            &["--p-threshold", quoted.as_str(), "between 0 and 1"],
        );
        assert!(!out.exists(), "--p-threshold {threshold} wrote a table");
    }
    // A protein alphabet, or a DNA one with 20 letters per row, is not read as DNA.
    let protein = write(
        dir.path(),
        "protein.meme",
        &dna.replace("ALPHABET= ACGT", "ALPHABET= ACDEFGHIKLMNPQRSTVWY"),
    );
    refused_scan(
        &protein,
        None,
        &["protein.meme:3", "ACDEFGHIKLMNPQRSTVWY", "ALPHABET= ACGT"],
    );
    let alength = write(
        dir.path(),
        "alength.meme",
        &dna.replace("alength= 4", "alength= 20"),
    );
    refused_scan(
        &alength,
        None,
        &["alength.meme:8", "alength= 20", "alength= 4", "M1"],
    );
    assert!(!out.exists());
    // The valid file scans.
    let owned = scan(&motifs, None);
    let output = genolens(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn sequence_files_refuse_repeated_ids_and_empty_labels() {
    let dir = tempfile::tempdir().unwrap();
    let info = |path: &Path, expected: &[&str]| {
        refused(&["data", "info", s(path)], expected);
    };
    let csv = write(
        dir.path(),
        "dup.csv",
        "id,sequence\na,ACGT\nb,ACGG\na,ACTT\n",
    );
    info(&csv, &["dup.csv:4", "\"a\"", "line 2", "\"id\"", "unique"]);
    let tsv = write(dir.path(), "dup.tsv", "id\tsequence\nx\tACGT\nx\tACGG\n");
    info(&tsv, &["dup.tsv:3", "\"x\"", "line 2", "unique"]);
    let parquet = dir.path().join("dup.parquet");
    write_parquet(
        &parquet,
        &[
            ("id", vec!["a", "b", "a"]),
            ("sequence", vec!["ACGT", "ACGG", "ACTT"]),
        ],
    );
    info(
        &parquet,
        &["dup.parquet", "row 3", "row 1", "\"a\"", "unique"],
    );
    let fasta = write(
        dir.path(),
        "dup.fa",
        ">a one\nACGT\n>b\nACGG\n>a two\nACTT\n",
    );
    info(&fasta, &["dup.fa:5", "\"a\"", "line 1", "unique"]);

    // An empty label is not a class named "".
    let labels = write(
        dir.path(),
        "labels.csv",
        "id,sequence,label\na,ACGT,1\nb,ACGG,\nc,ACTT,0\n",
    );
    info(
        &labels,
        &[
            "labels.csv:3",
            "label column \"label\"",
            "column 3",
            "empty",
        ],
    );
    let labels = dir.path().join("labels.parquet");
    write_parquet(
        &labels,
        &[
            ("id", vec!["a", "b"]),
            ("sequence", vec!["ACGT", "ACGG"]),
            ("label", vec!["1", ""]),
        ],
    );
    info(&labels, &["labels.parquet", "row 2", "\"label\"", "empty"]);
}

#[test]
fn vcf_positions_and_corrupt_gzip_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let reference = write(dir.path(), "ref.fa", ">1\nACGTACGTAC\n");
    let out = dir.path().join("w.parquet");
    let variants = |vcf: &Path, reference: &Path, expected: &[&str]| {
        refused(
            &[
                "data",
                "variants",
                "--reference",
                s(reference),
                "--vcf",
                s(vcf),
                "--length",
                "4",
                "--out",
                s(&out),
            ],
            expected,
        )
    };
    // POS 0 is not "missing": VCF positions are 1-based.
    let zero = write(
        dir.path(),
        "zero.vcf",
        &format!("{VCF_HEADER}1\t0\t.\tA\tC\t.\tPASS\t.\n"),
    );
    let message = variants(
        &zero,
        &reference,
        &["zero.vcf:3", "POS 0", "1-based", "≥ 1"],
    );
    assert!(!message.contains("missing POS"), "{message}");
    // A position past the chromosome's end names the chromosome, its length and the reference.
    let past = write(
        dir.path(),
        "past.vcf",
        &format!("{VCF_HEADER}1\t3\trs1\tG\tA\t.\tPASS\t.\n1\t50\trs2\tA\tC\t.\tPASS\t.\n"),
    );
    let message = variants(
        &past,
        &reference,
        &[
            "past.vcf:4",
            "position 50",
            "past the end of chromosome 1",
            "length 10",
            "ref.fa",
        ],
    );
    assert!(!message.contains("nothing"), "{message}");
    // A flipped byte in a gzip VCF (POS 3 -> 's') is blamed on the compression, not the record.
    let vcf_gz = dir.path().join("v.vcf.gz");
    corrupt_gzip(
        &vcf_gz,
        &format!("{VCF_HEADER}1\t3\trs1\tG\tA\t.\tPASS\t.\n"),
        "\t3\trs1",
        1,
        b's',
    );
    let message = variants(&vcf_gz, &reference, &["v.vcf.gz", "gzip", "corrupt"]);
    assert!(!message.contains("POS"), "{message}");
    // ... and in a gzip reference (A -> '@'), not on a nucleotide.
    let reference_gz = dir.path().join("ref.fa.gz");
    corrupt_gzip(&reference_gz, ">1\nACGTACGTAC\n", "ACGTACGTAC", 0, b'@');
    let vcf = write(
        dir.path(),
        "ok.vcf",
        &format!("{VCF_HEADER}1\t3\trs1\tG\tA\t.\tPASS\t.\n"),
    );
    let message = variants(&vcf, &reference_gz, &["ref.fa.gz", "gzip", "corrupt"]);
    assert!(
        !message.contains("nucleotide") && !message.contains("'@'"),
        "{message}"
    );
    assert!(!out.exists());
}

#[test]
fn fasta_refuses_non_dna_symbols_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content, expected) in [
        (
            "rna.fa",
            ">ok\nACGT\n>r\nACGU\n",
            ["rna.fa:4", "'U'", "column 4"],
        ),
        (
            "gap.fa",
            ">g\nACGT\nAC-GT\n",
            ["gap.fa:3", "'-'", "column 3"],
        ),
        ("stop.fa", ">s\nacgt*\n", ["stop.fa:2", "'*'", "column 5"]),
    ] {
        let path = write(dir.path(), name, content);
        refused(&["data", "info", s(&path)], &expected);
    }
    // IUPAC codes in either case still read.
    let iupac = write(
        dir.path(),
        "iupac.fa",
        ">i\nACGTNRYSWKMBDHV\nacgtnryswkmbdhv\n",
    );
    let output = genolens(&["data", "info", s(&iupac)]);
    assert!(output.status.success(), "{}", text(&output));
    // `embed` meets the error where the file is read: file, line and column, not a 0-based
    // position of a sequence id.
    let rna = dir.path().join("rna.fa");
    let out = dir.path().join("embedded");
    let model = fixture_model("tiny-cls-k6");
    refused_embed(
        s(&model),
        s(&rna),
        s(&out),
        &["rna.fa:4", "'U'", "column 4", "\"r\""],
    );
    assert!(!out.exists(), "a failed embed left its --out folder");
}

/// CSV, TSV and Parquet sequence tables refuse U, `-` and `*` where the table is read: file,
/// line (CSV/TSV) or row (Parquet), the character, its position and the column.
#[test]
fn sequence_tables_refuse_non_dna_symbols_naming_file_row_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "rna.csv", "id,sequence\nok,ACGT\nr,ACGU\n");
    refused(
        &["data", "info", s(&csv)],
        &["rna.csv:3", "'U'", "position 4", "\"sequence\"", "RNA?"],
    );
    let tsv = write(dir.path(), "gap.tsv", "id\tsequence\ng\tAC-GT\n");
    refused(
        &["data", "info", s(&tsv)],
        &["gap.tsv:2", "'-'", "position 3", "alignment?"],
    );
    let parquet = dir.path().join("stop.parquet");
    write_parquet(
        &parquet,
        &[
            ("id", vec!["a", "b", "c"]),
            ("sequence", vec!["ACGT", "acgtn", "ACG*T"]),
        ],
    );
    let out = dir.path().join("embedded");
    refused_embed(
        s(&fixture_model("tiny-cls-k3")),
        s(&parquet),
        s(&out),
        &["stop.parquet", "row 3", "'*'", "position 4"],
    );
    assert!(!out.exists(), "a failed embed left its --out folder");
    // IUPAC codes in either case still read from a table.
    let iupac = write(
        dir.path(),
        "iupac.csv",
        "id,sequence\ni,ACGTNRYSWKMBDHVacgtnryswkmbdhv\n",
    );
    let output = genolens(&["data", "info", s(&iupac)]);
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn zero_limits_and_batch_sizes_are_refused_and_failed_embeds_leave_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let out = dir.path().join("study");
    let (reports, out) = (s(&reports), s(&out));
    let commands: [&[&str]; 8] = [
        &["experiment", "attention-entropy", "--reports", reports],
        &["patch", "--data", "pairs.parquet", "--out", out],
        &["attention", "--data", "s.parquet", "--out", out],
        &["attribute", "--data", "s.parquet", "--out", out],
        &["motifs", "--data", "s.parquet", "--out", out],
        &["sae", "train", "--out", out],
        &["sae", "analyze", "--sae", "sae", "--out", out],
        &["probe", "--out", out],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--limit", "0"]);
        refused(&args, &["--limit", "'0'", "at least 1"]);
    }
    assert!(!dir.path().join("reports").exists() && !dir.path().join("study").exists());

    let model = fixture_model("tiny-cls-k6");
    let fasta = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sequences.fa");
    let embedded = dir.path().join("embedded");
    refused(
        &[
            "embed",
            "--model",
            s(&model),
            "--data",
            s(&fasta),
            "--batch-size",
            "0",
            "--out",
            s(&embedded),
        ],
        &["embed --batch-size 0", "at least 1"],
    );
    assert!(!embedded.exists());

    // A failed embed (no sequences) removes the folders it created, and only those.
    let empty = write(dir.path(), "empty.fa", "");
    let nested = dir.path().join("new/deeper/embedded");
    refused_embed(
        s(&model),
        s(&empty),
        s(&nested),
        &["empty.fa", "no sequences"],
    );
    assert!(
        !dir.path().join("new").exists(),
        "an empty --out was left behind"
    );
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    refused_embed(s(&model), s(&empty), s(&existing), &["no sequences"]);
    assert!(
        existing.is_dir(),
        "a folder the run did not create must stay"
    );
}

/// Fuzzing regression (fuzz/parquet_table): a Parquet file whose column chunk metadata gives a
/// negative start made the `parquet` crate assert; it is now an error naming the file.
#[test]
fn a_parquet_file_the_reader_panics_on_is_an_error_naming_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz/parquet-negative-column-start.parquet");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("embed");
    let message = refused_embed(
        s(&fixture_model("tiny-cls-k3")),
        s(&path),
        s(&out),
        &[
            "parquet-negative-column-start.parquet",
            "malformed Parquet file",
        ],
    );
    assert!(!message.contains("panicked"), "{message}");
}

/// Fuzzing regression (fuzz/parquet_table): a 4 KiB Parquet file whose dictionary page header
/// claims far more entries than the page holds made the reader allocate gigabytes; it is now
/// refused before anything is decoded, naming the file, the column and the claim.
#[test]
fn a_parquet_dictionary_claiming_more_than_it_holds_is_refused() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/parquet-oom-open.parquet");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("embed");
    refused_embed(
        s(&fixture_model("tiny-cls-k3")),
        s(&path),
        s(&out),
        &[
            "parquet-oom-open.parquet",
            "malformed Parquet file",
            "dictionary page at byte",
        ],
    );
    assert!(!out.exists(), "a refused run leaves no --out folder");
}

/// A Parquet table compressed with a codec genolens does not build (zstd, polars' default) is
/// refused naming the column, the codec and how to write one it reads; Snappy, gzip and
/// uncompressed tables, with data page v1 and v2 (small pages: many headers to check), read alike.
#[test]
fn parquet_codecs_read_or_are_refused_naming_the_codec() {
    use parquet::basic::{Compression, GzipLevel};
    use parquet::file::properties::{WriterProperties, WriterVersion};
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
    let sequences: Vec<String> = (0..300)
        .map(|i| ["ACGT", "GGCA", "TTAN"][i % 3].repeat(5 + i % 7))
        .collect();
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("sequence", arrow_schema::DataType::Utf8, false),
    ]));
    let batch = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow_array::StringArray::from(ids)),
            Arc::new(arrow_array::StringArray::from(sequences)),
        ],
    )
    .unwrap();
    let codecs = [
        ("plain", Compression::UNCOMPRESSED),
        ("snappy", Compression::SNAPPY),
        ("gzip", Compression::GZIP(GzipLevel::default())),
    ];
    let mut counts = Vec::new();
    for (name, codec) in codecs {
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            let path = dir.path().join(format!("{name}-{version:?}.parquet"));
            let properties = WriterProperties::builder()
                .set_compression(codec)
                .set_writer_version(version)
                .set_data_page_row_count_limit(64)
                .build();
            let file = std::fs::File::create(&path).unwrap();
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(properties))
                    .unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let output = genolens(&["data", "info", s(&path)]);
            assert!(output.status.success(), "{name}: {}", text(&output));
            counts.push(text(&output));
        }
    }
    assert_eq!(counts.len(), 6);
    assert!(counts
        .windows(2)
        .all(|pair| pair[0].lines().skip(1).eq(pair[1].lines().skip(1))));
    // zstd (this build's parquet crate has no zstd, so the file was written by pyarrow).
    let zstd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parquet-zstd.parquet");
    refused(
        &["data", "info", s(&zstd)],
        &[
            "parquet-zstd.parquet",
            "column \"id\"",
            "compressed with zstd",
            "compression=\"snappy\"",
        ],
    );
}

/// A bad `--device` names the option, not a hook.
#[test]
fn a_bad_device_names_the_option() {
    let message = refused(
        &[
            "--device",
            "gpu",
            "inspect",
            "--model",
            s(&fixture_model("tiny-cls-k3")),
        ],
        &["--device gpu", "expected cpu, cuda or cuda:N"],
    );
    assert!(!message.contains("hook"), "{message}");
}
