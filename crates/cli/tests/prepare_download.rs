//! `rtb prepare` for a real-data preset against a local HTTP server on 127.0.0.1: the ADE20K
//! archive is downloaded with its checksum and unpacked beside itself, and a second run
//! neither downloads nor unpacks again.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A zip archive of stored entries (name, bytes), as Python's zipfile writes it.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for &(name, data) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u32;
        let header = |buf: &mut Vec<u8>, central: bool| {
            buf.extend_from_slice(
                &if central { 0x0201_4b50u32 } else { 0x0403_4b50 }.to_le_bytes(),
            );
            if central {
                buf.extend_from_slice(&20u16.to_le_bytes());
            }
            buf.extend_from_slice(&20u16.to_le_bytes());
            buf.extend_from_slice(&[0; 4]); // flags, method 0 (stored)
            buf.extend_from_slice(&[0; 4]); // time, date
            buf.extend_from_slice(&crc.sum().to_le_bytes());
            buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
            buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes());
            if central {
                buf.extend_from_slice(&[0; 10]); // comment, disk, attributes
                buf.extend_from_slice(&offset.to_le_bytes());
            }
            buf.extend_from_slice(name.as_bytes());
        };
        header(&mut out, false);
        out.extend_from_slice(data);
        header(&mut central, true);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Serves `body` at every path (no ranges); counts the requests.
fn serve(body: Vec<u8>) -> (u16, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            *seen.lock().unwrap() += 1;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (port, count)
}

#[test]
fn prepare_downloads_and_unpacks_the_ade20k_archive_once() {
    let dir = tempfile::tempdir().unwrap();
    let archive = zip(&[
        (
            "ADEChallengeData2016/images/validation/ADE_val_00000001.jpg",
            b"jpeg bytes",
        ),
        (
            "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png",
            b"png bytes",
        ),
    ]);
    let sha256 = rtb_fetch::sha256_hex(&archive);
    let (port, requests) = serve(archive);
    let manifest = dir.path().join("datasets.toml");
    std::fs::write(
        &manifest,
        format!(
            "[[dataset]]\nname = \"ade20k\"\nverified = true\ndescription = \"test\"\n\
             task = \"ade20k\"\nimages = {{ train = 1, test = 1 }}\n[[dataset.file]]\n\
             url = \"http://127.0.0.1:{port}/ADEChallengeData2016.zip\"\n\
             file = \"ADEChallengeData2016.zip\"\nsha256 = \"{sha256}\"\n"
        ),
    )
    .unwrap();
    let preset = dir.path().join("real.toml");
    std::fs::write(
        &preset,
        "name = \"real\"\ndescription = \"test\"\n[data]\nkind = \"download\"\n\
         datasets = [\"ade20k\"]\n[evaluation]\nseed = 0\n[[backbone]]\nname = \"r\"\n\
         arch = \"resnet_tiny\"\nweights = \"r\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let prepare = || {
        let out = Command::new(env!("CARGO_BIN_EXE_rtb"))
            .args(["prepare", "--preset"])
            .arg(&preset)
            .arg("--runs")
            .arg(dir.path().join("runs"))
            .arg("--data")
            .arg(&data)
            .arg("--datasets")
            .arg(&manifest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    prepare();
    let root = data.join("ade20k/ADEChallengeData2016/ADEChallengeData2016");
    assert_eq!(
        std::fs::read(root.join("images/validation/ADE_val_00000001.jpg")).unwrap(),
        b"jpeg bytes"
    );
    assert_eq!(
        std::fs::read(root.join("annotations/validation/ADE_val_00000001.png")).unwrap(),
        b"png bytes"
    );
    assert_eq!(*requests.lock().unwrap(), 1);
    prepare();
    assert_eq!(
        *requests.lock().unwrap(),
        1,
        "a finished download is not fetched again"
    );
}
