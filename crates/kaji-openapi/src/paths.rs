//! The REST paths of every catalogue resource, as a small operation model
//! that [`crate::render`] turns into swagger 2.0 or OpenAPI 3.0.
//!
//! kubectl reads two things from these: whether the `PATCH` operation whose
//! `x-kubernetes-group-version-kind` names a kind lists the `fieldValidation`
//! query parameter (then `kubectl apply --validate=strict` leaves validation
//! to the server), and whether that operation accepts
//! `application/strategic-merge-patch+json` (then client-side apply computes
//! its patch from the schema's `x-kubernetes-patch-*` extensions).

use kaji_core::catalogue::{self, ResourceInfo};

use crate::schemas::{self, Schemas};

/// HTTP method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// Lower-case key used in path items.
    pub fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// Type of a non-body parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamType {
    String,
    Integer,
    Boolean,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
        }
    }
}

/// A path or query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Param {
    pub name: &'static str,
    pub in_path: bool,
    pub ty: ParamType,
    pub description: String,
}

/// What an operation's request body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// A whole object of the named schema.
    Object(String),
    /// One of the patch media types ([`PATCH_TYPES`]); the schema is
    /// `meta/v1 Patch`.
    Patch,
    /// A patch of a custom resource: as [`Body::Patch`] but without
    /// strategic merge patch ([`CUSTOM_PATCH_TYPES`]), which custom
    /// resources do not take. kubectl's client-side apply reads this to
    /// send a JSON merge patch instead.
    CustomPatch,
    /// Optional `DeleteOptions`.
    DeleteOptions,
}

/// Media types a `PATCH` accepts.
pub(crate) const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// Media types a custom resource's `PATCH` accepts, as apiextensions-apiserver
/// publishes them.
pub(crate) const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];

/// Media types every operation produces.
pub(crate) const PRODUCES: &[&str] = &["application/json", "application/yaml"];

/// One operation on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operation {
    pub method: Method,
    pub id: String,
    pub description: String,
    /// `x-kubernetes-action`: get, list, post, put, patch, delete, deletecollection.
    pub action: &'static str,
    pub tag: String,
    pub params: Vec<Param>,
    pub body: Option<Body>,
    /// Status codes and the schema each returns.
    pub responses: Vec<(u16, String)>,
    /// Group, version and kind for `x-kubernetes-group-version-kind`.
    pub gvk: (&'static str, &'static str, &'static str),
}

/// A path and its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathItem {
    /// The group/version this path belongs to.
    pub group: &'static str,
    pub version: &'static str,
    pub path: String,
    /// Path-level parameters (`name`, `namespace`, `pretty`).
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

fn query(name: &'static str, ty: ParamType, description: &str) -> Param {
    Param {
        name,
        in_path: false,
        ty,
        description: description.to_string(),
    }
}

fn path_param(name: &'static str, description: String) -> Param {
    Param {
        name,
        in_path: true,
        ty: ParamType::String,
        description,
    }
}

fn pretty() -> Param {
    query(
        "pretty",
        ParamType::String,
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
    )
}

fn dry_run() -> Param {
    query(
        "dryRun",
        ParamType::String,
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
    )
}

fn field_manager() -> Param {
    query(
        "fieldManager",
        ParamType::String,
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    )
}

fn field_validation() -> Param {
    query(
        "fieldValidation",
        ParamType::String,
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
    )
}

fn write_params() -> Vec<Param> {
    vec![dry_run(), field_manager(), field_validation()]
}

fn patch_params() -> Vec<Param> {
    let mut params = write_params();
    params.push(query(
        "force",
        ParamType::Boolean,
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
    ));
    params
}

