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

// --- Resource-based policies (issue 11): `--resource-policy`, `--caller-arn`, `--resource-owner`.

/// IAM User Guide, "Cross-account policy evaluation logic", "Example cross-account policy
/// evaluation" (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html):
/// the policy attached to IAM user `carlossalazar` in account 111111111111.
const CARLOS_IDENTITY_POLICY: &str = r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowS3ListRead",
            "Effect": "Allow",
            "Action": "s3:ListAllMyBuckets",
            "Resource": "*"
        },
        {
            "Sid": "AllowS3ProductionObjectActions",
            "Effect": "Allow",
            "Action": "s3:*Object*",
            "Resource": "arn:aws:s3:::Production/*"
        },
        {
            "Sid": "DenyS3Logs",
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": [
                "arn:aws:s3:::*log*",
                "arn:aws:s3:::*log*/*"
            ]
        }
    ]
}"#;

/// The same page: the bucket policy of `Production` in account 222222222222.
const PRODUCTION_BUCKET_POLICY: &str = r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "s3:GetObject*",
                "s3:PutObject*",
                "s3:ReplicateObject",
                "s3:RestoreObject"
            ],
            "Principal": { "AWS": "arn:aws:iam::111111111111:user/carlossalazar" },
            "Resource": "arn:aws:s3:::Production/*"
        }
    ]
}"#;

const CARLOS: &str = "arn:aws:iam::111111111111:user/carlossalazar";

fn cross_account(resource: &str, resource_policy: &str, action: &str) -> Value {
    let output = sesgate(&[
        "simulate-custom-policy",
        "--policy-input-list",
        CARLOS_IDENTITY_POLICY,
        "--resource-policy",
        resource_policy,
        "--caller-arn",
        CARLOS,
        "--resource-owner",
        "arn:aws:iam::222222222222:root",
        "--action-names",
        action,
        "--resource-arns",
        resource,
    ]);
    results(&output)[0].clone()
}

#[test]
fn iam_guide_cross_account_example() {
    // "When Carlos makes his request to save a file to the Production-logs bucket ... AWS
    // returns a decision of Deny ... because the DenyS3Logs statement ... explicitly denies
    // access to any log buckets." (no bucket policy applies to Production-logs)
    let logs = cross_account(
        "arn:aws:s3:::Production-logs/file.txt",
        PRODUCTION_BUCKET_POLICY,
        "s3:PutObject",
    );
    assert_eq!(logs["EvalDecision"], "explicitDeny");
    assert_eq!(logs["MatchedStatements"].as_array().unwrap().len(), 1);
    assert_eq!(
        logs["MatchedStatements"][0]["SourcePolicyId"],
        "PolicyInputList.1"
    );
    assert_eq!(
        logs["MatchedStatements"][0]["SourcePolicyType"],
        "IAM Policy"
    );
    assert_eq!(
        logs["EvalDecisionDetails"],
        json!({"IAM Policy": "explicitDeny", "Resource Policy": "implicitDeny"})
    );
    // "Carlos then ... tries to save the file to the Production bucket ... Because both accounts
    // allow the request, the final decision is to allow the request."
    let production = cross_account(
        "arn:aws:s3:::Production/file.txt",
        PRODUCTION_BUCKET_POLICY,
        "s3:PutObject",
    );
    assert_eq!(production["EvalDecision"], "allowed");
    let types: Vec<&str> = production["MatchedStatements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SourcePolicyType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["IAM Policy", "Resource Policy"]);
    assert_eq!(
        production["MatchedStatements"][1]["SourcePolicyId"],
        "ResourcePolicy"
    );
    assert_eq!(
        production["EvalDecisionDetails"],
        json!({"IAM Policy": "allowed", "Resource Policy": "allowed"})
    );
    let specific = &production["ResourceSpecificResults"][0];
    assert_eq!(
        specific["EvalResourceName"],
        "arn:aws:s3:::Production/file.txt"
    );
    assert_eq!(specific["EvalResourceDecision"], "allowed");
    // "He can create and edit, but not delete the objects in the bucket": his own policy allows
    // s3:DeleteObject (s3:*Object*), the bucket policy does not.
    let delete = cross_account(
        "arn:aws:s3:::Production/file.txt",
        PRODUCTION_BUCKET_POLICY,
        "s3:DeleteObject",
    );
    assert_eq!(delete["EvalDecision"], "implicitDeny");
    assert_eq!(
        delete["EvalDecisionDetails"],
        json!({"IAM Policy": "allowed", "Resource Policy": "implicitDeny"})
    );
    // The same account: the bucket policy naming Carlos suffices without his IAM policy
    // (IAM-UG "Policy evaluation for requests within a single account": "If either the
    // identity-based policy or the resource-based policy within the same account allows the
    // request and the other doesn't, the request is still allowed").
    let output = sesgate(&[
        "simulate-custom-policy",
        "--policy-input-list",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}}"#,
        "--resource-policy",
        &PRODUCTION_BUCKET_POLICY.replace("111111111111", "222222222222"),
        "--caller-arn",
        "arn:aws:iam::222222222222:user/carlossalazar",
        "--action-names",
        "s3:PutObject",
        "--resource-arns",
        "arn:aws:s3:::Production/file.txt",
    ]);
    let same = &results(&output)[0];
    assert_eq!(same["EvalDecision"], "allowed");
    assert_eq!(
        same["MatchedStatements"][0]["SourcePolicyType"],
        "Resource Policy"
    );
    assert_eq!(same["EvalDecisionDetails"], json!({}));
}

