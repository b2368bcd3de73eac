//! The conformance suite, the peers' suites and the binary's contract, run
//! against srv-uring. Each test first checks that io_uring can be used
//! here (`srv_uring::available`); where it cannot (a seccomp profile,
//! `kernel.io_uring_disabled`), it says why on stderr and is skipped.

use zen_utils::testkit::Model;

zen_utils::conformance_suite!(
    serve: srv_uring::serve,
    model: Model::Concurrent,
    requires: srv_uring::available,
);
zen_utils::peer_suite!(
    serve: srv_uring::serve,
    model: Model::Concurrent,
    requires: srv_uring::available,
);
zen_utils::peer_call_suite!(serve: srv_uring::serve, requires: srv_uring::available);
zen_utils::binary_suite!(
    bin: env!("CARGO_BIN_EXE_srv-uring"),
    requires: srv_uring::available,
);
