//! CLI: parse the command and the configuration, then run. Nothing else lives here.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use print_gateway::app::{self, Application, Role};
use print_gateway::config::{Config, DatabaseArgs, LogFormat, RetentionConfig, SecretsConfig};
use print_gateway::{api, demo, store, telemetry, webhook_listen};

// glibc's malloc showed as ~8 % of the accept path's profile (malloc, free, consolidation
// across the runtime's threads); mimalloc's thread-local free lists cost a fraction of it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long memory the allocator has freed stays with the process before it is given back
/// to the OS (mimalloc's `purge_delay`; its default is 1 s). Under a steady load the
/// gateway's memory in use rises and falls by megabytes from one second to the next
/// (batches of callbacks, vendor answers, JSON bodies); given back after a second, it was
/// taken again moments later, each time as fresh pages the kernel had to fault in and zero
/// (2 MiB at a time where transparent huge pages are on): perf showed page zeroing and
/// fresh-page setup at ~18 % of the gateway's CPU in the callbacks phase, and 1,475 page
/// faults in 3 s, against 72 with purging held back. Ten seconds keeps memory that is used
/// again within a burst, and still gives back what an idle gateway no longer needs.
/// `MIMALLOC_PURGE_DELAY` in the environment still decides when it is set.
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (not exported as a constant by
/// `libmimalloc-sys`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[allow(unsafe_code)]
fn hold_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores a number in mimalloc's option table, read when it next
    // decides whether to purge; it is called here first thing in `main`, before any thread
    // of ours runs.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) }
}

/// One vendor-neutral print API over Lianke, Zhimu and WeCom cloud printers.
///
/// Every setting of a command is also read from the environment variable of the same name
/// (`print-gateway serve --help` lists the server's).
#[derive(Parser)]
#[command(name = "print-gateway", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and/or the dispatch workers until SIGTERM / Ctrl-C.
    Serve {
        /// What this process runs.
        #[arg(long, value_enum, default_value = "all")]
        role: Role,
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Create the database if missing and apply migrations, then exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Manage API keys.
    ApiKeys {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Delete what the retention settings say has expired (finished jobs, events, document
    /// bytes, idempotency keys), in small batches; `--dry-run` only counts.
    Purge {
        /// Count what would go, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        retention: RetentionConfig,
    },
    /// Secrets at rest (printer secrets, webhook signing secrets).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// Exit 0 when the API answers its liveness URL with 200 (Docker's HEALTHCHECK).
    Healthcheck {
        /// The URL to ask.
        #[arg(
            long,
            env = "HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:8080/healthz"
        )]
        url: String,
    },
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
        /// Also write DATABASE_URL, PRINT_GATEWAY_URL and PRINT_GATEWAY_API_KEY as `export`
        /// lines to this file (for `. FILE` in another shell).
        #[arg(long, env = "DEMO_ENV_FILE")]
        env_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        config: Box<Config>,
    },
}

