//! The sesgate command line. Everything it does lives in the library; this file only parses
//! arguments, prints, and maps errors to exit codes (2: invalid input).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sesgate::simulator;

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
    /// Evaluate policies for actions, resources and a context, as `aws iam simulate-custom-policy`.
    SimulateCustomPolicy(SimulateCustomPolicy),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::SimulateCustomPolicy(args) => simulate_custom_policy(args),
    };
    match result {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sesgate: error: {error}");
            ExitCode::from(2)
        }
    }
}
