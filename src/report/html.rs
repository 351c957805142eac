//! `report.html`: one self-contained page per run (figures inline as SVG, the key tables as HTML
//! tables, what was run and its provenance, links to the Parquet files). No scripts, no network:
//! it opens from a laptop, a cluster's file browser or an e-mail attachment alike.

use std::fmt::Write;

use crate::report::figures::format_number;
use crate::report::provenance::RunRecord;

/// A table shown in the report (the Parquet file holds the full data).
#[derive(Debug, Clone, Default)]
pub struct HtmlTable {
    /// Caption above the table.
    pub caption: String,
    /// Column names.
    pub header: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl HtmlTable {
    /// A table with a caption and column names.
    pub fn new(caption: &str, header: &[&str]) -> Self {
        HtmlTable {
            caption: caption.to_string(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

/// A number as a table cell (3 significant digits).
pub fn cell(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else {
        format_number(value)
    }
}

#[derive(Debug, Clone)]
enum Block {
    Heading(String),
    Paragraph(String),
    Figure {
        file: String,
        svg: String,
        caption: String,
    },
    Table(HtmlTable),
}

/// The content of a report, in reading order; rendered with the run's provenance and outputs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    title: String,
    summary: String,
    blocks: Vec<Block>,
}

impl Report {
    /// A report titled `title`, whose first paragraph says what the study asks.
    pub fn new(title: &str, summary: &str) -> Self {
        Report {
            title: title.to_string(),
            summary: summary.to_string(),
            blocks: Vec::new(),
        }
    }

    /// Replaces the title and the opening summary, keeping the blocks.
    pub fn set_title(&mut self, title: &str, summary: &str) {
        self.title = title.to_string();
        self.summary = summary.to_string();
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) {
        self.blocks.push(Block::Heading(text.to_string()));
    }

    /// A paragraph of plain text.
    pub fn paragraph(&mut self, text: &str) {
        self.blocks.push(Block::Paragraph(text.to_string()));
    }

    /// A figure: its SVG inline, a caption, and a link to `figures/<file>`.
    pub fn figure(&mut self, file: &str, svg: &str, caption: &str) {
        self.blocks.push(Block::Figure {
            file: file.to_string(),
            svg: svg.to_string(),
            caption: caption.to_string(),
        });
    }

    /// A table.
    pub fn table(&mut self, table: HtmlTable) {
        self.blocks.push(Block::Table(table));
    }

    /// Number of figures.
    pub fn figure_count(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| matches!(b, Block::Figure { .. }))
            .count()
    }

    /// The whole page.
    pub fn render(&self, record: &RunRecord) -> String {
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
             <h1>{}</h1>\n<p class=\"summary\">{}</p>\n",
            escape(&self.title),
            escape(&self.title),
            escape(&self.summary),
        );
        let _ = writeln!(
            html,
            "<p class=\"run\">{} · seed {} · model <code>{}</code> · finished {}</p>",
            escape(&record.command),
            record.provenance.seed,
            escape(record.provenance.model_id.as_deref().unwrap_or("none")),
            escape(&record.finished_at),
        );
        for block in &self.blocks {
            match block {
                Block::Heading(text) => {
                    let _ = writeln!(html, "<h2>{}</h2>", escape(text));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(html, "<p>{}</p>", escape(text));
                }
                Block::Figure { file, svg, caption } => {
                    let _ = writeln!(
                        html,
                        "<figure>\n{}\n<figcaption>{} <a href=\"figures/{}\">{}</a></figcaption>\n</figure>",
                        strip_xml_declaration(svg),
                        escape(caption),
                        escape(file),
                        escape(file),
                    );
                }
                Block::Table(table) => render_table(&mut html, table),
            }
        }
        render_outputs(&mut html, record);
        render_provenance(&mut html, record);
        html.push_str("</main>\n</body>\n</html>\n");
        html
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
color:#222;background:#fafafa;margin:0}main{max-width:1100px;margin:0 auto;padding:24px 32px;\
background:#fff}h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;\
border-bottom:1px solid #ddd;padding-bottom:.2em}.summary{font-size:1.05em;color:#333}\
.run{color:#666;font-size:.9em}figure{margin:1em 0}figure svg{max-width:100%;height:auto}\
figcaption{color:#444;font-size:.92em}table{border-collapse:collapse;margin:.6em 0;\
font-size:.9em}caption{text-align:left;font-weight:600;padding:.3em 0}th,td{border:1px solid \
#ddd;padding:3px 8px;text-align:right}th{background:#f0f0f0}td:first-child,th:first-child\
{text-align:left}td.text{text-align:left}code{font-size:.9em;background:#f3f3f3;padding:0 3px}";

fn render_table(html: &mut String, table: &HtmlTable) {
    let _ = write!(
        html,
        "<table>\n<caption>{}</caption>\n<tr>",
        escape(&table.caption)
    );
    for name in &table.header {
        let _ = write!(html, "<th>{}</th>", escape(name));
    }
    html.push_str("</tr>\n");
    for row in &table.rows {
        html.push_str("<tr>");
        for value in row {
            // Numbers right-aligned (digits line up), text left-aligned.
            let numeric = value
                .trim_start_matches(['-', '−', '+'])
                .starts_with(|c: char| c.is_ascii_digit());
            if numeric || value == "–" {
                let _ = write!(html, "<td>{}</td>", escape(value));
            } else {
                let _ = write!(html, "<td class=\"text\">{}</td>", escape(value));
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
}

fn render_outputs(html: &mut String, record: &RunRecord) {
    html.push_str("<h2>Files</h2>\n<ul>\n");
    for output in record.outputs.iter().filter(|o| !o.starts_with("figures/")) {
        let _ = writeln!(
            html,
            "<li><a href=\"{}\">{}</a></li>",
            escape(output),
            escape(output)
        );
    }
    html.push_str(
        "<li><a href=\"run.json\">run.json</a> (command, settings, provenance)</li>\n</ul>\n\
         <p>Read a table in Python with <code>pandas.read_parquet(\"&lt;file&gt;.parquet\")</code>, \
         in R with <code>arrow::read_parquet(\"&lt;file&gt;.parquet\")</code>.</p>\n",
    );
}

fn render_provenance(html: &mut String, record: &RunRecord) {
    let provenance = &record.provenance;
    let mut table = HtmlTable::new("Provenance", &["what", "value"]);
    let mut add = |key: &str, value: String| table.row(vec![key.to_string(), value]);
    add("command", record.command.clone());
    add("command line", provenance.command_line.join(" "));
    add("seed", provenance.seed.to_string());
    add(
        "model",
        provenance.model_id.clone().unwrap_or_else(|| "none".into()),
    );
    add(
        "model weights sha256",
        provenance.model_sha256.clone().unwrap_or_default(),
    );
    for data in &provenance.data {
        add(
            &format!("data {}", data.path),
            format!("sha256 {}", data.sha256),
        );
    }
    add("genolens", provenance.genolens_version.clone());
    add("git commit", provenance.git_commit.clone());
    if !provenance.matmul.is_empty() {
        add("matrix products", provenance.matmul.clone());
    }
    add("started", record.started_at.clone());
    add("finished", record.finished_at.clone());
    if let serde_json::Value::Object(config) = &record.config {
        for (key, value) in config {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            add(&format!("setting {key}"), text);
        }
    }
    html.push_str("<h2>What was run</h2>\n");
    render_table(html, &table);
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(start) => &svg[start..],
        None => svg,
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Provenance;

    #[test]
    fn a_report_holds_figures_tables_links_and_provenance() {
        let mut report = Report::new("Attention <entropy>", "How focused is [CLS]?");
        report.figure(
            "heat.svg",
            "<?xml version=\"1.0\"?><svg></svg>",
            "Mean entropy.",
        );
        let mut table = HtmlTable::new("Heads", &["layer", "head", "entropy"]);
        table.row(vec!["0".into(), "1".into(), cell(0.123456)]);
        report.table(table);
        let record = RunRecord {
            provenance: Provenance::current(5),
            command: "experiment attention-entropy".into(),
            config: serde_json::json!({"batch_size": 16}),
            started_at: "2026-12-01T00:00:00Z".into(),
            finished_at: "2026-12-01T00:01:00Z".into(),
            outputs: vec![
                "cls_attention_entropy.parquet".into(),
                "figures/heat.svg".into(),
            ],
        };
        let html = report.render(&record);
        assert!(html.contains("<h1>Attention &lt;entropy&gt;</h1>"));
        assert!(html.contains("<figure>\n<svg></svg>"));
        assert!(html.contains("<td>0.123</td>"));
        assert!(html.contains("href=\"cls_attention_entropy.parquet\""));
        assert!(html.contains("href=\"figures/heat.svg\""));
        assert!(html.contains("setting batch_size"));
        assert!(!html.contains("<?xml"));
    }
}
