//! What `roster import` shows while a job runs: a bar on a terminal, plain lines otherwise,
//! nothing with `--quiet`. All of it goes to standard error, so that standard output holds
//! the summary (or the JSON) alone.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

pub enum Progress {
    /// `--quiet`: nothing.
    Quiet,
    /// Standard error is not a terminal: one line each time the job's status or count
    /// changes.
    Lines { last: Option<(String, i64)> },
    /// A terminal: a bar with rows per second and the time left.
    Bar(ProgressBar),
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Self::Bar(bar)
        } else {
            Self::Lines { last: None }
        }
    }

    /// Something that happens before the job exists, such as the upload.
    pub fn note(&self, message: &str) {
        match self {
            Self::Quiet => {}
            Self::Lines { .. } => eprintln!("{message}"),
            Self::Bar(bar) => bar.set_message(message.to_owned()),
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
            Self::Bar(bar) => {
                bar.set_length(total.max(0) as u64);
                bar.set_position(processed.max(0) as u64);
                bar.set_message(format!("job {id} {status}"));
            }
        }
    }

    /// The job has ended: the bar leaves the screen before the summary is printed.
    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
