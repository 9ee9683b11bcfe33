//! Issue 8 §3 and the matcher part of §4, end to end through the CLI: `simulate-custom-policy`
//! for the engine (refusals at load, variables in Arn values, epoch values, short ARN values,
//! hostile ARNs) and `sesgate check` for the linter.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const RESOURCE: &str = "arn:aws:ses:us-east-1:123456789012:identity/example.com";

fn sesgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("sesgate runs")
}

/// The decision for one send of `RESOURCE` (or `resource`) under `policies`, with `context`.
fn decide_on(resource: &str, policies: &[&str], context: &[&str]) -> String {
    let mut args = vec!["simulate-custom-policy"];
    for policy in policies {
        args.extend(["--policy-input-list", policy]);
    }
    args.extend([
        "--action-names",
        "ses:SendRawEmail",
        "--resource-arns",
        resource,
    ]);
    if !context.is_empty() {
        args.push("--context-entries");
        args.extend_from_slice(context);
    }
    let output = sesgate(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    json["EvaluationResults"][0]["EvalDecision"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn decide(policies: &[&str], context: &[&str]) -> String {
    decide_on(RESOURCE, policies, context)
}

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*"}}"#;

fn statement(effect: &str, condition: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"{effect}","Action":"ses:*","Resource":"*","Condition":{condition}}}}}"#
    )
}

