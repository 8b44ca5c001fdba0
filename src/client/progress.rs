//! What `roster import` shows while a job runs: a bar on a terminal, plain lines otherwise,
//! nothing with `--quiet`. All of it goes to standard error, so that standard output holds
//! the summary (or the JSON) alone.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

pub enum Progress {
    /// `--quiet`: nothing.
    Quiet,
    /// Standard error is not a terminal: one line each time the job's status or count
    /// changes.
    Lines { last: Option<(String, i64)> },
    /// A terminal: a bar of the upload's bytes, then of the job's rows, with their rate
    /// and the time left.
    Bar { bar: ProgressBar, rows: bool },
}

/// Counts the bytes of the upload as they are read from the file and sent.
pub type UploadMeter = Box<dyn Fn(usize) + Send + Sync>;

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(200));
            Self::Bar { bar, rows: false }
        } else {
            Self::Lines { last: None }
        }
    }

    /// Something that happens before the job exists, such as the upload.
    pub fn note(&self, message: &str) {
        match self {
            Self::Quiet => {}
            Self::Lines { .. } => eprintln!("{message}"),
            Self::Bar { bar, .. } => bar.set_message(message.to_owned()),
        }
    }

    /// What counts the upload of `name`, `total` bytes: the bar's bytes on a terminal, a
    /// line at each tenth otherwise.
    pub fn upload_meter(&self, name: &str, total: u64) -> UploadMeter {
        match self {
            Self::Quiet => Box::new(|_| {}),
            Self::Lines { .. } => {
                let name = name.to_owned();
                let sent = AtomicU64::new(0);
                let tenths = move |bytes: u64| (bytes * 10).checked_div(total).unwrap_or(10);
                Box::new(move |n| {
                    let before = sent.fetch_add(n as u64, Ordering::Relaxed);
                    let after = tenths(before + n as u64);
                    if after > tenths(before) {
                        eprintln!("uploading {name}: {}% of {}", after * 10, HumanBytes(total));
                    }
                })
            }
            Self::Bar { bar, .. } => {
                bar.set_style(style(
                    "{spinner} {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes}, \
                     {binary_bytes_per_sec}, ETA {eta}",
                ));
                bar.set_length(total);
                bar.set_message(format!("uploading {name}"));
                let bar = bar.clone();
                Box::new(move |n| bar.inc(n as u64))
            }
        }
    }

    /// The job as it stands now.
    pub fn show(&mut self, job: &Value) {
        let id = job["id"].as_str().unwrap_or("?");
        let status = job["status"].as_str().unwrap_or("?").to_owned();
        let processed = job["processed"].as_i64().unwrap_or(0);
        let total = job["total"].as_i64().unwrap_or(0);
        match self {
            Self::Quiet => {}
            Self::Lines { last } => {
                if last.as_ref() != Some(&(status.clone(), processed)) {
                    let percent = (job["progress"].as_f64().unwrap_or(0.0) * 100.0).floor();
                    eprintln!("job {id}: {status}, {processed} of {total} rows ({percent}%)");
                    *last = Some((status, processed));
                }
            }
            Self::Bar { bar, rows } => {
                if !*rows {
                    // From bytes to rows: the rate and the time left start again.
                    bar.reset();
                    bar.set_style(style(
                        "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, \
                         ETA {eta}",
                    ));
                    *rows = true;
                }
                bar.set_length(total.max(0) as u64);
                bar.set_position(processed.max(0) as u64);
                bar.set_message(format!("job {id} {status}"));
            }
        }
    }

    /// The job has ended: the bar leaves the screen before the summary is printed.
    pub fn finish(&self) {
        if let Self::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}
