//! The `loadbalancer` binary: arguments, settings, logger, then [`loadbalancer::run`].
//! Exit codes: 0 after a clean shutdown, 2 for bad arguments, configuration or an unusable
//! database file, 1 for a runtime failure (such as the listen address being in use) or a
//! second signal during the drain.

use std::process::ExitCode;

use loadbalancer::cli::{self, Command};
use loadbalancer::settings;
use loadbalancer::StartError;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("loadbalancer: {err}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let settings = match settings::load(&options) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("loadbalancer: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match actix_rt::System::new().block_on(loadbalancer::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Database(err)) => {
            log::error!("cannot use the database: {err}");
            ExitCode::from(2)
        }
        Err(StartError::Io(err)) => {
            log::error!("{err}");
            ExitCode::from(1)
        }
    }
}
