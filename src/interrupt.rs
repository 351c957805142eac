//! Interrupted runs: Ctrl-C (SIGINT), SIGTERM (Slurm's `scancel` and time limit) and SIGHUP end
//! a run without leaving a half-written file, and a rerun into the same folder says what it found.
//!
//! Every file is written to a hidden sibling (`.NAME.PID.tmp`) and renamed into place when
//! complete ([`crate::report::TableWriter`], [`crate::report::write_atomic`]); run.json is the
//! last file of a run. While a temp file is open it is registered here; on a signal the handler
//! removes every registered temp file and exits with status 130, holding the lock that renames
//! take, so nothing is renamed into place after the signal. SIGKILL cannot be caught: its temp
//! files stay (hidden, never read), and [`prepare_run_dir`] removes them when the run is started
//! again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::error::{GenolensError, Result};

/// Temp files being written now.
static IN_FLIGHT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Set by the signal handler before it removes the temp files.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn in_flight() -> MutexGuard<'static, Vec<PathBuf>> {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (once per process; later calls do
/// nothing).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if let Err(e) = ctrlc::set_handler(on_signal) {
            tracing::warn!(
                "no interruption handler ({e}): an interrupted run may leave temp files"
            );
        }
    });
}

fn on_signal() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // Held until exit: a rename waiting for it never happens.
    let files = in_flight();
    let removed = files
        .iter()
        .filter(|file| std::fs::remove_file(file).is_ok())
        .count();
    eprintln!(
        "genolens: interrupted; removed {removed} partial file(s). No table was left half-written \
         and the run has no run.json; rerun the same command to start it again."
    );
    std::process::exit(130);
}

/// Registers a temp file being written (removed on a signal).
pub fn register(temp: &Path) {
    in_flight().push(temp.to_path_buf());
}

/// Unregisters a temp file (written and renamed, or removed after an error).
pub fn unregister(temp: &Path) {
    in_flight().retain(|file| file != temp);
}

/// Renames a finished temp file into place unless the run was interrupted (then it waits for
/// the handler's exit), and unregisters it.
pub fn commit(temp: &Path, path: &Path) -> Result<()> {
    let mut files = in_flight();
    if INTERRUPTED.load(Ordering::SeqCst) {
        drop(files);
        loop {
            std::thread::park();
        }
    }
    std::fs::rename(temp, path).map_err(|e| GenolensError::io(path, e))?;
    files.retain(|file| file != temp);
    Ok(())
}

/// What [`prepare_run_dir`] found in an output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunDirState {
    /// The folder does not exist yet (or holds only other shards' files).
    Fresh,
    /// It held a finished run (run.json): its run.json was removed first, so that this run looks
    /// finished only when it is; its files are replaced as this run writes them.
    ReplacingFinished,
    /// It held an unfinished run (no run.json: files, or nothing at all) and starts clean, its
    /// leftover temp files removed.
    Restarted {
        /// Temp files of the interrupted run that were removed.
        removed_temp_files: usize,
    },
}

