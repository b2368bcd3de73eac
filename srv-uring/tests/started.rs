//! srv-uring started by someone else: socket-activated (the conformance
//! suite), under inetd in both modes, and as `--processes` workers.
//! Skipped, with the reason on stderr, where io_uring cannot be used.

use zen_utils::testkit::Model;

zen_utils::started_suite!(
    bin: env!("CARGO_BIN_EXE_srv-uring"),
    model: Model::Concurrent,
    requires: srv_uring::available,
);
