//! The process runtime passes every conformance check, isolated (as root:
//! namespaces and cgroups) and unisolated (as an unprivileged agent runs).

use kaji_runtime_process::{ProcessOptions, ProcessRuntime};

/// Keeps the state directory alive and kills whatever a failed check left.
struct Teardown {
    runtime: ProcessRuntime,
    _dir: tempfile::TempDir,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.runtime.kill_everything();
    }
}

async fn runtime(isolation: bool) -> (ProcessRuntime, Teardown) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = ProcessOptions {
        isolation,
        ..ProcessOptions::default()
    };
    let runtime = ProcessRuntime::with_options(dir.path().join("pods"), None, options).unwrap();
    let teardown = Teardown {
        runtime: runtime.clone(),
        _dir: dir,
    };
    (runtime, teardown)
}

mod isolated {
    kaji_runtime::runtime_conformance_tests!(super::runtime(true); basic, process);
}

mod unisolated {
    kaji_runtime::runtime_conformance_tests!(super::runtime(false); basic, process);
}
