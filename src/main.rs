//! CLI: parse the command and the configuration, then run. Nothing else lives here.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use print_gateway::api::auth::SCOPES;
use print_gateway::app::{self, Application, Role};
use print_gateway::config::Config;
use print_gateway::{api, demo, store, telemetry, webhook_listen};

/// One vendor-neutral print API over Lianke, Zhimu and WeCom cloud printers.
///
/// Every setting below is also read from the environment variable of the same name.
#[derive(Parser)]
#[command(name = "print-gateway", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and/or the dispatch workers until SIGTERM / Ctrl-C.
    Serve {
        /// What this process runs.
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
    },
    /// Create the database if missing and apply migrations, then exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// Tools for the gateway's outbound webhooks.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Start the vendor simulator and the gateway with demo printers, print
    /// PRINT_GATEWAY_URL and PRINT_GATEWAY_API_KEY, follow a demo job per printer, keep serving.
    Demo {
        /// The vendor-sim binary to start (default: next to this executable).
        #[arg(long, env = "VENDOR_SIM_BIN", conflicts_with = "simulator_url")]
        simulator: Option<std::path::PathBuf>,
        /// Use a vendor simulator already running at this URL instead of starting one.
        #[arg(long, env = "VENDOR_SIM_URL")]
        simulator_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Run a local receiver that verifies each delivery's signature and prints the event
    /// (register http://127.0.0.1:PORT/ as an endpoint; needs WEBHOOK_ALLOW_HTTP and
    /// WEBHOOK_ALLOW_PRIVATE_URLS on the gateway, as the demo sets them).
    Listen {
        /// Port to listen on.
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// The endpoint's signing secret (`whsec_…`).
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// One line per event (`webhook-id type`) instead of the whole body.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Create a key; prints the key alone on stdout (it is shown only once).
    Create {
        /// The tenant the key acts for; jobs are visible only to their tenant.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: jobs:write, jobs:read, printers:admin, webhooks:admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// List keys (id, tenant, prefix, scopes, state).
    List,
    /// Revoke a key by id.
    Revoke { id: uuid::Uuid },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = cli.config.validate() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    telemetry::init(cli.config.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Each layer's message already quotes its cause: print the chain without repeats.
            let mut message = String::new();
            for cause in err.chain().map(ToString::to_string) {
                if !message.contains(&cause) {
                    if !message.is_empty() {
                        message.push_str(": ");
                    }
                    message.push_str(&cause);
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { role } => {
            let pool = app::prepare_database(&cli.config).await?;
            let application = {
                let backends = app::default_backends(&cli.config);
                Application::start(cli.config, pool, backends, role).await?
            };
            application.run_until_signal().await;
        }
        Command::Migrate => {
            app::prepare_database(&cli.config).await?;
            eprintln!("database is migrated");
        }
        Command::ApiKeys(ApiKeysCommand::Create { tenant, scopes }) => {
            if tenant.trim().is_empty() {
                anyhow::bail!("--tenant must not be empty");
            }
            if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                anyhow::bail!("unknown scope `{bad}`; scopes are {}", SCOPES.join(", "));
            }
            let pool = app::prepare_database(&cli.config).await?;
            let (_, key) = store::api_keys::create(&pool, &tenant, &scopes)
                .await
                .context("creating the key")?;
            println!("{key}");
        }
        Command::ApiKeys(ApiKeysCommand::List) => {
            let pool = app::prepare_database(&cli.config).await?;
            for key in store::api_keys::list(&pool).await? {
                let status = if key.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}…\t{}\t{}",
                    key.id,
                    key.tenant,
                    key.prefix,
                    key.scopes.join(","),
                    status
                );
            }
        }
        Command::ApiKeys(ApiKeysCommand::Revoke { id }) => {
            let pool = app::prepare_database(&cli.config).await?;
            if !store::api_keys::revoke(&pool, id).await? {
                anyhow::bail!("no active key with id {id}");
            }
            eprintln!("revoked {id}");
        }
        Command::Demo {
            simulator,
            simulator_url,
        } => {
            let simulator = match simulator_url {
                Some(url) => demo::Simulator::Running(url),
                None => demo::Simulator::Spawn(simulator),
            };
            demo::run(cli.config, simulator).await?;
        }
        Command::Webhooks(WebhooksCommand::Listen {
            port,
            host,
            secret,
            quiet,
        }) => {
            webhook_listen::listen((host, port).into(), &secret, quiet)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        Command::Openapi => {
            println!("{}", api::openapi().to_pretty_json()?);
        }
    }
    Ok(())
}
