//! Real components, really started: a private ZooKeeper
//! (`zkServer.sh start-foreground` with a config of its own) and a private
//! HAProxy (`haproxy -db -f`), each on free loopback ports, ready before
//! it is used, and stopped when it is dropped (even by a failing test).
//! `client compare` and the tests start them; the `wait_for_*` helpers,
//! which panic, are the tests'.

pub mod stuck;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The ZooKeeper client the tests' sessions are (to name its errors).
pub use zookeeper_client as zk;

/// How long a component may take to come up, and a test to see a
/// change in it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Where ZooKeeper's Debian package keeps its start script.
pub const ZK_SERVER: &str = "/usr/share/zookeeper/bin/zkServer.sh";

/// A free port on 127.0.0.1 (bound, then let go: another process could
/// take it meanwhile, which would fail a test, not pass it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system's temporary one.
pub fn temp_dir(what: &str) -> PathBuf {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "zen-{what}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A process started in a process group of its own, killed with its
/// whole group when dropped (zkServer.sh's java, haproxy's workers).
pub struct Group(Child);

impl Group {
    /// Spawns `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        command.process_group(0).spawn().map(Self)
    }

    /// The leader's process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Kills the group and reaps the leader.
    pub fn kill(&mut self) {
        // SAFETY: kill() only signals the group we started.
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private ZooKeeper on 127.0.0.1.
pub struct ZooKeeper {
    process: Option<Group>,
    /// Its client port.
    pub port: u16,
    dir: PathBuf,
}

impl ZooKeeper {
    /// Starts one on a free port and waits until `ruok` says `imok`.
    ///
    /// # Panics
    /// If the `zookeeper` package is not installed (scripts/test installs
    /// it), or it does not come up within [`PATIENCE`].
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts one on `port` (a test that starts ZooKeeper late, on a port
    /// a server was told already).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port)
            .unwrap_or_else(|error| panic!("{error} (scripts/test installs it)"))
    }

    /// Starts one on `port`; an error if it is not installed or does not
    /// come up within [`PATIENCE`].
    pub fn try_start_on(port: u16) -> std::io::Result<Self> {
        if !Path::new(ZK_SERVER).exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{ZK_SERVER} is missing: install the zookeeper package"),
            ));
        }
        let dir = temp_dir("zookeeper");
        let config = dir.join("zoo.cfg");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // tickTime 500 ms: sessions may be as short as 1 s, so that a
        // killed server's znode goes within seconds in the tests.
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let process = Group::spawn(
            Command::new(ZK_SERVER)
                .arg("start-foreground")
                .arg(&config)
                .env("ZOO_LOG_DIR", &dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let zookeeper = Self {
            process: Some(process),
            port,
            dir,
        };
        let started = Instant::now();
        while !zookeeper.ruok() {
            if started.elapsed() > PATIENCE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("ZooKeeper did not come up on port {port}"),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(zookeeper)
    }

    fn ruok(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = String::new();
        stream.write_all(b"ruok").is_ok()
            && stream.read_to_string(&mut reply).is_ok()
            && reply == "imok"
    }

    /// `zk://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("zk://127.0.0.1:{}{path}", self.port)
    }

    /// Stops it (kills it: the tests want it gone, not tidy).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Runs `f` with a client session, on a runtime of its own.
    pub fn with_client<T>(&self, f: impl AsyncFnOnce(&zk::Client) -> T) -> T {
        self.with_session(zk::Client::connector(), f)
    }

    /// [`with_client`](Self::with_client), with a session authenticated
    /// by the digest scheme as `USER:PASSWORD`.
    pub fn with_digest<T>(&self, credentials: &str, f: impl AsyncFnOnce(&zk::Client) -> T) -> T {
        let connector = zk::Client::connector().with_auth("digest", credentials.as_bytes());
        self.with_session(connector, f)
    }

    fn with_session<T>(
        &self,
        connector: zk::Connector,
        f: impl AsyncFnOnce(&zk::Client) -> T,
    ) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hosts = format!("127.0.0.1:{}", self.port);
        runtime.block_on(async {
            let client = connector
                .connect(&hosts)
                .await
                .expect("connect to ZooKeeper");
            f(&client).await
        })
    }

    /// The children of `path` (none if it does not exist).
    pub fn children(&self, path: &str) -> Vec<String> {
        self.with_client(async |client| {
            let mut children = client.list_children(path).await.unwrap_or_default();
            children.sort();
            children
        })
    }

    /// The data of each child of `path`, in name order.
    pub fn children_data(&self, path: &str) -> Vec<String> {
        self.with_client(async |client| {
            let mut children = client.list_children(path).await.unwrap_or_default();
            children.sort();
            let mut data = Vec::new();
            for child in children {
                if let Ok((bytes, _)) = client.get_data(&format!("{path}/{child}")).await {
                    data.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
            data
        })
    }

    /// Creates a persistent znode `path` (and its parents) with `data`.
    pub fn create(&self, path: &str, data: &[u8]) {
        self.with_client(async |client| {
            let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !parent.is_empty() {
                    client.mkdir(parent, &options).await.unwrap();
                }
            }
            client.create(path, data, &options).await.unwrap();
        });
    }

    /// Waits until `path` has `n` children; returns them.
    ///
    /// # Panics
    /// If it does not within [`PATIENCE`].
    pub fn wait_for_children(&self, path: &str, n: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let children = self.children(path);
            if children.len() == n {
                return children;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{path} has {children:?}, not {n}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The repository's HAProxy example, deploy/haproxy/zen.cfg, compiled
/// in: the tests and `client compare` run the configuration users are
/// given.
pub const DEPLOY_HAPROXY: &str = include_str!("../../deploy/haproxy/zen.cfg");

/// [`DEPLOY_HAPROXY`] with its ports made `front` (for 1060) and
/// `backends` (for 1061, 1062...), and its stats socket left for
/// [`HaProxy::start`] to fill in.
pub fn haproxy_config(front: u16, backends: &[u16]) -> String {
    let mut config = DEPLOY_HAPROXY
        .replace("/run/haproxy/zen.sock", "@STATS@")
        .replace("127.0.0.1:1060", &format!("127.0.0.1:{front}"));
    for (i, port) in backends.iter().enumerate() {
        config = config.replace(
            &format!("127.0.0.1:{}", 1061 + i),
            &format!("127.0.0.1:{port}"),
        );
    }
    config
}

/// A private HAProxy, `haproxy -db -f CONFIG`.
pub struct HaProxy {
    _process: Group,
    /// Its stats socket.
    pub stats: PathBuf,
    dir: PathBuf,
}

impl HaProxy {
    /// Starts HAProxy on `config`, after replacing `@STATS@` in it with a
    /// stats socket of its own; waits until `listen` accepts.
    ///
    /// # Panics
    /// If haproxy is not installed (scripts/test installs it) or does not
    /// come up within [`PATIENCE`].
    pub fn start(config: &str, listen: SocketAddr) -> Self {
        Self::try_start(config, listen)
            .unwrap_or_else(|error| panic!("{error} (scripts/test installs it)"))
    }

    /// [`start`](Self::start), with an error instead of a panic.
    pub fn try_start(config: &str, listen: SocketAddr) -> std::io::Result<Self> {
        let dir = temp_dir("haproxy");
        let stats = dir.join("stats.sock");
        let path = dir.join("haproxy.cfg");
        std::fs::write(
            &path,
            config.replace("@STATS@", &stats.display().to_string()),
        )
        .unwrap();
        let process = Group::spawn(
            Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .map_err(|error| {
            std::io::Error::new(error.kind(), format!("cannot start haproxy: {error}"))
        })?;
        let haproxy = Self {
            _process: process,
            stats,
            dir,
        };
        let started = Instant::now();
        while TcpStream::connect(listen).is_err() || !haproxy.stats.exists() {
            if started.elapsed() > PATIENCE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("haproxy did not come up on {listen}"),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(haproxy)
    }

    /// A command's answer on the stats socket (`show stat`, say).
    pub fn command(&self, command: &str) -> String {
        let mut socket = std::os::unix::net::UnixStream::connect(&self.stats).unwrap();
        socket.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Column `field` of `show stat` for each server of `backend` (not
    /// its `FRONTEND` and `BACKEND` rows), by server name: `status` (`UP`,
    /// `DOWN`...), `scur`, `stot`...
    pub fn stat(&self, backend: &str, field: &str) -> Vec<(String, String)> {
        let table = self.command("show stat");
        let mut lines = table.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(at)) = (column("pxname"), column("svname"), column(field))
        else {
            return Vec::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.len() > at.max(px).max(sv)
                    && f[px] == backend
                    && f[sv] != "BACKEND"
                    && f[sv] != "FRONTEND"
            })
            .map(|f| (f[sv].to_owned(), f[at].to_owned()))
            .collect()
    }

    /// The status (`UP`, `DOWN`, ...) of each server of `backend`, by
    /// server name.
    pub fn statuses(&self, backend: &str) -> Vec<(String, String)> {
        self.stat(backend, "status")
    }

    /// A number of `show stat` (`scur`, `stot`...) for server `server` of
    /// `backend`, if it has one.
    pub fn counter(&self, backend: &str, server: &str, field: &str) -> Option<u64> {
        self.stat(backend, field)
            .into_iter()
            .find(|(name, _)| name == server)
            .and_then(|(_, value)| value.parse().ok())
    }

    /// Waits until `field` of `show stat` (a number: `scur`, `stot`...) for
    /// server `server` of `backend` satisfies `ok`.
    ///
    /// # Panics
    /// If it does not within [`PATIENCE`].
    pub fn wait_for_field(
        &self,
        backend: &str,
        server: &str,
        field: &str,
        ok: impl Fn(u64) -> bool,
    ) {
        let started = Instant::now();
        loop {
            let value = self.counter(backend, server, field);
            if value.is_some_and(&ok) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{server}'s {field} never as wanted: {value:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until server `server` of `backend` has status `want`.
    ///
    /// # Panics
    /// If it does not within [`PATIENCE`].
    pub fn wait_for_status(&self, backend: &str, server: &str, want: &str) {
        let started = Instant::now();
        loop {
            let statuses = self.statuses(backend);
            if statuses
                .iter()
                .any(|(name, status)| name == server && status.starts_with(want))
            {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{server} never {want}: {statuses:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
