//! The part of every server's `main` that is the same for all of them:
//! find the socket to serve (bind one, or take the one systemd, inetd or a
//! supervisor handed down), raise the descriptor limit, install the signal
//! handlers, print `listening on IP:PORT`, serve, print the summary. Or,
//! with `--processes N`, supervise N workers that do all that.

use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

use clap::Parser;

use crate::deploy::health::Health;
use crate::deploy::registry::{
    Entry, Registration, RegistryAuth, RegistryUrl, DEREGISTER_PATIENCE,
};
use crate::deploy::started::{self, BlockingMode, Handed};
use crate::{deploy::supervisor, Config, ServerArgs, Shutdown, Stats, Summary};

/// Parses a server's flags. Under `--inetd`, fds 1 and 2 are the client's
/// socket, so they are pointed at `/dev/null` first: not even a usage
/// error may reach the client.
pub fn parse<C: Parser>() -> C {
    if started::inetd_requested() {
        let _ = started::silence_stdio(&[1, 2]);
    }
    C::parse()
}

/// Runs a server binary to its end and returns its exit code.
///
/// `serve` is the crate's `serve` function with any model-specific options
/// bound in. `reuse_port` binds the listener with `SO_REUSEPORT`. Every
/// error is one line on stderr starting with `name`, and a non-zero exit.
pub fn run(
    name: &str,
    args: &ServerArgs,
    reuse_port: bool,
    serve: impl FnOnce(TcpListener, Config, Shutdown) -> io::Result<Summary>,
) -> ExitCode {
    run_prepared(name, args, reuse_port, Ok, serve)
}

