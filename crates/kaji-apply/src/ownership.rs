//! What one write may own: never the server-set metadata, never the
//! fields its endpoint resets; and what it changed, seen through that filter.

use serde_json::Value;

use crate::path::PathElement;
use crate::schema::{self, Shape};
use crate::set::Set;
use crate::typed::{self, Comparison};
use crate::FieldManager;

/// The metadata Kubernetes never records as owned (`stripMetaManager`).
fn never_managed() -> Set {
    let f = |s: &str| PathElement::Field(s.to_string());
    let mut set = Set::default();
    set.insert(&[f("apiVersion")]);
    set.insert(&[f("kind")]);
    set.insert(&[f("metadata")]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[f("metadata"), f(name)]);
    }
    set
}

impl<'a> FieldManager<'a> {
    /// The shape of the objects written: the custom resource schema if
    /// given, else the built-in table's.
    pub(crate) fn shape(&self) -> &'a Shape {
        match self.schema {
            Some(schema) => schema.shape(),
            None => schema::root(self.api_version, self.kind),
        }
    }

    /// Drops the never-managed metadata and the ignored fields from `set`.
    pub(crate) fn own(&self, set: Set) -> Set {
        let mut set = self.unignored(set).difference(&never_managed());
        set.remove_subtree(&[
            PathElement::Field("metadata".into()),
            PathElement::Field("managedFields".into()),
        ]);
        set
    }

    /// Drops the ignored fields (and everything below them) from `set`.
    pub(crate) fn unignored(&self, mut set: Set) -> Set {
        for dotted in self.ignored_fields {
            let path: Vec<PathElement> = dotted
                .split('.')
                .map(|s| PathElement::Field(s.to_string()))
                .collect();
            set.remove_subtree(&path);
        }
        set
    }

    /// The changes from `old` to `new`, without the ignored fields.
    pub(crate) fn compare(&self, old: &Value, new: &Value) -> Comparison {
        let c = typed::compare(old, new, self.shape());
        Comparison {
            added: self.unignored(c.added),
            modified: self.unignored(c.modified),
            removed: self.unignored(c.removed),
        }
    }
}
