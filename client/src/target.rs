//! Where the client connects: `[HOST] [-p PORT]`, as every server takes it.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use zen_utils::config::DEFAULT_PORT;

/// The server to talk to.
#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    /// Server address: an IP address or a host name
    #[arg(default_value = "127.0.0.1")]
    pub(crate) host: String,

    /// Server TCP port
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    pub(crate) port: u16,
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
