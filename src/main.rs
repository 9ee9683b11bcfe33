//! The sesgate command line. Everything it does lives in the library; this file only parses
//! arguments, prints, and maps errors to exit codes: 0 done, 1 a system failure (no runtime, no
//! signal handler), 2 invalid input or configuration (`check` has its own: 1 warnings with
//! `--strict`, 2 errors).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sesgate::commands::simulate_custom_policy as simulator;
use sesgate::config::locate::Source;
use sesgate::config::{ConfigError, LogFormat};
use sesgate::{commands, credentials, gateway};

/// Every way a command fails, and its exit code.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] gateway::StartError),
    #[error(transparent)]
    SimulatorInput(#[from] simulator::InputError),
    /// A flag or stdin that cannot be used.
    #[error("{0}")]
    Input(String),
    /// The process could not do its work (runtime, signal handlers).
    #[error("{0}")]
    System(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::System(_) => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }
}

/// `--config`, else `SESGATE_CONFIG`, else `/etc/sesgate/sesgate.toml` when it exists, else the
/// embedded default.
fn config_source(file: Option<&PathBuf>) -> Source {
    Source::of_process(file.map(PathBuf::as_path))
}

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
    /// Validate the configuration, users and policies, and warn about policies that probably
    /// do not do what they say (exit 0 clean, 1 warnings with --strict, 2 errors).
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Exit 1 when there are warnings.
        #[arg(long)]
        strict: bool,
    },
    /// The gateway's own decision for one hypothetical transaction, with the SMTP reply.
    Simulate(Simulate),
    /// Evaluate policies for actions, resources and a context, as `aws iam simulate-custom-policy`.
    SimulateCustomPolicy(SimulateCustomPolicy),
    /// Print the SES SMTP password of the secret access key read on stdin.
    SmtpPassword {
        /// The AWS region the password is for (SES SMTP passwords are per region).
        #[arg(long)]
        region: String,
    },
    /// Print the argon2id PHC hash of a password for policies/iam.toml: prompted without echo at
    /// a terminal, else read from stdin.
    HashPassword,
    /// Re-decide the transactions of a decision log against another policy set (exit 0 no
    /// change, 1 changes, 2 errors).
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The directory holding the other set's iam.toml and policy files.
        #[arg(long)]
        policies: PathBuf,
        /// The decision log ([log] decisions).
        decisions: PathBuf,
    },
    /// Make the shadow set ([iam] shadow_dir) the live one ([iam] dir); then send SIGHUP.
    Promote {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Import users, groups, policies and boundaries from `aws iam
    /// get-account-authorization-details`, and identities' sending authorization policies from
    /// `aws sesv2 get-email-identity-policies`; re-importing keeps [[user.credentials]].
    Import {
        /// The JSON printed by `aws iam get-account-authorization-details`.
        #[arg(long)]
        authorization_details: PathBuf,
        /// A directory of `aws sesv2 get-email-identity-policies` outputs, one per identity,
        /// named after it (example.com.json).
        #[arg(long)]
        identity_policies: Option<PathBuf>,
        /// Where iam.toml and the policy files go.
        #[arg(long, default_value = "policies")]
        out: PathBuf,
    },
    /// Show and change the spool ([spool]), also while the gateway runs.
    Queue(Queue),
}

#[derive(Args)]
struct Queue {
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    verb: QueueVerb,
}

#[derive(Subcommand)]
enum QueueVerb {
    /// Every spooled message: id, size, arrival, state, attempts, sender, recipients.
    List,
    /// One message's envelope, state and headers (with --body: the message as spooled).
    Show {
        id: String,
        /// Print the whole message instead (mail content).
        #[arg(long)]
        body: bool,
    },
    /// Make every deferred message due now.
    Flush,
    /// Keep a message from delivery until released.
    Hold { id: String },
    /// Return a held message to delivery, due now.
    Release { id: String },
    /// Remove a message without a DSN.
    Delete { id: String },
}

