//! Configuration: every setting is a flag with an environment variable (the flag wins).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// SQLite (`sqlite://FILE?mode=rwc`, the embedded default) or PostgreSQL (`postgres://…`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://roster.db?mode=rwc"
    )]
    pub database_url: String,

    /// Largest number of pooled connections on PostgreSQL (SQLite uses a fixed pool, see README).
    #[arg(long, env = "ROSTER_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

/// How bearer tokens are verified (and, with a shared secret, minted).
#[derive(Debug, Clone, Default, Args)]
pub struct JwtConfig {
    /// HS256 shared secret.
    #[arg(long, env = "ROSTER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key file: tokens are then RS256 (RSA key) or ES256 (P-256 key).
    #[arg(
        long,
        env = "ROSTER_JWT_PUBLIC_KEY_FILE",
        conflicts_with = "jwt_secret"
    )]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Required `iss` claim, checked when set.
    #[arg(long, env = "ROSTER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, checked when set.
    #[arg(long, env = "ROSTER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// HTTP limits and behaviour.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Largest GraphQL JSON request body in bytes.
    #[arg(long, env = "ROSTER_MAX_BODY", default_value_t = 64 * 1024 * 1024)]
    pub max_body: usize,

    /// Largest multipart request (a file upload) in bytes. Uploads are spooled to a
    /// temporary file, not held in memory.
    #[arg(long, env = "ROSTER_MAX_UPLOAD", default_value_t = 1024 * 1024 * 1024)]
    pub max_upload: usize,

    /// Longest time one GraphQL request may run, e.g. `30s` or `2m`.
    #[arg(long, env = "ROSTER_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Longest time a multipart request (a CSV upload) may run once received: its file is
    /// read and stored as the job's rows within it, up to a million of them.
    #[arg(long, env = "ROSTER_UPLOAD_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub upload_timeout: Duration,

    /// Browser origins allowed to call the API (comma-separated), e.g. a dashboard's origin.
    #[arg(long, env = "ROSTER_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Longest time a client may take to send a request's headers, and an idle keep-alive
    /// connection to begin its next request; then the connection is closed.
    #[arg(long, env = "ROSTER_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive)]
    pub header_timeout: Duration,

    /// Longest time a request body may stall between two of its chunks; then the request
    /// answers 408 and nothing is written.
    #[arg(long, env = "ROSTER_BODY_TIMEOUT", default_value = "30s", value_parser = parse_positive)]
    pub body_timeout: Duration,

    /// Most connections open at once (WebSocket ones included); more wait to be accepted.
    #[arg(long, env = "ROSTER_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Longest time a WebSocket may stay open without `connection_init`;
    /// then it is closed with 4408. Clients send it as soon as the socket opens.
    #[arg(long, env = "ROSTER_WS_INIT_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub ws_init_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body: 64 * 1024 * 1024,
            max_upload: 1024 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(600),
            cors_origins: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            ws_init_timeout: Duration::from_secs(3),
        }
    }
}

fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than 0s".to_owned());
    }
    Ok(duration)
}

/// Bounds on what one GraphQL operation may ask for.
#[derive(Debug, Clone, Copy, Args)]
pub struct QueryLimits {
    /// Deepest selection nesting of an operation.
    #[arg(long, env = "ROSTER_MAX_DEPTH", default_value_t = 16)]
    pub max_depth: usize,

    /// Highest complexity of an operation: each field costs 1, and a list field its
    /// selection's cost times its `first` (or, without one, its typical length). A document
    /// that would select more fields than this once its fragments are expanded is refused
    /// before validation.
    #[arg(long, env = "ROSTER_MAX_COMPLEXITY", default_value_t = 50_000)]
    pub max_complexity: usize,

    /// Most lexical tokens (names, punctuators, values) in one document; large inputs
    /// belong in variables, which this does not count.
    #[arg(long, env = "ROSTER_MAX_TOKENS", default_value_t = 20_000)]
    pub max_tokens: usize,

    /// Largest response in bytes: one that would grow past it is cut off with an error.
    #[arg(long, env = "ROSTER_MAX_RESPONSE", default_value_t = 32 * 1024 * 1024)]
    pub max_response: usize,

    /// Most aliased fields in one document.
    #[arg(long, env = "ROSTER_MAX_ALIASES", default_value_t = 30)]
    pub max_aliases: usize,

