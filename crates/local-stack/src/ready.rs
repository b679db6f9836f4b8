//! Bounded waits for a started service to answer.

use crate::error::Error;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

const POLL: Duration = Duration::from_millis(100);

/// Until something accepts connections on `addr` (for servers that log an error for a
/// probing HTTP request, like `cargo lambda watch`).
pub async fn wait_tcp(what: &str, addr: SocketAddr, within: Duration) -> Result<(), Error> {
    let until = Instant::now() + within;
    loop {
        let attempt = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await;
        if matches!(attempt, Ok(Ok(_))) {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(Error::NotReady {
                what: format!("{what} on {addr}"),
                after: within,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Until `url` answers anything over HTTP.
pub async fn wait_http(what: &str, url: &str, within: Duration) -> Result<(), Error> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::Tool {
            what: "an HTTP client".into(),
            reason: e.to_string(),
        })?;
    let until = Instant::now() + within;
    loop {
        if http.get(url).send().await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(Error::NotReady {
                what: format!("{what} at {url}"),
                after: within,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Fails if anything listens on `port` on an address other than loopback (read from
/// `/proc/net/tcp{,6}`, where LISTEN is state `0A`).
pub fn loopback_only(what: &str, port: u16) -> Result<(), Error> {
    for (table, loopback) in [
        ("/proc/net/tcp", "0100007F"),
        ("/proc/net/tcp6", "00000000000000000000000001000000"),
    ] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((address, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state == "0A" && u16::from_str_radix(hex_port, 16) == Ok(port) && address != loopback {
                return Err(Error::NotLoopback {
                    what: what.to_string(),
                    address: format!("{address}:{port} ({table})"),
                });
            }
        }
    }
    Ok(())
}

/// The ports something listens on, for a test that checks a stopped stack left none.
pub fn listening_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) == Some(&"0A")
                && let Some(port) = fields
                    .get(1)
                    .and_then(|l| l.split_once(':'))
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports
}
