//! The motif study: attributions of each class's sequences → seqlets → motifs → TOMTOM against
//! JASPAR (seed 001's TF-MoDISco → TOMTOM step), with logos of every motif beside its best match.
//!
//! Map: the attribution tables, `seqlets.parquet`, `motifs.parquet`, `motif_matches.parquet`,
//! `motif_columns.parquet` and `motifs.meme` (the discovered PWMs, for MEME-suite tools).
//! Reduce: logos and the report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::analysis::attribution::TargetKind;
use crate::analysis::attribution_study::{attribute_examples, AttributionStudy, Method};
use crate::analysis::faithfulness_study::{
    classifier_and_examples, method_columns, scores_by_sequence,
};
use crate::analysis::motifs::{
    cluster_seqlets, recursive_seqlets, ClusterSettings, DiscoveredMotif, SeqletSettings,
};
use crate::experiment::{ExperimentContext, ReduceContext};
use crate::motif::tomtom::{q_values, reverse_complement, tomtom, TomtomOptions};
use crate::motif::{read_meme, Motif, Strand};
use crate::report::figures::{stacked_logos, SequenceLogo};
use crate::report::html::HtmlTable;
use crate::report::ParquetTable;

/// What the motif study runs.
#[derive(Debug, Clone)]
pub struct MotifStudy {
    /// Attribution settings (model, data, methods; each sequence explains its own class).
    pub attribution: AttributionStudy,
    /// Sequences per class when `--limit` is not given.
    pub per_class: usize,
    /// Seqlet calling.
    pub seqlets: SeqletSettings,
    /// Clustering and trimming.
    pub clusters: ClusterSettings,
    /// Motif comparison.
    pub tomtom: TomtomOptions,
    /// MEME file of known motifs.
    pub database: PathBuf,
    /// Matches kept per motif.
    pub top_matches: usize,
    /// Motif families the study expects per class: the report says plainly whether each was
    /// found (q < 0.05) and what was measured about its site.
    pub expected: Vec<ExpectedFamily>,
}

/// A motif family a class should show, with a consensus site to look for.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedFamily {
    /// Class (label) whose sequences should show it.
    pub class: i64,
    /// Family name for the report (e.g. `POU`).
    pub family: String,
    /// A database motif belongs to the family when its name starts with one of these
    /// (case-insensitive).
    pub name_prefixes: Vec<String>,
    /// A consensus site of the family, looked for on both strands.
    pub site: String,
}

crate::table_row! {
    /// Per method and expected family: the best family match among the class's motifs (q over
    /// the database), and where the family's site occurs: in how many of the class's sequences,
    /// and how many seqlets overlap an occurrence.
    pub struct ExpectedFamilyRow {
        pub method: String,
        pub class: i64,
        pub family: String,
        pub site: String,
        pub sequences: i64,
        pub sequences_with_site: i64,
        pub seqlets: i64,
        pub seqlets_on_site: i64,
        pub best_motif_id: Option<String>,
        pub best_jaspar_id: Option<String>,
        pub best_jaspar_name: Option<String>,
        pub best_q_value: Option<f64>,
        pub found: String,
    }
}

/// Start positions of `site` and of its reverse complement in `sequence`.
fn site_occurrences(sequence: &[u8], site: &[u8]) -> Vec<usize> {
    let reverse = crate::datasets::genome::reverse_complement(site);
    sequence
        .windows(site.len())
        .enumerate()
        .filter(|(_, w)| *w == site || *w == reverse.as_slice())
        .map(|(i, _)| i)
        .collect()
}

impl MotifStudy {
    /// ISM and AttnLRP on `model`/`data`, 300 sequences per class, JASPAR 2024 vertebrates.
    pub fn new(model: &str, data: impl Into<PathBuf>) -> Self {
        let mut attribution = AttributionStudy::new(model, data);
        attribution.methods = vec![Method::Ism, Method::AttnLrp];
        attribution.target_label = true;
        attribution.target_kind = TargetKind::Logit;
        attribution.logos = 0;
        MotifStudy {
            attribution,
            per_class: 300,
            seqlets: SeqletSettings::default(),
            clusters: ClusterSettings::default(),
            tomtom: TomtomOptions::default(),
            database: concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/data/jaspar/JASPAR2024_CORE_vertebrates.meme"
            )
            .into(),
            top_matches: 5,
            expected: Vec::new(),
        }
    }
}

