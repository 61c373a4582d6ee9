//! Integration tests for `grokit::verify`: manifests (incl. byte-for-byte `sha256sum`
//! compatibility when it is installed) and torrents built here by a tiny bencode writer.
use crate::util::{copy_fixture, run, skip_part};
use grokit::verify::{
    self, bencode, CheckOptions, FileState, HashOptions, Manifest, Torrent, TorrentError,
};
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};

// ---- a tiny bencode writer (canonical: callers list dict keys sorted) ------------------------

enum B {
    I(i64),
    S(Vec<u8>),
    L(Vec<B>),
    D(Vec<(&'static str, B)>),
}

fn s(x: impl AsRef<[u8]>) -> B {
    B::S(x.as_ref().to_vec())
}

fn enc(b: &B, out: &mut Vec<u8>) {
    match b {
        B::I(i) => out.extend(format!("i{i}e").bytes()),
        B::S(v) => {
            out.extend(format!("{}:", v.len()).bytes());
            out.extend(v);
        }
        B::L(v) => {
            out.push(b'l');
            v.iter().for_each(|x| enc(x, out));
            out.push(b'e');
        }
        B::D(v) => {
            out.push(b'd');
            for (k, x) in v {
                enc(&s(k), out);
                enc(x, out);
            }
            out.push(b'e');
        }
    }
}

fn bytes(b: &B) -> Vec<u8> {
    let mut v = Vec::new();
    enc(b, &mut v);
    v
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// Piece hashes over the concatenation of `files`.
fn pieces(files: &[&[u8]], plen: usize) -> Vec<u8> {
    let all: Vec<u8> = files.concat();
    all.chunks(plen)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect()
}

/// A multi-file torrent over `files` (path components, data), returning (bytes, info bytes).
fn multi(name: &str, files: &[(Vec<&str>, &[u8])], plen: usize) -> (Vec<u8>, Vec<u8>) {
    let list = files
        .iter()
        .map(|(p, d)| {
            B::D(vec![
                ("length", B::I(d.len() as i64)),
                ("path", B::L(p.iter().map(s).collect())),
            ])
        })
        .collect();
    let datas: Vec<&[u8]> = files.iter().map(|(_, d)| *d).collect();
    let info = B::D(vec![
        ("files", B::L(list)),
        ("name", s(name)),
        ("piece length", B::I(plen as i64)),
        ("pieces", B::S(pieces(&datas, plen))),
    ]);
    let info_bytes = bytes(&info);
    let t = B::D(vec![
        ("announce", s("http://tracker.invalid/a")),
        ("comment", s("test")),
        ("info", info),
    ]);
    (bytes(&t), info_bytes)
}

fn write_tree(root: &Path, files: &[(Vec<&str>, &[u8])]) {
    for (p, d) in files {
        let path: PathBuf = p.iter().collect();
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, d).unwrap();
    }
}

fn small() -> HashOptions {
    HashOptions {
        threads: 2,
        block_size: 4096,
        buffers: 2,
    }
}

// ---- manifests ------------------------------------------------------------------------------

#[test]
fn manifest_round_trip_and_sha256sum_compat() {
    let d = tempfile::tempdir().unwrap();
    let names = ["a.bin", "sub/b c.bin", "back\\slash", "new\nline", "empty"];
    for (i, n) in names.iter().enumerate() {
        let p = d.path().join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            data(if *n == "empty" { 0 } else { 10_000 + i * 777 }, i as u8),
        )
        .unwrap();
    }
    let files: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
    let m = verify::write_manifest(d.path(), &files, &small(), &verify::no_progress).unwrap();
    let text = m.to_gnu_bytes();
    let back = Manifest::parse(&text, "mem").unwrap();
    assert_eq!(back.entries.len(), names.len());
    for (a, b) in m.entries.iter().zip(&back.entries) {
        assert_eq!((&a.path, a.sha256), (&b.path, b.sha256));
    }
    let r = verify::check_manifest(
        d.path(),
        &back,
        &CheckOptions::default(),
        &verify::no_progress,
    );
    assert!(r.is_clean(), "{r:?}");

    let have = std::process::Command::new("sha256sum")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        skip_part(
            "sha256sum byte-for-byte comparison",
            "sha256sum not on PATH",
        );
        return;
    }
    let out = std::process::Command::new("sha256sum")
        .current_dir(d.path())
        .args(names)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&text),
        String::from_utf8_lossy(&out.stdout),
        "plain format differs from sha256sum"
    );
    let out = std::process::Command::new("sha256sum")
        .current_dir(d.path())
        .arg("--tag")
        .args(names)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&m.to_tagged_bytes()),
        String::from_utf8_lossy(&out.stdout),
        "tagged format differs"
    );
    let mf = d.path().join("SHA256SUMS");
    m.write(&mf).unwrap();
    let chk = std::process::Command::new("sha256sum")
        .current_dir(d.path())
        .args(["-c", "--strict", "SHA256SUMS"])
        .output()
        .unwrap();
    assert!(
        chk.status.success(),
        "sha256sum -c rejected our manifest: {}",
        String::from_utf8_lossy(&chk.stdout)
    );
}

