//! The conformance suite, run against srv-async.

use zen_utils::testkit::Model;

zen_utils::conformance_suite!(serve: srv_async::serve, model: Model::Concurrent);
zen_utils::peer_suite!(serve: srv_async::serve, model: Model::Concurrent);
zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-async"));
