//! The minimal version (examples/uring_minimal.rs) against the protocol
//! cases it keeps, and against the real srv-uring for each hardening it
//! lacks. Skipped, with the reason on stderr, where io_uring cannot be
//! used.

zen_utils::minimal_suite!(
    package: "srv-uring",
    example: "uring_minimal",
    real: env!("CARGO_BIN_EXE_srv-uring"),
    hardening: [
        idle_timeout_closes_an_idle_client,
        bounded_input_refuses_a_question_of_16_mib,
        bounded_output_stops_reading_a_client_that_never_reads,
        max_conns_turns_away_the_third_client,
        graceful_shutdown_answers_the_question_in_flight,
        out_of_descriptors_ends_the_minimal_server,
    ],
    requires: srv_uring::available,
);
