//! The AWS exports `sesgate import` reads, to typed values: the JSON printed by
//! `aws iam get-account-authorization-details` (users, groups, managed policies with their
//! versions, inline policies, permissions boundaries) and by
//! `aws sesv2 get-email-identity-policies` (one identity's sending authorization policies).
//!
//! A policy document comes in two forms: the CLI prints it decoded (a JSON object), the IAM API
//! returns it URL-encoded (RFC 3986, "%7B%22Version%22..."; a `+` is a plus, not a space). Both
//! are read into the same document tree and written back the same way, keys in document order and
//! numbers as written, so the two forms import to identical files. Only the fields sesgate needs
//! are read; anything missing that it needs is an error naming the entry.

use crate::config::iam::{is_iam_name, is_iam_path};
use crate::iam::Json;

/// `name` when IAM could have given it (`kind`: "user", "group", "policy"): a hostile export must
/// not make `sesgate import` write a policy file outside `--out` (policy files are named by
/// policy name) or give two users one ARN (`config::iam::is_iam_name`).
fn iam_name(name: String, kind: &str, max: usize, what: &str) -> Result<String, ExportError> {
    if is_iam_name(&name, max) {
        Ok(name)
    } else {
        Err(error(
            what,
            format!(
                "{name:?} is not a valid IAM {kind} name (1 to {max} of A-Z, a-z, 0-9 and +=,.@_-)"
            ),
        ))
    }
}

/// Why an export cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ExportError {
    /// The entry (e.g. `UserDetailList[2] (billing-app)`).
    pub what: String,
    pub reason: String,
}

fn error(what: impl Into<String>, reason: impl Into<String>) -> ExportError {
    ExportError {
        what: what.into(),
        reason: reason.into(),
    }
}

/// A policy document as JSON text (pretty-printed, as written back).
pub type Document = String;

/// A policy attached by reference: its name and ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub name: String,
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedUser {
    pub name: String,
    pub path: String,
    pub id: Option<String>,
    pub arn: String,
    pub groups: Vec<String>,
    pub attached: Vec<Attached>,
    /// Inline policies: (name, document).
    pub inline: Vec<(String, Document)>,
    /// The permissions boundary's policy ARN.
    pub boundary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedGroup {
    pub name: String,
    pub arn: String,
    pub attached: Vec<Attached>,
    pub inline: Vec<(String, Document)>,
}

/// A managed policy with the document of its default version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub name: String,
    pub arn: String,
    pub default_version: String,
    pub document: Document,
}

/// `aws iam get-account-authorization-details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizationDetails {
    pub users: Vec<ExportedUser>,
    pub groups: Vec<ExportedGroup>,
    pub policies: Vec<ManagedPolicy>,
    /// Roles are not imported (sesgate authenticates IAM users); only counted.
    pub roles: usize,
}

/// Reads a policy document in either form.
pub fn document(json: &Json, what: &str) -> Result<Document, ExportError> {
    match json {
        Json::Object(_) => Ok(json.to_pretty()),
        Json::String(text) => {
            let trimmed = text.trim_start();
            let decoded = if trimmed.starts_with('{') {
                text.clone()
            } else {
                percent_encoding::percent_decode_str(text)
                    .decode_utf8()
                    .map_err(|e| {
                        error(
                            what,
                            format!("a URL-encoded document that is not UTF-8: {e}"),
                        )
                    })?
                    .into_owned()
            };
            if !decoded.trim_start().starts_with('{') {
                return Err(error(
                    what,
                    "a policy document is a JSON object, or that object URL-encoded",
                ));
            }
            let parsed = Json::parse(&decoded)
                .map_err(|e| error(what, format!("the document is not JSON: {e}")))?;
            Ok(parsed.to_pretty())
        }
        other => Err(error(
            what,
            format!(
                "a policy document is a JSON object or a string, not {}",
                other.kind()
            ),
        )),
    }
}

fn string(json: &Json, key: &str, what: &str) -> Result<String, ExportError> {
    match json.get(key) {
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(error(
            what,
            format!("{key} must be a string, not {}", other.kind()),
        )),
        None => Err(error(what, format!("{key} is missing"))),
    }
}

fn optional_string(json: &Json, key: &str, what: &str) -> Result<Option<String>, ExportError> {
    match json.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(_) => string(json, key, what).map(Some),
    }
}

