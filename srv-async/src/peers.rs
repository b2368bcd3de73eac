//! Asking the peers about a question this server does not know, the
//! async way: the task awaits each peer in turn (connect, write, read one
//! reply), bounded by `--peer-timeout`, and the runtime's thread serves
//! every other connection meanwhile. Each question opens its own
//! connection to a peer, so no two tasks ever share one.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zen_utils::protocol::peers::{Asking, Forward, Reply, ReplyRead, ReplyReader};
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
    let mut reader = ReplyReader::new();
    loop {
        let Ok(n) = stream.read(reader.room()).await else {
            return Reply::Failed;
        };
        match reader.received(n) {
            ReplyRead::NeedMore => {}
            ReplyRead::Complete(reply) => return reply,
            ReplyRead::TooLong | ReplyRead::ClosedEarly => return Reply::Failed,
        }
    }
}
