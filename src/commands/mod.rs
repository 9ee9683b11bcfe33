//! The commands besides `serve`, each in the file named after it: `check`, `simulate` (the
//! gateway's own decision for one transaction) and `simulate-custom-policy` (AWS's
//! `iam simulate-custom-policy`, on sesgate's engine).

pub mod check;
pub mod import;
pub mod principals;
pub mod queue;
pub mod replay;
pub mod simulate;
pub mod simulate_custom_policy;
