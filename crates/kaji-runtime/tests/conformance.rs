//! The simulated runtime passes the conformance checks that need no processes.

kaji_runtime::runtime_conformance_tests!(async { kaji_runtime::SimulatedRuntime::new() }; basic);
