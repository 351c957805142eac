//! A guard around third-party readers that panic on malformed input (the `parquet` crate asserts
//! on some impossible metadata, found by `fuzz/parquet_table`): the panic becomes an error naming
//! the file, and its message is not printed as a crash. Page headers that would make the reader
//! allocate for a false claim are refused first by [`crate::data::parquet_pages`].

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

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