/// SES Developer Guide, "Sending authorization policy examples", "Specifying the delegate
/// sender" (https://docs.aws.amazon.com/ses/latest/dg/sending-authorization-policy-examples.html):
/// account 888888888888 authorizes account 123456789012 on example.com, From
/// `marketing+.*@example.com` (IAM reads `.` literally, see README).
const SES_AUTHORIZE_MARKETER: &str = r#"{
  "Id":"SampleAuthorizationPolicy",
  "Version":"2012-10-17",
  "Statement":[
    {
      "Sid":"AuthorizeMarketer",
      "Effect":"Allow",
      "Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com",
      "Principal":{
        "AWS":[
          "123456789012"
        ]
      },
      "Action":[
        "ses:SendEmail",
        "ses:SendRawEmail"
      ],
      "Condition":{
        "StringLike":{
          "ses:FromAddress":"marketing+.*@example.com"
        }
      }
    }
  ]
}"#;

/// The same page: two IAM users of other accounts, by ARN.
const SES_AUTHORIZE_IAM_USERS: &str = r#"{
  "Id":"ExampleAuthorizationPolicy",
  "Version":"2012-10-17",
  "Statement":[
    {
      "Sid":"AuthorizeIAMUser",
      "Effect":"Allow",
      "Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com",
      "Principal":{
        "AWS":[
          "arn:aws:iam::111122223333:user/John",
          "arn:aws:iam::444455556666:user/Jane"
        ]
      },
      "Action":[
        "ses:SendEmail",
        "ses:SendRawEmail"
      ]
    }
  ]
}"#;

/// The same page, "Using multiple statements": two accounts from `*@example.com` with an
/// `*@example.com` feedback address; Jane of 333333333333 only to `*@example.com` recipients.
const SES_MULTIPLE_STATEMENTS: &str = r#"{
  "Version":"2012-10-17",
  "Statement":[
    {
      "Sid":"AuthorizeAWS",
      "Effect":"Allow",
      "Resource":"arn:aws:ses:us-east-1:999999999999:identity/sender@example.com",
      "Principal":{
        "AWS":[
          "111111111111",
          "222222222222"
        ]
      },
      "Action":[
        "ses:SendEmail",
        "ses:SendRawEmail"
      ],
      "Condition":{
        "StringLike":{
          "ses:FromAddress":"*@example.com",
          "ses:FeedbackAddress":"*@example.com"
        }
      }
    },
    {
      "Sid":"AuthorizeInternal",
      "Effect":"Allow",
      "Resource":"arn:aws:ses:us-east-1:999999999999:identity/sender@example.com",
      "Principal":{
        "AWS":"arn:aws:iam::333333333333:user/Jane"
      },
      "Action":[
        "ses:SendEmail",
        "ses:SendRawEmail"
      ],
      "Condition":{
        "ForAllValues:StringLike":{
          "ses:Recipients":"*@example.com"
        }
      }
    }
  ]
}"#;

const DELEGATE_SENDS: &str = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*"}}"#;

fn ses_delegate(resource_policy: &str, caller: &str, resource: &str, context: &[&str]) -> Value {
    let mut args = vec![
        "simulate-custom-policy",
        "--policy-input-list",
        DELEGATE_SENDS,
        "--resource-policy",
        resource_policy,
        "--caller-arn",
        caller,
        "--action-names",
        "ses:SendRawEmail",
        "--resource-arns",
        resource,
    ];
    if !context.is_empty() {
        args.push("--context-entries");
        args.extend_from_slice(context);
    }
    results(&sesgate(&args))[0].clone()
}

