//! Motifs: MEME/JASPAR matrices, log-odds scoring with exact p-values, and FIMO-style scanning.

pub mod meme;
pub mod pwm;
pub mod scan;

pub use meme::{read_meme, Motif};
pub use pwm::{LogOdds, PValueTable, ScanOptions};
pub use scan::{letter_codes, MotifHit, MotifScanner, Strand};
