//! The `loadbalancer` binary: arguments, settings, logger, then [`loadbalancer::run`].
//! Exit codes are those of [`loadbalancer::exit`].

use std::process::ExitCode;

use loadbalancer::cli::{self, Command};
use loadbalancer::exit;
use loadbalancer::settings;
use loadbalancer::StartError;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (options, check) = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(options)) => (options, false),
        Ok(Command::Check(options)) => (options, true),
        Ok(Command::Print(text)) => {
            println!("{text}");
            return ExitCode::from(exit::CLEAN);
        }
        Err(err) => {
            eprintln!("loadbalancer: {err}\nusage: {}", cli::SYNOPSIS);
            return ExitCode::from(exit::CONFIG);
        }
    };
    let settings = match settings::load(&options) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("loadbalancer: configuration error: {err}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if check {
        println!("configuration ok\n{}", cli::describe(&settings));
        return ExitCode::from(exit::CLEAN);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match actix_rt::System::new().block_on(loadbalancer::run(settings)) {
        Ok(()) => ExitCode::from(exit::CLEAN),
        Err(StartError::Database(err)) => {
            log::error!("cannot use the database: {err}");
            ExitCode::from(exit::CONFIG)
        }
        Err(err @ (StartError::Tls(_) | StartError::AccessLog(_) | StartError::Tracing(_))) => {
            log::error!("{err}");
            ExitCode::from(exit::CONFIG)
        }
        Err(StartError::Io(err)) => {
            log::error!("{err}");
            ExitCode::from(exit::RUNTIME)
        }
    }
}
