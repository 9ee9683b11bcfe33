//! sesgate: SMTP in, one IAM decision per message, SMTP out.
//!
//! ```text
//! client -> smtp (protocol only) -> gateway (request builder) -> relay -> SES | outbox
//!                                      |
//!                                      v
//!                                 iam::PolicySet (pure)
//! ```
//! `iam` never sees a socket; `smtp` never sees a policy. This build holds the policy engine and
//! the AWS-compatible simulator; see the README for what is still to come.
#![forbid(unsafe_code)]

pub mod iam;
pub mod simulator;
pub mod smtp;
