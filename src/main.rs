use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match roster::cli::run(roster::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("roster: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
