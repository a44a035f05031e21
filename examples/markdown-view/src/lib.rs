//! MarkdownView: an example operator written with kube-rs, as a user of
//! kaji (or any Kubernetes API server) would write it.
//!
//! A `MarkdownView` (`markdownviews.view.kaji.dev`) holds markdown files;
//! the operator serves them as HTML through a ConfigMap, a Deployment of
//! viewer pods and a Service, all owned by the view. [`resource`] declares
//! the custom resource, [`desired`] computes the owned objects and the
//! status without IO, and [`controller`] reconciles them against the API.

pub mod controller;
pub mod desired;
pub mod resource;

pub use controller::{reconcile, run, Context, Error};
pub use resource::{crd_yaml, MarkdownView, MarkdownViewSpec, MarkdownViewStatus};
