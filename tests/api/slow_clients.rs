//! Slow and idle clients cannot hold otpd's connections: a body must arrive
//! within `http.request_timeout` (else 408 and the connection closes), an
//! idle keep-alive connection closes after `http.keep_alive`, a worker holds
//! at most `http.max_connections`, and gRPC bounds its connections, their age
//! and each call's time likewise.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{settings, TestApp};

/// Complete headers of a receipt post (no API key needed) whose body never
/// comes.
const SLOW_BODY: &[u8] = b"POST /v1/carriers/console/receipts HTTP/1.1\r\nHost: otpd\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n";

/// The sockets of `port` this process has accepted (the accept queue's
/// sockets have no inode yet): otpd's file descriptors for them.
fn accepted_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().expect("address:port");
            u16::from_str_radix(local_port, 16) == Ok(port) && fields[3] == "01" && fields[9] != "0"
        })
        .count()
}

fn http_address(app: &TestApp) -> SocketAddr {
    app.base
        .trim_start_matches("http://")
        .parse()
        .expect("host:port")
}

async fn everything_read(mut stream: TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("otpd closes the connection in time")
        .expect("reads");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_get_408_and_cannot_exhaust_connections() {
    let mut settings = settings(None);
    settings.http.workers = 1;
    settings.http.max_connections = 32;
    settings.http.request_timeout = Duration::from_secs(1);
    let app = TestApp::spawn(&settings).await;
    let address = http_address(&app);

    // Three times as many slow clients as the worker may hold.
    let mut slow = Vec::new();
    for _ in 0..96 {
        let mut stream = TcpStream::connect(address).await.expect("connects");
        stream.write_all(SLOW_BODY).await.expect("writes");
        slow.push(stream);
    }
    // Everyone else is still answered: at worst after the slow clients
    // ahead of them in the accept queue ran out of time.
    let answered = tokio::time::timeout(Duration::from_secs(20), app.public("/healthz"))
        .await
        .expect("another client is answered while slow clients wait");
    assert_eq!(answered.status(), 200);
    assert!(
        accepted_sockets(address.port()) <= 32 + 1,
        "otpd holds {} connections, more than http.max_connections",
        accepted_sockets(address.port())
    );

    // Each slow client is told why and disconnected.
    for stream in slow {
        let answer = everything_read(stream, Duration::from_secs(20)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("\"code\":\"request-timeout\""), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("x-request-id: "),
            "{answer}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"otpd_http_requests_total{route="/v1/carriers/{carrier}/receipts",status="408"} 96"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mut settings = settings(None);
    settings.http.keep_alive = Duration::from_secs(1);
    let app = TestApp::spawn(&settings).await;
    let address = http_address(&app);
    let mut stream = TcpStream::connect(address).await.expect("connects");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: otpd\r\n\r\n")
        .await
        .expect("writes");
    let answer = everything_read(stream, Duration::from_secs(4)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A gRPC call whose request never comes: HEADERS, then nothing. Its status
/// (from the headers of a trailers-only answer, or the trailers).
async fn grpc_call_without_body(address: SocketAddr) -> Option<String> {
    let tcp = TcpStream::connect(address).await.expect("connects");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!(
        "http://{address}/otp.v1.VerificationService/GetVerification"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header(
        "authorization",
        format!("Bearer {}", crate::support::API_KEY),
    )
    .body(())
    .expect("request");
    let (response, _never_sent) = client.send_request(request, false).expect("sends");
    let response = response.await.expect("answered");
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .map(|value| value.to_str().expect("ascii").to_owned())
    };
    if let Some(status) = status(response.headers()) {
        return Some(status);
    }
    let mut body = response.into_body();
    while body.data().await.is_some() {}
    body.trailers()
        .await
        .ok()
        .flatten()
        .as_ref()
        .and_then(status)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_bounds_calls_and_connections() {
    let mut settings = settings(None);
    settings.grpc.request_timeout = Duration::from_secs(1);
    settings.grpc.max_connections = 8;
    settings.grpc.max_connection_age = Duration::from_secs(1);
    let app = TestApp::spawn(&settings).await;
    let address = app.grpc_addr.expect("a gRPC listener");

    // A call whose request never arrives ends CANCELLED (1).
    let status = tokio::time::timeout(Duration::from_secs(20), grpc_call_without_body(address))
        .await
        .expect("the call ends in time");
    assert_eq!(status.as_deref(), Some("1"));

    // Three times the limit of connections that say nothing: they are
    // closed by age, others are served, and no more than the limit is held.
    let mut silent = Vec::new();
    for _ in 0..24 {
        silent.push(TcpStream::connect(address).await.expect("connects"));
    }
    let status = tokio::time::timeout(Duration::from_secs(20), grpc_call_without_body(address))
        .await
        .expect("another client is served while silent ones wait");
    assert_eq!(status.as_deref(), Some("1"));
    assert!(
        accepted_sockets(address.port()) <= 8 + 1,
        "otpd holds {} gRPC connections, more than grpc.max_connections",
        accepted_sockets(address.port())
    );
    for stream in silent {
        everything_read(stream, Duration::from_secs(20)).await;
    }
}
