//! `sesgate replay --policies DIR DECISIONS.jsonl`: re-decides every transaction recorded in a
//! decision log (`[log] decisions`) against another users/policies set, and says what would
//! change: a summary by user and direction, then each changed transaction. Only policy
//! decisions are re-decided: refusals before policy (ambiguous headers, unverified identities)
//! do not depend on the policies and are counted apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::config::Config;
use crate::gateway::decision_log::{Record, replay_context};
use crate::gateway::load_authorizer;
use crate::gateway::shadow::Direction;
use crate::iam::Outcome;

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Records read.
    pub transactions: usize,
    /// Records refused before policy (not re-decided).
    pub before_policy: usize,
    /// Each changed transaction: (record, direction, new decision, its reason).
    pub changed: Vec<(Record, Direction, &'static str, String)>,
}

impl Replay {
    /// The printed report.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let count = |d: Direction| self.changed.iter().filter(|c| c.1 == d).count();
        let _ = writeln!(
            out,
            "replayed {} transactions ({} refused before policy, not re-decided): {} would change ({} newly refused, {} newly allowed)",
            self.transactions,
            self.before_policy,
            self.changed.len(),
            count(Direction::NewlyRefused),
            count(Direction::NewlyAllowed)
        );
        let mut by_user: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (record, direction, ..) in &self.changed {
            *by_user
                .entry((record.user.as_str(), direction.as_str()))
                .or_default() += 1;
        }
        for ((user, direction), n) in by_user {
            let _ = writeln!(out, "  user {user}: {n} {direction}");
        }
        for (record, direction, decision, reason) in &self.changed {
            let _ = writeln!(
                out,
                "{} session {} user {} {}: {} -> {} ({reason})",
                record.time,
                record.session,
                record.user,
                direction.as_str(),
                record.decision,
                decision
            );
        }
        out
    }
}

/// Re-decides every record of `log` against the users and policies in `policies` (`iam.toml`
/// and policy files), with `config`'s other settings.
pub fn replay(config: &Config, policies: &Path, log: &Path) -> Result<Replay, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let records: Vec<Record> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{}: line {}: {e}", log.display(), n + 1))
        })
        .collect::<Result<_, _>>()?;
    let mut config = config.clone();
    config.iam.dir = std::path::absolute(policies).map_err(|e| e.to_string())?;
    // The recorded principals' account, so that the set's ARNs are the recorded ones.
    if let Some(account) = records.iter().map(|r| &r.account).find(|a| !a.is_empty()) {
        config.account.id = account.clone();
    }
    let (authorizer, ..) = load_authorizer(&config).map_err(|e| e.to_string())?;
    let mut replay = Replay {
        transactions: records.len(),
        ..Replay::default()
    };
    for record in records {
        let Some(recorded) = &record.context else {
            replay.before_policy += 1;
            continue;
        };
        let (allowed, decision, reason) = match authorizer.directory.user(&record.user) {
            None => (
                false,
                "no-iam-user",
                format!("no IAM user {:?}", record.user),
            ),
            Some(user) => {
                let context = replay_context(recorded);
                let authorization = authorizer.authorize(user, &record.resources, &context);
                match authorization.first_denied() {
                    Some((resource, d)) => (
                        false,
                        if d.outcome == Outcome::ExplicitDeny {
                            "explicit-deny"
                        } else {
                            "implicit-deny"
                        },
                        format!(
                            "{} on {resource}; policy types: {}",
                            d.reason(),
                            d.policy_types_label()
                        ),
                    ),
                    None => (
                        true,
                        "allowed",
                        authorization
                            .resources
                            .first()
                            .map(|(_, d)| {
                                format!("{}; policy types: {}", d.reason(), d.policy_types_label())
                            })
                            .unwrap_or_default(),
                    ),
                }
            }
        };
        if let Some(direction) = Direction::of(record.decision == "allowed", allowed) {
            replay.changed.push((record, direction, decision, reason));
        }
    }
    Ok(replay)
}

/// `sesgate promote`: the shadow set becomes the live one. `[iam] dir` is renamed to
/// `DIR.previous` (replacing an older one) and `[iam] shadow_dir` to `[iam] dir`; the running
/// server picks it up on SIGHUP. Both directories must be on one file system (renames).
pub fn promote(config: &Config) -> Result<String, String> {
    if config.iam.shadow_dir.as_os_str().is_empty() {
        return Err("[iam] shadow_dir is not set: there is no shadow set to promote".into());
    }
    let live = config.path(&config.iam.dir);
    let shadow = config.path(&config.iam.shadow_dir);
    // The shadow set must load on its own before anything moves.
    let mut check = config.clone();
    check.iam.dir = shadow.clone();
    load_authorizer(&check).map_err(|e| format!("the shadow set does not load: {e}"))?;
    let mut previous = live.clone().into_os_string();
    previous.push(".previous");
    let previous = std::path::PathBuf::from(previous);
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| format!("{}: {e}", previous.display()))?;
    }
    std::fs::rename(&live, &previous).map_err(|e| format!("{}: {e}", live.display()))?;
    std::fs::rename(&shadow, &live).map_err(|e| format!("{}: {e}", shadow.display()))?;
    // The shadow starts again as a copy of the new live set (no disagreement), so the next
    // reload finds it; the next tightening is edited there.
    copy_dir(&live, &shadow)
        .map_err(|e| format!("copying {} to {}: {e}", live.display(), shadow.display()))?;
    Ok(format!(
        "promoted {} to {} (the old set is {}); {} is now a copy of it. Send SIGHUP to the server to load it.",
        shadow.display(),
        live.display(),
        previous.display(),
        shadow.display()
    ))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
