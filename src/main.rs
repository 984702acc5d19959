//! The `meridian` command: parses the command line, runs it, and reports any error chain
//! on stderr with a non-zero exit.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = meridian::cli::Cli::parse();
    match meridian::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
