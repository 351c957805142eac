//! Guards around the third-party Parquet reader for malformed input, both found by
//! `fuzz/parquet_table`:
//! - the `parquet` crate asserts on some impossible metadata: under [`parquet_guarded`] the panic
//!   becomes an error naming the file, and its message is not printed as a crash;
//! - a dictionary page whose header claims more values than its bytes can hold makes the reader
//!   allocate for that claim (gigabytes from a 4 KiB file): [`check_dictionary_pages`] refuses such
//!   a file before anything is decoded.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use parquet::basic::Type as PhysicalType;
use parquet::column::page::Page;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::{GenolensError, Result};

thread_local! {
    /// Set while a guarded call runs on this thread: its panics are reported as errors.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `read` on `path`; a panic inside it becomes a Parquet error naming the file.
pub fn parquet_guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    quiet_hook();
    let was = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(read));
    GUARDED.with(|g| g.set(was));
    result.unwrap_or_else(|payload| {
        let reason = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(GenolensError::ParquetRead {
            path: path.to_path_buf(),
            message: format!(
                "malformed Parquet file: the Parquet reader gave up ({reason}); is the file \
                 complete and written by a Parquet writer?"
            ),
        })
    })
}

/// Refuses a Parquet file with a dictionary page that claims more entries than its bytes hold.
///
/// A dictionary page is PLAIN-encoded, so every entry takes at least its physical width (a
/// BYTE_ARRAY entry its 4-byte length): `num_values × width ≤ page bytes` holds for every file a
/// writer makes. The `parquet` reader sizes the dictionary from the header's claim before it
/// decodes, so a false claim would be a multi-gigabyte allocation. Data pages are skipped
/// unread (their values are decoded in bounded batches); only dictionary pages are decompressed.
pub fn check_dictionary_pages(path: &Path) -> Result<()> {
    let malformed = |message: String| GenolensError::ParquetRead {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| GenolensError::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| malformed(format!("not a readable Parquet file: {e}")))?;
    for group in 0..reader.num_row_groups() {
        let row_group = reader
            .get_row_group(group)
            .map_err(|e| malformed(format!("row group {group}: {e}")))?;
        let metadata = row_group.metadata();
        for column in 0..metadata.num_columns() {
            let chunk = metadata.column(column);
            let name = chunk.column_path().string();
            let bits = match chunk.column_type() {
                PhysicalType::BOOLEAN => 1,
                PhysicalType::INT32 | PhysicalType::FLOAT => 32,
                PhysicalType::INT64 | PhysicalType::DOUBLE => 64,
                PhysicalType::INT96 => 96,
                PhysicalType::BYTE_ARRAY => 32,
                PhysicalType::FIXED_LEN_BYTE_ARRAY => {
                    8 * chunk.column_descr().type_length().max(1) as u64
                }
            };
            let context = |e: parquet::errors::ParquetError| {
                malformed(format!("row group {group}, column {name:?}: {e}"))
            };
            let mut pages = row_group.get_column_page_reader(column).map_err(context)?;
            while let Some(page) = pages.peek_next_page().map_err(context)? {
                if !page.is_dict {
                    pages.skip_next_page().map_err(context)?;
                    continue;
                }
                let Some(Page::DictionaryPage {
                    buf, num_values, ..
                }) = pages.get_next_page().map_err(context)?
                else {
                    continue;
                };
                let holds = buf.len() as u64 * 8 / bits;
                if u64::from(num_values) > holds {
                    return Err(malformed(format!(
                        "malformed Parquet file: row group {group}, column {name:?} has a \
                         dictionary page claiming {num_values} entries in {} bytes (at most \
                         {holds} fit); is the file complete and written by a Parquet writer?",
                        buf.len()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Wraps the panic hook once: panics inside a guarded call are not printed (they are errors).
fn quiet_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_file() {
        let path = Path::new("broken.parquet");
        let error = parquet_guarded::<()>(path, || panic!("column start should not be negative"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("broken.parquet"), "{error}");
        assert!(
            error.contains("column start should not be negative"),
            "{error}"
        );
        assert_eq!(parquet_guarded(path, || Ok(3)).unwrap(), 3);
    }
}
