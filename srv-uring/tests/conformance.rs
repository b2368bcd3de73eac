//! The conformance suite, the peers' suite and the binary's contract, run
//! against srv-uring.

use zen_utils::testkit::Model;

zen_utils::conformance_suite!(serve: srv_uring::serve, model: Model::Concurrent);
zen_utils::peer_suite!(serve: srv_uring::serve, model: Model::Concurrent);
zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-uring"));
