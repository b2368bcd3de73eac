//! The conformance suite, run against srv-poll on each poller and in each
//! registration mode: the service must not depend on what the loop waits
//! on, nor on how sockets are registered.

use zen_utils::testkit::Model;

zen_utils::conformance_suite!(serve: srv_poll::serve, model: Model::Concurrent);
zen_utils::peer_suite!(serve: srv_poll::serve, model: Model::Concurrent);
zen_utils::peer_call_suite!(serve: srv_poll::serve);
zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-poll"));

mod oneshot {
    use super::*;
    use srv_poll::{PollMode, PollerKind};

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| {
            srv_poll::serve_with(listener, config, shutdown, PollerKind::Polling, PollMode::Oneshot)
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
    use srv_poll::{PollMode, PollerKind};

    zen_utils::conformance_suite!(
        serve: |listener, config, shutdown| {
            srv_poll::serve_with(listener, config, shutdown, PollerKind::Polling, PollMode::Edge)
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

/// `--poller epoll`: the same suites, and the registration modes and
/// `--offload` again, on raw epoll.
mod epoll {
    use super::*;
    use srv_poll::{PollMode, PollerKind};
    use zen_utils::testkit::offloaded;
    use zen_utils::{Config, Shutdown, Summary};

    fn serve(
        listener: std::net::TcpListener,
        config: Config,
        shutdown: Shutdown,
    ) -> std::io::Result<Summary> {
        srv_poll::serve_with(
            listener,
            config,
            shutdown,
            PollerKind::Epoll,
            PollMode::Level,
        )
    }

    zen_utils::conformance_suite!(serve: serve, model: Model::Concurrent);
    zen_utils::peer_suite!(serve: serve, model: Model::Concurrent);
    zen_utils::peer_call_suite!(serve: serve);
    zen_utils::binary_suite!(
        bin: env!("CARGO_BIN_EXE_srv-poll"),
        args: ["--poller", "epoll"],
    );

    mod oneshot {
        use super::*;

        zen_utils::conformance_suite!(
            serve: |listener, config, shutdown| {
                srv_poll::serve_with(listener, config, shutdown, PollerKind::Epoll, PollMode::Oneshot)
            },
            model: Model::Concurrent,
        );
    }

    mod edge {
        use super::*;

        zen_utils::conformance_suite!(
            serve: |listener, config, shutdown| {
                srv_poll::serve_with(listener, config, shutdown, PollerKind::Epoll, PollMode::Edge)
            },
            model: Model::Concurrent,
        );
    }

    mod offload {
        use super::*;

        zen_utils::conformance_suite!(
            serve: |listener, config, shutdown| serve(listener, offloaded(config), shutdown),
            model: Model::Concurrent,
        );
        zen_utils::offload_suite!(serve: serve);
        zen_utils::binary_suite!(
            bin: env!("CARGO_BIN_EXE_srv-poll"),
            args: ["--poller", "epoll", "--offload", "2"],
        );
    }
}
