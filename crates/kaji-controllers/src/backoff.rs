//! Pieces every controller's reconcile loop shares: work-queue keys, per-key
//! retry backoff and label-selector parsing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{ParseExpressionError, Selector};

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(60);

/// Consecutive failures per object key: 100 ms after the first, doubling up
/// to 60 s, forgotten on the next success.
#[derive(Debug, Default)]
pub(crate) struct RetryBackoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl RetryBackoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub(crate) fn failed(&self, key: &str) -> Duration {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        BASE.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
            .min(MAX)
    }

    /// Forgets `key`'s failures.
    pub(crate) fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// The work-queue key of an object: `namespace/name`.
pub(crate) fn key_of<K: kube::Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The parsed selector; `None` for an empty one, which would select
/// everything and so selects nothing here (apps/v1 rejects it anyway).
pub(crate) fn label_selector(
    selector: &LabelSelector,
) -> Result<Option<Selector>, ParseExpressionError> {
    let empty = selector.match_labels.as_ref().is_none_or(|l| l.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if empty {
        return Ok(None);
    }
    Selector::try_from(selector.clone()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = RetryBackoff::default();
        assert_eq!(b.failed("a"), Duration::from_millis(100));
        assert_eq!(b.failed("a"), Duration::from_millis(200));
        assert_eq!(b.failed("b"), Duration::from_millis(100));
        for _ in 0..20 {
            b.failed("a");
        }
        assert_eq!(b.failed("a"), MAX);
        b.succeeded("a");
        assert_eq!(b.failed("a"), Duration::from_millis(100));
    }

    #[test]
    fn empty_selectors_select_nothing() {
        assert!(label_selector(&LabelSelector::default()).unwrap().is_none());
    }
}
