//! Atomic file writes: write a sibling temp file, then rename, so readers never see half a file.

use std::path::{Path, PathBuf};

use crate::error::{GenolensError, Result};

/// The temp path used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically (creating parent folders).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| GenolensError::io(parent, e))?;
    }
    let temp = temp_path(path);
    crate::interrupt::register(&temp);
    if let Err(e) = std::fs::write(&temp, bytes) {
        let _ = std::fs::remove_file(&temp);
        crate::interrupt::unregister(&temp);
        return Err(GenolensError::io(&temp, e));
    }
    crate::interrupt::commit(&temp, path)
}
