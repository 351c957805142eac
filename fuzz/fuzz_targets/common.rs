//! Shared by the fuzz targets: the input is written to a file (in /dev/shm where there is one)
//! and read through the same path-based reader a user's file goes through.
#![allow(dead_code)]

use std::path::PathBuf;

/// Writes `data` to `<scratch>/<name>` and returns the path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("genolens-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// True when `data` starts with the gzip magic bytes.
pub fn gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// A committed file of the repository (tokenizers the targets need).
pub fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}
