//! `roster jobs` and `roster job ID`: the tenant's recent jobs, and one job.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{JOB_FIELDS, Server, ServerArgs, follow, summary};

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// How many of the newest jobs to list (1–100).
    #[arg(long, env = "ROSTER_JOBS_FIRST", default_value_t = 20,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    first: u8,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id.
    id: String,

    #[command(flatten)]
    server: ServerArgs,
}

pub async fn list(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let server = Server::new(&args.server)?;
    let query = format!(
        "query($first: Int) {{ importJobs(first: $first) {{ nodes {{ ...Job }} }} }} {JOB_FIELDS}"
    );
    let data = server
        .graphql(&query, json!({ "first": args.first }))
        .await?;
    let jobs = &data["importJobs"]["nodes"];
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<10} {:<22} {:<12} {:>9} {:>9} {:>7}  created",
        "id", "status", "kind", "rows", "processed", "failed"
    );
    for job in jobs.as_array().into_iter().flatten() {
        let dry = if job["dryRun"] == true { "*" } else { "" };
        println!(
            "{:<10} {:<22} {:<12} {:>9} {:>9} {:>7}  {}",
            job["id"].as_str().unwrap_or("?"),
            format!("{}{dry}", job["status"].as_str().unwrap_or("?")),
            job["kind"].as_str().unwrap_or("?"),
            job["total"].to_string(),
            job["processed"].to_string(),
            job["summary"]["failed"].to_string(),
            job["createdAt"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(args: JobArgs) -> anyhow::Result<ExitCode> {
    let server = Server::new(&args.server)?;
    let job = follow::get(&server, &args.id).await?;
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print!("{}", summary::table(&job, None));
        if let Some(url) = job["failedRowsCsvUrl"].as_str() {
            println!("  {:<12}{}", "failed rows", server.url(url));
        }
    }
    Ok(ExitCode::SUCCESS)
}
