//! sesgate: SMTP in, one IAM decision per message, SMTP out.
//!
//! ```text
//! client -> smtp (protocol only) -> gateway (request builder) -> relay -> SES | outbox
//!                                      |
//!                                      v
//!                                 iam::PolicySet (pure)
//! ```
//! `iam` never sees a socket; `smtp` never sees a policy; `gateway` is the only module that
//! joins them. `config` turns files into typed values, `credentials` checks SMTP passwords,
//! `relay` stores or forwards accepted mail, `simulator` is AWS's `simulate-custom-policy`.
#![forbid(unsafe_code)]

pub mod accept;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod gateway;
pub mod iam;
pub mod logging;
pub mod metrics;
pub mod relay;
pub mod smtp;