crate::table_row! {
    /// One seqlet: its sequence, span (0-based, half-open), attribution sum and p-value, and the
    /// motif it joined (null when its cluster was too small) on which strand.
    pub struct SeqletRow {
        pub method: String,
        pub class: i64,
        pub sequence_id: String,
        pub start: i64,
        pub end: i64,
        pub attribution: f64,
        pub p_value: f64,
        pub motif_id: Option<String>,
        pub strand: Option<String>,
    }
}

crate::table_row! {
    /// One discovered motif (after trimming).
    pub struct MotifRow {
        pub motif_id: String,
        pub method: String,
        pub class: i64,
        pub seqlet_count: i64,
        pub width: i64,
        pub consensus: String,
        pub mean_information: f64,
    }
}

crate::table_row! {
    /// One of a motif's best matches in the database: `offset` is the database motif's column
    /// (on `strand`) facing the discovered motif's first column; q over all database motifs.
    pub struct MotifMatchRow {
        pub motif_id: String,
        pub method: String,
        pub class: i64,
        pub seqlet_count: i64,
        pub rank: i64,
        pub jaspar_id: String,
        pub jaspar_name: String,
        pub offset: i64,
        pub overlap: i64,
        pub strand: String,
        pub score: f64,
        pub p_value: f64,
        pub q_value: f64,
    }
}

crate::table_row! {
    /// Matrices for the logos: a discovered motif's `pwm` and `cwm` columns, and its best
    /// match's columns (`jaspar`, on the matched strand) shifted to face them.
    pub struct MotifColumnRow {
        pub motif_id: String,
        pub matrix: String,
        pub column: i64,
        pub a: f64,
        pub c: f64,
        pub g: f64,
        pub t: f64,
    }
}