#[test]
fn manifest_reports_everything_together() {
    let d = tempfile::tempdir().unwrap();
    for (n, seed) in [("good", 1u8), ("bad", 2), ("extra1", 3)] {
        std::fs::write(d.path().join(n), data(5000, seed)).unwrap();
    }
    std::fs::create_dir(d.path().join("dir")).unwrap();
    std::fs::write(d.path().join("dir/extra2"), b"x").unwrap();
    std::fs::write(d.path().join("dir/SUMS"), b"ignored").unwrap();
    let good = verify::hash_file(&d.path().join("good"), &small(), &verify::no_progress).unwrap();
    let zero = [0u8; 32];
    let hx = grokit::base::hex::encode;
    let text = format!(
        "{}  good\n{}  bad\n{}  absent\n{}  ../outside\n{} *dir\n",
        hx(&good.sha256),
        hx(&zero),
        hx(&zero),
        hx(&zero),
        hx(&zero)
    );
    let m = Manifest::parse(text.as_bytes(), "SUMS").unwrap();
    let opts = CheckOptions {
        hash: small(),
        find_extra: true,
        ignore: vec![PathBuf::from("./dir/SUMS")],
    };
    let seen = std::sync::atomic::AtomicU64::new(0);
    let r = verify::check_manifest(d.path(), &m, &opts, &|n| {
        seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(r.ok, vec![(PathBuf::from("good"), 5000)]);
    assert_eq!(r.mismatched.len(), 1);
    assert_eq!(r.mismatched[0].path, Path::new("bad"));
    assert_eq!(r.mismatched[0].expected, zero);
    assert_eq!(r.missing, vec![PathBuf::from("absent")]);
    let unread: Vec<_> = r.unreadable.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        unread,
        vec![PathBuf::from("../outside"), PathBuf::from("dir")]
    );
    assert_eq!(
        r.extra,
        vec![PathBuf::from("dir/extra2"), PathBuf::from("extra1")]
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 10_000);
    assert!(!r.is_clean());
}

// ---- torrents -------------------------------------------------------------------------------

#[test]
fn single_file_torrent_and_infohash() {
    let d = tempfile::tempdir().unwrap();
    let body = data(100_000, 7);
    std::fs::write(d.path().join("model.bin"), &body).unwrap();
    let info = B::D(vec![
        ("length", B::I(body.len() as i64)),
        ("name", s("model.bin")),
        ("piece length", B::I(16384)),
        ("pieces", B::S(pieces(&[&body], 16384))),
    ]);
    let info_bytes = bytes(&info);
    let tb = bytes(&B::D(vec![("info", info)]));
    let t = Torrent::parse(&tb).unwrap();
    assert!(t.single_file);
    assert_eq!(t.pieces.len(), 7);
    assert_eq!(t.infohash.to_vec(), Sha1::digest(&info_bytes).to_vec());
    // root may be the directory holding `name`, or the file itself (renamed).
    let r = verify::check_torrent(d.path(), &t, &small(), &verify::no_progress);
    assert!(r.is_complete(), "{r:?}");
    std::fs::rename(d.path().join("model.bin"), d.path().join("renamed")).unwrap();
    let r = verify::check_torrent(
        &d.path().join("renamed"),
        &t,
        &small(),
        &verify::no_progress,
    );
    assert!(r.is_complete());
    assert_eq!(r.bytes_hashed, 100_000);
}

#[test]
fn multi_file_spanning_flip_truncate_missing() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("on-disk-name");
    let (a, b, c, e) = (data(10_000, 1), data(3_000, 2), data(25_001, 3), data(0, 4));
    let files: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["a.bin"], &a),
        (vec!["sub", "b.bin"], &b),
        (vec!["empty"], &e),
        (vec!["sub", "deeper", "c.bin"], &c),
    ];
    let plen = 4096;
    let (tb, info_bytes) = multi("grok-1", &files, plen);
    write_tree(&root, &files);
    let t = Torrent::parse(&tb).unwrap();
    assert_eq!(t.name, "grok-1");
    assert_eq!(t.total_length, 38_001);
    assert_eq!(t.pieces.len(), 10);
    assert_eq!(
        t.infohash_hex(),
        grokit::base::hex::encode(&Sha1::digest(&info_bytes))
    );
    assert_eq!(t.files_of_piece(2), vec![0, 1]); // 8192..12288 spans a.bin|b.bin
    assert_eq!(t.files_of_piece(3), vec![1, 3]); // 12288..16384 spans b.bin|(empty)|c.bin

    let r = verify::check_torrent(&root, &t, &small(), &verify::no_progress);
    assert!(r.is_complete(), "{r:?}");
    assert!(r.files.iter().all(|f| f.verified_fraction == 1.0));

    // Flip one byte in b.bin at stream offset 10_000 + 2_500 = 12_500: piece 3 only.
    let mut b2 = b.clone();
    b2[2_500] ^= 1;
    std::fs::write(root.join("sub/b.bin"), &b2).unwrap();
    let r = verify::check_torrent(&root, &t, &small(), &verify::no_progress);
    assert_eq!(r.bad_pieces.len(), 1);
    assert_eq!(r.bad_pieces[0].index, 3);
    assert_eq!(
        r.bad_pieces[0].files,
        vec![
            PathBuf::from("sub/b.bin"),
            PathBuf::from("sub/deeper/c.bin")
        ]
    );
    assert!(r.missing_pieces.is_empty());
    assert_eq!(r.good_pieces, 9);
    // b.bin: 10_000..13_000; good piece 2 covers 10_000..12_288 -> 2_288 bytes.
    assert_eq!(r.files[1].verified_bytes, 2_288);
    std::fs::write(root.join("sub/b.bin"), &b).unwrap();

    // Truncate c.bin to 20_000 bytes: its stream range is 13_000..38_001, the cut at 33_000
    // falls in piece 8 (32_768..36_864); pieces 8 and 9 are missing, not bad.
    std::fs::write(root.join("sub/deeper/c.bin"), &c[..20_000]).unwrap();
    let r = verify::check_torrent(&root, &t, &small(), &verify::no_progress);
    assert!(r.bad_pieces.is_empty(), "{r:?}");
    assert_eq!(r.missing_pieces, vec![8..10]);
    assert_eq!(r.files[3].state, FileState::Short(20_000));
    assert_eq!(r.files[3].verified_bytes, 32_768 - 13_000);

    // Remove a.bin: pieces 0..=2 missing (2 also holds b.bin bytes); b.bin partly verified.
    std::fs::write(root.join("sub/deeper/c.bin"), &c).unwrap();
    std::fs::remove_file(root.join("a.bin")).unwrap();
    let r = verify::check_torrent(&root, &t, &small(), &verify::no_progress);
    assert_eq!(r.missing_pieces, vec![0..3]);
    assert_eq!(r.files[0].state, FileState::Missing);
    assert_eq!(r.files[0].verified_fraction, 0.0);
    assert_eq!(r.files[1].verified_bytes, 13_000 - 12_288);
    assert_eq!(r.good_pieces, 7);
    assert!(r.bad_pieces.is_empty());
}