/// `sesgate queue ...`: the output is bytes (`show --body` prints the message as spooled).
fn queue(args: Queue) -> ExitCode {
    use commands::queue::Verb;
    let verb = match args.verb {
        QueueVerb::List => Verb::List,
        QueueVerb::Show { id, body } => Verb::Show { id, body },
        QueueVerb::Flush => Verb::Flush,
        QueueVerb::Hold { id } => Verb::Hold { id },
        QueueVerb::Release { id } => Verb::Release { id },
        QueueVerb::Delete { id } => Verb::Delete { id },
    };
    let config = match config_source(args.config.as_ref()).load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sesgate: error: {error}");
            return ExitCode::from(2);
        }
    };
    match commands::queue::run(&config, &verb) {
        Ok(output) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(&output)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sesgate: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// `sesgate generate-assets --out DIR`: writes the Debian package's man pages and shell
/// completions (dist/build-deb.sh). Parsed apart from `Cli`, so that neither the man pages nor
/// the completions it writes mention it (clap_complete lists hidden subcommands too).
#[derive(Parser)]
#[command(name = "generate-assets", bin_name = "sesgate generate-assets")]
struct GenerateAssets {
    #[arg(long)]
    out: PathBuf,
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

#[derive(Args)]
struct Simulate {
    #[arg(long)]
    config: Option<PathBuf>,
    /// The IAM user (or an SMTP user name of one).
    #[arg(long)]
    user: String,
    /// The envelope sender; empty for `MAIL FROM:<>`.
    #[arg(long, default_value = "")]
    mail_from: String,
    /// The From header value, e.g. 'Marketing <marketing@example.com>'.
    #[arg(long)]
    from: String,
    /// A recipient (repeatable).
    #[arg(long = "rcpt", required = true)]
    recipients: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: std::net::IpAddr,
    /// The session is under TLS (the default).
    #[arg(long, conflicts_with = "no_tls")]
    tls: bool,
    /// The session is not under TLS.
    #[arg(long)]
    no_tls: bool,
    /// The time of the request (W3C ISO 8601 or epoch seconds); default now.
    #[arg(long)]
    time: Option<String>,
    /// An extra header line, e.g. 'X-SES-CONFIGURATION-SET: marketing' (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    output: OutputArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Text,
    Json,
}

fn simulate(args: Simulate) -> Result<String, CliError> {
    let config = config_source(args.config.as_ref()).load()?;
    let (authorizer, iam, _) = gateway::load_authorizer(&config)?;
    // Accept an SMTP user name too, as the log shows both.
    let user = iam
        .logins()
        .into_iter()
        .find(|login| login.smtp_username == args.user)
        .map_or(args.user.clone(), |login| login.iam_user);
    // An unknown user is a mistake in the command, not a transaction to refuse with a 451.
    if authorizer.directory.user(&user).is_none() {
        return Err(CliError::Input(format!(
            "--user {:?}: no such IAM user or SMTP user name in the configuration",
            args.user
        )));
    }
    let now = match &args.time {
        Some(text) => sesgate::iam::parse_date(text)
            .ok_or_else(|| CliError::Input(format!("--time {text:?} is not a date")))?,
        None => jiff::Timestamp::now(),
    };
    let mut message = format!("From: {}\r\n", args.from);
    for header in &args.headers {
        message.push_str(header);
        message.push_str("\r\n");
    }
    message.push_str("\r\n");
    let input = gateway::Input {
        user: &user,
        facts: gateway::request::TransactionFacts {
            tls: !args.no_tls,
            client: args.source_ip,
            mail_from: &args.mail_from,
            recipients: &args.recipients,
        },
        message: message.as_bytes(),
    };
    let ruling = authorizer.decide(input, now);
    Ok(match args.output {
        OutputArg::Text => commands::simulate::to_text(&ruling),
        OutputArg::Json => serde_json::to_string_pretty(&commands::simulate::to_json(&ruling))
            .expect("JSON values serialize"),
    })
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
    /// A resource-based policy attached to every simulated resource: JSON text or file://PATH
    /// (needs --caller-arn).
    #[arg(long = "resource-policy", value_name = "POLICY")]
    resource_policy: Option<String>,
    /// The account owning resources whose ARN names none: arn:aws:iam::ACCOUNT:root.
    #[arg(long = "resource-owner", value_name = "ARN")]
    resource_owner: Option<String>,
    /// The simulated caller, an IAM user ARN (required with --resource-policy).
    #[arg(long = "caller-arn", value_name = "ARN")]
    caller_arn: Option<String>,
    /// AWS's EC2 resource scenario (EC2-VPC-InstanceStore, ...); no effect on SES actions.
    #[arg(long = "resource-handling-option", value_name = "OPTION")]
    resource_handling_option: Option<String>,
}

fn simulate_custom_policy(args: SimulateCustomPolicy) -> Result<String, CliError> {
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
        resource_policy: args
            .resource_policy
            .as_deref()
            .map(simulator::read_argument)
            .transpose()?,
        resource_owner: args.resource_owner,
        caller_arn: args.caller_arn,
        resource_handling_option: args.resource_handling_option,
    };
    Ok(simulator::render(&simulator::simulate(&input)?))
}

/// Reads stdin, without the final line break (`echo secret |` adds one).
fn read_stdin_secret() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::Input(format!("reading stdin: {e}")))?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(CliError::Input("nothing on stdin".into()));
    }
    Ok(secret.to_owned())
}

