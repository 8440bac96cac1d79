//! `sandbox-testimg`: the sandbox's own test image (`ferrokv/sandbox-testimg`).
//!
//! A tiny program that does what the kubelet's tests need a container to do, with nothing but
//! std so it builds in seconds:
//! - `serve [PORT]`: an HTTP server on `0.0.0.0:PORT` (default 8080) with `/` (who am I),
//!   `/healthz`, `/read?path=`, `/write?path=&data=`, `/fetch?addr=HOST:PORT&path=` (an HTTP GET
//!   from inside the Pod, to prove Pod-to-Pod reachability), `/env?name=` and `/exit?code=`;
//! - `write PATH DATA`, `cat PATH`, `exit CODE`, `sleep SECONDS`: one-shot jobs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).and_then(|p| p.parse().ok()).unwrap_or(8080)),
        Some("write") if args.len() == 3 => match write_file(&args[1], &args[2]) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("write {}: {err}", args[1]);
                1
            }
        },
        Some("cat") if args.len() == 2 => match std::fs::read_to_string(&args[1]) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(err) => {
                eprintln!("cat {}: {err}", args[1]);
                1
            }
        },
        Some("exit") => args.get(1).and_then(|c| c.parse().ok()).unwrap_or(0),
        Some("sleep") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3600);
            std::thread::sleep(Duration::from_secs(secs));
            0
        }
        _ => {
            eprintln!("usage: sandbox-testimg serve [PORT] | write PATH DATA | cat PATH | exit CODE | sleep SECONDS");
            2
        }
    };
    std::process::exit(code);
}

fn write_file(path: &str, data: &str) -> std::io::Result<()> {
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)
}

fn serve(port: u16) -> i32 {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(err) => {
            eprintln!("bind 0.0.0.0:{port}: {err}");
            return 1;
        }
    };
    println!("serving on 0.0.0.0:{port}");
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || handle(conn));
    }
    0
}

fn handle(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip headers.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| decode(v))
        })
    };
    let mut exit_after = None;
    let (code, body) = match path {
        "/" => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            (
                200,
                format!(
                    "hostname={} pod={}\n",
                    host.trim(),
                    std::env::var("POD_NAME").unwrap_or_default()
                ),
            )
        }
        "/healthz" => (200, "ok\n".to_owned()),
        "/read" => match std::fs::read_to_string(param("path").unwrap_or_default()) {
            Ok(text) => (200, text),
            Err(err) => (404, format!("{err}\n")),
        },
        "/write" => match write_file(&param("path").unwrap_or_default(), &param("data").unwrap_or_default()) {
            Ok(()) => (200, "written\n".to_owned()),
            Err(err) => (500, format!("{err}\n")),
        },
        "/env" => match std::env::var(param("name").unwrap_or_default()) {
            Ok(value) => (200, value),
            Err(_) => (404, "unset\n".to_owned()),
        },
        "/fetch" => match fetch(
            &param("addr").unwrap_or_default(),
            &param("path").unwrap_or_else(|| "/".into()),
        ) {
            Ok(text) => (200, text),
            Err(err) => (502, format!("{err}\n")),
        },
        "/exit" => {
            exit_after = Some(param("code").and_then(|c| c.parse().ok()).unwrap_or(0));
            (200, "bye\n".to_owned())
        }
        _ => (404, "not found\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes());
    let _ = conn.flush();
    if let Some(code) = exit_after {
        std::process::exit(code);
    }
}

/// A GET to another server, returning its body.
fn fetch(addr: &str, path: &str) -> std::io::Result<String> {
    use std::net::ToSocketAddrs;
    // Names resolve like in any program (getaddrinfo: /etc/hosts first), which is what the
    // kubelet's per-Pod hosts file serves.
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr} does not resolve")))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(response))
}

/// Percent-decoding of a query value.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
