//! Motifs: MEME/JASPAR matrices, log-odds scoring with exact p-values, FIMO-style scanning, and
//! TOMTOM-style motif comparison.

pub mod meme;
pub mod pwm;
pub mod scan;
pub mod tomtom;

pub use meme::{read_meme, Motif};
pub use pwm::{LogOdds, PValueTable, ScanOptions};
pub use scan::{letter_codes, MotifHit, MotifScanner, Strand};
pub use tomtom::{tomtom, ColumnSimilarity, TomtomMatch, TomtomOptions};
