//! The conformance suite: every behaviour of docs/protocol.md, written once and run
//! against every server.
//!
//! A server crate runs the whole suite against itself with one macro call
//! in `tests/conformance.rs`:
//!
//! ```ignore
//! zen_utils::conformance_suite!(serve: srv_single::serve, model: Model::OneAtATime);
//! zen_utils::binary_suite!(bin: env!("CARGO_BIN_EXE_srv-single"));
//! ```
//!
//! The tests start the server in-process on `127.0.0.1:0`, talk to it over
//! real sockets, and assert exact bytes. They never assert how fast
//! anything is, only what arrives and in which order; where a test must
//! wait for something that should *not* happen, the wait is bounded and the
//! failure is the thing arriving.

use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{serve::listener, Config, Shutdown, Summary};

pub mod binary;
pub mod cases;
pub mod fake_peer;
pub mod inherited;
pub mod minimal;
pub mod offload_cases;
pub use offload_cases::offloaded;
pub mod peer_call_cases;
pub mod peer_cases;
/// The real components the tests start (ZooKeeper, HAProxy).
pub use crate::components;
pub mod started;

/// How long a test client waits for bytes that must come before it calls
/// the server broken. Generous: machines running tests are shared and slow.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What the suite expects of a server's concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One conversation at a time (srv-single): a second client is not
    /// answered while the first is connected.
    OneAtATime,
    /// Many conversations at once: every other server.
    Concurrent,
}

/// A server for one test, on `127.0.0.1:0`: running in-process on a thread
/// of its own, or a real binary started the way systemd starts it
/// ([`activated`](Self::activated)). Dropping it stops it.
pub struct TestServer {
    addr: SocketAddr,
    backend: Backend,
}

enum Backend {
    Thread {
        shutdown: Shutdown,
        thread: Option<JoinHandle<io::Result<Summary>>>,
    },
    Process(started::Activated),
}

impl TestServer {
    /// Binds `127.0.0.1:0` and runs `serve` on it with `config`.
    pub fn start<F>(serve: F, config: Config) -> Self
    where
        F: FnOnce(TcpListener, Config, Shutdown) -> io::Result<Summary> + Send + 'static,
    {
        let listener = listener::bind("127.0.0.1:0".parse().unwrap(), 1024, false)
            .expect("bind a test listener");
        Self::start_on(listener, serve, config)
    }

    /// Runs `serve` on a listener the test bound itself, for a test that
    /// needs a fixed address (a server restarted on the same port, say).
    pub fn start_on<F>(listener: TcpListener, serve: F, config: Config) -> Self
    where
        F: FnOnce(TcpListener, Config, Shutdown) -> io::Result<Summary> + Send + 'static,
    {
        let addr = listener.local_addr().expect("test listener address");
        let shutdown = Shutdown::new();
        let server_shutdown = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("test-server".to_owned())
            .spawn(move || serve(listener, config, server_shutdown))
            .expect("spawn the test server");
        Self {
            addr,
            backend: Backend::Thread {
                shutdown,
                thread: Some(thread),
            },
        }
    }

    /// Starts the server binary `bin` (with `args` and the flags of
    /// `config`) as systemd would: socket-activated on a listener the test
    /// bound, and ready once it sent `READY=1`.
    pub fn activated(bin: &str, args: &[&str], config: &Config) -> Self {
        let server = started::Activated::start(bin, args, config);
        Self {
            addr: server.addr(),
            backend: Backend::Process(server),
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects a new test client.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&self) {
        match &self.backend {
            Backend::Thread { shutdown, .. } => shutdown.trigger(),
            Backend::Process(server) => server.terminate(),
        }
    }

    /// Shuts the server down and returns its summary.
    ///
    /// # Panics
    /// If `serve` returned an error or panicked (the binary failed).
    pub fn stop(mut self) -> Summary {
        match &mut self.backend {
            Backend::Thread { shutdown, thread } => {
                shutdown.trigger();
                let thread = thread.take().expect("stopped once");
                thread
                    .join()
                    .expect("the server panicked")
                    .expect("serve failed")
            }
            Backend::Process(server) => server.stop(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Backend::Thread { shutdown, thread } = &mut self.backend {
            shutdown.trigger();
            if let Some(thread) = thread.take() {
                // A test that already failed must not also panic here.
                let _ = thread.join();
            }
        }
    }
}

/// A blocking test client whose reads give up after [`PATIENCE`], so that
/// a broken server fails a test instead of hanging it.
pub struct Client {
    stream: TcpStream,
    /// Bytes read past the last answer returned.
    unread: Vec<u8>,
}

impl Client {
    /// Connects to `addr`, with `TCP_NODELAY` so that each send leaves at once.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Self {
            stream,
            unread: Vec::new(),
        }
    }

    /// Sends bytes, all of them.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("send to the test server");
    }