#[test]
fn padding_files_are_virtual_zeros() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (data(1000, 1), data(2000, 2));
    let zeros = vec![0u8; 24];
    let list = B::L(vec![
        B::D(vec![("length", B::I(1000)), ("path", B::L(vec![s("a")]))]),
        B::D(vec![
            ("attr", s("p")),
            ("length", B::I(24)),
            ("path", B::L(vec![s(".pad"), s("24")])),
        ]),
        B::D(vec![("length", B::I(2000)), ("path", B::L(vec![s("b")]))]),
    ]);
    let info = B::D(vec![
        ("files", list),
        ("name", s("x")),
        ("piece length", B::I(1024)),
        ("pieces", B::S(pieces(&[&a, &zeros, &b], 1024))),
    ]);
    let t = Torrent::parse(&bytes(&B::D(vec![("info", info)]))).unwrap();
    std::fs::write(d.path().join("a"), &a).unwrap();
    std::fs::write(d.path().join("b"), &b).unwrap();
    let r = verify::check_torrent(d.path(), &t, &small(), &verify::no_progress);
    assert!(r.is_complete(), "{r:?}");
    assert_eq!(r.files[1].state, FileState::Padding);
}

#[test]
fn parallel_many_pieces_match_serial() {
    // Many pieces per job and several jobs: parallel and serial results agree.
    let d = tempfile::tempdir().unwrap();
    let a = data(300_000, 9);
    let files: Vec<(Vec<&str>, &[u8])> = vec![(vec!["a"], &a), (vec!["b"], &a[..77_777])];
    let (tb, _) = multi("n", &files, 1 << 14);
    write_tree(d.path(), &files);
    let t = Torrent::parse(&tb).unwrap();
    let mut f = std::fs::read(d.path().join("a")).unwrap();
    f[200_000] ^= 0x80;
    std::fs::write(d.path().join("a"), f).unwrap();
    for threads in [1, 2, 4] {
        let r = verify::check_torrent(
            d.path(),
            &t,
            &HashOptions {
                threads,
                block_size: 5000,
                buffers: 3,
            },
            &verify::no_progress,
        );
        assert_eq!(
            r.bad_pieces.iter().map(|b| b.index).collect::<Vec<_>>(),
            vec![200_000 / 16384]
        );
        assert_eq!(r.good_pieces, r.pieces - 1);
    }
}

