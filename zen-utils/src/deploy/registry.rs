//! Found through a registry: ZooKeeper, as the RPC framework this project
//! grows from uses it. A server registers itself as an ephemeral
//! sequential znode `PATH/server-NNNNNNNNNN` whose data is
//! `{"host": "IP", "port": N, "model": "srv-poll"}`; a client reads
//! `PATH`'s children, watches them, and picks a random server.
//!
//! The registry is never on the answer path. Both sides run their
//! ZooKeeper session on a thread of their own, with a small tokio runtime
//! (the client crate, `zookeeper-client`, is async), and the servers and
//! the load generator only read what it found. A ZooKeeper that is down
//! stops nobody: the server serves and registers once it is back; the
//! client keeps the last list it read.
//!
//! Why `zookeeper-client`: it is maintained, async on tokio, and speaks
//! ZooKeeper 3.5+ (ephemeral sequential nodes, one-shot watches, session
//! states) natively. The `zookeeper` crate is synchronous and its last
//! release is years old; `tokio-zookeeper` is unmaintained.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::deploy::health::{Health, Probe};
use crate::Shutdown;

/// How long a ZooKeeper session outlives its holder: a killed server's
/// znode stays this long (clients must fall back on a refused connect
/// meanwhile).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a connect or a request to ZooKeeper may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Between attempts while ZooKeeper is unreachable.
const RETRY: Duration = Duration::from_millis(500);
/// The most often "ZooKeeper is unreachable" is said.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// How long a server waits for its znode's deletion at shutdown before it
/// stops accepting anyway.
pub const DEREGISTER_PATIENCE: Duration = Duration::from_secs(1);

/// The name of the registry's threads.
pub const REGISTRY_THREAD: &str = "registry";

/// `zk://HOST:PORT[,HOST:PORT...]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    /// `HOST:PORT,HOST:PORT`, as ZooKeeper's connect string.
    pub hosts: String,
    /// `/PATH`.
    pub path: String,
}

/// Why a registry URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad registry URL {url:?}: {why} (expected zk://HOST:PORT[,HOST:PORT...]/PATH)")]
pub struct BadUrl {
    url: String,
    why: &'static str,
}

impl FromStr for RegistryUrl {
    type Err = BadUrl;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadUrl {
            url: url.to_owned(),
            why,
        };
        let rest = url
            .strip_prefix("zk://")
            .ok_or_else(|| bad("it does not start with zk://"))?;
        let (hosts, path) = rest
            .find('/')
            .map(|at| rest.split_at(at))
            .ok_or_else(|| bad("it has no /PATH"))?;
        if hosts.is_empty() {
            return Err(bad("it names no HOST:PORT"));
        }
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| bad("a host has no :PORT"))?;
            if name.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
                return Err(bad("a HOST:PORT does not parse"));
            }
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return Err(bad("the PATH is empty"));
        }
        if path
            .split('/')
            .skip(1)
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(bad("the PATH has an empty, . or .. part"));
        }
        Ok(Self {
            hosts: hosts.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zk://{}{}", self.hosts, self.path)
    }
}

/// A znode's data: where a server is, and which model it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its IP address.
    pub host: std::net::IpAddr,
    /// Its port.
    pub port: u16,
    /// Its binary's name (`srv-poll`).
    pub model: String,
}

impl Entry {
    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

impl Entry {
    /// Why a client must not dial this entry, if it must not: an address
    /// that names no one server (unspecified, multicast, broadcast) or
    /// port 0. Whoever can write the registry decides where clients
    /// connect; such an entry is a mistake or a trap.
    pub fn undialable(&self) -> Option<&'static str> {
        // An IPv4-mapped IPv6 address (`::ffff:0.0.0.0`) is dialled as the
        // IPv4 address it carries: judge that one.
        let host = self.host.to_canonical();
        let broadcast = matches!(host, std::net::IpAddr::V4(ip) if ip.is_broadcast());
        if host.is_unspecified() {
            Some("an unspecified address")
        } else if host.is_multicast() {
            Some("a multicast address")
        } else if broadcast {
            Some("the broadcast address")
        } else if self.port == 0 {
            Some("port 0")
        } else {
            None
        }
    }
}

/// `--registry-auth USER:PASSWORD`: ZooKeeper's `digest` authentication.
/// A server that has it makes its znodes (and the path it creates) with a
/// creator-only write ACL and world read, so that only a session with the
/// same user and password can change or delete them, or add others beside
/// them; a client that has it dials only the entries that nobody but that
/// user may write. The password is never shown: not by `Debug`, not by `Display`,
/// not in an error.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    user: String,
    password: String,
}

