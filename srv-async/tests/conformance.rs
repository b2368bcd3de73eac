//! The conformance suite, run against srv-async.

use zen_utils::testkit::Model;

zen_utils::conformance_suite!(serve: srv_async::serve, model: Model::Concurrent);
zen_utils::peer_suite!(serve: srv_async::serve, model: Model::Concurrent);
zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-async"));

/// With `--offload`: `--work cpu|block` on helper threads. The whole suite
/// with its waiting work done as blocking work on 16 helpers, which must
/// hold as it does with the runtime's timers, and the cases of the helpers.
mod offload {
    use super::*;
    use zen_utils::testkit::offloaded;

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| srv_async::serve(listener, offloaded(config), shutdown),
        model: Model::Concurrent,
    );
    zen_utils::offload_suite!(serve: srv_async::serve);
    zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-async"), args: ["--offload", "2"]);
}
