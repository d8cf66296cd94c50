//! Zip extraction on archives written here (stored and deflated entries, a folder entry):
//! the files come out byte for byte, a finished extraction is not redone, and a corrupt entry
//! or a name that leaves the destination is an error naming the entry, with no `dest` left.

use std::io::Write;
use std::path::Path;

use rtb_fetch::extract_zip;

/// (name, bytes, deflate?) → a zip archive as Python's zipfile writes it (no data
/// descriptors).
fn zip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for &(name, data, deflate) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let body = if deflate {
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        } else {
            data.to_vec()
        };
        let method: u16 = if deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&body);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&crc.sum().to_le_bytes());
        central.extend_from_slice(&(body.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
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

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn stored_and_deflated_entries_come_out_byte_for_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<u8> = (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    let archive = dir.path().join("data.zip");
    write(
        &archive,
        &zip(&[
            ("ADEChallengeData2016/", b"", false),
            ("ADEChallengeData2016/images/a.jpg", b"\xFF\xD8 raw", false),
            ("ADEChallengeData2016/annotations/a.png", &text, true),
        ]),
    );
    let dest = dir.path().join("ade20k");
    let mut seen = Vec::new();
    let files = extract_zip(&archive, &dest, &mut |done, total| seen.push((done, total))).unwrap();
    assert_eq!(files, 2);
    assert_eq!(seen.last(), Some(&(3, 3)));
    let root = dest.join("ADEChallengeData2016");
    assert_eq!(
        std::fs::read(root.join("images/a.jpg")).unwrap(),
        b"\xFF\xD8 raw"
    );
    assert_eq!(std::fs::read(root.join("annotations/a.png")).unwrap(), text);
    // Finished: not redone.
    assert_eq!(extract_zip(&archive, &dest, &mut |_, _| {}).unwrap(), 0);
}

#[test]
fn corrupt_entries_and_escaping_names_are_errors_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = zip(&[("a/b.txt", b"hello world", false)]);
    // Flip a byte of the stored data: its CRC no longer matches.
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    let archive = dir.path().join("bad.zip");
    write(&archive, &bytes);
    let dest = dir.path().join("out");
    let err = extract_zip(&archive, &dest, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.zip") && err.contains("a/b.txt") && err.contains("CRC-32"),
        "{err}"
    );
    assert!(!dest.exists());

    let archive = dir.path().join("escape.zip");
    write(&archive, &zip(&[("../evil.txt", b"x", false)]));
    let err = extract_zip(&archive, &dest, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("../evil.txt") && err.contains("outside"),
        "{err}"
    );
    assert!(!dest.exists() && !dir.path().join("evil.txt").exists());

    let archive = dir.path().join("short.zip");
    write(&archive, b"PK not really");
    let err = extract_zip(&archive, &dest, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("short.zip") && err.contains("not a zip"),
        "{err}"
    );
}
