//! The minimal version (examples/single_minimal.rs) against the protocol
//! cases it keeps, and against the real srv-single for each hardening it lacks
//! (docs/course/hardening.md).

zen_utils::minimal_suite!(
    package: "srv-single",
    example: "single_minimal",
    real: env!("CARGO_BIN_EXE_srv-single"),
    hardening: [
        idle_timeout_closes_an_idle_client,
        bounded_input_refuses_a_question_of_16_mib,
        graceful_shutdown_answers_the_question_in_flight,
    ],
);
