//! The resource handler: one request → one registry verb, with query
//! parameters, content negotiation and the Status error mapping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use kaji_core::selector::{FieldSelector, LabelSelector};
use kaji_core::ApiError;
use kaji_patch::PatchType;
use kaji_registry::{
    DeleteOptions, FieldValidation, ListOptions, Part, Registry, WatchKind, WatchOptions,
    WriteOptions,
};
use serde_json::{json, Value};

use crate::encoding::{self, Format, Negotiated, View};
use crate::path::ResourcePath;
use crate::ApiServer;

/// Query parameters, last value wins.
pub type Query = HashMap<String, String>;

/// Parses a query string.
pub fn parse_query(q: Option<&str>) -> Query {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The Status response for an error.
pub fn error_response(err: &ApiError) -> Response<Body> {
    let body = serde_json::to_vec(&err.to_status()).expect("Status serializes");
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() =
        StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = err.retry_after_seconds {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
    }
    resp
}

fn respond(code: StatusCode, format: Format, value: &Value, warnings: &[String]) -> Response<Body> {
    let (ct, bytes) = encoding::render(format, value);
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

fn flag(q: &Query, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("true" | "1"))
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

/// Kubernetes' default field manager: the User-Agent up to its first '/'.
fn default_manager(headers: &HeaderMap) -> Option<String> {
    let ua = headers.get(http::header::USER_AGENT)?.to_str().ok()?;
    let name: String = ua.split('/').next()?.chars().take(128).collect();
    (!name.is_empty()).then_some(name)
}

fn write_options(q: &Query, headers: &HeaderMap) -> Result<WriteOptions, ApiError> {
    let field_validation = match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            )))
        }
    };
    let field_manager = q
        .get("fieldManager")
        .cloned()
        .or_else(|| default_manager(headers));
    if let Some(m) = &field_manager {
        if m.len() > 128 || m.chars().any(|c| c.is_control()) {
            return Err(ApiError::invalid(
                "",
                "Status",
                "",
                vec![kaji_core::Cause::invalid(
                    "fieldManager",
                    &json!(m),
                    "must be at most 128 printable characters",
                )],
            ));
        }
    }
    let force = match q.get("force").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("invalid force: {other:?}"))),
    };
    Ok(WriteOptions {
        dry_run: dry_run(q)?,
        field_manager,
        field_validation,
        force,
    })
}

fn selectors(q: &Query) -> Result<(Option<LabelSelector>, Option<FieldSelector>), ApiError> {
    let labels = match q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let fields = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            FieldSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?,
        ),
        None => None,
    };
    Ok((labels, fields))
}

/// Duplicate fields in a JSON body, as kube-apiserver reports them: an error
/// under `fieldValidation=Strict`, warnings under `Warn`, nothing under
/// `Ignore` (the decoded body keeps the last value either way).
fn duplicate_fields(
    media: &str,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Vec<String>, ApiError> {
    if opts.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let found: Vec<String> = encoding::duplicate_fields(media, body)
        .into_iter()
        .map(|f| format!("duplicate field {f:?}"))
        .collect();
    if !found.is_empty() && opts.field_validation == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            found.join(", ")
        )));
    }
    Ok(found)
}

/// A name or namespace from the path must be usable as one path segment,
/// as kube-apiserver's `IsValidPathSegmentName` requires.
fn check_path_segment(what: &str, segment: &str) -> Result<(), ApiError> {
    let problem = match segment {
        "." | ".." => format!("may not be '{segment}'"),
        _ if segment.contains('/') => "may not contain '/'".to_string(),
        _ if segment.contains('%') => "may not contain '%'".to_string(),
        _ => return Ok(()),
    };
    Err(ApiError::bad_request(format!(
        "{what} {segment:?}: {problem}"
    )))
}

/// `DeleteOptions` from the query and the body, which comes in whatever
/// media type the client sends (helm sends protobuf).
fn delete_options(q: &Query, headers: &HeaderMap, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        dry_run: dry_run(q)?,
        ..Default::default()
    };
    if !body.is_empty() {
        let v = encoding::decode_body(&encoding::content_type(headers), body).map_err(|e| {
            ApiError::bad_request(format!("failed to decode DeleteOptions: {}", e.message))
        })?;
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation_policy = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from);
        if v.get("orphanDependents") == Some(&json!(true)) {
            opts.propagation_policy = Some("Orphan".into());
        }
        opts.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.precondition_resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        opts.grace_period_seconds =
            Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts.propagation_policy = Some(p.clone());
    }
    if let Some(p) = &opts.propagation_policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                vec![kaji_core::Cause::not_supported(
                    "propagationPolicy",
                    &json!(p),
                    &["Foreground", "Background", "Orphan"],
                )],
            ));
        }
    }
    Ok(opts)
}

