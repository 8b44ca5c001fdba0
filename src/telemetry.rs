//! Logging and metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), text or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    // A second call (tests start many apps in one process) keeps the first subscriber.
    let _ = result;
}

pub const HTTP_REQUESTS: &str = "roster_http_requests_total";
pub const HTTP_DURATION: &str = "roster_http_request_duration_seconds";
/// SQL statements run, labelled `failed`; a constant count per request shows DataLoaders
/// batching.
pub const DB_STATEMENTS: &str = "roster_db_statements_total";
pub const DB_DURATION: &str = "roster_db_statement_duration_seconds";
/// SCIM requests, labelled with the operation (`op`) and the HTTP `status` answered.
pub const SCIM_REQUESTS: &str = "roster_scim_requests_total";
/// Bulk import jobs accepted by this process.
pub const JOBS_SUBMITTED: &str = "roster_jobs_submitted_total";
/// Jobs this process's workers finished, labelled with the final `status`.
pub const JOBS_FINISHED: &str = "roster_jobs_finished_total";
/// Finished jobs this process deleted once they were past their retention.
pub const JOBS_DELETED: &str = "roster_jobs_deleted_total";
/// Jobs this process's workers are running now.
pub const JOBS_RUNNING: &str = "roster_jobs_running";
/// Job rows this process's workers committed, labelled with their `action` (and `pass`).
pub const JOB_ROWS: &str = "roster_job_rows_total";
/// Job rows found unchanged by their import digest alone (see `jobs::digest`).
pub const JOB_ROWS_BY_DIGEST: &str = "roster_job_rows_unchanged_by_digest_total";
/// How long one committed chunk of a job took.
pub const JOB_CHUNK_DURATION: &str = "roster_job_chunk_duration_seconds";

/// The process-wide Prometheus recorder; `metrics` macros anywhere in the code report to it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_DURATION.to_owned()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(DB_DURATION.to_owned()),
                        &[
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
                        ],
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(JOB_CHUNK_DURATION.to_owned()),
                        &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                    )
                })
                .and_then(PrometheusBuilder::install_recorder)
                .expect("the Prometheus recorder is installed once, with valid buckets")
        })
        .clone()
}
