//! The `boha` command line. Errors print as one line on stderr with a non-zero exit.

mod cli;

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // A dependency that panics on a hostile file is caught and reported as an error;
    // this keeps its panic message off the terminal.
    boha::panic_guard::install_quiet_hook();
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