fn list_params() -> Vec<Param> {
    vec![
        query("allowWatchBookmarks", ParamType::Boolean, "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion."),
        query("continue", ParamType::String, "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue)."),
        query("fieldSelector", ParamType::String, "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        query("labelSelector", ParamType::String, "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        query("limit", ParamType::Integer, "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results."),
        query("resourceVersion", ParamType::String, "resourceVersion sets a constraint on what resource versions a request may be served from. Defaults to unset."),
        query("resourceVersionMatch", ParamType::String, "resourceVersionMatch determines how resourceVersion is applied to list calls. Defaults to unset."),
        query("sendInitialEvents", ParamType::Boolean, "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection."),
        query("timeoutSeconds", ParamType::Integer, "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
        query("watch", ParamType::Boolean, "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
    ]
}

fn delete_params() -> Vec<Param> {
    vec![
        dry_run(),
        query("gracePeriodSeconds", ParamType::Integer, "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used."),
        query("ignoreStoreReadErrorWithClusterBreakingPotential", ParamType::Boolean, "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
        query("orphanDependents", ParamType::Boolean, "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned."),
        query("propagationPolicy", ParamType::String, "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
    ]
}

/// Kubernetes' `ToValidOperationID`: drops every character that is not a
/// letter, `_` or a non-leading digit, capitalizing the character after each
/// dropped one (and the first if `capitalize_first`).
fn operation_id_part(s: &str, capitalize_first: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut capitalize = capitalize_first;
    for (i, c) in s.chars().enumerate() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_ascii_digit()) {
            if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        } else {
            capitalize = true;
        }
    }
    out
}

/// The group as operation ids and tags name it: `core` for the core group,
/// otherwise without the `.k8s.io` suffix.
fn group_for_ids(group: &str) -> &str {
    if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    }
}

/// `CoreV1`, `AppsV1`, `StableExampleComV1`: the operation-id infix for a
/// group version, as Kubernetes' `GetOperationIDAndTags` builds it.
fn group_infix(group: &str, version: &str) -> String {
    format!(
        "{}{}",
        operation_id_part(group_for_ids(group), true),
        operation_id_part(version, true)
    )
}

/// `core_v1`, `apps_v1`, `stableExampleCom_v1`: the tag for a group version.
fn tag(group: &str, version: &str) -> String {
    format!(
        "{}_{}",
        operation_id_part(group_for_ids(group), false),
        operation_id_part(version, false)
    )
}

/// Builds every path of every catalogue resource whose kind has a schema.
pub(crate) fn build(schemas: &Schemas) -> Vec<PathItem> {
    let mut items = Vec::new();
    for resource in catalogue::builtin() {
        if let Some(kind) = schemas.kind(resource.group, resource.version, resource.kind) {
            resource_paths(resource, &kind.name, &kind.list_name(), schemas, &mut items);
        }
    }
    items
}

/// Appends the paths of one resource: its collection, its objects, the
/// all-namespaces list of a namespaced resource, and each subresource kaji
/// knows how to describe (`status`, `scale`, `binding`, `finalize`).
pub(crate) fn resource_paths(
    r: &'static ResourceInfo,
    schema: &str,
    list_schema: &str,
    schemas: &Schemas,
    items: &mut Vec<PathItem>,
) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let infix = group_infix(r.group, r.version);
    let scoped = if r.namespaced() { "Namespaced" } else { "" };
    let collection = if r.namespaced() {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let namespace = path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects".into(),
    );
    let mut scope_params = Vec::new();
    if r.namespaced() {
        scope_params.push(namespace.clone());
    }
    let gvk = (r.group, r.version, r.kind);
    let op = |method, verb: &str, action, suffix: &str, what: String| Operation {
        method,
        id: format!("{verb}{infix}{scoped}{}{suffix}", r.kind),
        description: what,
        action,
        tag: tag(r.group, r.version),
        params: Vec::new(),
        body: None,
        responses: Vec::new(),
        gvk,
    };
    let kind = r.kind;

    // The collection: list, create, delete collection.
    let mut ops = Vec::new();
    let mut list = op(
        Method::Get,
        "list",
        "list",
        "",
        format!("list or watch objects of kind {kind}"),
    );
    list.params = list_params();
    list.responses = vec![(200, list_schema.to_string())];
    ops.push(list);
    let mut create = op(
        Method::Post,
        "create",
        "post",
        "",
        format!("create a {kind}"),
    );
    create.params = write_params();
    create.body = Some(Body::Object(schema.to_string()));
    create.responses = [200, 201, 202].map(|c| (c, schema.to_string())).to_vec();
    ops.push(create);
    let mut delete_all = op(
        Method::Delete,
        "deleteCollection",
        "deletecollection",
        "",
        format!("delete collection of {kind}"),
    );
    delete_all.params = delete_params();
    delete_all.params.extend(
        list_params()
            .into_iter()
            .filter(|p| p.name != "watch" && p.name != "allowWatchBookmarks"),
    );
    delete_all.body = Some(Body::DeleteOptions);
    delete_all.responses = vec![(200, schemas::STATUS.to_string())];
    ops.push(delete_all);
    let mut params = scope_params.clone();
    params.push(pretty());
    items.push(PathItem {
        group: r.group,
        version: r.version,
        path: collection.clone(),
        params,
        operations: ops,
    });

    // One object: read, replace, patch, delete.
    let name = path_param("name", format!("name of the {kind}"));
    let mut item_params = vec![name.clone()];
    item_params.extend(scope_params.clone());
    item_params.push(pretty());
    let mut ops = object_ops(&op, "", schema, "");
    let mut delete = op(
        Method::Delete,
        "delete",
        "delete",
        "",
        format!("delete a {kind}"),
    );
    delete.params = delete_params();
    delete.body = Some(Body::DeleteOptions);
    delete.responses = [200, 202]
        .map(|c| (c, schemas::STATUS.to_string()))
        .to_vec();
    ops.push(delete);
    items.push(PathItem {
        group: r.group,
        version: r.version,
        path: format!("{collection}/{{name}}"),
        params: item_params.clone(),
        operations: ops,
    });

    // Across namespaces.
    if r.namespaced() {
        let mut all = op(
            Method::Get,
            "list",
            "list",
            "ForAllNamespaces",
            format!("list or watch objects of kind {kind}"),
        );
        all.id = format!("list{infix}{kind}ForAllNamespaces");
        all.params = list_params();
        all.responses = vec![(200, list_schema.to_string())];
        items.push(PathItem {
            group: r.group,
            version: r.version,
            path: format!("{prefix}/{}", r.plural),
            params: vec![pretty()],
            operations: vec![all],
        });
    }

    for sub in r.subresources {
        let path = format!("{collection}/{{name}}/{sub}");
        let operations = match *sub {
            "status" => object_ops(&op, "Status", schema, "status of "),
            "scale" => {
                let Some(scale) = schemas.kind("autoscaling", "v1", "Scale") else {
                    continue;
                };
                let mut ops = object_ops(&op, "Scale", &scale.name, "scale of ");
                for o in &mut ops {
                    o.gvk = ("autoscaling", "v1", "Scale");
                }
                ops
            }
            "binding" => {
                let Some(binding) = schemas.kind("", "v1", "Binding") else {
                    continue;
                };
                let mut create = op(
                    Method::Post,
                    "create",
                    "post",
                    "Binding",
                    format!("create binding of a {kind}"),
                );
                create.params = write_params();
                create.body = Some(Body::Object(binding.name.clone()));
                create.responses = [200, 201, 202].map(|c| (c, binding.name.clone())).to_vec();
                create.gvk = ("", "v1", "Binding");
                vec![create]
            }
            "finalize" => {
                let mut replace = op(
                    Method::Put,
                    "replace",
                    "put",
                    "Finalize",
                    format!("replace finalize of the specified {kind}"),
                );
                replace.params = write_params();
                replace.body = Some(Body::Object(schema.to_string()));
                replace.responses = [200, 201].map(|c| (c, schema.to_string())).to_vec();
                vec![replace]
            }
            _ => continue,
        };
        items.push(PathItem {
            group: r.group,
            version: r.version,
            path,
            params: item_params.clone(),
            operations,
        });
    }
}

/// read, replace and patch on one object or one of its subresources.
fn object_ops(
    op: &impl Fn(Method, &str, &'static str, &str, String) -> Operation,
    suffix: &str,
    schema: &str,
    what: &str,
) -> Vec<Operation> {
    let mut read = op(
        Method::Get,
        "read",
        "get",
        suffix,
        format!("read {what}the specified object"),
    );
    read.responses = vec![(200, schema.to_string())];
    let mut replace = op(
        Method::Put,
        "replace",
        "put",
        suffix,
        format!("replace {what}the specified object"),
    );
    replace.params = write_params();
    replace.body = Some(Body::Object(schema.to_string()));
    replace.responses = [200, 201].map(|c| (c, schema.to_string())).to_vec();
    let mut patch = op(
        Method::Patch,
        "patch",
        "patch",
        suffix,
        format!("partially update {what}the specified object"),
    );
    patch.params = patch_params();
    patch.body = Some(Body::Patch);
    patch.responses = [200, 201].map(|c| (c, schema.to_string())).to_vec();
    vec![read, replace, patch]
}

/// Group versions with at least one path, in order of first appearance.
pub(crate) fn group_versions<'a>(
    items: impl IntoIterator<Item = &'a PathItem>,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for item in items {
        if !out.contains(&(item.group, item.version)) {
            out.push((item.group, item.version));
        }
    }
    out
}

/// The v3 index key for a group version: `api/v1` or `apis/apps/v1`.
pub(crate) fn index_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}
