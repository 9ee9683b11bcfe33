//! The metrics listener of a test server (`[metrics] listen` set): a raw HTTP GET and the
//! samples of `/metrics`.

use super::TestServer;

/// The whole response to `GET path`, status line first.
pub async fn http_get(server: &TestServer, path: &str) -> String {
    let address = server
        .running
        .as_ref()
        .unwrap()
        .metrics_address
        .expect("metrics are on");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .unwrap();
    response
}

/// The response to `GET /metrics`, which must be 200 OK.
pub async fn scrape(server: &TestServer) -> String {
    let response = http_get(server, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

/// The value of one sample line of `/metrics` (0 when absent).
pub async fn metric(server: &TestServer, sample: &str) -> f64 {
    scrape(server)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Recipients counted against the account's quotas.
pub async fn account_recipients(server: &TestServer) -> f64 {
    metric(
        server,
        "sesgate_quota_recipients_total{scope=\"account\",name=\"\"}",
    )
    .await
}

/// What is left of the account's 24-hour quota.
pub async fn account_remaining_24h(server: &TestServer) -> f64 {
    metric(
        server,
        "sesgate_quota_remaining_24h{scope=\"account\",name=\"\"}",
    )
    .await
}