    /// Sends a question and returns its answer.
    pub fn ask(&mut self, question: &[u8]) -> Vec<u8> {
        self.send(question);
        self.answer()
    }

    /// Reads one answer: every byte up to and including the next `.`.
    ///
    /// # Panics
    /// If the connection closes or nothing comes within [`PATIENCE`].
    pub fn answer(&mut self) -> Vec<u8> {
        self.answer_within(PATIENCE).unwrap_or_else(|| {
            panic!(
                "no answer within {PATIENCE:?}; got {:?}",
                self.unread_text()
            )
        })
    }

    /// Reads one answer if it comes within `wait`; `None` if it does not
    /// or the connection closes first.
    pub fn answer_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let answer = loop {
            if let Some(end) = self.unread.iter().position(|&b| b == b'.') {
                break Some(self.unread.drain(..=end).collect());
            }
            let mut chunk = [0; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => break None,
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
            }
        };
        self.stream.set_read_timeout(Some(PATIENCE)).unwrap();
        answer
    }

    /// Reads `n` answers and returns them concatenated.
    pub fn answers(&mut self, n: usize) -> Vec<u8> {
        (0..n).flat_map(|_| self.answer()).collect()
    }

    /// Reads until the server closes the connection (a reset counts as a
    /// close) and returns every byte that came.
    ///
    /// # Panics
    /// If the connection is still open after [`PATIENCE`].
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.unread);
        let mut chunk = [0; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return bytes,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(error) if is_reset(&error) => return bytes,
                Err(error) => panic!(
                    "the server did not close the connection ({error}); got {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
    }

    /// Shuts down the sending side: the server sees end of input.
    pub fn half_close(&mut self) {
        self.stream.shutdown(Direction::Write).expect("half-close");
    }

    /// Closes the connection with a reset (`SO_LINGER` 0) instead of a FIN.
    pub fn reset(self) {
        listener::set_linger(&self.stream, Some(Duration::ZERO)).unwrap();
    }

    /// A second handle to the socket, for a writer thread.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().unwrap()
    }

    /// The connection itself, for a test that takes it over.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    fn unread_text(&self) -> String {
        String::from_utf8_lossy(&self.unread).into_owned()
    }
}

/// The resident memory of this process (`VmRSS` in `/proc/self/status`),
/// in bytes. The test servers run in-process, so this includes theirs.
pub fn resident_memory() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status")
        * 1024
}

pub(crate) fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// For a suite stamped out with `requires:` (a server that needs
/// something the machine may lack, such as srv-uring's io_uring): whether
/// the `requirement` failed, in which case the test is skipped, and says
/// so on stderr with the reason, rather than fail or pass in silence.
pub fn skipped(case: &str, requirement: Result<(), impl std::fmt::Display>) -> bool {
    match requirement {
        Ok(()) => false,
        Err(reason) => {
            eprintln!("skipped {case}: {reason}");
            true
        }
    }
}

/// Whether a stamped-out test is skipped: never without a requirement
/// (`[]`), else as [`testkit::skipped`](crate::testkit::skipped) says.
#[doc(hidden)]
#[macro_export]
macro_rules! skip_unmet {
    ($case:expr, []) => {
        false
    };
    ($case:expr, [$requires:expr]) => {
        $crate::testkit::skipped($case, $requires())
    };
}

