use clap::Parser;

// A bulk job allocates and frees many short-lived strings and rows on several threads at
// once; mimalloc serves that with less time and contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
