//! The `meridian` command: parses the command line, runs it, and reports any error chain
//! on stderr with a non-zero exit.

use clap::Parser;
use meridian::error::ErrorKind;

/// mimalloc rather than the system allocator: applying received changes allocates many
/// small, short-lived objects (automerge's ops, redb's pages, the parts of envelopes), and
/// with glibc's malloc a node spent a quarter of its time in the allocator and an eighth in
/// the kernel zeroing pages malloc had given back. The convergence benchmark's 50 nodes took
/// 25 s with it and 19.5 s with mimalloc (BENCHMARKS.md). Built without transparent huge
/// pages (`no_thp`): with them the kernel zeroed a 2 MiB page each time mimalloc reused
/// memory it had purged, half a node's CPU on one large document (0.95 s against 0.78 s).
/// Short commands gain nothing and start about 0.25 ms later.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Scripts asked for JSON get their errors as JSON too, usage errors included.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match meridian::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if json && error.use_stderr() => {
            let text = error.render().to_string();
            let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
            let usage = ErrorKind::Usage;
            meridian::cli::print_error(&anyhow::anyhow!(message.to_string()), usage.name(), true);
            return std::process::ExitCode::from(usage.exit_code());
        }
        Err(error) => error.exit(),
    };
    let json = cli.json;
    match meridian::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let kind = meridian::error::kind_of(&error);
            meridian::cli::print_error(&error, kind.name(), json);
            std::process::ExitCode::from(kind.exit_code())
        }
    }
}