// ---- hostile input --------------------------------------------------------------------------

fn info_with(files: B) -> Vec<u8> {
    bytes(&B::D(vec![(
        "info",
        B::D(vec![
            ("files", files),
            ("name", s("n")),
            ("piece length", B::I(16)),
            ("pieces", B::S(vec![0; 20])),
        ]),
    )]))
}

#[test]
fn v2_and_hybrid_refused() {
    let v2 = bytes(&B::D(vec![(
        "info",
        B::D(vec![
            ("file tree", B::D(vec![])),
            ("meta version", B::I(2)),
            ("name", s("n")),
            ("piece length", B::I(16384)),
        ]),
    )]));
    let e = Torrent::parse(&v2).unwrap_err();
    assert!(matches!(e, TorrentError::V2 { .. }), "{e}");
    assert!(e.to_string().contains("v2"));
    let hybrid = bytes(&B::D(vec![(
        "info",
        B::D(vec![
            ("file tree", B::D(vec![])),
            ("length", B::I(16)),
            ("meta version", B::I(2)),
            ("name", s("n")),
            ("piece length", B::I(16)),
            ("pieces", B::S(vec![0; 20])),
        ]),
    )]));
    assert!(matches!(
        Torrent::parse(&hybrid),
        Err(TorrentError::V2 { .. })
    ));
}

#[test]
fn hostile_paths_refused() {
    for comps in [
        vec!["..", "etc", "passwd"],
        vec!["/etc"],
        vec!["a/b"],
        vec![""],
        vec!["."],
        vec!["a\0b"],
        vec!["a\\..\\b"],
    ] {
        let f = B::L(vec![B::D(vec![
            ("length", B::I(16)),
            ("path", B::L(comps.iter().map(s).collect())),
        ])]);
        let e = Torrent::parse(&info_with(f)).unwrap_err();
        assert!(
            matches!(e, TorrentError::UnsafePath { .. }),
            "{comps:?}: {e}"
        );
    }
    let f = B::L(vec![B::D(vec![
        ("length", B::I(16)),
        ("path", B::L(vec![])),
    ])]);
    assert!(Torrent::parse(&info_with(f)).is_err());
    // name is a path component too (it names the file of a single-file torrent).
    let t = bytes(&B::D(vec![(
        "info",
        B::D(vec![
            ("length", B::I(1)),
            ("name", s("..")),
            ("piece length", B::I(16)),
            ("pieces", B::S(vec![0; 20])),
        ]),
    )]));
    assert!(matches!(
        Torrent::parse(&t),
        Err(TorrentError::UnsafePath { .. })
    ));
}

