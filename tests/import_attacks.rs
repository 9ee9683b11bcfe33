//! `sesgate import` fed a hostile export (issue 11 §6): names AWS would never accept, chosen to
//! make the import write outside `--out` or give two users one ARN. Nothing may be written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ACCOUNT: &str = "111122223333";

fn sesgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args(args)
        .output()
        .expect("sesgate runs")
}

/// A scratch directory of its own for one case.
fn scratch(case: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sesgate-import-attack-{}-{case}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const SEND: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*"}]}"#;

/// An export of one managed policy named `policy` attached to the users `(path, name)`.
fn export(policy: &str, users: &[(&str, &str)]) -> String {
    let users: Vec<String> = users
        .iter()
        .map(|(path, name)| {
            let arn = serde_json::to_string(&format!("arn:aws:iam::{ACCOUNT}:user{path}{name}"))
                .unwrap();
            format!(
                r#"{{"Path":{},"UserName":{},"Arn":{arn},"GroupList":[],"UserPolicyList":[],"AttachedManagedPolicies":[{{"PolicyName":{},"PolicyArn":"arn:aws:iam::{ACCOUNT}:policy/P"}}]}}"#,
                serde_json::to_string(path).unwrap(),
                serde_json::to_string(name).unwrap(),
                serde_json::to_string(policy).unwrap(),
            )
        })
        .collect();
    format!(
        r#"{{"UserDetailList":[{}],"GroupDetailList":[],"RoleDetailList":[],"Policies":[{{"PolicyName":{},"Arn":"arn:aws:iam::{ACCOUNT}:policy/P","DefaultVersionId":"v1","PolicyVersionList":[{{"VersionId":"v1","IsDefaultVersion":true,"Document":{SEND}}}]}}]}}"#,
        users.join(","),
        serde_json::to_string(policy).unwrap(),
    )
}

fn import(dir: &Path, export: &str) -> Output {
    let file = dir.join("export.json");
    std::fs::write(&file, export).unwrap();
    sesgate(&[
        "import",
        "--authorization-details",
        file.to_str().unwrap(),
        "--out",
        dir.join("out/policies").to_str().unwrap(),
    ])
}

/// Every file under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// Attack: a managed policy name with `/` (IAM names never hold one) makes the import write a
/// policy file outside `--out`, or anywhere with an absolute name. Before the fix the file
/// `escaped.json` appeared next to `out/`.
#[test]
fn a_policy_name_cannot_write_outside_the_output_directory() {
    for (case, name) in [
        ("dotdot", "../../escaped"),
        ("absolute", "/tmp/sesgate-import-attack-absolute"),
        ("slash", "sub/dir"),
        ("empty", ""),
        ("newline", "a\nb"),
    ] {
        let dir = scratch(case);
        let output = import(&dir, &export(name, &[("/", "app")]));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
        assert!(
            stderr.contains("is not a valid IAM policy name"),
            "{case}: {stderr}"
        );
        assert_eq!(tree(&dir), ["export.json"], "{case}: nothing written");
        assert!(!Path::new("/tmp/sesgate-import-attack-absolute.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Attack: a user name holding `/` gives a user the ARN of another (`user/apps/john` is both
/// John at path `/apps/` and "apps/john" at `/`), so a policy naming one grants the other.
/// Names and paths AWS refuses are refused.
#[test]
fn user_names_and_paths_are_what_iam_accepts() {
    for (case, users, want) in [
        (
            "slash",
            vec![("/apps/", "john"), ("/", "apps/john")],
            "\"apps/john\" is not a valid IAM user name",
        ),
        (
            "colon",
            vec![("/", "a:b")],
            "\"a:b\" is not a valid IAM user name",
        ),
        (
            "path",
            vec![("/a b/", "app")],
            "\"/a b/\" is not a valid IAM path",
        ),
        (
            "relative",
            vec![("apps/", "app")],
            "\"apps/\" is not a valid IAM path",
        ),
    ] {
        // Prefixed: the policy-name test runs in parallel with a case of the same name.
        let dir = scratch(&format!("user-{case}"));
        let output = import(&dir, &export("Send", &users));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
        assert!(stderr.contains(want), "{case}: {stderr}");
        assert_eq!(tree(&dir), ["export.json"], "{case}: nothing written");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The same names written by hand in iam.toml are refused at load too.
    let dir = scratch("config");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/iam.toml"),
        "[[user]]\nname = \"apps/john\"\npath = \"/\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sesgate.toml"),
        "[account]\nid = \"111122223333\"\n[iam]\ndir = \"policies\"\n",
    )
    .unwrap();
    let output = sesgate(&[
        "check",
        "--config",
        dir.join("sesgate.toml").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("\"apps/john\" is not a valid IAM user name"),
        "{stdout}{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