/// A registry with what the handler needs to print its objects.
struct Served {
    registry: Arc<Registry>,
    custom: Option<Arc<crate::crds::CustomResource>>,
}

impl Served {
    fn columns(&self) -> Option<&[kaji_printers::CustomColumn]> {
        self.custom.as_deref().map(|c| c.columns.as_slice())
    }
}

fn shape_one(reg: &Served, neg: Negotiated, obj: &Value, q: &Query) -> Value {
    match neg.view {
        View::Object => obj.clone(),
        View::Metadata => encoding::partial_metadata(obj),
        View::Table => encoding::table(
            &reg.registry.info().api_version(),
            reg.registry.info().kind,
            reg.columns(),
            std::slice::from_ref(obj),
            q.get("includeObject")
                .map(String::as_str)
                .unwrap_or("Metadata"),
            None,
        ),
    }
}

/// Serves one resource request; the verb name is returned for metrics.
pub async fn serve(
    server: &Arc<ApiServer>,
    method: &Method,
    path: ResourcePath,
    query: Query,
    headers: &HeaderMap,
    body: Bytes,
) -> (Response<Body>, &'static str) {
    let verb = verb_name(method, &path, &query);
    let started = Instant::now();
    let resp = match dispatch(server, method, &path, &query, headers, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if verb != "watch" {
        server.metrics.observe(
            verb,
            &path.resource,
            resp.status().as_u16(),
            started.elapsed(),
        );
    }
    (resp, verb)
}

fn verb_name(method: &Method, path: &ResourcePath, q: &Query) -> &'static str {
    match *method {
        Method::GET if path.name.is_none() && flag(q, "watch") => "watch",
        Method::GET if path.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if path.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

async fn dispatch(
    server: &Arc<ApiServer>,
    method: &Method,
    path: &ResourcePath,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let custom = server.custom_resource(&path.group, &path.version, &path.resource);
    let reg = match &custom {
        Some(c) => c.registry.clone(),
        None => server
            .registry(&path.group, &path.version, &path.resource)
            .ok_or_else(ApiError::no_route)?,
    };
    if *method == Method::POST && custom.as_ref().is_some_and(|c| c.terminating) {
        return Err(ApiError::method_not_allowed(
            "create not allowed while custom resource definition is terminating",
        ));
    }
    let served = Served {
        registry: reg.clone(),
        custom,
    };
    let info = reg.info();
    if info.namespaced() != path.namespace.is_some() && path.name.is_some() {
        return Err(ApiError::no_route());
    }
    if !info.namespaced() && path.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &path.subresource {
        if !info.subresources.contains(&sub.as_str()) {
            return Err(ApiError::no_route());
        }
    }
    if let Some(ns) = &path.namespace {
        check_path_segment("namespace", ns)?;
    }
    if let Some(name) = &path.name {
        check_path_segment("name", name)?;
    }
    // Across all namespaces a namespaced resource is only listed or watched.
    if info.namespaced()
        && path.namespace.is_none()
        && path.name.is_none()
        && *method != Method::GET
    {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    if let (&Method::GET, Some(name), Some("log"), Some(ns)) = (
        method,
        path.name.as_deref(),
        path.subresource.as_deref(),
        path.namespace.as_deref(),
    ) {
        return crate::nodeproxy::pod_log(server, ns, name, q).await;
    }
    let neg = encoding::negotiate(headers)?;
    let ns = path.namespace.as_deref();
    let sub = path.subresource.as_deref();
    match (method.clone(), path.name.as_deref(), sub) {
        (Method::GET, None, None) if flag(q, "watch") => watch(server, &served, ns, q, neg).await,
        (Method::GET, None, None) => {
            let (label_selector, field_selector) = selectors(q)?;
            // Served at once, but still a parameter the request must get right.
            if let Some(t) = q.get("timeoutSeconds") {
                t.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?;
            }
            let opts = ListOptions {
                label_selector,
                field_selector,
                // An int64 where kube-apiserver reads "no limit" from zero or less.
                limit: match q.get("limit") {
                    Some(l) => l
                        .parse::<i64>()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?
                        .try_into()
                        .unwrap_or(0),
                    None => 0,
                },
                continue_token: q.get("continue").cloned(),
                resource_version: q.get("resourceVersion").cloned(),
                resource_version_match: q.get("resourceVersionMatch").cloned(),
            };
            let list = reg.list(ns, &opts).await?;
            let out = match neg.view {
                View::Object => list,
                View::Metadata => {
                    let items: Vec<Value> = list["items"]
                        .as_array()
                        .map(|i| i.iter().map(encoding::partial_metadata).collect())
                        .unwrap_or_default();
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list["metadata"], "items": items})
                }
                View::Table => encoding::table(
                    &info.api_version(),
                    info.kind,
                    served.columns(),
                    list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                    q.get("includeObject")
                        .map(String::as_str)
                        .unwrap_or("Metadata"),
                    Some(&list["metadata"]),
                ),
            };
            Ok(respond(StatusCode::OK, neg.format, &out, &[]))
        }
        (Method::GET, Some(name), None | Some("status")) => {
            let obj = reg.get(ns, name).await?;
            Ok(respond(
                StatusCode::OK,
                neg.format,
                &shape_one(&served, neg, &obj, q),
                &[],
            ))
        }
        (Method::GET, Some(name), Some("scale")) => Ok(respond(
            StatusCode::OK,
            neg.format,
            &reg.get_scale(ns, name).await?,
            &[],
        )),
        (Method::POST, None, None) => {
            let ct = encoding::content_type(headers);
            let value = encoding::decode_body(&ct, &body)?;
            let opts = write_options(q, headers)?;
            let mut warnings = duplicate_fields(&ct, &body, &opts)?;
            let out = reg.create(ns, value, &opts).await?;
            warnings.extend(out.warnings);
            Ok(respond(
                StatusCode::CREATED,
                neg.format,
                &shape_one(&served, neg, &out.object, q),
                &warnings,
            ))
        }
        (Method::POST, Some(name), Some("binding")) => {
            let value = encoding::decode_body(&encoding::content_type(headers), &body)?;
            let node = value
                .pointer("/target/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "",
                        "Binding",
                        name,
                        vec![kaji_core::Cause::required("target.name")],
                    )
                })?;
            reg.bind(ns, name, node, &write_options(q, headers)?)
                .await?;
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
            Ok(respond(StatusCode::CREATED, neg.format, &status, &[]))
        }
        (Method::PUT, Some(name), None | Some("status") | Some("finalize")) => {
            let ct = encoding::content_type(headers);
            let value = encoding::decode_body(&ct, &body)?;
            let part = match sub {
                Some("status") => Part::Status,
                Some("finalize") => Part::Finalize,
                _ => Part::Main,
            };
            let opts = write_options(q, headers)?;
            let mut warnings = duplicate_fields(&ct, &body, &opts)?;
            let out = reg.update(ns, name, value, part, &opts).await?;
            warnings.extend(out.warnings);
            Ok(respond(
                StatusCode::OK,
                neg.format,
                &shape_one(&served, neg, &out.object, q),
                &warnings,
            ))
        }
        (Method::PUT, Some(name), Some("scale")) => {
            let value = encoding::decode_body(&encoding::content_type(headers), &body)?;
            let out = reg
                .update_scale(ns, name, &write_options(q, headers)?, |_| Ok(value.clone()))
                .await?;
            Ok(respond(StatusCode::OK, neg.format, &out, &[]))
        }
        (Method::PATCH, Some(name), sub) => {
            let ct = encoding::content_type(headers);
            let patch_type = PatchType::from_content_type(&ct)
                .ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            let patch = encoding::decode_body(&ct, &body)?;
            let opts = write_options(q, headers)?;
            if patch_type == PatchType::Apply && q.get("fieldManager").is_none_or(|m| m.is_empty())
            {
                return Err(ApiError::bad_request("PATCH, application/apply-patch+yaml requires a non-empty fieldManager query parameter"));
            }
            if patch_type != PatchType::Apply && opts.force {
                return Err(ApiError::bad_request(
                    "force may not be specified for non-apply patch",
                ));
            }
            match sub {
                Some("scale") => {
                    let out = reg
                        .update_scale(ns, name, &opts, |scale| {
                            patch_scale(patch_type, scale, &patch)
                        })
                        .await?;
                    Ok(respond(StatusCode::OK, neg.format, &out, &[]))
                }
                None | Some("status") => {
                    let part = if sub == Some("status") {
                        Part::Status
                    } else {
                        Part::Main
                    };
                    let mut warnings = match patch_type {
                        PatchType::Merge | PatchType::StrategicMerge => {
                            duplicate_fields(&ct, &body, &opts)?
                        }
                        PatchType::Json | PatchType::Apply => Vec::new(),
                    };
                    let out = if patch_type == PatchType::Apply {
                        reg.apply(ns, name, patch, part, &opts).await?
                    } else {
                        reg.patch(ns, name, patch_type, patch, part, &opts).await?
                    };
                    warnings.extend(out.warnings);
                    Ok(respond(
                        StatusCode::OK,
                        neg.format,
                        &shape_one(&served, neg, &out.object, q),
                        &warnings,
                    ))
                }
                _ => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        (Method::DELETE, Some(name), None) => {
            let opts = delete_options(q, headers, &body)?;
            let (obj, gone) = reg.delete(ns, name, &opts).await?;
            // 202 while finalizers or a grace period still hold the object, as Kubernetes answers.
            let code = if gone {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(respond(code, neg.format, &obj, &[]))
        }
        (Method::DELETE, None, None) => {
            let opts = delete_options(q, headers, &body)?;
            let (label_selector, field_selector) = selectors(q)?;
            let list = reg
                .list(
                    ns,
                    &ListOptions {
                        label_selector,
                        field_selector,
                        ..Default::default()
                    },
                )
                .await?;
            let mut deleted = Vec::new();
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
                match reg.delete(item_ns.or(ns), name, &opts).await {
                    Ok((obj, _)) => deleted.push(obj),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let out = json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": list["metadata"], "items": deleted});
            Ok(respond(StatusCode::OK, neg.format, &out, &[]))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

fn patch_scale(patch_type: PatchType, scale: &Value, patch: &Value) -> Result<Value, ApiError> {
    let r = match patch_type {
        PatchType::Json => kaji_patch::apply_json_patch(scale, patch),
        PatchType::Apply => {
            return Err(ApiError::unsupported_media_type(
                "application/apply-patch+yaml",
            ))
        }
        // Scale has no merge keys: strategic merge is a plain merge here.
        PatchType::Merge | PatchType::StrategicMerge => kaji_patch::apply_merge_patch(scale, patch),
    };
    r.map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn watch(
    server: &Arc<ApiServer>,
    served: &Served,
    ns: Option<&str>,
    q: &Query,
    neg: Negotiated,
) -> Result<Response<Body>, ApiError> {
    let (label_selector, field_selector) = selectors(q)?;
    let allow_bookmarks = flag(q, "allowWatchBookmarks");
    let opts = WatchOptions {
        label_selector,
        field_selector,
        resource_version: q.get("resourceVersion").cloned(),
        send_initial_events: flag(q, "sendInitialEvents"),
        allow_bookmarks,
    };
    let timeout = match q.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?,
        ),
        None => Duration::from_secs(1800),
    };
    let reg = &served.registry;
    let columns: Option<Vec<kaji_printers::CustomColumn>> = served.columns().map(<[_]>::to_vec);
    let mut events = reg.watch(ns, opts).await?;
    let include = q
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let reg = reg.clone();
    let server = server.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        server.metrics.watchers(1);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmarks = tokio::time::interval(Duration::from_secs(60));
        bookmarks.tick().await;
        let mut last_rv: Option<i64> = None;
        let mut stopping = server.stopping.subscribe();
        loop {
            let ev = tokio::select! {
                _ = &mut deadline => break,
                _ = tx.closed() => break,
                _ = stopping.wait_for(|s| *s) => break,
                _ = bookmarks.tick(), if allow_bookmarks => match last_rv {
                    Some(rv) => reg.bookmark(rv, false),
                    None => continue,
                },
                ev = events.next() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
            };
            if let Some(rv) = ev.resource_version() {
                last_rv = Some(rv);
            }
            let line = match (neg.format, neg.view) {
                // Watch events stream as JSON lines even for protobuf clients
                // that also accept JSON. The full object's line is encoded once
                // per change and event type, and shared by all watches.
                (Format::Json | Format::Protobuf, View::Object) => ev.json_line(),
                (format, view) => {
                    let event = match (view, ev.kind) {
                        (
                            View::Table | View::Metadata,
                            WatchKind::Added | WatchKind::Modified | WatchKind::Deleted,
                        ) => {
                            let obj = match view {
                                View::Table => encoding::table(
                                    &reg.info().api_version(),
                                    reg.info().kind,
                                    columns.as_deref(),
                                    std::slice::from_ref(&*ev.object),
                                    &include,
                                    None,
                                ),
                                _ => encoding::partial_metadata(&ev.object),
                            };
                            json!({"type": ev.kind.as_str(), "object": obj})
                        }
                        _ => ev.to_value(),
                    };
                    let mut line = match format {
                        Format::Yaml => serde_yaml::to_string(&event)
                            .unwrap_or_default()
                            .into_bytes(),
                        Format::Json | Format::Protobuf => {
                            serde_json::to_vec(&event).unwrap_or_default()
                        }
                    };
                    line.push(b'\n');
                    Bytes::from(line)
                }
            };
            if tx.send(Ok(line)).await.is_err() || ev.kind == WatchKind::Error {
                break;
            }
        }
        server.metrics.watchers(-1);
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(Body::from_stream(body));
    let ct = match neg.format {
        Format::Yaml => "application/yaml",
        Format::Json | Format::Protobuf => "application/json",
    };
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
