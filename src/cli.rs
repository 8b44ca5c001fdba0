//! The command line: `roster serve|migrate|token|schema`, and the client commands
//! `roster import|jobs|job` (in [`crate::client`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rand::RngCore;

use crate::auth::{Authenticator, Role};
use crate::config::{DatabaseConfig, JwtConfig, LogFormat, ServeConfig};
use crate::startup::Application;
use crate::{client, db, graphql, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "roster",
    version,
    about = "Roster: a GraphQL API that imports people into a learning platform and reports on them",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Settings for `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    serve: ServeConfig,

    /// Log line format.
    #[arg(
        long,
        env = "ROSTER_LOG_FORMAT",
        value_enum,
        default_value_t,
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: apply migrations, then serve GraphQL, GraphiQL and the routes (default).
    Serve(Box<ServeConfig>),
    /// Apply pending database migrations, then exit.
    Migrate(DatabaseConfig),
    /// Mint a bearer token signed with the configured secret.
    Token(TokenArgs),
    /// Print the GraphQL schema (SDL); `schema.graphql` is exactly this output.
    Schema,
    /// Import a CSV file of users into a running server and follow its job to the end.
    ///
    /// Uploads the file, follows the job, writes its failed rows beside the file and prints
    /// the summary. Exit codes: 0 completed; 1 a bad flag or an unreadable file; 2
    /// completed with errors; 3 failed, cancelled, or refused (sync mode's threshold, or
    /// the file, nothing stored); 4 the server could not be reached or refused the token.
    Import(Box<client::ImportArgs>),
    /// List the tenant's recent import jobs, newest first.
    Jobs(client::JobsArgs),
    /// Show one import job.
    Job(client::JobArgs),
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The `sub` claim: who the token is for.
    #[arg(long, env = "ROSTER_TOKEN_SUB")]
    sub: String,

    /// The `role` claim.
    #[arg(long, env = "ROSTER_TOKEN_ROLE", value_enum)]
    role: Role,

    /// The `tenant` claim (omitted: the `default` tenant).
    #[arg(long, env = "ROSTER_TOKEN_TENANT")]
    tenant: Option<String>,

    /// How long the token is valid, e.g. `1h`, `30m`, `7days`.
    #[arg(long, env = "ROSTER_TOKEN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,

    #[command(flatten)]
    jwt: JwtConfig,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Import(args)) => client::import::run(*args).await,
        Some(Command::Jobs(args)) => client::jobs::list(args).await,
        Some(Command::Job(args)) => client::jobs::show(args).await,
        command => run_server_command(command, cli.serve, cli.log_format)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

async fn run_server_command(
    command: Option<Command>,
    serve_config: ServeConfig,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    match command {
        Some(Command::Schema) => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Some(Command::Token(args)) => token(args),
        Some(Command::Migrate(config)) => {
            telemetry::init_logging(log_format);
            migrate(config).await
        }
        Some(Command::Serve(config)) => {
            telemetry::init_logging(log_format);
            serve(*config).await
        }
        None => {
            telemetry::init_logging(log_format);
            serve(serve_config).await
        }
        Some(Command::Import(_) | Command::Jobs(_) | Command::Job(_)) => {
            unreachable!("client commands are run by `run`")
        }
    }
}

async fn migrate(config: DatabaseConfig) -> anyhow::Result<()> {
    let db = db::connect(&config)
        .await
        .context("cannot connect to the database")?;
    db::migrate(&db).await.context("cannot apply migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    if let Some(tenant) = &args.tenant {
        crate::auth::TenantId::parse(tenant).map_err(anyhow::Error::msg)?;
    }
    let auth = Authenticator::from_config(&args.jwt)?.context(
        "no signing key: set ROSTER_JWT_SECRET (or --jwt-secret) to the server's secret",
    )?;
    println!(
        "{}",
        auth.mint(&args.sub, args.role, args.tenant.as_deref(), args.ttl)?
    );
    Ok(())
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let (auth, generated) = match Authenticator::from_config(&config.jwt)? {
        Some(auth) => (auth, false),
        None => {
            // Nothing configured: a secret for this run only, so a new user can start at once.
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let auth = Authenticator::hs256(
                &secret,
                config.jwt.jwt_issuer.clone(),
                config.jwt.jwt_audience.clone(),
            );
            (auth, true)
        }
    };
    let tokens = if generated {
        let ttl = Duration::from_secs(24 * 3600);
        Some((
            auth.mint("admin", Role::Admin, None, ttl)?,
            auth.mint("viewer", Role::Viewer, None, ttl)?,
        ))
    } else {
        None
    };

    let app = Application::build(config, auth).await?;
    let url = display_url(app.local_addr());
    tracing::info!(%url, "Roster is listening");
    println!("\nRoster is listening on {url}");
    println!("GraphiQL:  {url}/graphql");
    if let Some((admin, viewer)) = tokens {
        println!(
            "\nNo ROSTER_JWT_SECRET or ROSTER_JWT_PUBLIC_KEY_FILE is set, so this run signs its own\n\
             tokens with a random secret; they stop working when the server stops.\n"
        );
        println!("Admin token (24h):\n{admin}\n");
        println!("Viewer token (24h):\n{viewer}\n");
        println!(
            "In GraphiQL, paste the admin token into the \"Bearer token\" field at the top.\n"
        );
    }
    app.run_until_stopped().await?;
    Ok(())
}

/// A URL a browser on this machine can open, also when listening on all interfaces.
fn display_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}