/// [`run`], with a step between binding and announcing: `prepare` turns the
/// listener into whatever `serve` takes (srv-hybrid binds the rest of its
/// per-core listeners there, if the listener has `SO_REUSEPORT`; one
/// handed down by systemd, inetd or a supervisor has not, and its runtimes
/// share it).
///
/// `listening on` is printed only once `prepare` has succeeded, because
/// tools read that line as "ready": every socket that will accept must be
/// listening by then, or the first connections could be refused or all
/// land on one listener.
pub fn run_prepared<T>(
    name: &str,
    args: &ServerArgs,
    reuse_port: bool,
    prepare: impl FnOnce(TcpListener) -> io::Result<T>,
    serve: impl FnOnce(T, Config, Shutdown) -> io::Result<Summary>,
) -> ExitCode {
    // The sockets someone else handed down first, before anything opens a
    // file (the log): a file opened first could take the number of a
    // descriptor LISTEN_FDS names but nobody handed down, and be closed
    // with the extra sockets. Socket activation reads and removes the
    // LISTEN_* variables, and --inetd takes fd 0 and silences fds 0 to 2,
    // so this runs before any thread starts. What it has to say waits for
    // the logger.
    let config = args.config();
    let handed = handed_socket(args);
    let log_file = match args.log_file.as_ref().map(open_log) {
        Some(Ok(file)) => Some(file),
        Some(Err(error)) => {
            crate::log_line!("{name}: error: {error}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    crate::serve::log::init(config.verbosity, log_file);
    let handed = match handed {
        Ok((handed, warnings)) => {
            for warning in warnings {
                tracing::warn!("{name}: {warning}");
            }
            handed
        }
        Err(error) => return fail(name, &error),
    };
    if let Err(error) = crate::serve::listener::raise_fd_limit() {
        tracing::warn!("{name}: warning: cannot raise the file-descriptor limit: {error}");
    }
    let supervising = args.processes > 1 && !supervisor::is_worker();
    // A handed-down listener's blocking mode, put back at the end (see
    // `BlockingMode`); a worker leaves that to its supervisor.
    let mut blocking_mode = None;
    let listener = match handed {
        Some(Handed::Connection(stream)) => {
            let config = match with_own_address(config, stream.local_addr()) {
                Ok(config) => config,
                Err(error) => return fail(name, &error),
            };
            return converse_once(name, stream, &config);
        }
        Some(Handed::Listener(listener)) => {
            if !supervisor::is_worker() {
                match BlockingMode::of(&listener) {
                    Ok(mode) => blocking_mode = Some(mode),
                    Err(error) => return fail(name, &error),
                }
            }
            listener
        }
        // A supervisor's workers share its one listener, so it joins no
        // SO_REUSEPORT group.
        None => match bind(args, reuse_port && !supervising) {
            Ok(listener) => listener,
            Err(error) => return fail(name, &error),
        },
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return fail(name, &error),
    };
    let config = match with_own_address(config, Ok(addr)) {
        Ok(config) => config,
        Err(error) => return fail(name, &error),
    };
    let registry = match registry_entry(name, args, addr) {
        Ok(registry) => registry,
        Err(error) => return fail(name, &error),
    };
    let served = if supervising {
        match announce(name, addr, args.inetd, &config, registry) {
            Ok(shutdown) => supervisor::supervise(name, listener, args.processes, &shutdown),
            Err(error) => Err(error),
        }
    } else {
        let here = Here {
            name,
            args,
            config: &config,
            addr,
            registry,
        };
        serve_here(here, listener, prepare, serve)
    };
    if let Some(mode) = blocking_mode {
        if let Err(error) = mode.restore() {
            tracing::warn!(
                "{name}: warning: cannot put the listener's blocking mode back: {error}"
            );
        }
    }
    finish(name, served, supervisor::is_worker())
}

/// What a server that serves in this process (not a supervisor) is.
struct Here<'a> {
    name: &'a str,
    args: &'a ServerArgs,
    config: &'a Config,
    addr: SocketAddr,
    registry: Option<Registering>,
}

/// Prepares, announces and serves `listener` in this process.
fn serve_here<T>(
    here: Here<'_>,
    listener: TcpListener,
    prepare: impl FnOnce(TcpListener) -> io::Result<T>,
    serve: impl FnOnce(T, Config, Shutdown) -> io::Result<Summary>,
) -> io::Result<Summary> {
    let Here {
        name,
        args,
        config,
        addr,
        registry,
    } = here;
    let prepared = prepare(listener)?;
    let shutdown = announce(name, addr, args.inetd, config, registry)?;
    if args.inetd {
        started::exit_when_idle(&shutdown, args.exit_idle);
    }
    shutdown.on_trigger(started::notify_stopping);
    let served = serve(prepared, config.clone(), shutdown);
    started::notify_stopping();
    served
}

/// Fills in the address peers see in a forwarded question's history:
/// `--advertise` if given, else `own`, the socket's local address (the
/// listener's, or under inetd `nowait` the connection's). Only a server
/// with peers needs one, and a wildcard address or port 0 names nobody.
fn with_own_address(mut config: Config, own: io::Result<SocketAddr>) -> io::Result<Config> {
    if config.peers.peers.is_empty() {
        return Ok(config);
    }
    let unreachable =
        |addr: SocketAddr| addr.ip().to_canonical().is_unspecified() || addr.port() == 0;
    let me = match config.peers.me {
        Some(advertised) if unreachable(advertised) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--advertise {advertised}: not an address others can reach"),
            ))
        }
        Some(advertised) => advertised,
        None => match own? {
            bound if unreachable(bound) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "--peer: bound to {bound}, which names no server: give --advertise IP:PORT"
                    ),
                ))
            }
            bound => bound,
        },
    };
    config.peers.me = Some(me);
    Ok(config)
}

/// The socket someone else handed down, if any: inetd's fd 0 under
/// `--inetd`, else a socket-activated listener at fd 3; and the warnings
/// to log.
fn handed_socket(args: &ServerArgs) -> io::Result<(Option<Handed>, Vec<String>)> {
    if args.inetd {
        return Ok((Some(started::inetd_socket()?), Vec::new()));
    }
    let (listener, warnings) = started::activated_listener()?;
    Ok((listener.map(Handed::Listener), warnings))
}

/// Binds `HOST -p PORT`. A listener that others will join with
/// `SO_REUSEPORT` (srv-hybrid per core) is first bound without it, so that
/// a port another process holds is refused rather than shared.
fn bind(args: &ServerArgs, reuse_port: bool) -> io::Result<TcpListener> {
    if reuse_port && args.port != 0 {
        drop(args.bind(false).map_err(io::Error::other)?);
    }
    args.bind(reuse_port).map_err(io::Error::other)
}

