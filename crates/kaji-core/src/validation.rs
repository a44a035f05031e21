//! Name, label and annotation validation as Kubernetes does it.
