//! Sets of field paths — what one manager owns — as a trie, with the
//! `FieldsV1` encoding Kubernetes stores in `metadata.managedFields`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::path::{Path, PathElement};

/// A set of field paths.
///
/// `members` are the paths that end here; `children` hold longer paths.
/// Invariant: no child set is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// Whether the set holds no path.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path`. The empty path is never a member.
    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [pe] => {
                self.members.insert(pe.clone());
            }
            [pe, rest @ ..] => self.children.entry(pe.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` itself is a member.
    #[cfg(test)]
    pub(crate) fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [pe] => self.members.contains(pe),
            [pe, rest @ ..] => self.children.get(pe).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether `path` or any path below it is a member.
    pub(crate) fn has_at_or_below(&self, path: &[PathElement]) -> bool {
        match path {
            [] => !self.is_empty(),
            [pe] => self.members.contains(pe) || self.children.contains_key(pe),
            [pe, rest @ ..] => self
                .children
                .get(pe)
                .is_some_and(|c| c.has_at_or_below(rest)),
        }
    }

    /// The paths in either set.
    pub(crate) fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// The paths of `self` that are not in `other` (exact paths: a member of
    /// `other` does not remove the paths below it).
    pub(crate) fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        Set { members, children }
    }

    /// The paths in both sets.
    pub(crate) fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        Set { members, children }
    }

    /// Removes `path` and every path below it.
    pub(crate) fn remove_subtree(&mut self, path: &[PathElement]) {
        match path {
            [] => *self = Set::default(),
            [pe] => {
                self.members.remove(pe);
                self.children.remove(pe);
            }
            [pe, rest @ ..] => {
                if let Some(child) = self.children.get_mut(pe) {
                    child.remove_subtree(rest);
                    if child.is_empty() {
                        self.children.remove(pe);
                    }
                }
            }
        }
    }

    /// Every member path, in structured-merge-diff's iteration order: the
    /// members of a level first, then the paths below each child.
    pub(crate) fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(p);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` form: `{"f:spec": {"f:replicas": {}}}`, with `"."`
    /// marking a path that is a member and also has paths below it.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        let mut out = Map::new();
        for pe in keys {
            let value = match self.children.get(pe) {
                Some(child) => {
                    let Value::Object(inner) = child.to_fields_v1() else {
                        unreachable!("to_fields_v1 returns an object")
                    };
                    let mut obj = Map::new();
                    if self.members.contains(pe) {
                        obj.insert(".".to_string(), Value::Object(Map::new()));
                    }
                    obj.extend(inner);
                    Value::Object(obj)
                }
                None => Value::Object(Map::new()),
            };
            out.insert(pe.fields_key(), value);
        }
        Value::Object(out)
    }

    /// Reads the `FieldsV1` form.
    ///
    /// # Errors
    /// A message when a key does not parse or a value is not an object.
    pub(crate) fn from_fields_v1(value: &Value) -> Result<Set, String> {
        Ok(Self::decode(value)?.0)
    }

    /// Decodes one level; the flag says whether it carried `"."`.
    fn decode(value: &Value) -> Result<(Set, bool), String> {
        let Value::Object(map) = value else {
            return Err(format!("FieldsV1 value is not an object: {value}"));
        };
        let mut set = Set::default();
        let mut dot = false;
        for (key, inner) in map {
            if key == "." {
                dot = true;
                continue;
            }
            let pe = PathElement::from_fields_key(key)?;
            let (child, child_dot) = Self::decode(inner)?;
            if child_dot || child.is_empty() {
                set.members.insert(pe.clone());
            }
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok((set, dot))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {r#"k:{"name":"nginx"}"#: {".": {}, "f:image": {}}}}
        });
        let set = Set::from_fields_v1(&v).unwrap();
        assert!(set.contains(&[f("metadata"), f("labels")]));
        assert!(set.contains(&[f("metadata"), f("labels"), f("app")]));
        assert!(!set.contains(&[f("metadata")]));
        assert_eq!(set.to_fields_v1(), v);
    }

    #[test]
    fn difference_removes_exact_paths_and_keeps_those_below() {
        let mut a = Set::default();
        a.insert(&[f("spec")]);
        a.insert(&[f("spec"), f("replicas")]);
        let mut b = Set::default();
        b.insert(&[f("spec")]);
        let d = a.difference(&b);
        assert!(!d.contains(&[f("spec")]));
        assert!(d.contains(&[f("spec"), f("replicas")]));
        assert!(a.intersection(&b).contains(&[f("spec")]));
        assert_eq!(a.union(&b), a);
    }

    #[test]
    fn paths_list_members_before_deeper_paths() {
        let mut s = Set::default();
        s.insert(&[f("spec"), f("template"), f("x")]);
        s.insert(&[f("spec"), f("replicas")]);
        let printed: Vec<String> = s.paths().iter().map(|p| crate::path::display(p)).collect();
        assert_eq!(printed, [".spec.replicas", ".spec.template.x"]);
    }
}
