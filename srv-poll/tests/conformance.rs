//! The conformance suite, run against srv-poll in each registration mode:
//! the service must not depend on how sockets are registered.

use zen_utils::testkit::Model;

zen_utils::conformance_suite!(serve: srv_poll::serve, model: Model::Concurrent);
zen_utils::peer_suite!(serve: srv_poll::serve, model: Model::Concurrent);
zen_utils::peer_call_suite!(serve: srv_poll::serve);
zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-poll"));

mod oneshot {
    use super::*;
    use srv_poll::PollMode;

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| {
            srv_poll::serve_with_mode(listener, config, shutdown, PollMode::Oneshot)
        },
        model: Model::Concurrent,
    );
    zen_utils::binary_suite!(
        bin: env!("CARGO_BIN_EXE_srv-poll"),
        args: ["--poll-mode", "oneshot"],
    );
}

mod edge {
    use super::*;
    use srv_poll::PollMode;

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| {
            srv_poll::serve_with_mode(listener, config, shutdown, PollMode::Edge)
        },
        model: Model::Concurrent,
    );
    zen_utils::binary_suite!(
        bin: env!("CARGO_BIN_EXE_srv-poll"),
        args: ["--poll-mode", "edge"],
    );
}

/// With `--offload`: `--work cpu|block` on helper threads. The whole suite
/// with its waiting work done as blocking work on 16 helpers, which must
/// hold as it does with the loop's timers, and the cases of the helpers.
mod offload {
    use super::*;
    use zen_utils::testkit::offloaded;

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| srv_poll::serve(listener, offloaded(config), shutdown),
        model: Model::Concurrent,
    );
    zen_utils::offload_suite!(serve: srv_poll::serve);
    zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-poll"), args: ["--offload", "2"]);
}
