//! `rtb weights fetch` against a local HTTP server on 127.0.0.1 that answers like the
//! Hugging Face hub (resolve URLs with `etag`, `x-repo-commit` and `Content-Range` headers,
//! byte ranges) and like a plain file server: download into the standard cache (`HF_HOME`),
//! import, offline reuse, resume of a partial download, checksums and unverified entries.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rtb_models::ArchConfig;
use rtb_models::init::trainable_builder;

/// The requests a server saw: URL path and Range header.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serves `files` (URL path → bytes) with Range support and hub headers; records every
/// request's path and Range header.
struct Server {
    port: u16,
    requests: RequestLog,
}

fn respond(
    stream: &mut TcpStream,
    files: &HashMap<String, Vec<u8>>,
    log: &Mutex<Vec<(String, Option<String>)>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let Some(body) = files.get(&path) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let etag = rtb_fetch::sha256_hex(body);
    let size = body.len();
    let (status, start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap();
            let start: usize = a.parse().unwrap();
            let end = if b.is_empty() {
                size - 1
            } else {
                b.parse::<usize>().unwrap().min(size - 1)
            };
            ("206 Partial Content", start, end)
        }
        None => ("200 OK", 0, size - 1),
    };
    let chunk = &body[start..=end];
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\netag: \"{etag}\"\r\nx-repo-commit: {COMMIT}\r\nConnection: close\r\n",
        chunk.len()
    );
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{end}/{size}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(chunk);
}

impl Server {
    fn start(files: HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            // Bounded: a test makes a handful of requests.
            for stream in listener.incoming().take(64) {
                let Ok(mut stream) = stream else { break };
                respond(&mut stream, &files, &log);
                let _ = stream.flush();
                let mut rest = Vec::new();
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(10)));
                let _ = stream.read_to_end(&mut rest);
            }
        });
        Server { port, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn ranges_for(&self, suffix: &str) -> Vec<Option<String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// A resnet_tiny state dict as safetensors bytes.
fn tiny_weights(dir: &Path) -> Vec<u8> {
    let varmap = VarMap::new();
    let vb = trainable_builder(&varmap, Default::default(), 3, DType::F32, &Device::Cpu);
    let model = ArchConfig::from_name("resnet_tiny")
        .unwrap()
        .build(&vb)
        .unwrap();
    let tensors: HashMap<String, Tensor> = model
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.tensor))
        .collect();
    let path = dir.join("tiny.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    std::fs::read(&path).unwrap()
}

fn manifest(dir: &Path, sha256: &str, verified: bool, url: &str) -> PathBuf {
    let path = dir.join("backbones.toml");
    let pins = if verified {
        format!(", revision = \"{COMMIT}\", sha256 = \"{sha256}\"")
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            r#"
[[backbone]]
name = "tiny"
arch = "resnet_tiny"
verified = {verified}
hub = {{ repo = "rtb-test/tiny", file = "model.safetensors"{pins} }}
import = {{ layout = "torchvision_resnet" }}
published = {{ imagenet_top1 = 1.0, source = "test" }}

[[backbone]]
name = "released"
arch = "resnet_tiny"
verified = true
url = {{ url = "{url}", file = "released.safetensors", sha256 = "{sha256}" }}
import = {{ layout = "torchvision_resnet" }}
published = {{ imagenet_top1 = 1.0, source = "test" }}
"#
        ),
    )
    .unwrap();
    path
}