#[test]
fn resources_that_are_not_arns_are_refused_at_load_with_their_path() {
    for (resource, why) in [
        ("identity/example.com", "does not start with arn:"),
        ("", "does not start with arn:"),
        ("arn:aws:ses", "has 3 of the six"),
        ("arn:aws:*:*:*:*", "service must be written out"),
        (
            "arn:aws:ses:${aws:username}:123456789012:identity/x",
            "only in the resource part",
        ),
    ] {
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"ses:*","Resource":"*"}},{{"Effect":"Deny","Action":"ses:*","Resource":["{RESOURCE}","{}"]}}]}}"#,
            resource.replace('"', "\\\"")
        );
        let output = sesgate(&[
            "simulate-custom-policy",
            "--policy-input-list",
            &policy,
            "--action-names",
            "ses:SendRawEmail",
        ]);
        assert_eq!(output.status.code(), Some(2), "{resource:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let want = format!(
            "policy \"PolicyInputList.1\": Statement[1].Resource[1]: {:?} is not an ARN or \"*\"",
            resource
        );
        assert!(stderr.contains(&want), "{stderr:?} lacks {want:?}");
        assert!(stderr.contains(why), "{stderr:?} lacks {why:?}");
    }
    // What IAM accepts loads: wildcards in every component but the service.
    let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:*","Resource":["arn:*:ses:*:*:identity/*","arn:aws:ses:us-east-?:1234567890??:identity/${aws:username}*"]}}"#;
    assert_eq!(decide(&[policy], &[]), "allowed");
}

#[test]
fn arn_condition_values_take_variables_before_the_resource_part() {
    let policy = statement(
        "Allow",
        r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/*"}}"#,
    );
    let context = |account: &str, arn: &str| {
        [
            format!(
                "ContextKeyName=aws:PrincipalAccount,ContextKeyValues={account},ContextKeyType=string"
            ),
            format!("ContextKeyName=aws:PrincipalArn,ContextKeyValues={arn},ContextKeyType=string"),
        ]
    };
    let same = context(
        "123456789012",
        "arn:aws:iam::123456789012:user/apps/billing",
    );
    let other = context(
        "123456789012",
        "arn:aws:iam::999999999999:user/apps/billing",
    );
    let same: Vec<&str> = same.iter().map(String::as_str).collect();
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    assert_eq!(decide(&[&policy], &same), "allowed");
    assert_eq!(decide(&[&policy], &other), "implicitDeny");
    // And a Deny written the same way applies.
    let deny = statement(
        "Deny",
        r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/*"}}"#,
    );
    assert_eq!(decide(&[ALLOW_ALL, &deny], &other), "explicitDeny");
    assert_eq!(decide(&[ALLOW_ALL, &deny], &same), "allowed");
}

#[test]
fn epoch_values_past_year_9999_compare_as_later() {
    let epoch = |value: &str| {
        format!("ContextKeyName=aws:EpochTime,ContextKeyValues={value},ContextKeyType=date")
    };
    let before = statement(
        "Allow",
        r#"{"DateLessThan":{"aws:EpochTime":"253402300800"}}"#,
    );
    assert_eq!(decide(&[&before], &[&epoch("253402300799")]), "allowed");
    assert_eq!(
        decide(&[&before], &[&epoch("253402300800")]),
        "implicitDeny"
    );
    assert_eq!(
        decide(&[&before], &[&epoch("1700000000000")]),
        "implicitDeny"
    );
    let thirteen = statement(
        "Deny",
        r#"{"DateGreaterThanEquals":{"aws:EpochTime":"1700000000000"}}"#,
    );
    assert_eq!(
        decide(&[ALLOW_ALL, &thirteen], &[&epoch("1700000000000")]),
        "explicitDeny"
    );
    assert_eq!(
        decide(
            &[ALLOW_ALL, &thirteen],
            &[&epoch("99999999999999999999999")]
        ),
        "explicitDeny"
    );
    assert_eq!(
        decide(&[ALLOW_ALL, &thirteen], &[&epoch("1699999999999")]),
        "allowed"
    );
    // A bare four-digit value is a year.
    let year = statement("Allow", r#"{"DateGreaterThan":{"aws:EpochTime":"2020"}}"#);
    assert_eq!(decide(&[&year], &[&epoch("1600000000")]), "allowed");
}

#[test]
fn arn_values_with_fewer_than_six_components_fail_closed() {
    let arn = "ContextKeyName=aws:PrincipalArn,ContextKeyValues=arn:aws:iam::123456789012:user/bob,ContextKeyType=string";
    for operator in ["ArnLike", "ArnNotLike", "ArnEquals", "ArnNotEquals"] {
        let condition = format!(r#"{{"{operator}":{{"aws:PrincipalArn":"arn:aws:*"}}}}"#);
        assert_eq!(
            decide(&[&statement("Allow", &condition)], &[arn]),
            "implicitDeny",
            "an Allow with {operator} on a short value never applies"
        );
        assert_eq!(
            decide(&[ALLOW_ALL, &statement("Deny", &condition)], &[arn]),
            "explicitDeny",
            "a Deny with {operator} on a short value always applies"
        );
    }
}

#[test]
fn hostile_arns_are_matched_in_linear_time() {
    // Command-line arguments are limited to 128 KiB each; the unit tests use 1 MiB.
    let colons = ":".repeat(120_000);
    let hostile = [
        format!("arn:aws:ses:{colons}identity/x"),
        format!("arn:aws:ses:us-east-1:1:{colons}"),
        format!("arn:aws:ses:{}", "a:".repeat(60_000)),
    ];
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:*","Resource":["arn:aws:ses:*:*:identity/*y","arn:aws:ses:us*1:*:*:*:identity/*y","arn:aws:ses:*:*:*?:*:*a*b*c*","arn:aws:ses:*:?*:identity/*"]},{"Effect":"Deny","Action":"ses:*","Resource":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:*:*:*:*a*b*c*"},"StringLike":{"ses:FromAddress":"*a*b*c*d*"}}}]}"#;
    for resource in &hostile {
        let started = Instant::now();
        let arn = format!(
            "ContextKeyName=aws:PrincipalArn,ContextKeyValues={},ContextKeyType=string",
            &resource[..resource.len().min(50_000)]
        );
        assert_eq!(decide_on(resource, &[policy], &[&arn]), "implicitDeny");
        // Generous for a debug build on a shared machine; the old matcher took minutes.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

fn check_dir(name: &str, policy: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sesgate-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/iam.toml"), "").unwrap();
    std::fs::write(dir.join("policies/P.json"), policy).unwrap();
    std::fs::write(
        dir.join("sesgate.toml"),
        "[account]\nidentities = [\"example.com\"]\n[upstream]\nurl = \"smtp://127.0.0.1:25\"\n",
    )
    .unwrap();
    dir
}

fn check(dir: &std::path::Path) -> (Option<i32>, String) {
    let config = dir.join("sesgate.toml");
    let output = sesgate(&["check", "--config", config.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn check_asks_for_a_null_condition_only_when_there_is_none() {
    let for_all = r#""ForAllValues:StringLike":{"ses:Recipients":"*@example.com"}"#;
    let without = statement("Allow", &format!("{{{for_all}}}"));
    let with = statement(
        "Allow",
        &format!(r#"{{{for_all},"Null":{{"ses:Recipients":"false"}}}}"#),
    );
    let warning = "ForAllValues with Allow is also true when ses:Recipients is missing";
    let dir = check_dir("null-missing", &without);
    let (code, text) = check(&dir);
    assert!(text.contains(warning), "{text}");
    assert_eq!(code, Some(0), "warnings only: {text}");
    let dir2 = check_dir("null-present", &with);
    let (code, text) = check(&dir2);
    assert!(!text.contains(warning), "{text}");
    assert_eq!(code, Some(0), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn check_warns_about_short_arn_condition_values() {
    let dir = check_dir(
        "short-arn",
        &statement("Deny", r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:*"}}"#),
    );
    let (code, text) = check(&dir);
    assert_eq!(code, Some(0), "warnings only: {text}");
    assert!(
        text.contains("ArnLike aws:PrincipalArn \"arn:aws:*\" has 3 of the six ARN components"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
