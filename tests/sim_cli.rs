//! `onething sim` as a process: all ten systems answer, and SIGTERM stops it cleanly.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::root;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sim_starts_every_system_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("onething-sim-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onething"));
    cmd.current_dir(root())
        .args(["sim", "--gateway", "http://127.0.0.1:9"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    let mut ports = Vec::new();
    for id in [
        "HEALTH", "POLICE", "MEDICARE", "HRSS", "AMR", "TAX", "WATER", "POWER", "GAS",
    ] {
        let p = free_port();
        ports.push(p);
        cmd.env(
            format!("ONETHING_DEPT_{id}_URL"),
            format!("http://127.0.0.1:{p}"),
        );
    }
    cmd.env("ONETHING_DEPT_NR_DIR", &dir);
    let mut child = cmd.spawn().unwrap();
    // The process says where each system listens once it has bound them all.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let mut listening = 0;
    let mut said = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("simulator listening") {
            listening += 1;
        }
        let ready = line.contains("callbacks go to the gateway");
        said.push(line);
        if ready {
            break;
        }
    }
    let status = if listening == 9 {
        None
    } else {
        child.wait().ok()
    };
    assert_eq!(
        listening,
        9,
        "the simulators' process ({status:?}) said:\n{}",
        said.join("\n")
    );
    for p in &ports {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", *p)).expect("listening");
        use std::io::{Read, Write};
        s.write_all(b"GET /_sim/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert!(
        dir.join("outbox").is_dir() && dir.join("inbox").is_dir(),
        "nr's folder is ready"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}
