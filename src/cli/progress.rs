//! Progress reporting for long work: an indicatif bar in bytes on a terminal, and plain
//! periodic lines when stderr is not a terminal (CI logs, `nohup`), since indicatif hides itself
//! there. `--quiet` turns both off.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A byte-counting progress reporter, shareable across threads.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: Option<Mutex<Instant>>,
    done: AtomicU64,
    total: u64,
    label: String,
    start: Instant,
}

impl Progress {
    /// A reporter for `total` bytes of work called `label`.
    pub fn new(label: &str, total: u64, quiet: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b
        });
        let plain = (!quiet && !tty).then(|| Mutex::new(Instant::now()));
        Progress {
            bar,
            plain,
            done: AtomicU64::new(0),
            total,
            label: label.to_string(),
            start: Instant::now(),
        }
    }
    /// Add `n` bytes of progress.
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(p) = &self.plain {
            if let Ok(mut last) = p.lock() {
                if last.elapsed() >= Duration::from_secs(10) {
                    *last = Instant::now();
                    let pct = if self.total > 0 {
                        100.0 * done as f64 / self.total as f64
                    } else {
                        100.0
                    };
                    eprintln!(
                        "{}: {:.1}% ({} of {} bytes, {:.0} MB/s)",
                        self.label,
                        pct,
                        done,
                        self.total,
                        done as f64 / 1e6 / self.start.elapsed().as_secs_f64().max(1e-9)
                    );
                }
            }
        }
    }
    /// Show a message above the bar (or as a plain line).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
    /// Finish and clear the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
    /// Seconds since start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Human-readable bytes (decimal units, like `ls -lh --si`).
pub fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", units[u])
    }
}
