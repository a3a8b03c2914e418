//! Redfish over TLS: a BMC-like HTTPS server with a certificate made by `openssl` for
//! this test, read with a CA file and with a pinned SHA-256 fingerprint.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wattledger::collect::meters::redfish::RedfishMeter;
use wattledger::collect::meters::{MeterConfig, MeterDriver, MeterUrl};

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and a leaf for 127.0.0.1; returns the leaf's SHA-256 fingerprint.
fn make_certs(dir: &Path) -> String {
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wattledger test CA"],
        ]
        .concat(),
    );
    openssl(dir, &[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let fp = openssl(dir, &["x509", "-in", "leaf.pem", "-noout", "-fingerprint", "-sha256"]);
    fp.trim().rsplit('=').next().unwrap().to_owned()
}

/// Serves the rackmount1 mockup over HTTPS, one request per connection.
async fn serve(dir: &Path) -> std::net::SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("leaf.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/meters/redfish/public-rackmount1");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, root) = (acceptor.clone(), root.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/");
                let rel = path.trim_end_matches('/').strip_prefix("/redfish/v1").unwrap_or("").trim_start_matches('/');
                let file = if rel.is_empty() { root.join("index.json") } else { root.join(rel).join("index.json") };
                let (status, body) = match std::fs::read(file) {
                    Ok(b) => ("200 OK", b),
                    Err(_) => ("404 Not Found", b"{}".to_vec()),
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn read(url: &str, extra: &str) -> Result<f64, String> {
    let cfg: MeterConfig = toml::from_str(&format!("name = \"bmc\"\nurl = \"{url}\"\n{extra}")).unwrap();
    let m = RedfishMeter::new(&MeterUrl::parse(url).unwrap(), &cfg, Duration::from_secs(3)).map_err(|e| e.0)?;
    let r = m.read().await.map_err(|e| e.0)?;
    Ok(r[0].power_w.unwrap())
}

#[tokio::test]
async fn ca_file_and_pinned_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let fp = make_certs(dir.path());
    let addr = serve(dir.path()).await;
    let url = format!("redfish://{addr}");

    // The system roots do not know this CA: a clear TLS error.
    let e = read(&url, "").await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // The site CA.
    let ca = dir.path().join("ca.pem");
    assert_eq!(read(&url, &format!("ca_file = \"{}\"\n", ca.display())).await.unwrap(), 374.0);
    // The pinned leaf, as `openssl x509 -fingerprint -sha256` prints it.
    assert_eq!(read(&url, &format!("cert_sha256 = \"{fp}\"\n")).await.unwrap(), 374.0);
    // Another fingerprint: refused, and the error shows the one the BMC has.
    let wrong = "00:".repeat(31) + "00";
    let e = read(&url, &format!("cert_sha256 = \"{wrong}\"\n")).await.unwrap_err();
    assert!(e.contains(&fp), "{e}");
}
