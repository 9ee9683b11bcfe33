//! The SES SMTP password of an IAM secret access key (AWS's SigV4 derivation, SES-DG
//! `smtp-credentials.md`), so applications configured for the SES endpoint keep their
//! credentials when pointed at sesgate.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const DATE: &str = "11111111";
const SERVICE: &str = "ses";
const TERMINAL: &str = "aws4_request";
const MESSAGE: &str = "SendRawEmail";
const VERSION: u8 = 0x04;

fn sign(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The SMTP password SES derives from `secret_access_key` for `region`.
pub fn ses_smtp_password(secret_access_key: &str, region: &str) -> String {
    let mut signature = sign(format!("AWS4{secret_access_key}").as_bytes(), DATE);
    for step in [region, SERVICE, TERMINAL, MESSAGE] {
        signature = sign(&signature, step);
    }
    let mut versioned = Vec::with_capacity(1 + signature.len());
    versioned.push(VERSION);
    versioned.extend_from_slice(&signature);
    base64::engine::general_purpose::STANDARD.encode(versioned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_documentation_example_key() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            ses_smtp_password(secret, "us-east-1"),
            "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9"
        );
        assert_eq!(
            ses_smtp_password(secret, "us-west-2"),
            "BF2PynzbSCAjX08zhZZnP/kW+T9P5zs/1Er0pi5vTEmd"
        );
        assert_eq!(
            ses_smtp_password(secret, "eu-west-1"),
            "BMW5RDrXmmVs0lV7GpI4oLkHXpZ4stDsk6q91z1g38Pk"
        );
    }
}

/// Whether `region` is spelled as an AWS region name (`us-east-1`, `us-gov-west-1`,
/// `us-isob-east-1`): `^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$`. The SMTP password is
/// derived from the region, so a typo (`us-east1`, `eu-west-1a`) would print a password that
/// SES refuses without saying why.
pub fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let partition = |s: &str| {
        s == "gov"
            || s.strip_prefix("iso")
                .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase()))
    };
    match parts.as_slice() {
        [country, area, number] => {
            country.len() == 2 && lower(country) && lower(area) && digits(number)
        }
        [country, special, area, number] => {
            country.len() == 2
                && lower(country)
                && partition(special)
                && lower(area)
                && digits(number)
        }
        _ => false,
    }
}

#[cfg(test)]
mod region_tests {
    use super::is_aws_region;

    #[test]
    fn region_names() {
        for good in [
            "us-east-1",
            "eu-west-3",
            "ap-southeast-2",
            "us-gov-west-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "eu-central-12",
        ] {
            assert!(is_aws_region(good), "{good}");
        }
        for bad in [
            "",
            "us-east1",
            "us-east-1a",
            "US-EAST-1",
            "useast-1",
            "usa-east-1",
            "us-east-",
            "us--1",
            "us-foo-east-1",
            "us-east-1\n",
            "email-smtp.us-east-1.amazonaws.com",
        ] {
            assert!(!is_aws_region(bad), "{bad:?}");
        }
    }
}