/// The items of an optional list member.
fn list<'j>(json: &'j Json, key: &str, what: &str) -> Result<&'j [Json], ExportError> {
    match json.get(key) {
        None | Some(Json::Null) => Ok(&[]),
        Some(Json::Array(items)) => Ok(items),
        Some(other) => Err(error(
            what,
            format!("{key} must be a list, not {}", other.kind()),
        )),
    }
}

fn attached(json: &Json, what: &str) -> Result<Vec<Attached>, ExportError> {
    list(json, "AttachedManagedPolicies", what)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let what = format!("{what} AttachedManagedPolicies[{i}]");
            Ok(Attached {
                name: iam_name(string(item, "PolicyName", &what)?, "policy", 128, &what)?,
                arn: string(item, "PolicyArn", &what)?,
            })
        })
        .collect()
}

fn inline(json: &Json, key: &str, what: &str) -> Result<Vec<(String, Document)>, ExportError> {
    list(json, key, what)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let what = format!("{what} {key}[{i}]");
            let name = iam_name(string(item, "PolicyName", &what)?, "policy", 128, &what)?;
            let json = item
                .get("PolicyDocument")
                .ok_or_else(|| error(&what, "PolicyDocument is missing"))?;
            Ok((name.clone(), document(json, &format!("{what} ({name})"))?))
        })
        .collect()
}

impl AuthorizationDetails {
    /// Parses the JSON text of `aws iam get-account-authorization-details`.
    pub fn parse(text: &str) -> Result<AuthorizationDetails, ExportError> {
        let json = Json::parse(text).map_err(|e| error("the export", format!("not JSON: {e}")))?;
        if !matches!(json, Json::Object(_)) {
            return Err(error("the export", "must be a JSON object"));
        }
        if json.get("UserDetailList").is_none() && json.get("Policies").is_none() {
            return Err(error(
                "the export",
                "has neither UserDetailList nor Policies: is it the output of aws iam get-account-authorization-details?",
            ));
        }
        let mut details = AuthorizationDetails::default();
        for (i, user) in list(&json, "UserDetailList", "the export")?
            .iter()
            .enumerate()
        {
            let what = format!("UserDetailList[{i}]");
            let name = iam_name(string(user, "UserName", &what)?, "user", 64, &what)?;
            let what = format!("{what} ({name})");
            let groups = list(user, "GroupList", &what)?
                .iter()
                .map(|g| match g {
                    Json::String(s) => Ok(s.clone()),
                    other => Err(error(&what, format!("GroupList holds {}", other.kind()))),
                })
                .collect::<Result<_, _>>()?;
            let boundary = match user.get("PermissionsBoundary") {
                None | Some(Json::Null) => None,
                Some(b) => Some(string(
                    b,
                    "PermissionsBoundaryArn",
                    &format!("{what} PermissionsBoundary"),
                )?),
            };
            let path = optional_string(user, "Path", &what)?.unwrap_or_else(|| "/".into());
            if !is_iam_path(&path) {
                return Err(error(
                    &what,
                    format!(
                        "{path:?} is not a valid IAM path (printable ASCII without spaces between two /)"
                    ),
                ));
            }
            details.users.push(ExportedUser {
                path,
                id: optional_string(user, "UserId", &what)?,
                arn: string(user, "Arn", &what)?,
                groups,
                attached: attached(user, &what)?,
                inline: inline(user, "UserPolicyList", &what)?,
                boundary,
                name,
            });
        }
        for (i, group) in list(&json, "GroupDetailList", "the export")?
            .iter()
            .enumerate()
        {
            let what = format!("GroupDetailList[{i}]");
            let name = iam_name(string(group, "GroupName", &what)?, "group", 128, &what)?;
            let what = format!("{what} ({name})");
            details.groups.push(ExportedGroup {
                arn: string(group, "Arn", &what)?,
                attached: attached(group, &what)?,
                inline: inline(group, "GroupPolicyList", &what)?,
                name,
            });
        }
        for (i, policy) in list(&json, "Policies", "the export")?.iter().enumerate() {
            let what = format!("Policies[{i}]");
            let name = iam_name(string(policy, "PolicyName", &what)?, "policy", 128, &what)?;
            let what = format!("{what} ({name})");
            let versions = list(policy, "PolicyVersionList", &what)?;
            let defaults: Vec<&Json> = versions
                .iter()
                .filter(|v| matches!(v.get("IsDefaultVersion"), Some(Json::Bool(true))))
                .collect();
            let [default] = defaults.as_slice() else {
                return Err(error(
                    &what,
                    format!(
                        "{} versions are marked IsDefaultVersion; exactly one must be",
                        defaults.len()
                    ),
                ));
            };
            let version = optional_string(default, "VersionId", &what)?.unwrap_or_default();
            let json = default
                .get("Document")
                .ok_or_else(|| error(&what, "the default version has no Document"))?;
            details.policies.push(ManagedPolicy {
                arn: string(policy, "Arn", &what)?,
                document: document(json, &format!("{what} version {version}"))?,
                default_version: version,
                name,
            });
        }
        details.roles = list(&json, "RoleDetailList", "the export")?.len();
        Ok(details)
    }
}