impl Command {
    /// The configuration this command checks and logs with.
    fn config(&self) -> Option<&Config> {
        match self {
            Command::Serve { config, .. } | Command::Demo { config, .. } => Some(config),
            _ => None,
        }
    }
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
enum SecretsCommand {
    /// Re-seal every stored printer secret and webhook signing secret with
    /// SECRETS_ACTIVE_KEY (also those still in clear). Every key they are sealed with now
    /// must be in SECRETS_KEYS; drop the old key once this has run.
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        secrets: SecretsConfig,
    },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Create a key; prints the key alone on stdout (it is shown only once).
    Create {
        /// The tenant the key acts for; jobs and printers are visible only to their tenant.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: jobs:write, jobs:read, printers:admin, webhooks:admin, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// A name to recognise the key by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// When the key stops working (RFC 3339, e.g. 2030-01-01T00:00:00Z); default never.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// List keys (id, tenant, name, prefix, scopes, state, expiry, last use).
    List,
    /// Revoke a key by id.
    Revoke { id: uuid::Uuid },
}

fn main() -> ExitCode {
    hold_freed_memory();
    async_main()
}

#[tokio::main]
async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match cli.command.config() {
        Some(config) => {
            if let Err(message) = config.validate() {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
            config.log_format
        }
        None => LogFormat::Text,
    };
    telemetry::init(log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // `print-gateway openapi | head`: the reader left; that is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
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

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes a line to stdout, returning the error (a closed pipe) instead of panicking.
fn out(line: impl std::fmt::Display) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { role, config } => {
            let config = *config;
            let pool = app::prepare_database(&config).await?;
            let application = {
                let backends = app::default_backends(&config);
                Application::start(config, pool, backends, role).await?
            };
            application.run_until_signal().await;
        }
        Command::Migrate { database } => {
            app::prepare_database(&database.config()).await?;
            eprintln!("database is migrated");
        }
        Command::ApiKeys { database, command } => api_keys(database.config(), command).await?,
        Command::Demo {
            simulator,
            simulator_url,
            env_file,
            config,
        } => {
            let simulator = match simulator_url {
                Some(url) => demo::Simulator::Running(url),
                None => demo::Simulator::Spawn(simulator),
            };
            demo::run(*config, simulator, env_file).await?;
        }
        Command::Purge {
            dry_run,
            database,
            retention,
        } => {
            retention.validate().map_err(|m| anyhow::anyhow!(m))?;
            let pool = app::prepare_database(&database.config()).await?;
            let cutoffs = print_gateway::retention::Cutoffs::at(chrono::Utc::now(), &retention);
            let counts = if dry_run {
                print_gateway::retention::preview(&pool, cutoffs).await?
            } else {
                let documents = print_gateway::document_store::DocumentStore::from_url(
                    retention.document_store_url.as_deref(),
                )
                .map_err(anyhow::Error::msg)?;
                print_gateway::retention::purge(
                    &pool,
                    &documents,
                    cutoffs,
                    retention.purge_batch_size,
                )
                .await?
            };
            let verb = if dry_run { "would remove" } else { "removed" };
            out(format_args!(
                "{verb}: {} finished jobs (with their events and documents), {} events, {} document contents, {} idempotency keys, {} webhook events (with {} deliveries)",
                counts.jobs,
                counts.events,
                counts.document_contents,
                counts.idempotency_keys,
                counts.webhook_events,
                counts.webhook_deliveries
            ))?;
        }
        Command::Webhooks(WebhooksCommand::Listen {
            port,
            host,
            secret,
            quiet,
        }) => {
            webhook_listen::listen((host, port).into(), &secret, quiet).await?;
        }
        Command::Secrets(SecretsCommand::Rotate { database, secrets }) => {
            let keyring = secrets.keyring()?;
            let Some(active) = keyring.active_key_id() else {
                anyhow::bail!(
                    "SECRETS_KEYS is not set: there is no key to seal with (e.g. SECRETS_KEYS=k1:$(openssl rand -base64 32))"
                );
            };
            let pool = app::prepare_database(&database.config()).await?;
            let done = store::secrets::reseal(&pool, &keyring, store::secrets::Reseal::All).await?;
            out(format_args!(
                "re-sealed with key `{active}`: {} printers, {} webhook endpoints",
                done.printers, done.webhook_endpoints
            ))?;
        }
        Command::Openapi => {
            out(api::openapi().to_pretty_json()?)?;
        }
        Command::Healthcheck { url } => {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?;
            let status = client
                .get(&url)
                .send()
                .await
                .with_context(|| format!("asking {url}"))?
                .status();
            if !status.is_success() {
                anyhow::bail!("{url} answered {status}");
            }
        }
    }
    Ok(())
}

async fn api_keys(config: Config, command: ApiKeysCommand) -> anyhow::Result<()> {
    match command {
        ApiKeysCommand::Create {
            tenant,
            scopes,
            name,
            expires_at,
        } => {
            api::keys::check_new_key(&tenant, &name, &scopes, expires_at).map_err(|message| {
                anyhow::anyhow!("{}", message.to_string().trim_end_matches('.'))
            })?;
            let pool = app::prepare_database(&config).await?;
            let new = store::api_keys::NewKey {
                tenant: &tenant,
                name: &name,
                scopes: &scopes,
                expires_at,
            };
            let (_, key) = store::api_keys::create_key(&pool, &new)
                .await
                .context("creating the key")?;
            out(key)?;
        }
        ApiKeysCommand::List => {
            let pool = app::prepare_database(&config).await?;
            let now = chrono::Utc::now();
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "-".into())
            };
            out("id\ttenant\tname\tprefix\tscopes\tstate\texpires_at\tlast_used_at")?;
            for key in store::api_keys::list(&pool).await? {
                let status = if key.revoked_at.is_some() {
                    "revoked"
                } else if key.expired(now) {
                    "expired"
                } else {
                    "active"
                };
                out(format_args!(
                    "{}\t{}\t{}\t{}…\t{}\t{}\t{}\t{}",
                    key.id,
                    key.tenant,
                    key.name,
                    key.prefix,
                    key.scopes.join(","),
                    status,
                    time(key.expires_at),
                    time(key.last_used_at),
                ))?;
            }
        }
        ApiKeysCommand::Revoke { id } => {
            let pool = app::prepare_database(&config).await?;
            if !store::api_keys::revoke(&pool, id).await? {
                anyhow::bail!("no active key with id {id}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `MI_OPTION_PURGE_DELAY` is a bare index into mimalloc's option table: if an upgrade of
    /// mimalloc moved its options, the index would name another option. The purge delay is
    /// the only option whose default is 1,000 ms, so an index that reads that default (and
    /// reads back what is set) is the purge delay.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_index_names_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // set from outside: the default cannot be read
        }
        // SAFETY: reads and writes of mimalloc's option table, as in `hold_freed_memory`.
        let (default, set) = unsafe {
            let default = libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY);
            super::hold_freed_memory();
            (
                default,
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!(default, 1_000, "mimalloc's default purge delay");
        assert_eq!(set, super::ALLOCATOR_PURGE_DELAY_MS);
    }
}