/// The password for `hash-password`: typed at a terminal without echo, else stdin to the end
/// (a file or a pipe, as `read_stdin_secret`).
fn read_password() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if !std::io::IsTerminal::is_terminal(&stdin) {
        return read_stdin_secret();
    }
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let saved = tcgetattr(&stdin).map_err(|e| CliError::Input(format!("terminal: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    // Echo off first, then the prompt: nothing typed after the prompt is ever echoed.
    tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .map_err(|e| CliError::Input(format!("terminal: {e}")))?;
    eprint!("Password (not echoed): ");
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    // Echo comes back whatever the read did.
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    read.map_err(|e| CliError::Input(format!("reading the password: {e}")))?;
    restored.map_err(|e| CliError::Input(format!("terminal: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(CliError::Input("no password given".into()));
    }
    Ok(password.to_owned())
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Dependencies are capped at INFO and every field is escaped, whatever RUST_LOG says.
    // Batched: one write per batch of lines (see BatchedStderr); main flushes it at the end.
    let writer = sesgate::logging::BatchedStderr::get();
    sesgate::logging::subscriber(format, filter, writer, ansi).init();
}

fn serve(args: Serve) -> Result<(), CliError> {
    let source = config_source(args.config.as_ref());
    let config = source.load()?;
    let format = match args.log_format {
        Some(LogFormatArg::Text) => LogFormat::Text,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => config.log.format,
    };
    init_logging(format);
    tracing::info!(configuration = %source.describe(), "configuration");
    if source.is_embedded() {
        tracing::warn!(
            "running the embedded default configuration: its demo credentials are for local use only"
        );
    }
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::System(format!("starting the runtime: {e}")))?;
    runtime.block_on(async {
        let running = gateway::start(&config).await?;
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
        let mut hangup = signal(SignalKind::hangup()).map_err(|e| CliError::System(format!("SIGHUP handler: {e}")))?;
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| CliError::System(format!("SIGTERM handler: {e}")))?;
        let grace = config.limits.drain_timeout;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    let mut reloading = vec![sd_notify::NotifyState::Reloading];
                    reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                    let _ = sd_notify::notify(&reloading);
                    // A broken file keeps the running set: nothing is swapped unless all loads.
                    match running.reload(source.load()) {
                        Ok(unapplied) if unapplied.is_empty() => tracing::info!("reloaded users, policies, credentials and certificate"),
                        Ok(unapplied) => tracing::warn!(not_applied = %unapplied.join(","), "reloaded users, policies, credentials and certificate; changes to the sections not_applied need a restart and are NOT in effect"),
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

fn check(config: Option<PathBuf>, strict: bool) -> ExitCode {
    let source = config_source(config.as_ref());
    eprintln!("configuration: {}", source.describe());
    let config = match source.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let report = commands::check::check(&config);
    // Errors on stderr, as every command's; warnings, notes and the summary are the report, on
    // stdout, as a linter's.
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    println!(
        "{} error(s), {} warning(s); {} user(s), {} policies checked",
        report.errors.len(),
        report.warnings.len(),
        report.users,
        report.policies
    );
    if !report.errors.is_empty() {
        ExitCode::from(2)
    } else if strict && !report.warnings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The package's man pages (`man/sesgate.1`, `man/sesgate-serve.1`, ... one per subcommand) and
/// completions (`completions/sesgate.bash`, `_sesgate`, `sesgate.fish`), generated from the very
/// `Cli` that parses the arguments, so they cannot drift from it. Run when the package is built,
/// not by a build script on every build.
fn generate_assets(out: &std::path::Path) -> Result<String, CliError> {
    use clap::CommandFactory;
    let failed = |path: &std::path::Path, e: std::io::Error| {
        CliError::System(format!("writing {}: {e}", path.display()))
    };
    let (man, completions) = (out.join("man"), out.join("completions"));
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    }
    clap_mangen::generate_to(Cli::command(), &man).map_err(|e| failed(&man, e))?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "sesgate", &completions)
            .map_err(|e| failed(&completions, e))?;
    }
    Ok(format!(
        "man pages in {}, completions in {}",
        man.display(),
        completions.display()
    ))
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "generate-assets")
    {
        let args = GenerateAssets::parse_from(std::env::args_os().skip(1));
        return match generate_assets(&args.out) {
            Ok(done) => {
                eprintln!("{done}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("sesgate: error: {error}");
                error.exit_code()
            }
        };
    }
    let cli = Cli::parse();
    if let Command::Check { config, strict } = cli.command {
        return check(config, strict);
    }
    if let Command::Queue(args) = cli.command {
        return queue(args);
    }
    if let Command::Replay {
        config,
        policies,
        decisions,
    } = &cli.command
    {
        let result = config_source(config.as_ref())
            .load()
            .map_err(|e| e.to_string())
            .and_then(|c| commands::replay::replay(&c, policies, decisions));
        return match result {
            Ok(replay) => {
                print!("{}", replay.report());
                ExitCode::from(u8::from(!replay.changed.is_empty()))
            }
            Err(error) => {
                eprintln!("sesgate: error: {error}");
                ExitCode::from(2)
            }
        };
    }
    let result = match cli.command {
        Command::Serve(args) => {
            let served = serve(args).map(|()| String::new());
            sesgate::logging::flush_batched();
            served
        }
        Command::SimulateCustomPolicy(args) => simulate_custom_policy(args),
        Command::SmtpPassword { region } if !credentials::is_aws_region(&region) => {
            Err(CliError::Input(format!(
                "--region {region:?} is not an AWS region name (e.g. us-east-1, eu-west-1)"
            )))
        }
        Command::SmtpPassword { region } => {
            read_stdin_secret().map(|secret| credentials::ses_smtp_password(&secret, &region))
        }
        Command::HashPassword => {
            read_password().map(|password| credentials::hash_password(&password))
        }
        Command::Simulate(args) => simulate(args),
        Command::Import {
            authorization_details,
            identity_policies,
            out,
        } => commands::import::import(&commands::import::Options {
            authorization_details,
            identity_policies,
            out,
        })
        .map_err(CliError::Input),
        Command::Promote { config } => config_source(config.as_ref())
            .load()
            .map_err(CliError::from)
            .and_then(|c| commands::replay::promote(&c).map_err(CliError::Input)),
        Command::Check { .. } | Command::Replay { .. } | Command::Queue(_) => {
            unreachable!("handled above")
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
            error.exit_code()
        }
    }
}
