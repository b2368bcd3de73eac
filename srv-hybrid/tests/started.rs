//! srv-hybrid started by someone else: socket-activated (the conformance suite),
//! under inetd in both modes, and as `--processes` workers.

use zen_utils::testkit::Model;

zen_utils::started_suite!(bin: env!("CARGO_BIN_EXE_srv-hybrid"), model: Model::Concurrent);

/// Per core, the runtimes share the one handed-down listener.
mod per_core {
    use super::*;

    zen_utils::started_suite!(
        bin: env!("CARGO_BIN_EXE_srv-hybrid"),
        model: Model::Concurrent,
        args: ["--runtime", "per-core", "--workers", "2"],
    );
}
