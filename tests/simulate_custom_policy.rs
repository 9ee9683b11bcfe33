//! `sesgate simulate-custom-policy`, run as a process with AWS CLI-style arguments.

use std::process::{Command, Output};

use serde_json::{Value, json};

fn sesgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("sesgate runs")
}

fn results(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    json["EvaluationResults"].clone()
}

const RESOURCE: &str = "arn:aws:ses:us-east-1:123456789012:identity/example.com";

#[test]
fn allowed_with_a_guide_policy_file() {
    let output = sesgate(&[
        "simulate-custom-policy",
        "--policy-input-list",
        "file://policies/AllowRecipientsAtExampleCom.json",
        "--action-names",
        "ses:SendRawEmail",
        "--resource-arns",
        RESOURCE,
        "--context-entries",
        "ContextKeyName=ses:Recipients,ContextKeyValues=alice@example.com,bob@example.com,ContextKeyType=stringList",
    ]);
    let results = results(&output);
    assert_eq!(results.as_array().unwrap().len(), 1);
    assert_eq!(results[0]["EvalActionName"], "ses:SendRawEmail");
    assert_eq!(results[0]["EvalResourceName"], RESOURCE);
    assert_eq!(results[0]["EvalDecision"], "allowed");
    assert_eq!(
        results[0]["MatchedStatements"][0]["SourcePolicyId"],
        "PolicyInputList.1"
    );
    assert_eq!(
        results[0]["MatchedStatements"][0]["StartPosition"],
        json!({"Line": 4, "Column": 6})
    );
    assert_eq!(results[0]["MissingContextValues"], json!([]));
}

#[test]
fn implicitly_denied_names_missing_keys() {
    let output = sesgate(&[
        "simulate-custom-policy",
        "--policy-input-list",
        "file://policies/AllowFromMarketingAddress.json",
        "--action-names",
        "ses:SendRawEmail",
        "ses:SendEmail",
    ]);
    let results = results(&output);
    assert_eq!(
        results.as_array().unwrap().len(),
        2,
        "one result per action"
    );
    for result in results.as_array().unwrap() {
        assert_eq!(result["EvalResourceName"], "*");
        assert_eq!(result["EvalDecision"], "implicitDeny");
        assert_eq!(result["MatchedStatements"], json!([]));
        assert_eq!(result["MissingContextValues"], json!(["ses:FromAddress"]));
    }
}

#[test]
fn explicit_deny_across_policies_and_resources() {
    let deny = r#"{"Version":"2012-10-17","Statement":{"Sid":"NoCompetitors","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ForAnyValue:StringLike":{"ses:Recipients":"*@competitor.com"}}}}"#;
    let config_set = "arn:aws:ses:us-east-1:123456789012:configuration-set/marketing";
    let output = sesgate(&[
        "simulate-custom-policy",
        "--policy-input-list",
        "file://policies/AllowSendingOnly.json",
        "--policy-input-list",
        deny,
        "--action-names",
        "ses:SendRawEmail",
        "--resource-arns",
        RESOURCE,
        config_set,
        "--context-entries",
        r#"[{"ContextKeyName":"ses:Recipients","ContextKeyValues":["a@example.com","x@competitor.com"],"ContextKeyType":"stringList"}]"#,
    ]);
    let results = results(&output);
    assert_eq!(
        results.as_array().unwrap().len(),
        2,
        "one result per resource"
    );
    assert_eq!(results[1]["EvalResourceName"], config_set);
    for result in results.as_array().unwrap() {
        assert_eq!(result["EvalDecision"], "explicitDeny");
        assert_eq!(
            result["MatchedStatements"].as_array().unwrap().len(),
            1,
            "only the deny statement"
        );
        assert_eq!(
            result["MatchedStatements"][0]["SourcePolicyId"],
            "PolicyInputList.2"
        );
    }
}

#[test]
fn permissions_boundary_detail() {
    let boundary = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}"#;
    let run = |secure: &str| {
        results(&sesgate(&[
            "simulate-custom-policy",
            "--policy-input-list",
            "file://policies/AllowAllSesActions.json",
            "--permissions-boundary-policy-input-list",
            boundary,
            "--action-names",
            "ses:SendRawEmail",
            "--context-entries",
            &format!(
                "ContextKeyName=aws:SecureTransport,ContextKeyValues={secure},ContextKeyType=boolean"
            ),
        ]))
    };
    let allowed = run("true");
    assert_eq!(allowed[0]["EvalDecision"], "allowed");
    assert_eq!(
        allowed[0]["PermissionsBoundaryDecisionDetail"],
        json!({"AllowedByPermissionsBoundary": true})
    );
    let denied = run("false");
    assert_eq!(denied[0]["EvalDecision"], "implicitDeny");
    assert_eq!(
        denied[0]["PermissionsBoundaryDecisionDetail"],
        json!({"AllowedByPermissionsBoundary": false})
    );
}

#[test]
fn invalid_input_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--policy-input-list",
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Principal":"*"}}"#,
                "--action-names",
                "ses:SendRawEmail",
            ],
            "policy \"PolicyInputList.1\": Statement.Principal: an identity-based policy should not specify a principal",
        ),
        (
            &[
                "--policy-input-list",
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"StringLikee":{"ses:FromAddress":"x"}}}}"#,
                "--action-names",
                "ses:SendRawEmail",
            ],
            "Statement.Condition.StringLikee: unknown condition operator",
        ),
        (
            &[
                "--policy-input-list",
                "file://policies/NoSuchPolicy.json",
                "--action-names",
                "ses:SendRawEmail",
            ],
            "cannot read policies/NoSuchPolicy.json",
        ),
        (
            &[
                "--policy-input-list",
                "file://policies/AllowSendingOnly.json",
                "--action-names",
                "ses:Send*",
            ],
            "action names cannot contain wildcards",
        ),
        (
            &[
                "--policy-input-list",
                "file://policies/AllowSendingOnly.json",
                "--action-names",
                "ses:SendRawEmail",
                "--context-entries",
                "ContextKeyName=aws:CurrentTime,ContextKeyValues=noon,ContextKeyType=date",
            ],
            "context key aws:CurrentTime: \"noon\" is not a valid date value",
        ),
        (
            &["--action-names", "ses:SendRawEmail"],
            "--policy-input-list",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["simulate-custom-policy"];
        all.extend_from_slice(args);
        let output = sesgate(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(want), "stderr {stderr:?} lacks {want:?}");
        assert!(output.stdout.is_empty());
    }
}

/// A JSON number in a policy is its text as written (IAM: quotes are optional around numbers),
/// so under a String operator `5.0` matches "5.0" and not "5"; under a Numeric one it is 5.
#[test]
fn a_json_number_under_a_string_operator_is_its_text_as_written() {
    let decide = |operator: &str, value: &str| {
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{{"{operator}":{{"aws:EpochTime":5.0}}}}}}}}"#
        );
        let entry =
            format!("ContextKeyName=aws:EpochTime,ContextKeyValues={value},ContextKeyType=string");
        let output = sesgate(&[
            "simulate-custom-policy",
            "--policy-input-list",
            &policy,
            "--action-names",
            "ses:SendRawEmail",
            "--context-entries",
            &entry,
        ]);
        results(&output)[0]["EvalDecision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(decide("StringEquals", "5.0"), "allowed");
    assert_eq!(decide("StringEquals", "5"), "implicitDeny");
    assert_eq!(decide("NumericEquals", "5"), "allowed");
}
