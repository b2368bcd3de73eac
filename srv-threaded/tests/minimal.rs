//! The minimal version (examples/threaded_minimal.rs) against the protocol
//! cases it keeps, and against the real srv-threaded for each hardening it lacks
//! (docs/course/hardening.md).

zen_utils::minimal_suite!(
    package: "srv-threaded",
    example: "threaded_minimal",
    real: env!("CARGO_BIN_EXE_srv-threaded"),
    hardening: [
        idle_timeout_closes_an_idle_client,
        bounded_input_refuses_a_question_of_16_mib,
        max_conns_turns_away_the_third_client,
        graceful_shutdown_answers_the_question_in_flight,
        out_of_descriptors_ends_the_minimal_server,
    ],
);
