//! Where accepted messages go. This build has the file outbox, the embedded default
//! (`file://DIR`); the SMTP upstream is the next step.

pub mod outbox;

pub use outbox::Outbox;
