//! sesgate: SMTP in, one IAM decision per message, SMTP out.
//!
//! ```text
//! socket -> smtp::Server (mod.rs: accept, PROXY, TLS from the gateway's TlsSource)
//!             -> smtp::conn::Connection (conn.rs, awaits) <-> Session (session.rs, pure)
//!             -> Handler::deliver(Transaction)
//!   gateway::handler::Gateway (handler.rs): loads the Snapshot (load.rs), once per transaction
//!             -> Authorizer::decide (decide.rs)
//!                  -> request::build (request.rs: headers.rs, address.rs) -> SendRequest
//!                  -> iam::PolicySet::authorize_for (pure; identities.rs gives each
//!                     resource's sending authorization policies) -> Ruling (+ SES reply)
//!             -> relay::Relay::send (relay/mod.rs) -> outbox.rs | upstream.rs -> SES
//!             or, with [spool]: relay::spool (store.rs: durable file, then 250)
//!                  -> worker.rs -> Relay::send_each -> upstream.rs -> SES (dsn.rs on failure)
//! ```
//! One message from socket to upstream, in reading order: `smtp/mod.rs`, `smtp/conn.rs`,
//! `smtp/session.rs`, `smtp/data.rs`, `gateway/handler.rs`, `gateway/decide.rs`,
//! `gateway/request.rs`, `iam/decision.rs`, `relay/mod.rs`, `relay/upstream.rs`.
//!
//! `iam` never sees a socket; `smtp` never sees a policy; `gateway` is the only module that
//! joins them. `config` turns files into typed values (`[limits]` into `smtp::Limits` and the
//! gateway's header bounds), `credentials` checks SMTP passwords, `relay` stores or forwards
//! accepted mail, `commands` holds `check`, `simulate`, `simulate-custom-policy` and `import`,
//! `quota` counts SES's sending quotas (in memory or in Redis) and paces the instance after
//! upstream 454s.
#![forbid(unsafe_code)]

mod accept;
pub mod certificate;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod gateway;
pub mod iam;
pub mod logging;
pub mod metrics;
pub mod quota;
pub mod relay;
pub mod smtp;
