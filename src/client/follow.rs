//! Following a job to its final status.

use std::time::Duration;

use serde_json::{Value, json};

use super::progress::Progress;
use super::{Error, JOB_FIELDS, Server, finished};

/// How long polling waits between two reads of a job.
const POLL: Duration = Duration::from_millis(500);

/// Reads the job `id` until it has a final status, showing each state on `progress`, and
/// answers the final job.
pub async fn follow(server: &Server, id: &str, progress: &mut Progress) -> anyhow::Result<Value> {
    poll(server, id, progress).await
}

/// Follows a job by reading it with `importJob` every [`POLL`].
async fn poll(server: &Server, id: &str, progress: &mut Progress) -> anyhow::Result<Value> {
    loop {
        let job = get(server, id).await?;
        progress.show(&job);
        if finished(&job) {
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One job, as [`JOB_FIELDS`] reads it; an error when the server has no such job.
pub async fn get(server: &Server, id: &str) -> anyhow::Result<Value> {
    let query = format!("query($id: ID!) {{ importJob(id: $id) {{ ...Job }} }} {JOB_FIELDS}");
    let data = server.graphql(&query, json!({ "id": id })).await?;
    match &data["importJob"] {
        Value::Null => Err(Error::NoSuchJob(format!(
            "there is no job {id} (of this token's tenant); finished jobs are deleted once \
             past their retention"
        ))
        .into()),
        job => Ok(job.clone()),
    }
}