/// Parses `aws sesv2 get-email-identity-policies` output: `{"Policies": {"NAME": "JSON"}}`, the
/// documents JSON text (or URL-encoded), in document order.
pub fn parse_identity_policies(
    text: &str,
    what: &str,
) -> Result<Vec<(String, Document)>, ExportError> {
    let json = Json::parse(text).map_err(|e| error(what, format!("not JSON: {e}")))?;
    match json.get("Policies") {
        Some(Json::Object(members)) => members
            .iter()
            .map(|(name, value)| {
                Ok((
                    name.clone(),
                    document(value, &format!("{what} policy {name}"))?,
                ))
            })
            .collect(),
        Some(other) => Err(error(
            what,
            format!("Policies must be an object, not {}", other.kind()),
        )),
        None => Err(error(
            what,
            "has no Policies: is it the output of aws sesv2 get-email-identity-policies?",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_document_forms_read_the_same() {
        let object = Json::parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:FromAddress":"a+b@example.com"},"NumericLessThan":{"k":5.0}}}}"#).unwrap();
        let encoded = Json::String(
            "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22ses%3ASendRawEmail%22%2C%22Resource%22%3A%22%2A%22%2C%22Condition%22%3A%7B%22StringLike%22%3A%7B%22ses%3AFromAddress%22%3A%22a+b%40example.com%22%7D%2C%22NumericLessThan%22%3A%7B%22k%22%3A5.0%7D%7D%7D%7D".into(),
        );
        let plain = document(&object, "x").unwrap();
        assert_eq!(document(&encoded, "x").unwrap(), plain);
        assert!(
            plain.contains("a+b@example.com") && plain.contains("5.0"),
            "{plain}"
        );
        for bad in [
            Json::String("%ZZ".into()),
            Json::String("%FF%FE".into()),
            Json::Number("1".into()),
        ] {
            assert!(document(&bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exactly_one_default_version() {
        let export = |versions: &str| {
            AuthorizationDetails::parse(&format!(
                r#"{{"Policies":[{{"PolicyName":"P","Arn":"arn:aws:iam::111122223333:policy/P","PolicyVersionList":[{versions}]}}]}}"#
            ))
        };
        let doc = r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;
        let ok = export(&format!(
            r#"{{"Document":{doc},"VersionId":"v1","IsDefaultVersion":false}},{{"Document":{doc},"VersionId":"v2","IsDefaultVersion":true}}"#
        ))
        .unwrap();
        assert_eq!(ok.policies[0].default_version, "v2");
        let err = export(&format!(
            r#"{{"Document":{doc},"VersionId":"v1","IsDefaultVersion":false}}"#
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("Policies[0] (P): 0 versions are marked IsDefaultVersion"),
            "{err}"
        );
        assert!(AuthorizationDetails::parse("[]").is_err());
        assert!(
            AuthorizationDetails::parse(r#"{"Other":1}"#)
                .unwrap_err()
                .to_string()
                .contains("get-account-authorization-details")
        );
    }

    #[test]
    fn identity_policies() {
        let found = parse_identity_policies(
            r#"{"Policies":{"Delegate":"{\"Version\":\"2012-10-17\",\"Statement\":[]}"}}"#,
            "example.com",
        )
        .unwrap();
        assert_eq!(found[0].0, "Delegate");
        assert!(found[0].1.contains("\"Statement\": []"));
        assert!(parse_identity_policies("{}", "x").is_err());
    }
}