/// What `--register` registers, where, as whom, and how the server's
/// health is probed.
struct Registering {
    url: RegistryUrl,
    entry: Entry,
    auth: Option<RegistryAuth>,
    health: Option<Health>,
}

/// What `--register` registers, if given (a supervisor's workers leave it
/// to their supervisor: the service is one address).
fn registry_entry(
    name: &str,
    args: &ServerArgs,
    bound: SocketAddr,
) -> io::Result<Option<Registering>> {
    let Some(url) = args.register.clone() else {
        return Ok(None);
    };
    if supervisor::is_worker() {
        return Ok(None);
    }
    let advertised = args.advertise.unwrap_or(bound);
    let entry = Entry {
        host: advertised.ip(),
        port: advertised.port(),
        model: name.to_owned(),
    };
    // Judged as the clients judge it: an entry they would skip is refused
    // here, in one line, rather than registered for nobody.
    if let Some(why) = entry.undialable() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--register: cannot register {advertised} ({why}): give --advertise IP:PORT"),
        ));
    }
    let health = Health::of(
        bound,
        args.table_part,
        args.health_interval,
        args.health_fails,
    );
    Ok(Some(Registering {
        url,
        entry,
        auth: args.registry_auth.clone(),
        health,
    }))
}

/// Installs the signal handlers, prints `listening on` (not under
/// `--inetd`: stdout is the client's socket), tells systemd the server is
/// ready, and registers it (`--register`). Returns the server's shutdown.
///
/// A registered server leaves the registry before it stops accepting, so
/// that clients stop choosing it first: the signal deletes the znode
/// (waiting at most [`DEREGISTER_PATIENCE`]), and only then triggers the
/// server's shutdown, whose grace starts there.
fn announce(
    name: &str,
    addr: SocketAddr,
    inetd: bool,
    config: &Config,
    registry: Option<Registering>,
) -> io::Result<Shutdown> {
    // The signal handlers come before the line: a tool that reads it may
    // send SIGTERM at once, and must get a graceful shutdown, not a death
    // by the signal's default action. A signal that comes before `serve`
    // runs is not lost: `serve` starts with the shutdown triggered.
    let signals = Shutdown::new();
    signals.trigger_on_signals()?;
    let shutdown = if registry.is_some() {
        Shutdown::new()
    } else {
        signals.clone()
    };
    if !inetd {
        // Tools start a server with `-p 0` and read this line to find the
        // port, so it is the first line on stdout and leaves at once.
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
    }
    started::notify_ready();
    tracing::info!("{name}: serving on {addr} ({config})");
    if let Some(registering) = registry {
        let Registering {
            url,
            entry,
            auth,
            health,
        } = registering;
        let registration = Registration::start(url, entry, auth, health, signals.clone());
        let server = shutdown.clone();
        let name = name.to_owned();
        signals.on_trigger(move || {
            registration.wait_gone(DEREGISTER_PATIENCE);
            tracing::info!("{name}: stopping: no new connections");
            server.trigger();
        });
    }
    Ok(shutdown)
}

/// inetd's `nowait`: the process holds one conversation, on a thread that
/// blocks (inetd is the concurrency model here: a process per
/// connection), then exits.
fn converse_once(name: &str, stream: TcpStream, config: &Config) -> ExitCode {
    let shutdown = Shutdown::new();
    if let Err(error) = shutdown.trigger_on_signals() {
        return fail(name, &error);
    }
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let stats = Stats::new();
    stats.connection();
    crate::serve::blocking::converse(stream, peer, config, &shutdown, &stats);
    finish(name, Ok(stats.summary()), false)
}

/// Reports the summary: a worker prints it on stdout for its supervisor,
/// anyone else logs it.
fn finish(name: &str, served: io::Result<Summary>, worker: bool) -> ExitCode {
    match served {
        Ok(summary) if worker => {
            let _ = writeln!(io::stdout(), "{summary}");
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            tracing::info!("{name}: {summary}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(name, &error),
    }
}

fn open_log(path: &std::path::PathBuf) -> io::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("--log-file {}: {error}", path.display()),
            )
        })
}

fn fail(name: &str, error: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{name}: error: {error}");
    ExitCode::FAILURE
}