#[test]
fn hostile_bencode_errors_not_panics() {
    let mut deep = vec![b'd'; 0];
    for _ in 0..10_000 {
        deep.extend(b"l");
    }
    assert!(bencode::parse(&deep).is_err());
    assert!(Torrent::parse(b"d4:info99999999999:xe").is_err());
    assert!(
        Torrent::parse(b"d4:infod6:lengthi-5e4:name1:x12:piece lengthi16e6:pieces0:ee").is_err()
    );
    assert!(Torrent::parse(b"d4:infod6:lengthi99999999999999999999e4:name1:xee").is_err());
    // wrong piece count, lengths overflowing u64 in sum
    let f = B::L(vec![
        B::D(vec![
            ("length", B::I(i64::MAX)),
            ("path", B::L(vec![s("a")])),
        ]),
        B::D(vec![
            ("length", B::I(i64::MAX)),
            ("path", B::L(vec![s("b")])),
        ]),
        B::D(vec![
            ("length", B::I(i64::MAX)),
            ("path", B::L(vec![s("c")])),
        ]),
    ]);
    assert!(Torrent::parse(&info_with(f)).is_err());
    // truncated at every byte
    let files: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["a"], b"hello world, this is data"),
        (vec!["d", "b"], b"more"),
    ];
    let (tb, _) = multi("x", &files, 16);
    assert!(Torrent::parse(&tb).is_ok());
    for n in 0..tb.len() {
        assert!(Torrent::parse(&tb[..n]).is_err(), "prefix {n} parsed");
    }
    // every single-byte corruption: never a panic (errors or a different torrent are both fine)
    for i in 0..tb.len() {
        for x in [0u8, b'e', b'9', b'-', 0xff] {
            let mut c = tb.clone();
            c[i] = x;
            let _ = Torrent::parse(&c);
        }
    }
    assert!(Torrent::parse(b"").is_err());
    assert!(Torrent::parse(b"le").is_err());
}

#[test]
fn unsorted_keys_tolerated_with_warning() {
    // "name" before "length": unsorted but unique; infohash still over the original bytes.
    let info = b"d4:name1:x6:lengthi3e12:piece lengthi16e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let mut tb = b"d4:info".to_vec();
    tb.extend(info);
    tb.push(b'e');
    let t = Torrent::parse(&tb).unwrap();
    assert_eq!(t.infohash.to_vec(), Sha1::digest(info).to_vec());
    assert_eq!(t.warnings.len(), 1);
}

#[test]
fn torrent_field_errors_and_unreadable_file() {
    let one = |len: i64, plen: i64, npieces: usize| {
        bytes(&B::D(vec![(
            "info",
            B::D(vec![
                ("length", B::I(len)),
                ("name", s("f")),
                ("piece length", B::I(plen)),
                ("pieces", B::S(vec![7; 20 * npieces])),
            ]),
        )]))
    };
    assert!(Torrent::parse(&one(32, 16, 2)).is_ok());
    assert!(
        Torrent::parse(&one(33, 16, 2)).is_err(),
        "piece count must match the length"
    );
    assert!(Torrent::parse(&one(32, 0, 2)).is_err(), "zero piece length");
    assert!(
        Torrent::parse(&one(0, 16, 0)).is_ok(),
        "empty payload, no pieces"
    );
    // a torrent file whose on-disk path is a directory: unreadable, its pieces missing
    let d = tempfile::tempdir().unwrap();
    let x = data(40, 5);
    let files: Vec<(Vec<&str>, &[u8])> = vec![(vec!["x"], &x), (vec!["y"], &x)];
    let (tb, _) = multi("n", &files, 16);
    std::fs::write(d.path().join("x"), &x).unwrap();
    std::fs::create_dir(d.path().join("y")).unwrap();
    let t = Torrent::parse(&tb).unwrap();
    let r = verify::check_torrent(d.path(), &t, &small(), &verify::no_progress);
    assert!(
        matches!(r.files[1].state, FileState::Unreadable(_)),
        "{:?}",
        r.files[1].state
    );
    assert_eq!(r.missing_pieces, vec![2..5]); // 40..80 starts inside piece 2 (32..48)
    assert_eq!(r.files[0].verified_bytes, 32);
}

#[test]
fn manifest_caps() {
    let long = format!("{}  {}\n", "0".repeat(64), "x".repeat(20_000));
    assert!(Manifest::parse(long.as_bytes(), "m").is_err());
    let bin = b"\xff\xfe garbage without structure\n";
    assert!(Manifest::parse(bin, "m").is_err());
}

// ---- the `grokit verify` command end to end -------------------------------------------------

