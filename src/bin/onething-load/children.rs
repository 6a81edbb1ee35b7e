//! The child processes (`onething sim`, `onething run`): ports, start, stop, readiness, logs.

use super::*;

/// `n` distinct free ports below the ephemeral range (outgoing connections cannot take them
/// between this check and the children's bind).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < n {
        let port = rand::random_range(20_000..32_000);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// Starts `onething ARGS` with `env`, its stdout and stderr into files in `work`.
pub fn spawn(
    bin: &Path,
    args: &[&str],
    env: &HashMap<String, String>,
    logs: [PathBuf; 2],
) -> Child {
    let [out, err] = logs.map(|p| Stdio::from(std::fs::File::create(p).expect("log file")));
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(ROOT)
        .envs(env)
        .stdout(out)
        .stderr(err);
    cmd.spawn().expect("cannot start a child")
}

/// Sends SIGTERM to these processes when dropped: on the way out of a panic, the children
/// (`mem::forget` it once they are stopped the normal way).
pub struct StopOnDrop(pub Vec<u32>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.iter().copied().for_each(sigterm);
    }
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// SIGTERM, then up to 20 s for the exit status.
pub fn stop(name: &str, child: &mut Child) -> String {
    sigterm(child.id());
    let asked = Instant::now();
    while secs(asked) < 20.0 {
        if let Ok(Some(s)) = child.try_wait() {
            return format!("{name} exited with {s}, {:.1} s after SIGTERM", secs(asked));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    format!("{name} did NOT exit within 20 s of SIGTERM (killed)")
}

pub async fn wait_http(http: &reqwest::Client, url: &str, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
        {
            return Ok(());
        }
        if let Ok(Some(s)) = child.try_wait() {
            return Err(format!(
                "{url}: the process exited with {s} before it was ready"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{url}: not ready after 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get(http: &reqwest::Client, url: &str) -> String {
    match http.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(err) => format!("({url}: {err})"),
    }
}

/// The number of log lines, and the five most frequent (level, message).
pub fn log_summary(path: &Path) -> (usize, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut by: HashMap<String, usize> = HashMap::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or(json!({"message": l}));
        let msg: String = v["message"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(120)
            .collect();
        *by.entry(format!("{} {msg}", v["level"].as_str().unwrap_or("?")))
            .or_default() += 1;
    }
    let mut top: Vec<_> = by.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    let lines: String = top
        .iter()
        .take(5)
        .map(|(k, n)| format!("\n  {n:>7} × {k}"))
        .collect();
    (text.lines().count(), lines)
}