/// Why a `--registry-auth` value was refused (it does not repeat the
/// value: it holds a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad registry credentials: {0} (expected USER:PASSWORD)")]
pub struct BadAuth(&'static str);

impl FromStr for RegistryAuth {
    type Err = BadAuth;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (user, password) = text.split_once(':').ok_or(BadAuth("no ':'"))?;
        if user.is_empty() {
            return Err(BadAuth("the user is empty"));
        }
        if password.is_empty() {
            return Err(BadAuth("the password is empty"));
        }
        Ok(Self {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// The parser of `--registry-auth`: clap's own error for a bad value
/// would repeat the value, password and all; this one says only what is
/// wrong with it.
#[derive(Debug, Clone, Copy)]
pub struct AuthParser;

impl clap::builder::TypedValueParser for AuthParser {
    type Value = RegistryAuth;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<RegistryAuth, clap::Error> {
        let flag = arg.map_or_else(|| "--registry-auth".to_owned(), ToString::to_string);
        let parsed = match value.to_str() {
            Some(text) => text.parse(),
            None => Err(BadAuth("it is not UTF-8")),
        };
        parsed.map_err(|error| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{flag}': {error}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

impl RegistryAuth {
    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// What ZooKeeper's `digest` scheme takes: `USER:PASSWORD`.
    fn credentials(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.password).into_bytes()
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .finish()
    }
}

impl fmt::Display for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "digest user {}", self.user)
    }
}

/// The ACL of what a server with `--registry-auth` creates: everything for
/// the session's own identity (ZooKeeper's `auth` scheme stands for it:
/// `digest:USER:HASH`), reading for anyone.
static CREATOR_WRITES_ANYONE_READS: [zk::Acl; 2] = [
    zk::Acl::new_const(zk::Permission::ALL, "auth", ""),
    zk::Acl::new_const(zk::Permission::READ, "world", "anyone"),
];

/// The ACL a server gives its znodes: open without credentials (anyone
/// may read and write, as ZooKeeper's own default), creator-only writes
/// with them.
fn acls(auth: Option<&RegistryAuth>) -> zk::Acls<'static> {
    match auth {
        Some(_) => zk::Acls::new(&CREATOR_WRITES_ANYONE_READS),
        None => zk::Acls::anyone_all(),
    }
}

/// Runs `future` on a fresh current-thread runtime: the registry's thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    // Its helper threads (a blocking lookup) are named as it is, so that
    // a server stopped but for its registry (`stuck`) keeps them too.
    tokio::runtime::Builder::new_current_thread()
        .thread_name(REGISTRY_THREAD)
        .enable_all()
        .build()
        .expect("a tokio runtime for the registry")
        .block_on(future)
}

async fn connect(hosts: &str, auth: Option<&RegistryAuth>) -> Result<zk::Client, String> {
    let mut connector = zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(REQUEST_TIMEOUT)
        .with_fail_eagerly();
    if let Some(auth) = auth {
        // Sent first on every session, before any request.
        connector = connector.with_auth("digest", &auth.credentials());
    }
    let connecting = connector.connect(hosts);
    match tokio::time::timeout(REQUEST_TIMEOUT, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer".to_owned()),
    }
}

async fn timed<T>(
    future: impl std::future::Future<Output = Result<T, zk::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, future).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err("no answer".to_owned()),
    }
}

/// Says "ZooKeeper is unreachable" at most once a [`WARNING_INTERVAL`].
struct Warnings {
    last: Option<Instant>,
}

impl Warnings {
    fn warn(&mut self, what: fmt::Arguments<'_>) {
        if self.due() {
            tracing::warn!("warning: {what}");
        }
    }

