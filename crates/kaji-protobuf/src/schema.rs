//! The shape of the generated wire schema (`table.rs`) and lookups into it.

use crate::table::{ANY_VERSION_KINDS, KINDS};

/// One protobuf message: its fields in ascending tag order.
#[derive(Debug)]
pub(crate) struct Message {
    /// Go-style name (`io.k8s.api.apps.v1.Deployment`), for error messages.
    pub(crate) name: &'static str,
    /// Fields sorted by tag.
    pub(crate) fields: &'static [Field],
}

/// One field of a [`Message`].
#[derive(Debug)]
pub(crate) struct Field {
    /// Protobuf field number.
    pub(crate) tag: u32,
    /// Kubernetes JSON name (for [`Kind::Inline`], the Go field name, unused in JSON).
    pub(crate) json: &'static str,
    /// What a single value is; for [`Label::Map`], what a map value is (keys are strings).
    pub(crate) kind: Kind,
    /// Single value, repeated value, or `map<string, kind>`.
    pub(crate) label: Label,
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    /// `optional`: at most one value (the last one on the wire wins).
    Single,
    /// `repeated`: a JSON array.
    Repeated,
    /// `map<string, kind>`: a JSON object.
    Map,
}

/// The type of one value and how it looks in JSON.
///
/// Some variants appear only in messages outside today's roots (`Double`, `Duration`); they
/// stay so a regenerated table can use them.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub(crate) enum Kind {
    /// `string` ↔ JSON string.
    String,
    /// `bool` ↔ JSON boolean.
    Bool,
    /// `int32` ↔ JSON number.
    Int32,
    /// `int64` ↔ JSON number.
    Int64,
    /// `double` ↔ JSON number.
    Double,
    /// `bytes` ↔ base64 JSON string.
    Bytes,
    /// A nested message ↔ JSON object.
    Message(&'static Message),
    /// A Go embedded struct: its fields sit in the parent's JSON object.
    Inline(&'static Message),
    /// `meta/v1 Time` `{seconds=1, nanos=2}` ↔ RFC 3339 string in whole seconds.
    Time,
    /// `meta/v1 MicroTime` ↔ RFC 3339 string with microseconds.
    MicroTime,
    /// `meta/v1 Duration` `{duration=1 (ns)}` ↔ Go duration string (`1h2m3s`).
    Duration,
    /// `meta/v1 FieldsV1` `{Raw=1}` ↔ the embedded JSON value.
    FieldsV1,
    /// `resource.Quantity` `{string=1}` ↔ JSON string.
    Quantity,
    /// `intstr.IntOrString` `{type=1, intVal=2, strVal=3}` ↔ JSON number or string.
    IntOrString,
    /// `runtime.RawExtension` `{raw=1}` ↔ the embedded JSON value.
    RawExtension,
    /// A Go named string slice (`ExtraValue`, `Verbs`) `{repeated items=1}` ↔ JSON array.
    StringList,
}

/// The message of `apiVersion`/`kind`, if this crate knows the kind.
pub(crate) fn lookup(api_version: &str, kind: &str) -> Option<&'static Message> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, m)| *m)
        .or_else(|| {
            ANY_VERSION_KINDS
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, m)| *m)
        })
}

/// Every `(apiVersion, kind)` this crate knows, excluding the any-version kinds.
pub(crate) fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    KINDS.iter().map(|(v, k, _)| (*v, *k))
}
