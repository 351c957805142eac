//! Outputs: long-format Parquet tables with provenance, run.json, atomic writes.

pub mod atomic;
pub mod columns;
pub mod provenance;
pub mod table;

pub use atomic::write_atomic;
pub use columns::{ColumnValue, TableRow};
pub use provenance::{DataFile, Provenance, RunRecord};
pub use table::TableWriter;

/// Re-exports used by the [`table_row!`](crate::table_row) macro.
pub mod reexports {
    pub use arrow_array::builder::ArrayBuilder;
    pub use arrow_schema::Field;
}
