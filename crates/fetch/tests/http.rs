//! Downloads against a local HTTP server on 127.0.0.1 that can drop a connection half-way and
//! can ignore Range requests, so resume, restart and checksum paths all run for real.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use rtb_fetch::{FetchError, Fetched, Fetcher, Progress, part_path, sha256_hex};

#[derive(Clone, Copy)]
struct Behaviour {
    /// Close the first response after this many body bytes.
    cut_first_after: Option<usize>,
    /// Answer every request with the whole body (200), ignoring Range.
    ignore_range: bool,
}

struct Server {
    url: String,
    /// The Range header (or None) of every request received.
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

fn serve(body: Vec<u8>, behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/files/blob.bin", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { break };
            let cut = if index == 0 {
                behaviour.cut_first_after
            } else {
                None
            };
            handle(stream, &body, behaviour.ignore_range, cut, &seen);
        }
    });
    Server { url, ranges }
}

fn handle(
    mut stream: TcpStream,
    body: &[u8],
    ignore_range: bool,
    cut: Option<usize>,
    seen: &Mutex<Vec<Option<String>>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut range = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = Some(value.trim().trim_end_matches('-').to_string());
        }
    }
    seen.lock().unwrap().push(range.clone());
    if !request_line.contains("/files/blob.bin") {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let start: usize = match (&range, ignore_range) {
        (Some(value), false) => value.parse().unwrap(),
        _ => 0,
    };
    if start >= body.len() && start > 0 {
        let _ = stream.write_all(
            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let status = if start > 0 {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let rest = &body[start..];
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        rest.len()
    );
    stream.write_all(header.as_bytes()).unwrap();
    let sent = cut.unwrap_or(rest.len()).min(rest.len());
    let _ = stream.write_all(&rest[..sent]);
    let _ = stream.flush();
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn fetch(server: &Server, sha: &str, dest: &Path) -> Result<Fetched, FetchError> {
    let mut last = None;
    let result = Fetcher::new().fetch(&server.url, sha, dest, &mut |p: Progress| last = Some(p));
    if let Ok(Fetched::Downloaded { .. }) = result {
        let last = last.expect("progress is reported");
        assert_eq!(Some(last.done), last.total);
    }
    result
}

#[test]
fn downloads_verifies_and_never_fetches_twice() {
    let data = body(300_000);
    let sha = sha256_hex(&data);
    let server = serve(
        data.clone(),
        Behaviour {
            cut_first_after: None,
            ignore_range: false,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a/b/blob.bin");
    assert_eq!(
        fetch(&server, &sha, &dest).unwrap(),
        Fetched::Downloaded {
            bytes: 300_000,
            resumed_from: 0
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!part_path(&dest).exists());
    assert_eq!(
        fetch(&server, &sha, &dest).unwrap(),
        Fetched::AlreadyVerified
    );
    assert_eq!(
        server.ranges.lock().unwrap().len(),
        1,
        "second call used the network"
    );
}

#[test]
fn interrupted_transfer_resumes_with_a_range_request() {
    let data = body(200_000);
    let sha = sha256_hex(&data);
    let server = serve(
        data.clone(),
        Behaviour {
            cut_first_after: Some(70_000),
            ignore_range: false,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob.bin");
    let err = fetch(&server, &sha, &dest).unwrap_err();
    assert!(matches!(err, FetchError::Transport { .. }), "{err}");
    assert!(
        !dest.exists(),
        "a partial file must not appear under the real name"
    );
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 70_000);

    assert_eq!(
        fetch(&server, &sha, &dest).unwrap(),
        Fetched::Downloaded {
            bytes: 200_000,
            resumed_from: 70_000
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let ranges = server.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![None, Some("70000".to_string())]);
}

#[test]
fn server_ignoring_ranges_restarts_cleanly() {
    let data = body(50_000);
    let sha = sha256_hex(&data);
    let server = serve(
        data.clone(),
        Behaviour {
            cut_first_after: Some(20_000),
            ignore_range: true,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob.bin");
    assert!(fetch(&server, &sha, &dest).is_err());
    assert_eq!(
        fetch(&server, &sha, &dest).unwrap(),
        Fetched::Downloaded {
            bytes: 50_000,
            resumed_from: 0
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn wrong_checksum_is_an_error_and_leaves_nothing() {
    let data = body(1000);
    let server = serve(
        data,
        Behaviour {
            cut_first_after: None,
            ignore_range: false,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob.bin");
    let wrong = sha256_hex(b"something else");
    let err = fetch(&server, &wrong, &dest).unwrap_err();
    match &err {
        FetchError::ChecksumMismatch { expected, .. } => assert_eq!(expected, &wrong),
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(err.to_string().contains("blob.bin"));
    assert!(!dest.exists());
    assert!(!part_path(&dest).exists());
}

#[test]
fn http_errors_name_the_url() {
    let server = serve(
        body(10),
        Behaviour {
            cut_first_after: None,
            ignore_range: false,
        },
    );
    let missing = server.url.replace("blob.bin", "missing.bin");
    let dir = tempfile::tempdir().unwrap();
    let err = Fetcher::new()
        .fetch(
            &missing,
            &sha256_hex(b""),
            &dir.path().join("x"),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, FetchError::Status { status: 404, .. }));
    assert!(err.to_string().contains("missing.bin"), "{err}");

    // Nothing listens on this port once the listener is dropped.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/x", listener.local_addr().unwrap())
    };
    let err = Fetcher::new()
        .fetch(
            &closed,
            &sha256_hex(b""),
            &dir.path().join("y"),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, FetchError::Transport { .. }), "{err}");
}

#[test]
fn invalid_checksum_is_rejected_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let err = Fetcher::new()
        .fetch(
            "http://127.0.0.1:9/never",
            "abc",
            &dir.path().join("z"),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, FetchError::InvalidChecksum(_)));
}
