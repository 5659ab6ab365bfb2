//! The `boha` command line. Errors print as one line on stderr with a non-zero exit.

mod cli;

use clap::Parser;

fn main() {
    // Before anything else, while the process has one thread: it may set an environment
    // variable.
    boha::host::runtime_dir::ensure_valid();
    // The Vulkan loader's own messages (e.g. "Found no drivers!") reach stderr through
    // wgpu_hal's instance logger; boha reports what they mean as its one error line.
    // RUST_LOG brings them back.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal::vulkan::instance=off"),
    )
    .init();
    // A dependency that panics on a hostile file is caught and reported as an error;
    // this keeps its panic message off the terminal.
    boha::panic_guard::install_quiet_hook();
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
