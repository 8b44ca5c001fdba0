use clap::Parser;

// A bulk job allocates and frees many short-lived strings and rows on several threads at
// once; mimalloc serves that with less time and contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A bad flag exits 1, not clap's 2: `roster import` gives 2 its own meaning (the job
    // completed with errors), which a script must not confuse with a typo.
    let cli = match roster::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    match roster::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("roster: {error:#}");
            // The client's errors have exit codes of their own (4: the server could not be
            // reached or refused the token); anything else is 1.
            match error.downcast_ref::<roster::client::Error>() {
                Some(error) => error.exit().into(),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