#[test]
fn cli_manifest_and_torrent() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("grok-1");
    copy_fixture(&root);
    let r = root.to_str().unwrap();
    // Structure only.
    let (code, out, err) = run(&["verify", r, "-q"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no problems"));
    // Manifest round trip; sha256sum -c accepts it when installed.
    let m = d.path().join("m.sha256");
    let (code, _, err) = run(&["verify", r, "--write-manifest", m.to_str().unwrap(), "-q"]);
    assert_eq!(code, 0, "{err}");
    if std::process::Command::new("sha256sum")
        .arg("--version")
        .output()
        .is_ok()
    {
        let st = std::process::Command::new("sha256sum")
            .arg("-c")
            .arg("--quiet")
            .arg(&m)
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(st.success());
    } else {
        skip_part("sha256sum -c", "sha256sum not installed");
    }
    let (code, _, _) = run(&["verify", r, "--manifest", m.to_str().unwrap(), "-q"]);
    assert_eq!(code, 0);
    // A torrent over the same files, named differently from the directory on disk.
    let mut names: Vec<String> = std::fs::read_dir(root.join("ckpt-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let datas: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(root.join("ckpt-0").join(n)).unwrap())
        .collect();
    let files: Vec<(Vec<&str>, &[u8])> = names
        .iter()
        .zip(&datas)
        .map(|(n, dd)| (vec!["ckpt-0", n.as_str()], dd.as_slice()))
        .collect();
    let (tb, info) = multi("grok-1-release", &files, 16384);
    let tp = d.path().join("t.torrent");
    std::fs::write(&tp, &tb).unwrap();
    let want = grokit::base::hex::encode(&Sha1::digest(&info));
    let (code, out, err) = run(&[
        "verify",
        r,
        "--torrent",
        tp.to_str().unwrap(),
        "--torrent-root",
        r,
        "-q",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&want), "{out}");
    // Corrupt one byte and remove one file: everything is reported, exit 1.
    let f = root.join("ckpt-0/tensor00004_000");
    let mut b = std::fs::read(&f).unwrap();
    b[5000] ^= 1;
    std::fs::write(&f, &b).unwrap();
    std::fs::remove_file(root.join("ckpt-0/tensor00020_000")).unwrap();
    let (code, out, _) = run(&[
        "verify",
        r,
        "--manifest",
        m.to_str().unwrap(),
        "--torrent",
        tp.to_str().unwrap(),
        "--torrent-root",
        r,
        "-q",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing: tensor00020_000"), "{out}");
    assert!(out.contains("MISMATCH ckpt-0/tensor00004_000"), "{out}");
    assert!(out.contains("MISSING  ckpt-0/tensor00020_000"), "{out}");
    assert!(
        out.contains("BAD piece") && out.contains("tensor00004_000"),
        "{out}"
    );
    let (code, out, _) = run(&["verify", r, "--manifest", m.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["manifest"]["missing"][0], "ckpt-0/tensor00020_000");
    // Errors exit 2.
    let (code, _, err) = run(&["verify", r, "--manifest", "/nonexistent.sha256"]);
    assert_eq!(code, 2, "{err}");
}

// ---- where a torrent's files are (issue #18) ------------------------------------------------

/// The checkpoint's shard files, sorted, with their bytes.
fn shard_files(ckpt0: &Path) -> (Vec<String>, Vec<Vec<u8>>) {
    let mut names: Vec<String> = std::fs::read_dir(ckpt0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let datas = names
        .iter()
        .map(|n| std::fs::read(ckpt0.join(n)).unwrap())
        .collect();
    (names, datas)
}

/// A torrent made of the `ckpt-0` folder itself (top folder `ckpt-0`, files `tensor…`) is
/// found with `verify DIR` and `verify DIR/ckpt-0` without `--torrent-root`.
#[test]
fn torrent_of_the_checkpoint_folder_is_found() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("grok-1");
    copy_fixture(&root);
    let (names, datas) = shard_files(&root.join("ckpt-0"));
    let files: Vec<(Vec<&str>, &[u8])> = names
        .iter()
        .zip(&datas)
        .map(|(n, dd)| (vec![n.as_str()], dd.as_slice()))
        .collect();
    let (tb, _) = multi("ckpt-0", &files, 16384);
    let tp = d.path().join("ckpt-0.torrent");
    std::fs::write(&tp, &tb).unwrap();
    let ck0 = root.join("ckpt-0");
    for args in [
        vec!["verify", root.to_str().unwrap()],
        vec!["verify", ck0.to_str().unwrap()],
        vec![
            "verify",
            root.to_str().unwrap(),
            "--torrent-root",
            ck0.to_str().unwrap(),
        ],
    ] {
        let mut a = args.clone();
        a.extend(["--torrent", tp.to_str().unwrap(), "-q"]);
        let (code, out, err) = run(&a);
        assert_eq!(code, 0, "{a:?}: {out}{err}");
        assert!(out.contains("0 bad, 0 missing"), "{out}");
        let mut a = args;
        a.extend(["--torrent", tp.to_str().unwrap(), "--json"]);
        let (_, out, _) = run(&a);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["torrent"]["ok"], true, "{out}");
    }
    // The library says where it looked and what it chose.
    let t = Torrent::read(&tp).unwrap();
    let s = verify::find_root(&root, &t);
    assert_eq!(s.root, ck0);
    assert_eq!((s.found, s.wanted), (names.len(), names.len()));
    assert!(s.note(&t).unwrap().contains("found under"));
    let r = verify::check_torrent(&root, &t, &small(), &verify::no_progress);
    assert!(r.is_complete());
    assert_eq!(r.root, ck0);
    // Files elsewhere: nothing found anywhere, the note names every place looked at and what
    // --torrent-root must be; every piece missing, exit 1.
    let lost = d.path().join("lost");
    std::fs::create_dir(&lost).unwrap();
    let (code, out, _) = run(&[
        "verify",
        root.to_str().unwrap(),
        "--torrent-root",
        lost.to_str().unwrap(),
        "--torrent",
        tp.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let w = v["torrent"]["warnings"].to_string();
    assert!(
        w.contains("none of the torrent's 26 files were found")
            && w.contains(&lost.display().to_string())
            && w.contains(&lost.join("ckpt-0").display().to_string())
            && w.contains("--torrent-root DIR where DIR/tensor00000_000"),
        "{w}"
    );
}

/// The candidates: the directory given, `<given>/<name>`, `<given>/ckpt-0`, the parent and
/// `<parent>/<name>`; the one holding most files wins, the given one on a tie.
#[test]
fn torrent_root_candidates() {
    let d = tempfile::tempdir().unwrap();
    let a = data(3000, 1);
    let b = data(5000, 2);
    let files = [(vec!["x", "a.bin"], &a[..]), (vec!["b.bin"], &b[..])];
    let (tb, _) = multi("release", &files, 1024);
    let t = Torrent::parse(&tb).unwrap();
    // Top folder named after the torrent, below the directory given.
    write_tree(&d.path().join("dl/release"), &files);
    let s = verify::find_root(&d.path().join("dl"), &t);
    assert_eq!(s.root, d.path().join("dl/release"));
    assert_eq!(s.looked[0], (d.path().join("dl"), 0));
    // Given the top folder's child: the parent is found.
    let s = verify::find_root(&d.path().join("dl/release/x"), &t);
    assert_eq!(s.root, d.path().join("dl/release"));
    // A partial download beside a fuller copy: verified where the user said, with a note.
    std::fs::create_dir_all(d.path().join("dl/release2/x")).unwrap();
    std::fs::write(d.path().join("dl/release2/x/a.bin"), &a).unwrap();
    let s = verify::find_root(&d.path().join("dl/release2"), &t);
    assert_eq!((s.root.clone(), s.found), (d.path().join("dl/release2"), 1));
    let note = s.note(&t).unwrap();
    assert!(
        note.contains("2 of the torrent's 2 files are under")
            && note.contains(&d.path().join("dl/release").display().to_string()),
        "{note}"
    );
    // All files where the user said: no note.
    let s = verify::find_root(&d.path().join("dl/release"), &t);
    assert_eq!((s.found, s.looked.len()), (2, 1));
    assert_eq!(s.note(&t), None);
    let r = verify::check_torrent(
        &d.path().join("dl/release2"),
        &t,
        &small(),
        &verify::no_progress,
    );
    assert_eq!(r.files[0].verified_bytes, 2048); // the piece shared with b.bin is missing
    assert_eq!(r.files[1].state, FileState::Missing);
    // check_torrent_at does not look around.
    let r = verify::check_torrent_at(&d.path().join("dl"), &t, &small(), &verify::no_progress);
    assert_eq!(r.good_pieces, 0);
    assert!(r.search.is_none());
}