/// The map step.
pub fn run_motifs(context: &mut ExperimentContext, study: &MotifStudy) -> anyhow::Result<()> {
    if context.is_shard() {
        bail!("motif discovery pools every sequence's attributions: run it unsharded");
    }
    let per_class = context.take_limit().unwrap_or(study.per_class);
    context.set_config("per_class", per_class);
    context.set_config("seqlet_threshold", study.seqlets.threshold);
    context.set_config(
        "seqlet_lengths",
        format!("{}-{}", study.seqlets.min_length, study.seqlets.max_length),
    );
    context.set_config("cluster_similarity", study.clusters.similarity);
    context.set_config("min_seqlets", study.clusters.min_seqlets);
    context.set_config("min_information", study.clusters.min_information);
    context.set_config("tomtom_similarity", study.tomtom.similarity.name());
    context.set_config("tomtom_min_overlap", study.tomtom.min_overlap);
    context.set_config("database", study.database.display().to_string());
    let database = read_meme(&study.database)?;
    let targets: Vec<Vec<[f64; 4]>> = database.iter().map(|m| m.columns.clone()).collect();

    let attribution = &study.attribution;
    let (loaded, examples) =
        classifier_and_examples(context, attribution, per_class, "motif discovery")?;
    if examples.is_empty() {
        bail!("no labelled sequences in the split");
    }
    attribute_examples(context, attribution, &loaded, examples.clone())?;
    let scores = scores_by_sequence(
        &context.out_dir.join("nucleotide_attributions.parquet"),
        "score",
    )?;

    let mut seqlet_table = context.table::<SeqletRow>("seqlets")?;
    let mut motif_table = context.table::<MotifRow>("motifs")?;
    let mut match_table = context.table::<MotifMatchRow>("motif_matches")?;
    let mut column_table = context.table::<MotifColumnRow>("motif_columns")?;
    let mut expected_table = context.table::<ExpectedFamilyRow>("expected_families")?;
    let mut discovered: Vec<Motif> = Vec::new();
    let mut discovered_sites: Vec<usize> = Vec::new();
    let mut classes: Vec<i64> = examples
        .iter()
        .map(|e| parse_class(e.label.as_deref().unwrap_or_default(), &e.id))
        .collect::<anyhow::Result<_>>()?;
    classes.sort_unstable();
    classes.dedup();
    for method in method_columns(&attribution.methods) {
        for &class in &classes {
            let members: Vec<&crate::data::Example> = examples
                .iter()
                .filter(|e| e.label.as_deref().and_then(|l| l.parse::<i64>().ok()) == Some(class))
                .collect();
            let mut sequences: Vec<Vec<u8>> = Vec::new();
            let mut values: Vec<Vec<f64>> = Vec::new();
            for e in &members {
                let Some(v) = scores.get(&(e.id.clone(), method.clone())) else {
                    bail!("nucleotide_attributions: no {method} scores for {}", e.id);
                };
                if v.len() != e.sequence.len() {
                    bail!(
                        "nucleotide_attributions: {} has {} {method} scores for {} nucleotides",
                        e.id,
                        v.len(),
                        e.sequence.len()
                    );
                }
                sequences.push(e.sequence.to_ascii_uppercase().into_bytes());
                values.push(v.clone());
            }
            let seqlets = recursive_seqlets(&values, &study.seqlets);
            let refs: Vec<&[u8]> = sequences.iter().map(|s| s.as_slice()).collect();
            let motifs = cluster_seqlets(&seqlets, &refs, &values, &study.clusters);
            tracing::info!(
                "{method}, class {class}: {} seqlets, {} motifs with ≥ {} seqlets",
                seqlets.len(),
                motifs.len(),
                study.clusters.min_seqlets
            );
            let ids: Vec<String> = (0..motifs.len())
                .map(|i| format!("{method}_class{class}_m{i}"))
                .collect();
            // Which motif each seqlet joined.
            let mut joined: BTreeMap<(usize, usize), (String, Strand)> = BTreeMap::new();
            for (id, motif) in ids.iter().zip(&motifs) {
                for m in &motif.members {
                    joined.insert((m.seqlet.sequence, m.seqlet.start), (id.clone(), m.strand));
                }
            }
            for s in &seqlets {
                let found = joined.get(&(s.sequence, s.start));
                seqlet_table.write(&SeqletRow {
                    method: method.clone(),
                    class,
                    sequence_id: members[s.sequence].id.clone(),
                    start: s.start as i64,
                    end: s.end as i64,
                    attribution: s.attribution,
                    p_value: s.p_value,
                    motif_id: found.map(|f| f.0.clone()),
                    strand: found.map(|f| f.1.symbol().to_string()),
                })?;
            }
            let queries: Vec<Vec<[f64; 4]>> = motifs.iter().map(|m| m.pwm.clone()).collect();
            let rows = if motifs.is_empty() {
                Vec::new()
            } else {
                tomtom(&queries, &targets, &study.tomtom)
            };
            // Per motif, the BH q-value of every database motif.
            let qs: Vec<Vec<f64>> = rows.iter().map(|m| q_values(m)).collect();
            for expected in study.expected.iter().filter(|e| e.class == class) {
                let site = expected.site.to_ascii_uppercase().into_bytes();
                let occurrences: Vec<Vec<usize>> = sequences
                    .iter()
                    .map(|s| site_occurrences(s, &site))
                    .collect();
                let on_site = seqlets
                    .iter()
                    .filter(|s| {
                        occurrences[s.sequence]
                            .iter()
                            .any(|&o| o < s.end && o + site.len() > s.start)
                    })
                    .count();
                let in_family = |name: &str| {
                    let name = name.to_ascii_lowercase();
                    expected
                        .name_prefixes
                        .iter()
                        .any(|p| name.starts_with(&p.to_ascii_lowercase()))
                };
                let mut best: Option<(usize, usize, f64)> = None;
                for (m, (matches, q)) in rows.iter().zip(&qs).enumerate() {
                    for (t, found) in matches.iter().enumerate() {
                        if in_family(&database[found.target].name)
                            && best.is_none_or(|b| q[t] < b.2)
                        {
                            best = Some((m, found.target, q[t]));
                        }
                    }
                }
                expected_table.write(&ExpectedFamilyRow {
                    method: method.clone(),
                    class,
                    family: expected.family.clone(),
                    site: expected.site.clone(),
                    sequences: sequences.len() as i64,
                    sequences_with_site: occurrences.iter().filter(|o| !o.is_empty()).count()
                        as i64,
                    seqlets: seqlets.len() as i64,
                    seqlets_on_site: on_site as i64,
                    best_motif_id: best.map(|b| ids[b.0].clone()),
                    best_jaspar_id: best.map(|b| database[b.1].id.clone()),
                    best_jaspar_name: best.map(|b| database[b.1].name.clone()),
                    best_q_value: best.map(|b| b.2),
                    found: if best.is_some_and(|b| b.2 < 0.05) {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                })?;
            }
            for (((id, motif), matches), q) in ids.iter().zip(&motifs).zip(&rows).zip(&qs) {
                write_motif(
                    &mut motif_table,
                    &mut column_table,
                    &mut match_table,
                    (id, &method, class),
                    motif,
                    (matches, q),
                    &database,
                    study.top_matches,
                )?;
                discovered.push(Motif {
                    id: id.clone(),
                    name: motif.consensus(),
                    columns: motif.pwm.clone(),
                });
                discovered_sites.push(motif.members.len());
            }
        }
    }
    seqlet_table.finish()?;
    motif_table.finish()?;
    match_table.finish()?;
    column_table.finish()?;
    expected_table.finish()?;
    let meme = context.out_dir.join("motifs.meme");
    crate::report::atomic::write_atomic(
        &meme,
        crate::motif::meme::meme_text(&discovered, Some(&discovered_sites)).as_bytes(),
    )?;
    Ok(())
}

fn parse_class(label: &str, id: &str) -> anyhow::Result<i64> {
    label
        .parse()
        .with_context(|| format!("{id}: the label {label:?} is not a class id"))
}

#[allow(clippy::too_many_arguments)]
fn write_motif(
    motif_table: &mut crate::report::TableWriter<MotifRow>,
    column_table: &mut crate::report::TableWriter<MotifColumnRow>,
    match_table: &mut crate::report::TableWriter<MotifMatchRow>,
    (id, method, class): (&String, &String, i64),
    motif: &DiscoveredMotif,
    (matches, q): (&[crate::motif::TomtomMatch], &[f64]),
    database: &[Motif],
    top: usize,
) -> anyhow::Result<()> {
    let seqlet_count = motif.members.len() as i64;
    motif_table.write(&MotifRow {
        motif_id: id.clone(),
        method: method.clone(),
        class,
        seqlet_count,
        width: motif.pwm.len() as i64,
        consensus: motif.consensus(),
        mean_information: motif.information.iter().sum::<f64>() / motif.information.len() as f64,
    })?;
    for (matrix, columns) in [("pwm", &motif.pwm), ("cwm", &motif.cwm)] {
        for (c, v) in columns.iter().enumerate() {
            column_table.write(&MotifColumnRow {
                motif_id: id.clone(),
                matrix: matrix.into(),
                column: c as i64,
                a: v[0],
                c: v[1],
                g: v[2],
                t: v[3],
            })?;
        }
    }
    let mut order: Vec<usize> = (0..matches.len()).collect();
    order.sort_by(|&a, &b| {
        matches[a]
            .p_value
            .total_cmp(&matches[b].p_value)
            .then(a.cmp(&b))
    });
    for (rank, &i) in order.iter().take(top).enumerate() {
        let m = &matches[i];
        let target = &database[m.target];
        match_table.write(&MotifMatchRow {
            motif_id: id.clone(),
            method: method.clone(),
            class,
            seqlet_count,
            rank: rank as i64 + 1,
            jaspar_id: target.id.clone(),
            jaspar_name: target.name.clone(),
            offset: m.offset,
            overlap: m.overlap as i64,
            strand: m.strand.symbol().into(),
            score: m.score,
            p_value: m.p_value,
            q_value: q[i],
        })?;
        if rank == 0 {
            // The best match on its strand, in the discovered motif's columns (query column 0
            // faces target column `offset`).
            let columns = match m.strand {
                Strand::Forward => target.columns.clone(),
                Strand::Reverse => reverse_complement(&target.columns),
            };
            for (k, v) in columns.iter().enumerate() {
                column_table.write(&MotifColumnRow {
                    motif_id: id.clone(),
                    matrix: "jaspar".into(),
                    column: k as i64 - m.offset,
                    a: v[0],
                    c: v[1],
                    g: v[2],
                    t: v[3],
                })?;
            }
        }
    }
    Ok(())
}

/// The reduce step: logos (discovered PWM and CWM beside the best JASPAR match) and the report.
pub fn reduce_motifs(context: &mut ReduceContext) -> anyhow::Result<()> {
    let motifs = context.read_table("motifs")?;
    let matches = context.read_table("motif_matches")?;
    let columns = context.read_table("motif_columns")?;
    let seqlets = context.read_table("seqlets")?;
    let ids = motifs.strings("motif_id")?;
    let (methods, classes) = (motifs.strings("method")?, motifs.integers("class")?);
    let counts = motifs.integers("seqlet_count")?;
    let consensus = motifs.strings("consensus")?;
    // Best match per motif.
    let mut best: BTreeMap<String, (String, String, String, f64, f64)> = BTreeMap::new();
    {
        let (mid, rank) = (matches.strings("motif_id")?, matches.integers("rank")?);
        let (jid, jname) = (
            matches.strings("jaspar_id")?,
            matches.strings("jaspar_name")?,
        );
        let strand = matches.strings("strand")?;
        let (p, q) = (matches.f64s("p_value")?, matches.f64s("q_value")?);
        for i in 0..matches.rows() {
            if rank[i] == 1 {
                best.insert(
                    mid[i].clone(),
                    (
                        jid[i].clone(),
                        jname[i].clone(),
                        strand[i].clone(),
                        p[i],
                        q[i],
                    ),
                );
            }
        }
    }
    let matrices = motif_matrices(&columns)?;
    let seqlet_methods = seqlets.strings("method")?;
    let seqlet_classes = seqlets.integers("class")?;
    let mut seqlet_counts: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for i in 0..seqlets.rows() {
        *seqlet_counts
            .entry((seqlet_methods[i].clone(), seqlet_classes[i]))
            .or_default() += 1;
    }

    let significant = best.values().filter(|b| b.4 < 0.05).count();
    context.set_title(
        "Motifs from attributions vs JASPAR",
        &format!(
            "{} motifs from {} seqlets; {significant} match a JASPAR motif at q < 0.05.",
            ids.len(),
            seqlets.rows()
        ),
    );
    expected_paragraphs(context)?;
    let mut table = HtmlTable::new(
        "Seqlets per attribution method and class.",
        &["method", "class", "seqlets", "motifs"],
    );
    for ((method, class), n) in &seqlet_counts {
        let motif_count = (0..ids.len())
            .filter(|&i| &methods[i] == method && classes[i] == *class)
            .count();
        table.row(vec![
            method.clone(),
            class.to_string(),
            n.to_string(),
            motif_count.to_string(),
        ]);
    }
    context.report().table(table);
    let mut table = HtmlTable::new(
        "Discovered motifs and their best JASPAR match (TOMTOM; q over all database motifs).",
        &[
            "motif",
            "seqlets",
            "consensus",
            "best match",
            "strand",
            "p",
            "q",
        ],
    );
    for i in 0..ids.len() {
        let (jaspar, strand, p, q) = match best.get(&ids[i]) {
            Some(b) => (format!("{} {}", b.0, b.1), b.2.clone(), b.3, b.4),
            None => ("—".into(), "".into(), f64::NAN, f64::NAN),
        };
        table.row(vec![
            ids[i].clone(),
            counts[i].to_string(),
            consensus[i].clone(),
            jaspar,
            strand,
            crate::report::figures::format_number(p),
            crate::report::figures::format_number(q),
        ]);
    }
    context.report().table(table);
    for i in 0..ids.len() {
        let Some(m) = matrices.get(&ids[i]) else {
            continue;
        };
        // Every panel spans the same columns, so the match sits under the motif.
        let width = m.pwm.len() as i64;
        let (first, last) = match &m.jaspar {
            Some((f, j)) => ((*f).min(0), (f + j.len() as i64).max(width)),
            None => (0, width),
        };
        let pad = |start: i64, heights: Vec<[f64; 4]>| -> Vec<[f64; 4]> {
            let mut out = vec![[0.0; 4]; (last - first) as usize];
            for (k, h) in heights.into_iter().enumerate() {
                out[(start - first) as usize + k] = h;
            }
            out
        };
        let mut panels = vec![
            SequenceLogo {
                name: format!("motif_{}.svg", ids[i]),
                title: format!("{} ({} seqlets): PWM", ids[i], counts[i]),
                y_label: "bits".into(),
                heights: pad(0, information_heights(&m.pwm)),
                first_position: first,
            },
            SequenceLogo {
                name: format!("motif_{}.svg", ids[i]),
                title: "CWM (mean attribution)".into(),
                y_label: "attribution".into(),
                heights: pad(0, m.cwm.clone()),
                first_position: first,
            },
        ];
        if let (Some((start, jaspar)), Some(b)) = (&m.jaspar, best.get(&ids[i])) {
            panels.push(SequenceLogo {
                name: format!("motif_{}.svg", ids[i]),
                title: format!(
                    "best match {} {} (strand {}, q {})",
                    b.0,
                    b.1,
                    b.2,
                    crate::report::figures::format_number(b.4)
                ),
                y_label: "bits".into(),
                heights: pad(*start, information_heights(jaspar)),
                first_position: first,
            });
        }
        let file = format!("motif_{}.svg", ids[i]);
        let svg = stacked_logos(&file, &panels)?;
        context.figure(
            &file,
            &svg,
            &format!(
                "{}: the discovered motif (information and mean attribution per base) above its best JASPAR match, aligned by TOMTOM's offset.",
                ids[i]
            ),
        )?;
    }
    Ok(())
}

/// One plain sentence per expected family and method: found or not, and what was measured.
fn expected_paragraphs(context: &mut ReduceContext) -> anyhow::Result<()> {
    let Ok(table) = context.read_table("expected_families") else {
        return Ok(());
    };
    let (method, class, family, site) = (
        table.strings("method")?,
        table.integers("class")?,
        table.strings("family")?,
        table.strings("site")?,
    );
    let (sequences, with_site) = (
        table.integers("sequences")?,
        table.integers("sequences_with_site")?,
    );
    let (seqlets, on_site) = (
        table.integers("seqlets")?,
        table.integers("seqlets_on_site")?,
    );
    let (motif, name, q) = (
        table.optional_strings("best_motif_id")?,
        table.optional_strings("best_jaspar_name")?,
        table.optional_f64s("best_q_value")?,
    );
    for i in 0..table.rows() {
        let share = |a: i64, b: i64| {
            if b > 0 {
                format!("{:.0} %", 100.0 * a as f64 / b as f64)
            } else {
                "—".into()
            }
        };
        let best = match (&motif[i], &name[i], q[i]) {
            (Some(m), Some(n), Some(q)) => format!(
                "the best {} match is {n} for {m} (q {})",
                family[i],
                crate::report::figures::format_number(q)
            ),
            _ => format!("no motif of this class has a {} match", family[i]),
        };
        let verdict = if q[i].is_some_and(|q| q < 0.05) {
            "found"
        } else {
            "not found at q < 0.05"
        };
        context.report().paragraph(&format!(
            "Class {} by {}: {} family {verdict}; {best}. Its site {} (either strand) is in {} of \
             the class's {} sequences, and {} of {} seqlets ({}) overlap it.",
            class[i],
            method[i],
            family[i],
            site[i],
            share(with_site[i], sequences[i]),
            sequences[i],
            on_site[i],
            seqlets[i],
            share(on_site[i], seqlets[i]),
        ));
    }
    Ok(())
}

struct MotifMatrices {
    pwm: Vec<[f64; 4]>,
    cwm: Vec<[f64; 4]>,
    /// First column (in the motif's coordinates) and the matched JASPAR columns.
    jaspar: Option<(i64, Vec<[f64; 4]>)>,
}

fn motif_matrices(table: &ParquetTable) -> anyhow::Result<BTreeMap<String, MotifMatrices>> {
    let (ids, matrix, column) = (
        table.strings("motif_id")?,
        table.strings("matrix")?,
        table.integers("column")?,
    );
    let values = [
        table.f64s("a")?,
        table.f64s("c")?,
        table.f64s("g")?,
        table.f64s("t")?,
    ];
    let mut out: BTreeMap<String, MotifMatrices> = BTreeMap::new();
    for i in 0..table.rows() {
        let entry = out.entry(ids[i].clone()).or_insert(MotifMatrices {
            pwm: Vec::new(),
            cwm: Vec::new(),
            jaspar: None,
        });
        let v = [values[0][i], values[1][i], values[2][i], values[3][i]];
        match matrix[i].as_str() {
            "pwm" => entry.pwm.push(v),
            "cwm" => entry.cwm.push(v),
            _ => {
                let j = entry.jaspar.get_or_insert((column[i], Vec::new()));
                j.1.push(v);
            }
        }
    }
    Ok(out)
}

/// Letter heights of an information-content logo: p × IC per column.
fn information_heights(columns: &[[f64; 4]]) -> Vec<[f64; 4]> {
    columns
        .iter()
        .map(|c| {
            let ic = crate::analysis::motifs::information_content(c);
            c.map(|p| p * ic)
        })
        .collect()
}
