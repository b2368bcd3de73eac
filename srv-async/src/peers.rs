//! Asking the peers about a question this server does not know, the
//! async way: the task awaits each peer in turn (connect, write, read one
//! reply), bounded by `--peer-timeout`, and the runtime's thread serves
//! every other connection meanwhile. Each question opens its own
//! connection to a peer, so no two tasks ever share one.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zen_utils::protocol::peers::{complete_reply, Asking, Forward, Reply, MAX_PEER_REPLY};
use zen_utils::protocol::UNKNOWN_APHORISM;

/// The answer to give for `forward`: the first peer's that knew it.
pub(crate) async fn ask(forward: Forward, timeout: Duration) -> &'static [u8] {
    let mut asking = Asking::new(forward);
    while let Some(peer) = asking.next_peer() {
        let reply = tokio::time::timeout(timeout, ask_one(peer, asking.request()))
            .await
            .unwrap_or(Reply::Failed);
        if let Some(answer) = asking.heard(reply) {
            return answer;
        }
    }
    UNKNOWN_APHORISM
}

/// One peer's reply to `request`, on a new connection.
async fn ask_one(peer: SocketAddr, request: &[u8]) -> Reply {
    let Ok(mut stream) = TcpStream::connect(peer).await else {
        return Reply::Failed;
    };
    let _ = stream.set_nodelay(true);
    if stream.write_all(request).await.is_err() {
        return Reply::Failed;
    }
    let mut buf = [0; MAX_PEER_REPLY];
    let mut filled = 0;
    loop {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return Reply::Failed,
            Ok(n) => filled += n,
        }
        match complete_reply(&buf[..filled]) {
            Ok(Some(end)) if end == filled => return Reply::of(&buf[..end]),
            Ok(Some(_)) | Err(_) => return Reply::Failed,
            Ok(None) => {}
        }
    }
}
