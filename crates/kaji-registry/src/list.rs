//! LIST with resourceVersion semantics, selectors and limit/continue paging.

use base64::Engine;
use kaji_core::selector::{FieldSelector, LabelSelector};
use kaji_core::ApiError;
use kaji_store::StoreError;
use serde_json::{json, Value};

use crate::registry::{internal, Registry};

/// Options of a LIST.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub label_selector: Option<LabelSelector>,
    /// `fieldSelector`.
    pub field_selector: Option<FieldSelector>,
    /// `limit` (0 = none).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: `Exact` or `NotOlderThan`.
    pub resource_version_match: Option<String>,
}

/// Options of a WATCH.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// `labelSelector`.
    pub label_selector: Option<LabelSelector>,
    /// `fieldSelector`.
    pub field_selector: Option<FieldSelector>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).expect("token serializes"))
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion")
    })
}

pub(crate) fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

impl Registry {
    /// Whether `obj` passes the label and field selectors.
    pub(crate) fn selected(
        &self,
        obj: &Value,
        labels: Option<&LabelSelector>,
        fields: Option<&FieldSelector>,
    ) -> bool {
        if let Some(sel) = labels {
            let empty = serde_json::Map::new();
            let l = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if !sel.matches(l) {
                return false;
            }
        }
        if let Some(sel) = fields {
            return sel.matches(|f| self.strategy.field_value(obj, f));
        }
        true
    }

    /// Rejects field selectors on fields this kind does not support.
    pub(crate) fn check_fields(&self, fields: Option<&FieldSelector>) -> Result<(), ApiError> {
        let Some(sel) = fields else { return Ok(()) };
        let probe = json!({});
        for req in sel.requirements() {
            let field = req.field.as_str();
            if self.strategy.field_value(&probe, field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
        }
        Ok(())
    }

    /// Lists objects as a `<Kind>List`.
    ///
    /// # Errors
    /// 400 for bad parameters, 410 Expired for a compacted continue token or revision.
    pub async fn list(&self, ns: Option<&str>, opts: &ListOptions) -> Result<Value, ApiError> {
        self.check_fields(opts.field_selector.as_ref())?;
        let prefix = self.prefix(ns);
        let (mut revision, mut start_after) = (None, None);
        if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let token = decode_continue(token)?;
            if !token.start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid: the key does not match this request",
                ));
            }
            revision = Some(token.rv);
            start_after = Some(token.start);
        } else if let Some(rv) = opts.resource_version.as_deref().filter(|rv| !rv.is_empty()) {
            let rv = parse_rv(rv)?;
            match opts.resource_version_match.as_deref() {
                Some("Exact") => revision = Some(rv),
                Some("NotOlderThan") | None => {
                    let current = self.store.current_revision().await.map_err(internal)?;
                    if rv > current {
                        return Err(internal(StoreError::FutureRevision { requested: rv, current }));
                    }
                }
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                    )))
                }
            }
        } else if opts.resource_version_match.is_some() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        let filtering = opts.label_selector.as_ref().is_some_and(|s| !s.is_empty())
            || opts
                .field_selector
                .as_ref()
                .is_some_and(|s| !s.requirements().is_empty());
        let mut items = Vec::new();
        let mut more = false;
        let mut last_key: Option<String> = None;
        let chunk = if opts.limit == 0 {
            0
        } else {
            opts.limit.max(if filtering { 500 } else { 0 })
        };
        loop {
            let page = self
                .store
                .list(
                    &prefix,
                    kaji_store::ListOptions {
                        revision,
                        start_after: start_after.clone(),
                        limit: if chunk == 0 { None } else { Some(chunk) },
                    },
                )
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if opts.continue_token.is_some() => ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => internal(other),
                })?;
            revision = Some(page.revision);
            let page_len = page.kvs.len();
            for (i, kv) in page.kvs.iter().enumerate() {
                let obj = self.decode(kv)?;
                if !self.selected(
                    &obj,
                    opts.label_selector.as_ref(),
                    opts.field_selector.as_ref(),
                ) {
                    continue;
                }
                items.push(obj);
                last_key = Some(kv.key.clone());
                if opts.limit != 0 && items.len() == opts.limit {
                    more = i + 1 < page_len || page.more;
                    break;
                }
            }
            if (opts.limit != 0 && items.len() == opts.limit) || !page.more {
                break;
            }
            start_after = page.kvs.last().map(|kv| kv.key.clone());
        }
        let rv = revision.unwrap_or(0);
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if more {
            if let Some(k) = &last_key {
                metadata["continue"] = encode_continue(rv, k).into();
            }
        }
        Ok(json!({
            "kind": format!("{}List", self.info().kind),
            "apiVersion": self.info().api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }
}
