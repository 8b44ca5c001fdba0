//! `roster import FILE.csv`: upload a CSV file with `importUsersCsv`, follow its job to the
//! end, write its failed rows next to the file, print the summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::progress::Progress;
use super::{JOB_FIELDS, Server, ServerArgs, follow, summary};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file to import (the columns `importUsersCsv` reads).
    file: PathBuf,

    #[command(flatten)]
    server: ServerArgs,

    /// Check and decide every row and report what would happen; write nothing.
    #[arg(long, env = "ROSTER_DRY_RUN")]
    dry_run: bool,

    /// Which users the rows may touch.
    #[arg(long, env = "ROSTER_MODE", value_enum, default_value_t = Mode::Upsert)]
    mode: Mode,

    /// How a row finds its existing user.
    #[arg(long, env = "ROSTER_MATCH_BY", value_enum, default_value_t = MatchBy::ExternalId)]
    match_by: MatchBy,

    /// Sync mode: at the end, the active users of the file's sources that no row names
    /// become inactive.
    #[arg(long, env = "ROSTER_DEACTIVATE_MISSING", conflicts_with = "atomic")]
    deactivate_missing: bool,

    /// Sync mode: when more than this percentage (0–100) of a source's active users would
    /// be deactivated, nobody is (exit code 3).
    #[arg(
        long,
        env = "ROSTER_CHANGE_THRESHOLD",
        requires = "deactivate_missing",
        value_parser = clap::value_parser!(u8).range(0..=100)
    )]
    change_threshold: Option<u8>,

    /// All rows or none: one failed row fails the job, and nothing is written.
    #[arg(long, env = "ROSTER_ATOMIC")]
    atomic: bool,

    /// The job's idempotency key: the same key gives back the job it first made instead of
    /// a second one. Default: a SHA-256 of the file's bytes and these options, so that
    /// running the same command on the same file again follows the first job.
    #[arg(long, env = "ROSTER_IDEMPOTENCY_KEY")]
    idempotency_key: Option<String>,

    /// Where to write the job's failed rows (CSV with an `errors` column). Default: next to
    /// the file, `FILE.failed.csv`.
    #[arg(long, env = "ROSTER_FAILED_ROWS")]
    failed_rows: Option<PathBuf>,

    /// Show no progress, only the summary (or the JSON) and why the exit code is not 0.
    #[arg(long, short, env = "ROSTER_QUIET")]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Create or update.
    Upsert,
    /// Only new users; an existing one is skipped.
    CreateOnly,
    /// Only existing users; a missing one is skipped.
    UpdateOnly,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MatchBy {
    /// The user with the same source and external id.
    ExternalId,
    /// The user with the same email, else the same source and external id.
    Email,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Upsert => "UPSERT",
            Self::CreateOnly => "CREATE_ONLY",
            Self::UpdateOnly => "UPDATE_ONLY",
        }
    }
}

impl MatchBy {
    fn name(self) -> &'static str {
        match self {
            Self::ExternalId => "EXTERNAL_ID",
            Self::Email => "EMAIL",
        }
    }
}

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let server = Server::new(&args.server)?;
    let mut options = json!({
        "dryRun": args.dry_run,
        "mode": args.mode.name(),
        "matchBy": args.match_by.name(),
        "deactivateMissing": args.deactivate_missing,
        "atomic": args.atomic,
    });
    if let Some(threshold) = args.change_threshold {
        options["changeThreshold"] = json!(threshold);
    }
    let key = match &args.idempotency_key {
        Some(key) => key.clone(),
        None => default_key(&args.file, &options).await?,
    };
    options["idempotencyKey"] = json!(key);

    let mut progress = Progress::new(args.quiet);
    let mutation = format!(
        "mutation($file: Upload!, $options: ImportOptions) {{
            importUsersCsv(file: $file, options: $options) {{ ...Job }}
        }} {JOB_FIELDS}"
    );
    let data = server
        .upload(
            &mutation,
            json!({ "options": options }),
            &args.file,
            &progress,
        )
        .await?;
    let job = &data["importUsersCsv"];
    let id = job["id"]
        .as_str()
        .context("the server answered no job id")?;
    progress.show(job);
    let job = follow::follow(&server, id, &mut progress).await?;
    progress.finish();

    // The job has ended whatever becomes of its failed rows: a download that fails is said,
    // and the summary and the exit code are still the job's.
    let failed_rows = match job["failedRowsCsvUrl"].as_str() {
        Some(url) => {
            let path = args
                .failed_rows
                .clone()
                .unwrap_or_else(|| beside(&args.file));
            match server.download(url, &path).await {
                Ok(()) => Some(path),
                Err(error) => {
                    eprintln!(
                        "roster: cannot write the failed rows to {}: {error:#}; they stay on \
                         the server at {url}",
                        path.display()
                    );
                    None
                }
            }
        }
        None => None,
    };
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print!("{}", summary::table(&job, failed_rows.as_deref()));
    }
    let (exit, sentence) = summary::outcome(&job, failed_rows.as_deref());
    if let Some(sentence) = sentence {
        eprintln!("roster: {sentence}");
    }
    Ok(exit.into())
}

/// `FILE.failed.csv` beside `FILE.csv` (or beside `FILE`).
fn beside(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".to_owned());
    file.with_file_name(format!("{stem}.failed.csv"))
}

/// A key that names this file's bytes and these options: SHA-256 over both, read from the
/// disk a block at a time.
async fn default_key(file: &Path, options: &Value) -> anyhow::Result<String> {
    let mut reader = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut hasher = Sha256::new();
    hasher.update(options.to_string().as_bytes());
    hasher.update([0]);
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = reader
            .read(&mut buffer)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("roster-import:{:x}", hasher.finalize()))
}
