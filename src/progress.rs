//! Progress bars for long work (hidden automatically when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` items with elapsed time, rate and ETA.
pub fn bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} {per_sec} elapsed {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// A spinner for work of unknown length (e.g. streaming a file).
pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{msg} {pos} {per_sec} elapsed {elapsed_precise}")
            .expect("valid template"),
    );
    bar.set_message(message.to_string());
    bar
}

/// Prints a line above `bar`, or to stderr when the bar is hidden (not a terminal), so the lines
/// that matter (validation results) reach logs of non-interactive runs too.
pub fn report_line(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
