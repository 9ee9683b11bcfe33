//! The sesgate command line. Everything it does lives in the library; this file only parses
//! arguments, prints, and maps errors to exit codes (2: invalid input).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sesgate::config::{Config, LogFormat};
use sesgate::{credentials, gateway, simulator};

#[derive(Parser)]
#[command(
    name = "sesgate",
    version,
    about = "SMTP relay gateway that enforces Amazon SES IAM policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (with no --config, the embedded default: loopback 2587 and 2465).
    Serve(Serve),
    /// Evaluate policies for actions, resources and a context, as `aws iam simulate-custom-policy`.
    SimulateCustomPolicy(SimulateCustomPolicy),
    /// Print the SES SMTP password of the secret access key read on stdin.
    SmtpPassword {
        /// The AWS region the password is for (SES SMTP passwords are per region).
        #[arg(long)]
        region: String,
    },
    /// Print the argon2id PHC hash of the password read on stdin, for policies/iam.toml.
    HashPassword,
}

#[derive(Args)]
struct Serve {
    /// sesgate.toml; without it the embedded default configuration is used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log format (overrides [log] format).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Args)]
struct SimulateCustomPolicy {
    /// Identity policy: JSON text or file://PATH (repeatable; several values per flag allowed).
    #[arg(long = "policy-input-list", required = true, num_args = 1.., value_name = "POLICY")]
    policies: Vec<String>,
    /// Permissions boundary policy: JSON text or file://PATH (at most one).
    #[arg(long = "permissions-boundary-policy-input-list", num_args = 1.., value_name = "POLICY")]
    boundaries: Vec<String>,
    /// Actions to simulate, e.g. ses:SendRawEmail (no wildcards).
    #[arg(long = "action-names", required = true, num_args = 1.., value_name = "ACTION")]
    actions: Vec<String>,
    /// Resource ARNs to simulate (default: *).
    #[arg(long = "resource-arns", num_args = 1.., value_name = "ARN")]
    resources: Vec<String>,
    /// Context entries: ContextKeyName=k,ContextKeyValues=v1,v2,ContextKeyType=stringList, or JSON.
    #[arg(long = "context-entries", num_args = 1.., value_name = "ENTRY")]
    context: Vec<String>,
}

fn simulate_custom_policy(args: SimulateCustomPolicy) -> Result<String, simulator::InputError> {
    let read_all = |list: &[String]| {
        list.iter()
            .map(|a| simulator::read_argument(a))
            .collect::<Result<Vec<_>, _>>()
    };
    let mut context = Vec::new();
    for entry in &args.context {
        context.extend(simulator::parse_context_entries(entry)?);
    }
    let input = simulator::Input {
        policies: read_all(&args.policies)?,
        boundaries: read_all(&args.boundaries)?,
        actions: args.actions,
        resources: args.resources,
        context,
    };
    Ok(simulator::render(&simulator::simulate(&input)?))
}

/// Reads stdin, without the final line break (`echo secret |` adds one).
fn read_stdin_secret() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err("nothing on stdin".into());
    }
    Ok(secret.to_owned())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(args: Serve) -> Result<(), String> {
    let load = |file: &Option<PathBuf>| match file {
        Some(file) => Config::load(file).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    };
    let config = load(&args.config)?;
    let format = match args.log_format {
        Some(LogFormatArg::Text) => LogFormat::Text,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => config.log.format,
    };
    init_logging(format);
    if args.config.is_none() {
        tracing::warn!("running the embedded default configuration: its demo credentials are for local use only");
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async {
        let running = gateway::start(&config).await.map_err(|e| e.to_string())?;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        if let Some(interval) = sd_notify::watchdog_enabled() {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval / 2);
                loop {
                    ticks.tick().await;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            });
        }
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
        let grace = std::time::Duration::from_secs(config.limits.drain_timeout_secs);
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    let mut reloading = vec![sd_notify::NotifyState::Reloading];
                    reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                    let _ = sd_notify::notify(&reloading);
                    // A broken file keeps the running set: nothing is swapped unless all loads.
                    match load(&args.config).and_then(|new| running.reload(&new).map_err(|e| e.to_string())) {
                        Ok(()) => tracing::info!("reloaded users, policies, credentials and certificate"),
                        Err(error) => tracing::error!(%error, "reload failed; keeping the running configuration"),
                    }
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
                _ = terminate.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!(open_connections = running.open_connections(), grace_secs = grace.as_secs(), "stopping: no new connections, draining");
        running.stop_within(grace).await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).map(|()| String::new()),
        Command::SimulateCustomPolicy(args) => {
            simulate_custom_policy(args).map_err(|e| e.to_string())
        }
        Command::SmtpPassword { region } => {
            read_stdin_secret().map(|secret| credentials::ses_smtp_password(&secret, &region))
        }
        Command::HashPassword => {
            read_stdin_secret().map(|password| credentials::hash_password(&password))
        }
    };
    match result {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sesgate: error: {error}");
            ExitCode::from(2)
        }
    }
}
