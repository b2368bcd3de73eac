//! srv-uring started by someone else: socket-activated (the conformance
//! suite), under inetd in both modes, and as `--processes` workers.

use zen_utils::testkit::Model;

zen_utils::started_suite!(bin: env!("CARGO_BIN_EXE_srv-uring"), model: Model::Concurrent);
