//! The minimal version (examples/poll_minimal.rs) against the protocol
//! cases it keeps, and against the real srv-poll for each hardening it lacks
//! (docs/course/hardening.md), on each of its pollers.

zen_utils::minimal_suite!(
    package: "srv-poll",
    example: "poll_minimal",
    real: env!("CARGO_BIN_EXE_srv-poll"),
    hardening: [
        idle_timeout_closes_an_idle_client,
        bounded_input_refuses_a_question_of_16_mib,
        bounded_output_stops_reading_a_client_that_never_reads,
        max_conns_turns_away_the_third_client,
        graceful_shutdown_answers_the_question_in_flight,
    ],
);

/// The hardening again with `--poller epoll`.
mod epoll {
    zen_utils::minimal_suite!(
        package: "srv-poll",
        example: "poll_minimal",
        real: env!("CARGO_BIN_EXE_srv-poll"),
        real_args: ["--poller", "epoll"],
        hardening: [
            idle_timeout_closes_an_idle_client,
            bounded_input_refuses_a_question_of_16_mib,
            bounded_output_stops_reading_a_client_that_never_reads,
            max_conns_turns_away_the_third_client,
            graceful_shutdown_answers_the_question_in_flight,
        ],
    );
}