/// Stamps out the whole conformance suite, one `#[test]` per case, against
/// the server that `serve` starts.
///
/// `serve` is anything callable as `serve(listener, config, shutdown)`:
/// a crate's `serve` function, or a closure that adds model options.
#[macro_export]
macro_rules! conformance_suite {
    (serve: $serve:expr, model: $model:expr $(, requires: $requires:expr)? $(,)?) => {
        fn start(config: $crate::Config) -> $crate::testkit::TestServer {
            $crate::testkit::TestServer::start($serve, config)
        }
        $crate::conformance_suite!(@shared $model, [$($requires)?]);
        // The cases that only an in-process server needs run here alone:
        // they test the model, not the way it was started.
        $crate::conformance_suite!(@cases $model, [$($requires)?];
            bounds_the_memory_of_clients_that_never_read,
            survives_a_client_killed_in_the_middle_of_a_write,
            keeps_serving_through_a_burst_of_connections,
            serves_others_while_a_client_floods_a_pipeline,
            answers_random_byte_streams_as_the_spec_frames_them,
        );
    };
    // The cases every start mode runs (`started_suite!` runs them on a
    // socket-activated binary too).
    (@shared $model:expr, $requires:tt) => {
        $crate::conformance_suite!(@cases $model, $requires;
            answers_every_aphorism,
            answers_a_question_split_byte_by_byte,
            answers_many_questions_in_one_write_in_order,
            skips_whitespace_between_questions,
            answers_unknown_questions_and_keeps_the_connection,
            closes_a_request_that_is_too_long_after_answering_what_came_before,
            accepts_a_question_of_exactly_max_request_bytes,
            survives_a_half_question_and_a_hang_up,
            answers_everything_before_closing_on_half_close,
            survives_a_reset_in_the_middle_of_a_stream,
            a_reset_after_every_answer_is_an_ordinary_close,
            loses_nothing_when_a_huge_pipeline_is_sent_without_reading,
            limits_the_connections_it_serves,
            max_conns_holds_through_bursts_of_refusals,
            closes_an_idle_connection,
            keeps_a_connection_that_keeps_asking,
            closes_a_connection_that_trickles_bytes_without_a_question,
            serves_others_while_slowloris_clients_trickle,
            overlaps_waiting_work_across_clients_when_concurrent,
            answers_in_flight_questions_on_graceful_shutdown,
            drops_work_that_outlasts_the_shutdown_grace,
            closes_idle_clients_on_graceful_shutdown,
            counts_answers_and_errors_in_the_summary,
            closes_a_request_of_many_megabytes_without_a_question_mark,
            answers_in_order_until_shut_down_under_pipelined_load,
        );
    };
    (@cases $model:expr, $requires:tt; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $crate::skip_unmet!(stringify!($case), $requires) {
                    return;
                }
                $crate::testkit::cases::$case(&start, $model);
            }
        )*
    };
}

/// Stamps out the tests of a server binary's command-line contract:
/// `listening on IP:PORT`, a busy port, a bad flag, `--help`, SIGTERM,
/// and running out of file descriptors (which needs the real process).
/// `args` are extra arguments passed on every start.
#[macro_export]
macro_rules! binary_suite {
    (bin: $bin:expr $(, args: [$($arg:expr),* $(,)?])? $(, requires: $requires:expr)? $(,)?) => {
        $crate::binary_suite!(@cases $bin, &[$($($arg),*)?], [$($requires)?];
            prints_listening_on_the_bound_address_first,
            fails_in_one_line_on_a_busy_port,
            refuses_a_bad_flag_with_clap_s_message,
            explains_every_flag_in_help,
            exits_cleanly_with_a_summary_on_sigterm,
            survives_running_out_of_file_descriptors,
            serves_with_the_largest_max_request,
            survives_a_log_reader_that_has_gone,
            a_signal_right_after_listening_is_a_clean_shutdown,
        );
    };
    (@cases $bin:expr, $args:expr, $requires:tt; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $crate::skip_unmet!(stringify!($case), $requires) {
                    return;
                }
                $crate::testkit::binary::$case($bin, $args);
            }
        )*
    };
}