#[test]
fn ses_guide_sending_authorization_examples() {
    let example_com = "arn:aws:ses:us-east-1:888888888888:identity/example.com";
    let from = |address: &str| {
        format!("ContextKeyName=ses:FromAddress,ContextKeyValues={address},ContextKeyType=string")
    };
    // The delegate account, From matching the pattern as IAM reads it: allowed across accounts.
    let allowed = ses_delegate(
        SES_AUTHORIZE_MARKETER,
        "arn:aws:iam::123456789012:user/marketer",
        example_com,
        &[&from("marketing+.news@example.com")],
    );
    assert_eq!(allowed["EvalDecision"], "allowed");
    assert_eq!(
        allowed["EvalDecisionDetails"],
        json!({"IAM Policy": "allowed", "Resource Policy": "allowed"})
    );
    // Another From, or another account: the identity owner's side does not allow.
    for (caller, address) in [
        (
            "arn:aws:iam::123456789012:user/marketer",
            "sales@example.com",
        ),
        (
            "arn:aws:iam::555555555555:user/marketer",
            "marketing+.news@example.com",
        ),
    ] {
        let denied = ses_delegate(
            SES_AUTHORIZE_MARKETER,
            caller,
            example_com,
            &[&from(address)],
        );
        assert_eq!(denied["EvalDecision"], "implicitDeny", "{caller} {address}");
        assert_eq!(
            denied["EvalDecisionDetails"]["Resource Policy"],
            "implicitDeny"
        );
    }
    // IAM users by ARN: John and Jane, and nobody else of their accounts.
    for (caller, decision) in [
        ("arn:aws:iam::111122223333:user/John", "allowed"),
        ("arn:aws:iam::444455556666:user/Jane", "allowed"),
        ("arn:aws:iam::111122223333:user/Jane", "implicitDeny"),
        ("arn:aws:iam::111122223333:user/team/John", "implicitDeny"),
    ] {
        let result = ses_delegate(SES_AUTHORIZE_IAM_USERS, caller, example_com, &[]);
        assert_eq!(result["EvalDecision"], decision, "{caller}");
    }
    // Multiple statements: the accounts with example.com From and feedback addresses; Jane only
    // to example.com recipients.
    let sender = "arn:aws:ses:us-east-1:999999999999:identity/sender@example.com";
    let feedback = "ContextKeyName=ses:FeedbackAddress,ContextKeyValues=bounce@example.com,ContextKeyType=string";
    let result = ses_delegate(
        SES_MULTIPLE_STATEMENTS,
        "arn:aws:iam::222222222222:user/app",
        sender,
        &[&from("sender@example.com"), feedback],
    );
    assert_eq!(result["EvalDecision"], "allowed");
    let result = ses_delegate(
        SES_MULTIPLE_STATEMENTS,
        "arn:aws:iam::222222222222:user/app",
        sender,
        &[&from("sender@example.com")],
    );
    assert_eq!(result["EvalDecision"], "implicitDeny");
    assert_eq!(
        result["MissingContextValues"],
        json!(["ses:FeedbackAddress"])
    );
    let recipients = |list: &str| {
        format!("ContextKeyName=ses:Recipients,ContextKeyValues={list},ContextKeyType=stringList")
    };
    let jane = "arn:aws:iam::333333333333:user/Jane";
    let inside = ses_delegate(
        SES_MULTIPLE_STATEMENTS,
        jane,
        sender,
        &[&recipients("a@example.com,b@example.com")],
    );
    assert_eq!(inside["EvalDecision"], "allowed");
    let outside = ses_delegate(
        SES_MULTIPLE_STATEMENTS,
        jane,
        sender,
        &[&recipients("a@example.com,b@example.org")],
    );
    assert_eq!(outside["EvalDecision"], "implicitDeny");
}

#[test]
fn resource_policy_input_errors() {
    let policy = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ses:SendRawEmail","Resource":"*"}}"#;
    let run = |extra: &[&str]| {
        let mut args = vec![
            "simulate-custom-policy",
            "--policy-input-list",
            DELEGATE_SENDS,
            "--action-names",
            "ses:SendRawEmail",
        ];
        args.extend_from_slice(extra);
        let output = sesgate(&args);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for (extra, want) in [
        (
            vec!["--resource-policy", policy],
            "--resource-policy needs --caller-arn",
        ),
        (
            vec![
                "--resource-policy",
                policy,
                "--caller-arn",
                "arn:aws:iam::111111111111:role/r",
            ],
            "the caller must be an IAM user ARN",
        ),
        (
            vec![
                "--resource-policy",
                policy,
                "--caller-arn",
                CARLOS,
                "--resource-owner",
                "222222222222",
            ],
            "an account is written arn:aws:iam::ACCOUNT:root",
        ),
        (
            vec!["--resource-policy", DELEGATE_SENDS, "--caller-arn", CARLOS],
            "ResourcePolicy\": Statement.Principal: a resource-based policy statement needs Principal",
        ),
        (
            vec!["--resource-handling-option", "EC2-Classic"],
            "expected one of EC2-VPC-InstanceStore",
        ),
    ] {
        let (code, stderr) = run(&extra);
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
    }
    let (code, _) = run(&["--resource-handling-option", "EC2-VPC-EBS"]);
    assert_eq!(code, Some(0));
}
