//! The table printed at the end, and what a job's final state means for the exit code.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::Exit;

/// The job as a short table for a person: its status, then the count of each outcome.
pub fn table(job: &Value, failed_rows: Option<&Path>) -> String {
    let mut out = String::new();
    let id = job["id"].as_str().unwrap_or("?");
    let status = job["status"].as_str().unwrap_or("?");
    let dry_run = if job["dryRun"] == true {
        " (dry run)"
    } else {
        ""
    };
    let _ = writeln!(out, "job {id}: {status}{dry_run}");
    let _ = writeln!(out, "  {:<12}{}", "rows", job["total"]);
    for field in [
        "created",
        "updated",
        "unchanged",
        "skipped",
        "failed",
        "deactivated",
    ] {
        let _ = writeln!(out, "  {field:<12}{}", job["summary"][field]);
    }
    if let Some(message) = job["errorMessage"].as_str() {
        let _ = writeln!(out, "  {:<12}{message}", "error");
    }
    for warning in job["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {:<12}{}", "warning", warning.as_str().unwrap_or(""));
    }
    if let Some(path) = failed_rows {
        let _ = writeln!(out, "  {:<12}{}", "failed rows", path.display());
    }
    out
}

/// What the final job means: the exit code and, unless every row succeeded, a sentence
/// that says why.
pub fn outcome(job: &Value, failed_rows: Option<&Path>) -> (Exit, Option<String>) {
    let id = job["id"].as_str().unwrap_or("?");
    let failed = job["summary"]["failed"].as_i64().unwrap_or(0);
    let total = job["total"].as_i64().unwrap_or(0);
    let reason = job["errorMessage"].as_str().unwrap_or("no reason given");
    match job["status"].as_str().unwrap_or("") {
        "COMPLETED" => (Exit::Completed, None),
        "COMPLETED_WITH_ERRORS"
            if job["deactivateMissing"] == true && job["errorMessage"].is_string() =>
        {
            (
                Exit::Failed,
                Some(format!(
                    "job {id} completed, but sync mode refused to deactivate anyone: {reason}"
                )),
            )
        }
        "COMPLETED_WITH_ERRORS" => {
            let file = failed_rows
                .map(|path| format!("; they are in {}", path.display()))
                .unwrap_or_default();
            (
                Exit::CompletedWithErrors,
                Some(format!(
                    "job {id} completed with errors: {failed} of {total} rows failed{file}"
                )),
            )
        }
        "CANCELLED" => (
            Exit::Failed,
            Some(format!(
                "job {id} was cancelled; the rows it wrote before that stay written"
            )),
        ),
        status => (
            Exit::Failed,
            Some(format!("job {id} failed ({status}): {reason}")),
        ),
    }
}
