//! The conformance suite, run against srv-single.

use zen_utils::testkit::Model;

zen_utils::conformance_suite!(serve: srv_single::serve, model: Model::OneAtATime);
zen_utils::peer_suite!(serve: srv_single::serve, model: Model::OneAtATime);
zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-single"));
