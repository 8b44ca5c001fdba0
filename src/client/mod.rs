//! The command-line client: `roster import`, `roster jobs` and `roster job` talk to a
//! running server through its public GraphQL API and its failed-rows route, as any other
//! client would.

mod follow;
pub(crate) mod import;
pub(crate) mod jobs;
mod progress;
mod summary;

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use futures_util::TryStreamExt as _;
use reqwest::{RequestBuilder, StatusCode, Url};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

pub use import::ImportArgs;
pub use jobs::{JobArgs, JobsArgs};

/// The fields of a job that every command asks for, prints and gives with `--json`.
const JOB_FIELDS: &str = "fragment Job on ImportJob {
    id kind status dryRun atomic deactivateMissing changeThreshold description
    total processed progress errorMessage warnings failedRowsCsvUrl
    createdBy createdAt startedAt finishedAt
    summary { created updated unchanged skipped failed deactivated }
}";

/// Where the server is and who is asking: the settings every client command shares.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The Roster server's base URL.
    #[arg(long, env = "ROSTER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: Url,

    /// A bearer token for the server (`roster token` mints one); `import` needs the admin
    /// role, `jobs` and `job` any role.
    #[arg(long, env = "ROSTER_TOKEN", hide_env_values = true)]
    token: String,

    /// Print the job (for `jobs`, the list of jobs) as JSON on standard output instead of
    /// the table, for scripts.
    #[arg(long, env = "ROSTER_JSON")]
    json: bool,
}

/// How a client command ended, as its exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The job completed: every row succeeded.
    Completed = 0,
    /// The job completed, and some rows failed.
    CompletedWithErrors = 2,
    /// The job failed or was cancelled, sync mode's threshold refused to deactivate, or the
    /// server refused the request (or closed the connection during the upload) and stored
    /// nothing.
    Failed = 3,
    /// The server could not be reached, or it refused the token.
    Unreachable = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Why a client command could not finish its conversation with the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Roster server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the server at {url} closed the connection while {file} was being sent ({reason}), \
         and imported nothing; a server closes it so when a file is larger than it accepts \
         (its ROSTER_MAX_UPLOAD), or when it stops"
    )]
    Interrupted {
        url: String,
        file: String,
        reason: String,
    },
    #[error(
        "the server at {url} refused the token ({reason}); pass a current token for this \
         server with --token or ROSTER_TOKEN"
    )]
    TokenRefused { url: String, reason: String },
    #[error("the server at {url} does not answer as a Roster server does: {reason}")]
    NotRoster { url: String, reason: String },
    #[error("the server refused the request, and stored nothing: {0}")]
    Refused(String),
    #[error("{0}")]
    NoSuchJob(String),
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Self::Unreachable { .. } | Self::TokenRefused { .. } | Self::NotRoster { .. } => {
                Exit::Unreachable
            }
            Self::Interrupted { .. } | Self::Refused(_) | Self::NoSuchJob(_) => Exit::Failed,
        }
    }
}

/// A connection to one server with one token.
pub struct Server {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl Server {
    pub fn new(args: &ServerArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Self {
            base: args.server.clone(),
            token: args.token.trim().to_owned(),
            http,
        })
    }

    /// The base URL as the user gave it, for messages.
    fn name(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// A URL on the server: `path` starts with `/`.
    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    /// Runs a query or mutation (sent as JSON) and answers its `data`.
    pub async fn graphql(&self, query: &str, variables: Value) -> Result<Value, Error> {
        let request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        self.send(request, None).await
    }

    /// Runs a mutation as a GraphQL multipart request with the file at `path` as the
    /// upload of the variable `$file`, streamed from the disk as it is sent.
    pub async fn upload(
        &self,
        query: &str,
        mut variables: Value,
        path: &Path,
        progress: &progress::Progress,
    ) -> anyhow::Result<Value> {
        variables["file"] = Value::Null;
        let file = tokio::fs::File::open(path).await?;
        let length = file.metadata().await?.len();
        let meter = progress.upload_meter(&path.display().to_string(), length);
        let chunks = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)
            .inspect_ok(move |chunk| meter(chunk.len()));
        let body = reqwest::Body::wrap_stream(chunks);
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "users.csv".to_owned());
        let part = reqwest::multipart::Part::stream_with_length(body, length)
            .file_name(name)
            .mime_str("text/csv")?;
        let operations = json!({ "query": query, "variables": variables });
        let form = reqwest::multipart::Form::new()
            .text("operations", operations.to_string())
            .text("map", r#"{"0":["variables.file"]}"#)
            .part("0", part);
        let request = self.http.post(self.url("/graphql")).multipart(form);
        Ok(self.send(request, Some(path)).await?)
    }

    /// Downloads `path` (a route of the server, e.g. a job's `failedRowsCsvUrl`) to the
    /// file `to`, chunk by chunk.
    pub async fn download(&self, path: &str, to: &Path) -> anyhow::Result<()> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::TokenRefused {
                    url: self.name(),
                    reason: format!("HTTP {}", response.status()),
                }
                .into());
            }
            status => anyhow::bail!("cannot download {path}: HTTP {status}"),
        }
        let mut file = tokio::fs::File::create(to).await?;
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks
            .try_next()
            .await
            .map_err(|error| self.unreachable(&error))?
        {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(())
    }

    /// Sends a GraphQL request (for an upload, of the file at `upload`) and answers its
    /// `data`, or the error that says why there is none.
    async fn send(&self, request: RequestBuilder, upload: Option<&Path>) -> Result<Value, Error> {
        let response = request
            .bearer_auth(&self.token)
            .header(
                "accept",
                "application/graphql-response+json, application/json",
            )
            .send()
            .await
            .map_err(|error| match upload {
                Some(file) if !error.is_connect() => Error::Interrupted {
                    url: self.name(),
                    file: file.display().to_string(),
                    reason: reason(&error),
                },
                _ => self.unreachable(&error),
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let body: Value = serde_json::from_str(&text).map_err(|_| Error::NotRoster {
            url: self.name(),
            reason: format!("HTTP {status}, and the body is not GraphQL JSON"),
        })?;
        let first_error = &body["errors"][0];
        if !first_error.is_null() {
            let mut message = first_error["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned();
            // A refused input names each problem by field in `extensions.fieldErrors`.
            for problem in first_error["extensions"]["fieldErrors"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let field = problem["field"].as_str().unwrap_or("input");
                let text = problem["message"].as_str().unwrap_or("");
                if !message.starts_with(text) {
                    message.push_str(&format!("; {field}: {text}"));
                }
            }
            let code = first_error["extensions"]["code"].as_str();
            return Err(
                if status == StatusCode::UNAUTHORIZED
                    || matches!(code, Some("UNAUTHENTICATED" | "FORBIDDEN"))
                {
                    Error::TokenRefused {
                        url: self.name(),
                        reason: message,
                    }
                } else {
                    Error::Refused(message)
                },
            );
        }
        match body.get("data") {
            Some(data) if data.is_object() => Ok(data.clone()),
            _ => Err(Error::NotRoster {
                url: self.name(),
                reason: format!("HTTP {status}, without data"),
            }),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> Error {
        Error::Unreachable {
            url: self.name(),
            reason: reason(error),
        }
    }
}

/// The innermost cause of a transport error, which says what went wrong ("Connection
/// refused"), rather than reqwest's outer "error sending request".
fn reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Whether a job's status is final.
fn finished(job: &Value) -> bool {
    !matches!(job["status"].as_str(), Some("QUEUED" | "RUNNING") | None)
}
