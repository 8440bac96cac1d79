//! Crash test: the real `ferrokv-node` binary with `appendfsync always` is
//! killed with SIGKILL at random moments while writers record every write
//! the server acknowledged; after each restart every acknowledged write must
//! be there.
//!
//! Iterations: `FERROKV_CRASH_ITERATIONS` (default 3, what CI runs);
//! `bench/crash.sh` runs 100. Prints `acked writes lost: L of N`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use support::Binary;

mod support;

/// The binary with `appendfsync always` on the data directory `dir`.
fn spawn_node(dir: &Path) -> Binary {
    let dir = dir.to_str().expect("utf-8 path");
    Binary::start(&["--appendonly", "yes", "--appendfsync", "always", "--dir", dir])
}

/// The smallest RESP client: one command, one single-line reply.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Conn { s, buf: Vec::new() })
    }

    fn cmd(&mut self, args: &[&str]) -> std::io::Result<String> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.s.write_all(out.as_bytes())?;
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                if let Some(n) = line.strip_prefix('$') {
                    let n: i64 = n.parse().map_err(std::io::Error::other)?;
                    if n < 0 {
                        return Ok("(nil)".into());
                    }
                    while self.buf.len() < n as usize + 2 {
                        self.fill()?;
                    }
                    let v = String::from_utf8_lossy(&self.buf[..n as usize]).into_owned();
                    self.buf.drain(..n as usize + 2);
                    return Ok(v);
                }
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 4096];
        let n = self.s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }
}

/// What one writer got acknowledged.
#[derive(Default)]
struct Acked {
    sets: Vec<u64>,
    incrs: u64,
    incrs_sent: u64,
}

fn writer(addr: SocketAddr, prefix: String, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::default();
    let Ok(mut c) = Conn::connect(addr) else { return acked };
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match c.cmd(&["SET", &format!("{prefix}:k{i}"), &format!("v{i}")]) {
            Ok(r) if r == "+OK" => acked.sets.push(i),
            Ok(r) => panic!("unexpected reply {r}"),
            Err(_) => break,
        }
        acked.incrs_sent += 1;
        match c.cmd(&["INCR", &format!("{prefix}:ctr")]) {
            Ok(r) if r.starts_with(':') => acked.incrs += 1,
            Ok(r) => panic!("unexpected reply {r}"),
            Err(_) => break,
        }
        i += 1;
    }
    acked
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let iterations: usize = std::env::var("FERROKV_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("ferrokv-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut rng = rand::rng();
    let (mut total, mut lost) = (0u64, 0u64);
    let started = Instant::now();
    let mut history: Vec<(String, Acked)> = Vec::new();
    for it in 0..iterations {
        let mut node = spawn_node(&dir);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (addr, stop) = (node.addr, stop.clone());
                let prefix = format!("i{it}w{w}");
                std::thread::spawn(move || (prefix.clone(), writer(addr, prefix, stop)))
            })
            .collect();
        // The sleep is the thing under test: the kill must land at a random
        // moment of the write stream, not at a state a condition could name.
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        // SIGKILL by PID: no shutdown, no final flush.
        node.child.kill().expect("kill -9");
        let _ = node.child.wait();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            history.push(w.join().expect("writer"));
        }
        drop(node);
        // Restart and check everything acknowledged so far, in every iteration.
        let node = spawn_node(&dir);
        let mut c = Conn::connect(node.addr).expect("connect");
        let (mut it_total, mut it_lost) = (0u64, 0u64);
        for (prefix, a) in &history {
            for i in &a.sets {
                it_total += 1;
                if c.cmd(&["GET", &format!("{prefix}:k{i}")]).expect("get") != format!("v{i}") {
                    it_lost += 1;
                    eprintln!("LOST {prefix}:k{i}");
                }
            }
            let ctr: u64 = match c.cmd(&["GET", &format!("{prefix}:ctr")]).expect("get").as_str() {
                "(nil)" => 0,
                v => v.parse().expect("counter"),
            };
            it_total += a.incrs;
            if ctr < a.incrs {
                it_lost += a.incrs - ctr;
                eprintln!("LOST {} INCRs of {prefix}:ctr ({ctr} < {})", a.incrs - ctr, a.incrs);
            }
            assert!(ctr <= a.incrs_sent, "{prefix}:ctr {ctr} > {} sent", a.incrs_sent);
        }
        total = it_total;
        lost = lost.max(it_lost);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "acked writes lost: {lost} of {total} ({iterations} kill -9 iterations, {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(lost, 0);
}
