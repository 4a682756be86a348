//! A TCP relay in front of Postgres that a test can cut and restore: a real database
//! outage as the gateway meets it (connections dropped mid-use, new ones refused), without
//! touching the server other tests share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct DbProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl DbProxy {
    /// Relays 127.0.0.1:<random port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (up2, cut2, stop2) = (Arc::clone(&up), Arc::clone(&cut), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop2.cancelled() => return,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    // Down: the connection is closed at once, as by a restarting server.
                    drop(client);
                    continue;
                }
                let generation = cut2.lock().expect("proxy lock").clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = generation.cancelled() => {}
                    }
                });
            }
        });
        DbProxy {
            addr,
            up,
            cut,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The database goes away: open connections break, new ones are refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut current = self.cut.lock().expect("proxy lock");
        current.cancel();
        *current = CancellationToken::new();
    }

    /// The database is back.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut.lock().expect("proxy lock").cancel();
    }
}