    /// Whether a warning may be said now; if so, it counts as said.
    fn due(&mut self) -> bool {
        let due = self
            .last
            .is_none_or(|last| last.elapsed() >= WARNING_INTERVAL);
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

/// A server's registration, on a thread of its own.
pub struct Registration {
    /// Set when the znode is gone (deleted, or never made), for the
    /// shutdown to wait on.
    gone: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Registration {
    /// Registers `entry` under `url` from now on, again after every lost
    /// session, until `leave` is triggered: then deletes the znode and
    /// stops. With `health`, the znode is kept only while the server
    /// answers its own question (see [`Health`]). Never fails: ZooKeeper being away is only warned about.
    /// With `auth`, the znode and the path made for it carry a
    /// creator-only write ACL (see [`RegistryAuth`]).
    pub fn start(
        url: RegistryUrl,
        entry: Entry,
        auth: Option<RegistryAuth>,
        health: Option<Health>,
        leave: Shutdown,
    ) -> Self {
        let gone = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let done = Arc::clone(&gone);
        // Hooked to the trigger here, before the caller hooks its wait for
        // the deletion to it: the trigger runs them in that order.
        let leaving = leave_signal(&leave);
        let spawned = thread::Builder::new()
            .name(REGISTRY_THREAD.to_owned())
            .spawn(move || {
                let probe = health.map(Probe::new);
                block_on(register(
                    &url,
                    &entry,
                    auth.as_ref(),
                    probe,
                    &leaving,
                    &leave,
                ));
                let (lock, changed) = &*done;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
                changed.notify_all();
            });
        if let Err(error) = spawned {
            tracing::warn!("warning: not registering: cannot start the registry's thread: {error}");
            *gone.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
        Self { gone }
    }

    /// Waits (at most `patience`) until the znode is deleted, after
    /// `leave` was triggered. Returns whether it was.
    pub fn wait_gone(&self, patience: Duration) -> bool {
        let (lock, changed) = &*self.gone;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = changed
            .wait_timeout_while(guard, patience, |gone| !*gone)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// The registration loop: connect, make the znode, keep it until the
/// session is lost (then again), the health probe misses `fails` answers
/// in a row (then delete it, and make it again once answers come back), or
/// `leave` (then delete it).
async fn register(
    url: &RegistryUrl,
    entry: &Entry,
    auth: Option<&RegistryAuth>,
    mut probe: Option<Probe>,
    leaving: &LeaveSignal,
    leave: &Shutdown,
) {
    let data = serde_json::to_vec(entry).expect("an entry serializes");
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(acls(auth));
    let prefix = format!("{}/server-", url.path);
    let mut warnings = Warnings { last: None };
    let mut announced = false;
    let mut checked_path = false;
    let mut answering = true;
    while !leave.is_triggered() {
        if !answering {
            // No session is made for a server that answers nothing.
            tokio::select! {
                () = answer_again(probe.as_mut()) => {
                    answering = true;
                    tracing::info!("answering its own question again: registering again in {url}");
                }
                () = leaving.notified() => return,
            }
        }
        let attempt = async {
            let client = connect(&url.hosts, auth).await?;
            let directory = zk::CreateMode::Persistent.with_acls(acls(auth));
            timed(client.mkdir(&url.path, &directory)).await?;
            Ok::<_, String>(client)
        };
        let client = match attempt.await {
            Ok(client) => client,
            Err(error) => {
                warnings.warn(format_args!(
                    "cannot register in {url}: {error}; serving anyway, and trying again"
                ));
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    () = leaving.notified() => break,
                }
            }
        };
        if auth.is_some() && !checked_path {
            checked_path = true;
            warn_if_anyone_may_add(&client, url).await;
        }
        let mut state = client.state_watcher();
        let lost = async {
            loop {
                if state.changed().await.is_terminated() {
                    return;
                }
            }
        };
        tokio::pin!(lost);
        // One session, in which the znode may come and go with the answers.
        loop {
            if !answering {
                tokio::select! {
                    () = &mut lost => break,
                    () = answer_again(probe.as_mut()) => {
                        answering = true;
                        tracing::info!("answering its own question again: registering again in {url}");
                    }
                    () = leaving.notified() => return,
                }
            }
            let znode = match timed(client.create(&prefix, &data, &ephemeral)).await {
                Ok((_, sequence)) => format!("{prefix}{sequence}"),
                Err(error) => {
                    warnings.warn(format_args!(
                        "cannot register in {url}: {error}; serving anyway, and trying again"
                    ));
                    break;
                }
            };
            if announced {
                tracing::info!("registered again in {url} as {znode}");
            } else {
                tracing::info!("registered in {url} as {znode}");
                announced = true;
            }
            warnings.last = None;
            tokio::select! {
                () = &mut lost => {
                    warnings.warn(format_args!("lost the registry session in {url}: registering again"));
                    break;
                }
                () = stop_answering(probe.as_mut()) => {
                    answering = false;
                    let (fails, interval) = probe
                        .as_ref()
                        .map(|probe| (probe.health().fails, probe.health().interval))
                        .unwrap_or_default();
                    match timed(client.delete(&znode, None)).await {
                        Ok(()) => tracing::warn!(
                            "warning: not answering its own question ({fails} times {} in a row): \
                             left the registry {url} ({znode} deleted)",
                            crate::duration::format_duration(interval)
                        ),
                        Err(error) => {
                            tracing::warn!(
                                "warning: not answering its own question, and cannot delete {znode} \
                                 from {url}: {error}; trying again"
                            );
                            break;
                        }
                    }
                }
                () = leaving.notified() => {
                    match timed(client.delete(&znode, None)).await {
                        Ok(()) => tracing::info!("left the registry {url} ({znode} deleted)"),
                        Err(error) => tracing::warn!(
                            "warning: cannot delete {znode} from {url}: {error}; it goes when the session expires"
                        ),
                    }
                    return;
                }
            }
        }
    }
}

/// Returns once the probe has missed `--health-fails` answers in a row;
/// never without a probe.
async fn stop_answering(probe: Option<&mut Probe>) {
    match probe {
        Some(probe) => probe.until_misses().await,
        None => std::future::pending().await,
    }
}

/// Returns once the probe has an answer again (at once without a probe).
async fn answer_again(probe: Option<&mut Probe>) {
    if let Some(probe) = probe {
        probe.until_answer().await;
    }
}

/// A path made by someone else before, without credentials, lets anyone
/// add entries beside this server's: said once, as the server's own znode
/// is safe but the list clients read is not.
async fn warn_if_anyone_may_add(client: &zk::Client, url: &RegistryUrl) {
    let Ok((acl, _)) = timed(client.get_acl(&url.path)).await else {
        return;
    };
    let open = acl
        .iter()
        .any(|acl| acl.scheme() == "world" && acl.permission().has(zk::Permission::CREATE));
    if open {
        tracing::warn!(
            "warning: {} in {url} lets anyone add entries (it was made without \
             credentials): this server's own znode is protected, the list is not",
            url.path
        );
    }
}

/// A `Notify` that `shutdown`'s trigger fires (and that stays fired).
fn leave_signal(shutdown: &Shutdown) -> Arc<LeaveSignal> {
    let signal = Arc::new(LeaveSignal(tokio::sync::Notify::new()));
    let fire = Arc::clone(&signal);
    shutdown.on_trigger(move || fire.0.notify_one());
    signal
}

struct LeaveSignal(tokio::sync::Notify);

impl LeaveSignal {
    async fn notified(&self) {
        // `notify_one` stores a permit if nobody waits yet, so a trigger
        // before the first wait is not lost; put it back for the next.
        self.0.notified().await;
        self.0.notify_one();
    }
}

/// The servers registered under a path, as a client's watcher last read
/// them.
#[derive(Debug, Clone, Default)]
pub struct Servers {
    /// Their addresses, in znode order.
    pub addrs: Vec<SocketAddr>,
    /// Bumped at every change.
    pub version: u64,
    /// The watcher has read the registry at least once.
    pub read: bool,
    /// Why the last read failed, if it did.
    pub failure: Option<String>,
}

/// A client's view of a registry, kept current by a thread of its own
/// that watches `PATH`'s children. The thread stops once the last clone is
/// dropped: a run that is over leaves no watcher behind (nor its warnings).
#[derive(Clone)]
pub struct Watcher {
    servers: Arc<(Mutex<Servers>, std::sync::Condvar)>,
    _stop: Arc<StopWatching>,
}

/// Held by every clone of a [`Watcher`], never by its thread: dropped with
/// the last clone, it tells the thread to stop.
struct StopWatching(Arc<tokio::sync::Notify>);

impl Drop for StopWatching {
    fn drop(&mut self) {
        // `notify_one` keeps a permit if the thread is not waiting yet.
        self.0.notify_one();
    }
}

/// Where a watcher's warnings go: one line each, without `warning: `.
pub type Warn = Box<dyn Fn(fmt::Arguments<'_>) + Send>;

impl Watcher {
    /// Starts watching `url`, warning through `tracing`. Garbage in a
    /// znode is warned about (once per znode) and skipped.
    pub fn start(url: RegistryUrl) -> std::io::Result<Self> {
        Self::start_with(
            url,
            None,
            Box::new(|what| tracing::warn!("warning: {what}")),
        )
    }

    /// [`start`](Self::start), with the warnings given to `warn`: a client
    /// prints them its own way. Until the registry has been read once,
    /// failures are not warned about but kept in [`Servers::failure`],
    /// for the caller to report as it gives up.
    ///
    /// Entries no client should dial ([`Entry::undialable`]) are skipped,
    /// with one warning each. With `auth`, the session authenticates, and
    /// only entries that nobody but the same user may write
    /// are kept: a server with the same `--registry-auth` made them.
    pub fn start_with(
        url: RegistryUrl,
        auth: Option<RegistryAuth>,
        warn: Warn,
    ) -> std::io::Result<Self> {
        let servers = Arc::new((Mutex::new(Servers::default()), std::sync::Condvar::new()));
        let shared = Arc::clone(&servers);
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = Arc::clone(&stop);
        thread::Builder::new()
            .name(REGISTRY_THREAD.to_owned())
            .spawn(move || {
                block_on(async {
                    tokio::select! {
                        () = watch(&url, auth.as_ref(), &shared, &warn) => {}
                        () = stopped.notified() => {}
                    }
                });
            })?;
        Ok(Self {
            servers,
            _stop: Arc::new(StopWatching(stop)),
        })
    }

    /// The servers now.
    pub fn servers(&self) -> Servers {
        self.servers
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least one server is registered, for at most
    /// `patience`; returns the servers then (none: the wait ran out).
    pub fn wait_for_servers(&self, patience: Duration) -> Servers {
        let (lock, changed) = &*self.servers;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = changed
            .wait_timeout_while(guard, patience, |servers| servers.addrs.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }
}

/// The watch loop: read the children and their data, publish, wait for a
/// change (or, with ZooKeeper away, retry).
async fn watch(
    url: &RegistryUrl,
    auth: Option<&RegistryAuth>,
    shared: &(Mutex<Servers>, std::sync::Condvar),
    warn: &Warn,
) {
    // Entries skipped, each warned about once (not once per read).
    let mut warned = std::collections::HashSet::new();
    let mut warnings = Warnings { last: None };
    loop {
        let client = match connect(&url.hosts, auth).await {
            Ok(client) => client,
            Err(error) => {
                let failure = format!("cannot reach the registry {url}: {error}");
                publish_failure(shared, failure, &mut warnings, warn);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let listed =
                tokio::time::timeout(REQUEST_TIMEOUT, client.list_and_watch_children(&url.path))
                    .await;
            let (children, watcher) = match listed {
                Ok(Ok(read)) => read,
                // Nobody has registered yet: an empty registry, not a
                // failure. Look again for the path in a moment.
                Ok(Err(zk::Error::NoNode)) => {
                    publish(shared, Vec::new());
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                failed => {
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "no answer".to_owned(),
                    };
                    let failure = format!("cannot read the registry {url}: {error}");
                    publish_failure(shared, failure, &mut warnings, warn);
                    tokio::time::sleep(RETRY).await;
                    if client.state().is_terminated() {
                        break;
                    }
                    continue;
                }
            };
            let trusted = auth.map(Identity::of);
            let mut addrs = Vec::new();
            let mut names = children;
            names.sort();
            for name in names {
                let path = format!("{}/{name}", url.path);
                let Ok((data, _)) = timed(client.get_data(&path)).await else {
                    continue; // Gone between the list and the read.
                };
                let vetted = match serde_json::from_slice::<Entry>(&data) {
                    Ok(entry) => vet(&entry, trusted.as_ref(), &client, &path).await,
                    Err(error) => Err(format!("not a server ({error})")),
                };
                let skip = match vetted {
                    Ok(addr) => {
                        addrs.push(addr);
                        None
                    }
                    Err(why) => Some(why),
                };
                if let Some(why) = skip {
                    if warned.insert(path.clone()) {
                        warn(format_args!("skipping {path} in the registry: {why}"));
                    }
                }
            }
            warnings.last = None;
            publish(shared, addrs);
            let event = watcher.changed().await;
            if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                break;
            }
        }
    }
}

/// The address to dial for `entry` (at `path`), or why it is skipped.
async fn vet(
    entry: &Entry,
    trusted: Option<&Identity>,
    client: &zk::Client,
    path: &str,
) -> Result<SocketAddr, String> {
    if let Some(why) = entry.undialable() {
        return Err(format!("{why} ({})", entry.addr()));
    }
    if let Some(identity) = trusted {
        if let Some(why) = identity.doubt(client, path).await {
            return Err(why);
        }
    }
    Ok(entry.addr())
}

/// Who may write an entry a client with credentials dials: the digest
/// identity of its user and password, `USER:HASH`, where HASH is
/// base64(SHA-1(`USER:PASSWORD`)), the identity ZooKeeper's digest
/// provider gives a session that authenticated so, and writes into a
/// creator-only ACL. The whole identity is checked, not the user name
/// alone: anyone may create a node whose ACL names `digest:USER:anything`
/// without knowing the password, and such an entry is not the user's.
struct Identity(String);

impl Identity {
    /// The identity of `auth`'s user and password.
    fn of(auth: &RegistryAuth) -> Self {
        use base64::Engine as _;
        let credentials = format!("{}:{}", auth.user(), auth.password);
        let hash = sha1_smol::Sha1::from(credentials.as_bytes())
            .digest()
            .bytes();
        let hash = base64::engine::general_purpose::STANDARD.encode(hash);
        Self(format!("{}:{hash}", auth.user()))
    }

    /// Why the entry at `path` is not to be trusted, if it is not: someone
    /// else may write it (its ACL grants more than reading to another
    /// identity), or its ACL cannot be read.
    async fn doubt(&self, client: &zk::Client, path: &str) -> Option<String> {
        let acl = match timed(client.get_acl(path)).await {
            Ok((acl, _)) => acl,
            Err(error) => return Some(format!("cannot read its ACL ({error})")),
        };
        let writers = acl
            .iter()
            .filter(|acl| acl.permission() != zk::Permission::READ)
            .filter(|acl| acl.permission() != zk::Permission::NONE);
        for writer in writers {
            if writer.scheme() != "digest" || writer.id() != self.0 {
                // The user name only: a hash of someone's password is
                // nothing to print, even a wrong one.
                let user = writer.id().split(':').next().unwrap_or_default();
                return Some(format!(
                    "{}:{user} may write it, not only the --registry-auth user and password",
                    writer.scheme()
                ));
            }
        }
        None
    }
}

/// A successful read: these are the servers now.
fn publish(shared: &(Mutex<Servers>, std::sync::Condvar), addrs: Vec<SocketAddr>) {
    {
        let mut servers = shared.0.lock().unwrap_or_else(|e| e.into_inner());
        if servers.addrs != addrs || !servers.read {
            servers.version += 1;
        }
        servers.addrs = addrs;
        servers.read = true;
        servers.failure = None;
    }
    shared.1.notify_all();
}

/// A failed read: said (once a [`WARNING_INTERVAL`]) only once the
/// registry has been read, since until then the caller says why it gives up.
fn publish_failure(
    shared: &(Mutex<Servers>, std::sync::Condvar),
    failure: String,
    warnings: &mut Warnings,
    warn: &Warn,
) {
    let read = {
        let mut servers = shared.0.lock().unwrap_or_else(|e| e.into_inner());
        servers.failure = Some(failure.clone());
        servers.read
    };
    if read && warnings.due() {
        warn(format_args!("{failure}; keeping the servers last read"));
    }
    shared.1.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_registry_url_and_refuses_bad_ones_in_words() {
        let url: RegistryUrl = "zk://127.0.0.1:2181,10.0.0.2:2181/zen/servers/"
            .parse()
            .unwrap();
        assert_eq!(url.hosts, "127.0.0.1:2181,10.0.0.2:2181");
        assert_eq!(url.path, "/zen/servers");
        assert_eq!(
            url.to_string(),
            "zk://127.0.0.1:2181,10.0.0.2:2181/zen/servers"
        );
        for (bad, why) in [
            ("http://h:1/p", "zk://"),
            ("zk://h:1", "no /PATH"),
            ("zk:///p", "no HOST:PORT"),
            ("zk://h/p", "no :PORT"),
            ("zk://h:0/p", "does not parse"),
            ("zk://h:99999/p", "does not parse"),
            ("zk://h:1/", "PATH is empty"),
            ("zk://h:1/a//b", "empty, . or .."),
        ] {
            let error = bad.parse::<RegistryUrl>().unwrap_err().to_string();
            assert!(
                error.contains(why) && !error.contains('\n'),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn an_entry_is_the_json_of_docs_protocol() {
        let entry = Entry {
            host: "127.0.0.1".parse().unwrap(),
            port: 1060,
            model: "srv-poll".to_owned(),
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"host":"127.0.0.1","port":1060,"model":"srv-poll"}"#
        );
        assert!(serde_json::from_slice::<Entry>(b"garbage").is_err());
    }
}
