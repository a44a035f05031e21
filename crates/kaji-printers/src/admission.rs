//! Printers for admissionregistration.k8s.io: MutatingWebhookConfiguration
//! and ValidatingWebhookConfiguration.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::duration::age;
use crate::fields::{arr_at, name};
use crate::{col, Column, Printer, AGE, NAME};

const WEBHOOKS: Column = col(
    "Webhooks",
    "integer",
    "Webhooks indicates the number of webhooks registered in this configuration",
);

pub(crate) const MUTATING_WEBHOOK_CONFIGURATION: Printer =
    Printer::new(&[NAME, WEBHOOKS, AGE], webhook_configuration_cells);

pub(crate) const VALIDATING_WEBHOOK_CONFIGURATION: Printer =
    Printer::new(&[NAME, WEBHOOKS, AGE], webhook_configuration_cells);

/// `printMutatingWebhook` and `printValidatingWebhook`: the name, how many
/// webhooks the configuration holds, and its age.
fn webhook_configuration_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let webhooks = i64::try_from(arr_at(obj, "/webhooks").len()).unwrap_or(i64::MAX);
    vec![name(obj), Value::from(webhooks), age(obj, now)]
}

#[cfg(test)]
mod tests {
    use crate::{cells, columns, table, CREATION_DOC, NAME_DOC};
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    const GROUP: &str = "admissionregistration.k8s.io/v1";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn webhook_configurations_should_print_name_webhook_count_and_age() {
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            let t = table(GROUP, kind, &[], now());
            assert_eq!(
                t["columnDefinitions"],
                json!([
                    {"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0},
                    {"name": "Webhooks", "type": "integer", "format": "", "description": "Webhooks indicates the number of webhooks registered in this configuration", "priority": 0},
                    {"name": "Age", "type": "string", "format": "", "description": CREATION_DOC, "priority": 0}
                ]),
                "{kind}"
            );
            let config = json!({
                "metadata": {"name": "policy.example.com", "creationTimestamp": "2024-04-30T12:00:00Z"},
                "webhooks": [
                    {"name": "a.policy.example.com", "admissionReviewVersions": ["v1"]},
                    {"name": "b.policy.example.com", "admissionReviewVersions": ["v1"]}
                ]
            });
            assert_eq!(
                cells(GROUP, kind, &config, now()),
                [json!("policy.example.com"), json!(2), json!("24h")],
                "{kind}"
            );
        }
    }

    #[test]
    fn webhook_configurations_without_webhooks_should_count_zero() {
        let row = cells(
            GROUP,
            "ValidatingWebhookConfiguration",
            &json!({"metadata": {"name": "empty"}, "webhooks": null}),
            now(),
        );
        assert_eq!(row, [json!("empty"), json!(0), json!("<unknown>")]);
    }

    #[test]
    fn webhook_printers_should_apply_only_in_their_group() {
        let names: Vec<_> = columns("example.com/v1", "MutatingWebhookConfiguration")
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Name", "Age"]);
    }
}
