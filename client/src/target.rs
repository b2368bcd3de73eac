//! Where the client connects: `[HOST] [-p PORT]`, as every server takes it,
//! or `--registry URL`, the servers a ZooKeeper registry lists.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use zen_utils::config::DEFAULT_PORT;
use zen_utils::deploy::registry::{AuthParser, RegistryAuth, RegistryUrl};

/// The server to talk to.
#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    /// Server address: an IP address or a host name
    #[arg(default_value = "127.0.0.1")]
    pub(crate) host: String,

    /// Server TCP port
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    pub(crate) port: u16,

    /// Find the servers in a ZooKeeper registry instead, URL
    /// zk://HOST:PORT[,HOST:PORT...]/PATH (replaces HOST and -p): each
    /// connection picks one of the servers registered under PATH, and
    /// another one when its connect is refused or it breaks; with none
    /// registered, wait up to --timeout
    #[arg(long, value_name = "URL", conflicts_with_all = ["host", "port"])]
    pub(crate) registry: Option<RegistryUrl>,

    /// Authenticate to the registry with ZooKeeper's digest scheme,
    /// USER:PASSWORD, and dial only the servers whose znodes nobody but
    /// this user may write (servers started with the same
    /// --registry-auth); others are skipped with a warning
    #[arg(long, value_name = "USER:PASSWORD", value_parser = AuthParser, requires = "registry")]
    pub(crate) registry_auth: Option<RegistryAuth>,
}

impl Target {
    /// Every address `HOST:PORT` resolves to.
    pub(crate) fn addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", self.host))?
            .collect();
        if addrs.is_empty() {
            return Err(anyhow!("cannot resolve {}: no address", self.host));
        }
        Ok(addrs)
    }

    /// Connects to the first address that accepts, within `timeout` each.
    pub(crate) fn connect(&self, timeout: Duration) -> anyhow::Result<TcpStream> {
        let mut last_error = None;
        for addr in self.addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some((addr, error)),
            }
        }
        let (addr, error) = last_error.expect("addrs is never empty");
        Err(anyhow!("cannot connect to {addr}: {error}"))
    }
}