fn rtb(args: &[&str], hf_home: &Path, endpoint: &str, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", endpoint)
        .env("RTB_CACHE_DIR", cache)
        .env_remove("HF_TOKEN")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn hub_downloads_land_in_the_hf_cache_resume_and_work_offline() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_weights(dir.path());
    let sha = rtb_fetch::sha256_hex(&bytes);
    let resolve = format!("/rtb-test/tiny/resolve/{COMMIT}/model.safetensors");
    let server = Server::start(HashMap::from([(resolve.clone(), bytes.clone())]));
    let hf_home = dir.path().join("hf");
    let cache = dir.path().join("rtb-cache");
    let manifest = manifest(dir.path(), &sha, true, "http://127.0.0.1:9/none");

    // A partial download left by an interrupted run: hf-hub resumes it with a Range request.
    let blobs = hf_home.join("hub/models--rtb-test--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let half = bytes.len() / 2;
    std::fs::write(blobs.join(format!("{sha}.part")), &bytes[..half]).unwrap();

    let out_file = dir.path().join("out/tiny.safetensors");
    let out = rtb(
        &[
            "weights",
            "fetch",
            "tiny",
            "--manifest",
            manifest.to_str().unwrap(),
            "--to",
            out_file.to_str().unwrap(),
        ],
        &hf_home,
        &server.endpoint(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    let cached = hf_home.join(format!(
        "hub/models--rtb-test--tiny/snapshots/{COMMIT}/model.safetensors"
    ));
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);
    assert!(
        text(&out).contains(cached.to_str().unwrap()),
        "{}",
        text(&out)
    );
    let ranges = server.ranges_for("model.safetensors");
    assert_eq!(
        ranges.first().cloned().flatten().as_deref(),
        Some("bytes=0-0"),
        "{ranges:?}"
    );
    assert!(
        ranges
            .iter()
            .any(|r| r.as_deref() == Some(&format!("bytes={half}-"))),
        "no resumed range request: {ranges:?}"
    );
    // The import wrote canonical safetensors equal to the served tensors.
    let imported = candle_core::safetensors::load(&out_file, &Device::Cpu).unwrap();
    let served = candle_core::safetensors::load(&cached, &Device::Cpu).unwrap();
    assert_eq!(imported.len(), served.len());
    for (name, tensor) in &served {
        let a: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = imported[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }

    // Offline: the endpoint is gone, the cached file is used.
    let before = server.requests.lock().unwrap().len();
    let out = rtb(
        &[
            "weights",
            "fetch",
            "tiny",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        &hf_home,
        "http://127.0.0.1:9",
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.requests.lock().unwrap().len(), before);
}

#[test]
fn unverified_entries_and_wrong_checksums_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tiny_weights(dir.path());
    let sha = rtb_fetch::sha256_hex(&bytes);
    let server = Server::start(HashMap::from([
        (
            "/rtb-test/tiny/resolve/main/model.safetensors".to_string(),
            bytes.clone(),
        ),
        ("/files/released.safetensors".to_string(), bytes.clone()),
    ]));
    let hf_home = dir.path().join("hf");
    let cache = dir.path().join("rtb-cache");
    let url = format!("{}/files/released.safetensors", server.endpoint());
    let unverified = manifest(dir.path(), &sha, false, &url);

    let out = rtb(
        &[
            "weights",
            "fetch",
            "tiny",
            "--manifest",
            unverified.to_str().unwrap(),
        ],
        &hf_home,
        &server.endpoint(),
        &cache,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("--allow-unverified"), "{}", text(&out));
    assert!(
        server.requests.lock().unwrap().is_empty(),
        "nothing may be downloaded"
    );

    // Allowed: it follows `main` and prints the sha256 to pin.
    let out = rtb(
        &[
            "weights",
            "fetch",
            "tiny",
            "--manifest",
            unverified.to_str().unwrap(),
            "--allow-unverified",
        ],
        &hf_home,
        &server.endpoint(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&sha), "{}", text(&out));

    // A URL entry goes through rtb-fetch into <rtb cache>/weights/.
    let out = rtb(
        &[
            "weights",
            "fetch",
            "released",
            "--manifest",
            unverified.to_str().unwrap(),
        ],
        &hf_home,
        &server.endpoint(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(cache.join("weights/released.safetensors")).unwrap(),
        bytes
    );

    // A hand-downloaded file of an unpinned entry is accepted with the flag; a pinned sha256
    // that the file does not have is an error naming both digests.
    let wrong = "0".repeat(64);
    let bad_dir = dir.path().join("unpinned");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = manifest(&bad_dir, &wrong, false, &url);
    let from = dir.path().join("tiny.safetensors");
    let out = rtb(
        &[
            "weights",
            "fetch",
            "tiny",
            "--manifest",
            bad.to_str().unwrap(),
            "--allow-unverified",
            "--from",
            from.to_str().unwrap(),
        ],
        &hf_home,
        &server.endpoint(),
        &cache,
    );
    assert!(
        out.status.success(),
        "no pin: accepted with the flag: {}",
        text(&out)
    );
    let pinned_dir = dir.path().join("pinned");
    std::fs::create_dir_all(&pinned_dir).unwrap();
    let pinned = manifest(&pinned_dir, &wrong, true, &url);
    let out = rtb(
        &[
            "weights",
            "fetch",
            "tiny",
            "--manifest",
            pinned.to_str().unwrap(),
            "--from",
            from.to_str().unwrap(),
        ],
        &hf_home,
        &server.endpoint(),
        &cache,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&wrong) && text(&out).contains(&sha),
        "{}",
        text(&out)
    );
}
