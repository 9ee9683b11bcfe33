//! The embedded default's users and policies, compiled into the binary so that `sesgate serve`
//! with no configuration works from any directory, not only from a checkout. A test keeps this
//! list equal to `policies/`.

/// `policies/iam.toml`.
pub const IAM_TOML: &str = include_str!("../../policies/iam.toml");

/// Every `policies/NAME.json`, by name.
pub const POLICIES: &[(&str, &str)] = &[
    (
        "AllowAllSesActions",
        include_str!("../../policies/AllowAllSesActions.json"),
    ),
    (
        "AllowApiVersion2Only",
        include_str!("../../policies/AllowApiVersion2Only.json"),
    ),
    (
        "AllowDisplayNameMarketing",
        include_str!("../../policies/AllowDisplayNameMarketing.json"),
    ),
    (
        "AllowFeedbackAddress",
        include_str!("../../policies/AllowFeedbackAddress.json"),
    ),
    (
        "AllowFromMarketingAddress",
        include_str!("../../policies/AllowFromMarketingAddress.json"),
    ),
    (
        "AllowRecipientsAtExampleCom",
        include_str!("../../policies/AllowRecipientsAtExampleCom.json"),
    ),
    (
        "AllowSendingOnly",
        include_str!("../../policies/AllowSendingOnly.json"),
    ),
    (
        "AllowSendingSeptember2018",
        include_str!("../../policies/AllowSendingSeptember2018.json"),
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_policy_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = super::POLICIES.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded);
        for (name, text) in super::POLICIES {
            assert_eq!(
                std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
                *text
            );
        }
    }
}
