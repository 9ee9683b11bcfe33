//! The IAM policy engine: AWS policy documents (identity-based, permissions boundaries, and the
//! resource-based sending authorization policies of SES identities) in, decisions with reasons
//! out.
//!
//! ```text
//! policy JSON --Policy::parse--> Policy (compiled once) --+
//!                                                         +--> PolicySet::evaluate --> Decision
//! request: action, resource, Context (typed values) ------+       (outcome + statements)
//! ```
//!
//! Pure: no I/O, no async, no clock, no knowledge of SMTP. Callers read files and build the
//! [`Context`]; this module only decides. Every choice where AWS's documentation is silent is
//! listed in SPEC §5 and the README, and each fails closed.

mod arn;
mod condition;
mod context;
mod decision;
mod json;
mod lint;
mod pattern;
mod policy;
mod principal;
mod scalar;
pub mod sending_authorization;

pub use arn::ArnPattern;
pub use condition::{CompileError, Condition, SetQualifier, Test};
pub use context::{Context, Entry, Value};
pub use decision::{
    Authorization, Decision, Outcome, PolicyRole, PolicySet, PolicyTypes, ResourceSide,
    SideOutcomes, StatementRef,
};
pub use json::{Json, Position, Span};
pub use lint::{Warning, lint, lint_identity_policy};
pub use pattern::{Pattern, Token};
pub use policy::{Effect, Element, LoadError, Policy, PolicyKind, Statement, Version};
pub use principal::{Caller, Grant, PrincipalEntry, Principals};
pub use scalar::{Decimal, Instant, parse_cidr, parse_date, parse_instant, parse_ip};

/// The action every SMTP transaction is authorized as (the SES SMTP interface, API version 2).
pub const SEND_RAW_EMAIL: &str = "ses:SendRawEmail";
