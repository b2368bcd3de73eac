//! The conformance suite, run against srv-hybrid with each runtime.

use std::num::NonZeroUsize;

use srv_hybrid::{HybridOptions, Runtime};
use zen_utils::config::DEFAULT_BACKLOG;
use zen_utils::testkit::Model;
use zen_utils::{Config, Shutdown};

/// Three workers: more than one, and more than the two cores of a small
/// test machine, so that threads really take turns.
const WORKERS: NonZeroUsize = NonZeroUsize::new(3).unwrap();

fn serve_with(
    runtime: Runtime,
) -> impl FnOnce(std::net::TcpListener, Config, Shutdown) -> std::io::Result<zen_utils::Summary> {
    move |listener, config, shutdown| {
        let options = HybridOptions {
            workers: WORKERS,
            runtime,
            backlog: DEFAULT_BACKLOG,
        };
        srv_hybrid::serve(listener, config, shutdown, options)
    }
}

mod work_stealing {
    use super::*;

    zen_utils::conformance_suite!(serve: serve_with(Runtime::WorkStealing), model: Model::Concurrent);
    zen_utils::peer_suite!(serve: serve_with(Runtime::WorkStealing), model: Model::Concurrent);
    zen_utils::binary_suite!(
        bin: env!("CARGO_BIN_EXE_srv-hybrid"),
        args: ["--runtime", "work-stealing", "--workers", "3"],
    );
}

mod per_core {
    use super::*;

    zen_utils::conformance_suite!(serve: serve_with(Runtime::PerCore), model: Model::Concurrent);
    zen_utils::peer_suite!(serve: serve_with(Runtime::PerCore), model: Model::Concurrent);
    zen_utils::binary_suite!(
        bin: env!("CARGO_BIN_EXE_srv-hybrid"),
        args: ["--runtime", "per-core", "--workers", "3"],
    );
}

/// With `--offload`, on per-core runtimes, which share one pool of helpers:
/// the whole suite with its waiting work done as blocking work on 16
/// helpers, and the cases of the helpers.
mod offload {
    use super::*;
    use zen_utils::testkit::offloaded;

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| {
            serve_with(Runtime::PerCore)(listener, offloaded(config), shutdown)
        },
        model: Model::Concurrent,
    );
    zen_utils::offload_suite!(serve: serve_with(Runtime::PerCore));
    zen_utils::binary_suite!(
        bin: env!("CARGO_BIN_EXE_srv-hybrid"),
        args: ["--runtime", "per-core", "--workers", "3", "--offload", "2"],
    );
}