/// Readies `dir` for a run that ends by writing `dir/MARKER` (`run.json`, or a shard's
/// `run.part-I-of-N.json`), and says on stderr what it found when the run had been there before.
/// `own` selects the files that belong to this run (every file for a whole run; a shard's own
/// only, since other shards of the run may be writing beside it).
pub fn prepare_run_dir(
    dir: &Path,
    marker: &str,
    own: impl Fn(&str) -> bool,
) -> Result<RunDirState> {
    let finished = dir.join(marker);
    if finished.exists() {
        std::fs::remove_file(&finished).map_err(|e| GenolensError::io(&finished, e))?;
        eprintln!(
            "genolens: {} holds a finished run; replacing it ({marker} is removed first and \
             written again last)",
            dir.display()
        );
        return Ok(RunDirState::ReplacingFinished);
    }
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(RunDirState::Fresh);
    };
    // An empty folder: what an interrupted run leaves once its temp files are gone (or a folder
    // the user made).
    let (mut found, mut removed) = (entries.next().is_none(), 0);
    for folder in [dir.to_path_buf()].into_iter().chain(subfolders(dir)) {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !own(&name) || entry.path().is_dir() {
                continue;
            }
            found = true;
            if is_temp_name(&name) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| GenolensError::io(&path, e))?;
                removed += 1;
            }
        }
    }
    if !found {
        return Ok(RunDirState::Fresh);
    }
    eprintln!(
        "genolens: {} holds no finished run (no {marker}): starting clean{}",
        dir.display(),
        match removed {
            0 => String::new(),
            n => format!(", {n} leftover temp file(s) removed"),
        }
    );
    Ok(RunDirState::Restarted {
        removed_temp_files: removed,
    })
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// `.NAME.PID.tmp`, as [`crate::report::atomic::temp_path`] names them.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Test hook: `GENOLENS_TEST_SIGNAL_AFTER_BATCHES=SIG:N` (SIG one of INT, TERM, KILL) makes the
/// process send itself SIG after its N-th analysed batch, so tests can interrupt a run at a
/// chosen point. Not for users; unset, it costs one atomic increment per batch.
pub fn batch_done() {
    static PLAN: OnceLock<Option<(i32, usize)>> = OnceLock::new();
    static BATCHES: AtomicUsize = AtomicUsize::new(0);
    let plan = PLAN.get_or_init(|| {
        let value = std::env::var("GENOLENS_TEST_SIGNAL_AFTER_BATCHES").ok()?;
        let (signal, count) = value.split_once(':')?;
        let signal = match signal {
            "INT" => libc::SIGINT,
            "TERM" => libc::SIGTERM,
            "KILL" => libc::SIGKILL,
            _ => return None,
        };
        Some((signal, count.parse().ok()?))
    });
    let done = BATCHES.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some((signal, count)) = *plan {
        if done == count {
            // SAFETY: kill(2) on this process's own pid with a valid signal number.
            unsafe {
                libc::kill(libc::getpid(), signal);
            }
            // The handler runs on its own thread and exits the process; stop here meanwhile.
            loop {
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_says_what_it_found_and_removes_only_its_own_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let all = |_: &str| true;
        assert_eq!(
            prepare_run_dir(&run, "run.json", all).unwrap(),
            RunDirState::Fresh
        );
        std::fs::create_dir_all(run.join("table")).unwrap();
        assert_eq!(
            prepare_run_dir(&run.join("table"), "run.json", all).unwrap(),
            RunDirState::Restarted {
                removed_temp_files: 0
            }
        );
        // An interrupted run: a finished table, a temp file, a shard's temp files.
        std::fs::write(run.join("a.parquet"), b"x").unwrap();
        std::fs::write(run.join(".b.parquet.123.tmp"), b"x").unwrap();
        std::fs::write(run.join("table/.part-0-of-2.parquet.9.tmp"), b"x").unwrap();
        std::fs::write(run.join("table/.part-1-of-2.parquet.9.tmp"), b"x").unwrap();
        let shard = |name: &str| name.contains("part-0-of-2");
        let state = prepare_run_dir(&run, "run.part-0-of-2.json", shard).unwrap();
        assert_eq!(
            state,
            RunDirState::Restarted {
                removed_temp_files: 1
            }
        );
        assert!(run.join(".b.parquet.123.tmp").exists());
        assert!(run.join("table/.part-1-of-2.parquet.9.tmp").exists());
        let state = prepare_run_dir(&run, "run.json", all).unwrap();
        assert_eq!(
            state,
            RunDirState::Restarted {
                removed_temp_files: 2
            }
        );
        assert!(run.join("a.parquet").exists());
        assert!(!run.join(".b.parquet.123.tmp").exists());
        assert!(!run.join("table/.part-1-of-2.parquet.9.tmp").exists());
        // A finished run: run.json goes first.
        std::fs::write(run.join("run.json"), b"{}").unwrap();
        assert_eq!(
            prepare_run_dir(&run, "run.json", all).unwrap(),
            RunDirState::ReplacingFinished
        );
        assert!(!run.join("run.json").exists());
        assert!(run.join("a.parquet").exists());
    }

    #[test]
    fn committed_files_are_unregistered() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".x.tmp");
        std::fs::write(&temp, b"x").unwrap();
        register(&temp);
        assert!(in_flight().contains(&temp));
        commit(&temp, &dir.path().join("x")).unwrap();
        assert!(!in_flight().contains(&temp));
        assert!(dir.path().join("x").exists());
    }
}
