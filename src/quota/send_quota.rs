//! `[quotas] from_upstream`: SES's own limits, from a file the operator refreshes with the AWS
//! CLI (the gateway calls no AWS API). Either shape the CLI prints is read:
//!
//! ```text
//! aws ses get-send-quota   > send-quota.json   {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 1234.0}
//! aws sesv2 get-account    > send-quota.json   {"SendQuota": {"Max24HourSend": ..., ...}, ...}
//! ```
//!
//! `Max24HourSend = -1` is SES's "unlimited". Anything else that is not a finite number at
//! least 0 is refused, so a truncated or hand-edited file never becomes a quota of zero.

use serde::Deserialize;

/// SES's figures for the account, in recipients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendQuota {
    /// 0: unlimited.
    pub max_24_hour_send: u64,
    /// Recipients per second; 0: unlimited.
    pub max_send_rate: f64,
    /// What SES counted in the last 24 hours when the file was written.
    pub sent_last_24_hours: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Figures {
    max_24_hour_send: f64,
    max_send_rate: f64,
    #[serde(default)]
    sent_last_24_hours: f64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Shape {
    Nested {
        #[serde(rename = "SendQuota")]
        send_quota: Figures,
    },
    Flat(Figures),
}

/// Reads the JSON text of `aws ses get-send-quota` or `aws sesv2 get-account`.
pub fn parse(text: &str) -> Result<SendQuota, String> {
    let figures = match serde_json::from_str::<Shape>(text) {
        Ok(Shape::Nested { send_quota }) | Ok(Shape::Flat(send_quota)) => send_quota,
        Err(_) => {
            return Err(
                "expected GetSendQuota's JSON: {\"Max24HourSend\": N, \"MaxSendRate\": N, \"SentLast24Hours\": N} (or sesv2 get-account's, with them under \"SendQuota\")".into(),
            );
        }
    };
    let count = |name: &str, value: f64| -> Result<u64, String> {
        if value.is_finite() && value >= 0.0 {
            Ok(value.ceil() as u64)
        } else {
            Err(format!("{name} must be a number at least 0, not {value}"))
        }
    };
    let max_24_hour_send = if figures.max_24_hour_send == -1.0 {
        0
    } else {
        count("Max24HourSend", figures.max_24_hour_send)?
    };
    if !(figures.max_send_rate.is_finite() && figures.max_send_rate >= 0.0) {
        return Err(format!(
            "MaxSendRate must be a number at least 0, not {}",
            figures.max_send_rate
        ));
    }
    Ok(SendQuota {
        max_24_hour_send,
        max_send_rate: figures.max_send_rate,
        sent_last_24_hours: count("SentLast24Hours", figures.sent_last_24_hours)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_get_send_quota() {
        assert_eq!(
            parse(r#"{"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 1234.0}"#),
            Ok(SendQuota {
                max_24_hour_send: 50000,
                max_send_rate: 14.0,
                sent_last_24_hours: 1234
            })
        );
    }

    #[test]
    fn reads_sesv2_get_account() {
        let text = r#"{"DedicatedIpAutoWarmupEnabled": false, "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": true,
            "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0},
            "SendingEnabled": true}"#;
        assert_eq!(parse(text).unwrap().max_24_hour_send, 200);
    }

    #[test]
    fn minus_one_is_unlimited() {
        let quota = parse(r#"{"Max24HourSend": -1, "MaxSendRate": 0.5}"#).unwrap();
        assert_eq!(quota.max_24_hour_send, 0);
        assert_eq!(quota.sent_last_24_hours, 0);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "{}",
            r#"{"Max24HourSend": "50000", "MaxSendRate": 14}"#,
            r#"{"Max24HourSend": -2, "MaxSendRate": 14}"#,
            r#"{"Max24HourSend": 10, "MaxSendRate": -1}"#,
            r#"{"Max24HourSend": 10, "MaxSendRate": 1, "SentLast24Hours": -5}"#,
            r#"{"Max24HourSend": 10"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
