//! Outputs: long-format Parquet tables with provenance, run.json, SVG figures and report.html,
//! all written atomically.

pub mod atomic;
pub mod columns;
pub mod figures;
pub mod html;
pub mod provenance;
pub mod read;
pub mod table;

pub use atomic::write_atomic;
pub use columns::{ColumnValue, TableRow};
pub use html::{HtmlTable, Report};
pub use provenance::{DataFile, Provenance, RunRecord};
pub use read::{concatenate_parquet, ParquetTable};
pub use table::TableWriter;

/// Re-exports used by the [`table_row!`](crate::table_row) macro.
pub mod reexports {
    pub use arrow_array::builder::ArrayBuilder;
    pub use arrow_schema::Field;
}
