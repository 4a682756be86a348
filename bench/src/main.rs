//! The benchmark suite of print-gateway (SPEC §8): measures the machine's limits and the
//! gateway in the same run and prints ratios, p50/p99 and pass/fail per target.
//!
//! `bench/run` builds everything in release mode and calls `bench run`; `bench baseline`
//! is the bare axum service the gateway is compared with.

mod baseline;
mod load;
mod render;
mod report;
mod run;
mod wrk;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", about = "print-gateway benchmarks (SPEC §8)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every phase and print the table (see the README, "Benchmarks").
    Run(run::Options),
    /// The bare baselines: `GET /` (a trivial route) and `GET /row/{id}` (one sqlx
    /// primary-key select on `jobs`), no middleware.
    /// Renders a PDF of `--pages` A4 pages to PNG at `--dpi` as the gateway's workers do,
    /// and prints pages per second and peak RSS as JSON (the `render` phase runs this).
    Render {
        #[arg(long, default_value_t = 50)]
        pages: u32,
        #[arg(long, default_value_t = 300)]
        dpi: u32,
    },
    Baseline {
        #[arg(long, default_value = "127.0.0.1:18081")]
        bind: String,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 20)]
        max_connections: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Run(options) => {
            run::check_phases(&options.phases)?;
            runtime.block_on(run::run(options))
        }
        Command::Render { pages, dpi } => {
            println!("{}", render::measure(pages, dpi)?);
            Ok(())
        }
        Command::Baseline {
            bind,
            database_url,
            max_connections,
        } => runtime.block_on(baseline::serve(&bind, &database_url, max_connections)),
    }
}
