//! A round-robin TCP balancer standing in for the load balancer a county puts in front of several
//! instances: each new connection goes to the next instance, skipping one that refuses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Balancer {
    task: JoinHandle<()>,
    /// Connections relayed to each target, in the order given.
    pub relayed: Arc<Vec<AtomicUsize>>,
}

impl Balancer {
    pub async fn start(addr: SocketAddr, targets: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let relayed: Arc<Vec<AtomicUsize>> =
            Arc::new(targets.iter().map(|_| AtomicUsize::new(0)).collect());
        let counts = relayed.clone();
        let task = tokio::spawn(async move {
            let next = AtomicUsize::new(0);
            while let Ok((mut inbound, _)) = listener.accept().await {
                let start = next.fetch_add(1, Ordering::Relaxed);
                let mut outbound = None;
                for k in 0..targets.len() {
                    let i = (start + k) % targets.len();
                    if let Ok(s) = TcpStream::connect(targets[i]).await {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                        outbound = Some(s);
                        break;
                    }
                }
                if let Some(mut outbound) = outbound {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
            }
        });
        Balancer { task, relayed }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
