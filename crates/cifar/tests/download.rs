//! The downloader against a local HTTP server on 127.0.0.1 serving a tiny archive made here
//! in the official layout (`cifar-10-batches-bin/…` inside a `.tar.gz`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rtb_cifar::{ArchiveSource, Cifar10, download};

/// Serves `body` at `/cifar-10-binary.tar.gz`, honouring `Range: bytes=N-`; counts requests.
fn serve(body: Vec<u8>) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/cifar-10-binary.tar.gz",
        listener.local_addr().unwrap()
    );
    let requests = Arc::new(Mutex::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            *count.lock().unwrap() += 1;
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut start = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    start = v.trim().trim_end_matches('-').parse().unwrap_or(0);
                }
            }
            let part = &body[start.min(body.len())..];
            let status = if start > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let header = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                part.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(part);
        }
    });
    (url, requests)
}

fn archive(dir: &std::path::Path) -> Vec<u8> {
    let data = common::write_dataset(&dir.join("src/cifar-10-batches-bin"), 3, 4);
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder
        .append_dir_all("cifar-10-batches-bin", &data)
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn downloads_verify_extract_and_are_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let body = archive(dir.path());
    let sha256 = rtb_fetch::sha256_hex(&body);
    let (url, requests) = serve(body);
    let dest = dir.path().join("datasets");
    let source = ArchiveSource {
        url: url.clone(),
        sha256,
    };
    let mut seen = 0u64;
    let batches = download(&source, &dest, &mut |p| seen = p.done).unwrap();
    assert!(batches.ends_with("cifar-10-batches-bin"));
    assert!(seen > 0);
    let data = Cifar10::load(&dest).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (15, 4));
    assert_eq!(data.classes, common::CLASSES);
    assert!(!dest.join(".extract.tmp").exists());
    let before = *requests.lock().unwrap();
    assert_eq!(before, 1);
    // Present and valid: no request at all.
    download(&source, &dest, &mut |_| {}).unwrap();
    assert_eq!(*requests.lock().unwrap(), before);

    // A wrong pin is an error naming the URL's file, and leaves no archive behind.
    let other = dir.path().join("other");
    let wrong = ArchiveSource {
        url,
        sha256: "0".repeat(64),
    };
    let err = download(&wrong, &other, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sha256") && err.contains("cifar-10-binary.tar.gz"),
        "{err}"
    );
    assert!(!other.join("cifar-10-binary.tar.gz").exists());
}

#[test]
fn an_archive_without_the_batch_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "other/readme.txt", &b"hi\n"[..])
        .unwrap();
    let body = builder.into_inner().unwrap().finish().unwrap();
    let path = dir.path().join("a.tar.gz");
    std::fs::write(&path, body).unwrap();
    let err = rtb_cifar::extract(&path, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no cifar-10-batches-bin"), "{err}");
}