    /// Deepest recursion the parser accepts (nested lists, objects and selections).
    #[arg(long, env = "ROSTER_MAX_RECURSIVE_DEPTH", default_value_t = 32)]
    pub max_recursive_depth: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_complexity: 50_000,
            max_tokens: 20_000,
            max_response: 32 * 1024 * 1024,
            max_aliases: 30,
            max_recursive_depth: 32,
        }
    }
}

/// Background workers that run bulk import jobs.
#[derive(Debug, Clone, Args)]
pub struct JobsConfig {
    /// Job workers in this process, each running a job or helping with the chunks of one
    /// another worker runs; 0 makes a process that accepts jobs but leaves running them to
    /// other processes on the same database.
    #[arg(long, env = "ROSTER_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// How long a worker holds a job without renewing its lease; a job whose worker died is
    /// taken over by another worker (of any process) after this long. At least 1s.
    #[arg(long, env = "ROSTER_JOB_LEASE", default_value = "30s", value_parser = parse_lease)]
    pub job_lease: Duration,

    /// How often idle workers look for jobs (this process's own jobs wake them at once).
    #[arg(long, env = "ROSTER_JOB_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub job_poll: Duration,

    /// Rows per chunk: each chunk is one transaction, and the unit a job resumes from.
    #[arg(long, env = "ROSTER_JOB_CHUNK", default_value_t = JOB_CHUNK, value_parser = parse_chunk)]
    pub job_chunk: usize,

    /// How long a job waits after a run that failed for a server reason (the database
    /// failing, not its rows) before it is tried again; twice as long after a second failure
    /// in a row. The third failure in a row fails the job.
    #[arg(long, env = "ROSTER_JOB_RETRY_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub job_retry_delay: Duration,

    /// How long a finished job is kept, with its rows, results and before-images; after
    /// that it is deleted and can no longer be read, retried or reverted. At least 24h
    /// (the life of an idempotency key); `forever` keeps every job.
    #[arg(long, env = "ROSTER_JOB_RETENTION", default_value = "30days", value_parser = parse_retention)]
    pub job_retention: Retention,

    /// How often a process with workers deletes the jobs past their retention.
    #[arg(skip = Duration::from_secs(3600))]
    pub job_sweep_every: Duration,
}

/// How long finished jobs are kept; `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl Retention {
    /// Idempotency keys live as long as their job, and must live a day.
    pub const MIN: Duration = Duration::from_secs(24 * 3600);
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            job_lease: Duration::from_secs(30),
            job_poll: Duration::from_secs(1),
            job_chunk: JOB_CHUNK,
            job_retry_delay: Duration::from_secs(5),
            job_retention: Retention(Some(Duration::from_secs(30 * 24 * 3600))),
            job_sweep_every: Duration::from_secs(3600),
        }
    }
}

fn parse_retention(text: &str) -> Result<Retention, String> {
    if text.trim().eq_ignore_ascii_case("forever") {
        return Ok(Retention(None));
    }
    let keep = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if keep < Retention::MIN {
        return Err(
            "jobs must be kept at least 24h, as long as their idempotency keys; `forever` keeps them all"
                .to_owned(),
        );
    }
    Ok(Retention(Some(keep)))
}

fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if lease < Duration::from_secs(1) {
        return Err("the lease must be at least 1s".to_owned());
    }
    Ok(lease)
}

/// Rows per chunk by default. On SQLite, 2,000 rows a chunk ran a 100,000-row job 10%
/// faster than 1,000 (fewer statements and commits); 4,000 gained nothing more, and on
/// PostgreSQL the size made no difference (see BENCHMARKS.md).
const JOB_CHUNK: usize = 2000;

fn parse_chunk(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(chunk @ 1..=5000) => Ok(chunk),
        _ => Err("a chunk is 1 to 5000 rows".to_owned()),
    }
}

/// The SCIM 2.0 service provider under `/scim/v2`.
#[derive(Debug, Clone, Args)]
pub struct ScimConfig {
    /// The `source` of the users SCIM creates: their SCIM `externalId` is Roster's
    /// `externalId` within it, apart from the ids other systems send.
    #[arg(long, env = "ROSTER_SCIM_SOURCE", default_value = "scim")]
    pub scim_source: String,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            scim_source: "scim".to_owned(),
        }
    }
}

/// Everything `roster serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ROSTER_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub jwt: JwtConfig,

    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub limits: QueryLimits,

    #[command(flatten)]
    pub jobs: JobsConfig,

    #[command(flatten)]
    pub scim: ScimConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
