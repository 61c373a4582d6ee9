//! The saved state of a layer-major run, so a killed run continues from its last completed
//! layer and gives the same bytes as an uninterrupted one.
//!
//! A state directory holds `run.json` (the run's [`Identity`] and the grouping of its chunks)
//! and one file per group of chunks, `hidden-NNNNN.bin`: that group's hidden states after the
//! layers it has completed. Each group file is replaced atomically (temporary, fsync, rename)
//! after every layer, so at any moment every group is at a completed layer; a resumed run
//! continues each group from there. Layout (little-endian):
//!
//! ```text
//! 0   8   "GKHIDDEN"
//! 8   4   format version (1)
//! 12  4   group index
//! 16  4   layers completed
//! 20  4   0
//! 24  8   f32 values that follow (tokens of the group × d_model)
//! 32  32  SHA-256 of run.json's identity (which run this belongs to)
//! 64  4·n values
//! …   32  SHA-256 of every byte before it
//! ```
//!
//! Nothing is reused silently: a state whose identity differs (other model, tokens, context,
//! chunks, BOS, precision, grokit version), a group file from another run or group, a wrong
//! size, or a checksum that does not match is refused with the file and the byte offset.

use super::EvalError;
use crate::io::atomic::{temp_path_for, AtomicFile};
use crate::io::IoError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What makes two runs' hidden states interchangeable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// grokit's version (numerics may change between versions).
    pub grokit: String,
    /// [`super::footprint::Footprint::fingerprint`] of the model.
    pub model: String,
    /// Decoder layers.
    pub n_layers: usize,
    /// Residual width.
    pub d_model: usize,
    /// SHA-256 of all chunks' tokens (u32 little-endian, unreplaced).
    pub tokens: String,
    /// Tokens per chunk.
    pub ctx: usize,
    /// Chunks in the whole run (all shards).
    pub n_chunks: usize,
    /// The chunks this process evaluates (a shard's block, or all).
    pub chunks: Range<usize>,
    /// BOS replacing each chunk's first token.
    pub bos: Option<u32>,
    /// Numerics (`f32` or `bf16`).
    pub precision: String,
}

impl Identity {
    /// SHA-256 of the identity's JSON.
    pub fn hash(&self) -> [u8; 32] {
        let j = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&j).into()
    }
}

/// SHA-256 of tokens as u32 little-endian, hex.
pub fn tokens_hash(tokens: &[u32]) -> String {
    let mut h = Sha256::new();
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    crate::base::hex::encode(&h.finalize())
}

#[derive(Serialize, Deserialize)]
struct RunFile {
    format: String,
    version: u32,
    identity: Identity,
    groups: Vec<Range<usize>>,
    /// The run created the directory (so removing the state removes it).
    created: bool,
}

const RUN: &str = "run.json";
/// Largest `run.json` read (its identity and grouping take a few kB).
const RUN_MAX_BYTES: u64 = 16 << 20;
const FORMAT: &str = "grokit-perplexity-state";
const MAGIC: &[u8; 8] = b"GKHIDDEN";
const VERSION: u32 = 1;
const HEADER: u64 = 64;
/// Bytes per read or write of a group file.
const IO_BLOCK: usize = 8 << 20;

/// An open state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    id: [u8; 32],
    groups: Vec<Range<usize>>,
    /// Layers completed per group when the directory was opened.
    pub done: Vec<usize>,
    created: bool,
}

fn io(op: &'static str, p: &Path, e: std::io::Error) -> EvalError {
    EvalError::Io(IoError::new(op, p, e))
}

/// What `open` found.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// No earlier state: a fresh run.
    Fresh,
    /// The state of an identical run, continued (lowest completed layer over the groups).
    Resumed(usize),
}

impl StateDir {
    /// The file of group `g`.
    pub fn group_path(&self, g: usize) -> PathBuf {
        self.dir.join(format!("hidden-{g:05}.bin"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The grouping in effect (the saved one when resumed).
    pub fn groups(&self) -> &[Range<usize>] {
        &self.groups
    }

    /// Open `dir` for a run with `identity`, proposing `groups` (ranges of the run's chunks,
    /// in order). Without `resume`, a directory holding an earlier run's state is refused (it
    /// may be hours of work); with it, a state of another run is refused, a state of this run
    /// is checked completely (every group file's size, identity and checksum) and continued,
    /// keeping its grouping, and no state at all starts fresh.
    pub fn open(
        dir: &Path,
        identity: &Identity,
        groups: Vec<Range<usize>>,
        n_values: impl Fn(&Range<usize>) -> u64,
        resume: bool,
    ) -> Result<(StateDir, Found), EvalError> {
        let created = !dir.exists();
        if !created && !dir.is_dir() {
            return Err(EvalError::Input(format!(
                "scratch {}: not a directory",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let run = dir.join(RUN);
        let mut s = StateDir {
            dir: dir.to_path_buf(),
            id: identity.hash(),
            done: vec![0; groups.len()],
            groups,
            created,
        };
        if !run.exists() {
            s.write_run(identity)?;
            return Ok((s, Found::Fresh));
        }
        let text = crate::io::read_capped(&run, RUN_MAX_BYTES)?.ok_or_else(|| {
            EvalError::file(&run, None, format!("larger than {RUN_MAX_BYTES} bytes"))
        })?;
        let saved: RunFile = serde_json::from_slice(&text).map_err(|e| {
            EvalError::file(
                &run,
                Some(e.column() as u64),
                format!("not a state file: {e}"),
            )
        })?;
        if saved.format != FORMAT || saved.version != VERSION {
            return Err(EvalError::file(
                &run,
                None,
                format!("format {:?} version {}", saved.format, saved.version),
            ));
        }
        if !resume {
            return Err(EvalError::Mismatch {
                path: dir.to_path_buf(),
                reason: "holds the saved state of an earlier run: continue it with --resume, or \
                         delete the directory (or pick another --scratch) to start over"
                    .into(),
            });
        }
        if saved.identity != identity.clone() {
            return Err(EvalError::Mismatch {
                path: dir.to_path_buf(),
                reason: format!(
                    "the saved state belongs to another run ({}); refusing to reuse it",
                    differences(&saved.identity, identity)
                ),
            });
        }
        let n = saved.groups.iter().map(|r| r.len()).sum::<usize>();
        if n != identity.chunks.len()
            || saved.groups.windows(2).any(|w| w[0].end != w[1].start)
            || saved.groups.first().map(|g| g.start) != Some(0)
        {
            return Err(EvalError::file(&run, None, "groups do not tile the chunks"));
        }
        s.groups = saved.groups;
        s.created = saved.created;
        s.done = vec![0; s.groups.len()];
        for g in 0..s.groups.len() {
            let p = s.group_path(g);
            if p.exists() {
                s.done[g] = s.check(g, n_values(&s.groups[g]))?;
            }
        }
        let min = s.done.iter().copied().min().unwrap_or(0);
        Ok((s, Found::Resumed(min)))
    }

    fn write_run(&self, identity: &Identity) -> Result<(), EvalError> {
        let rf = RunFile {
            format: FORMAT.into(),
            version: VERSION,
            identity: identity.clone(),
            groups: self.groups.clone(),
            created: self.created,
        };
        let j = serde_json::to_vec_pretty(&rf).unwrap_or_default();
        crate::io::atomic::write_file(&self.dir.join(RUN), &j)?;
        Ok(())
    }

    /// Save group `g`'s hidden states after `layers` completed layers (atomically).
    pub fn save(&self, g: usize, layers: usize, h: &[f32]) -> Result<(), EvalError> {
        let p = self.group_path(g);
        let mut f = AtomicFile::create(&p)?;
        let mut sha = Sha256::new();
        let mut put = |f: &mut AtomicFile, b: &[u8]| -> Result<(), EvalError> {
            sha.update(b);
            f.write_all(b)?;
            Ok(())
        };
        let mut head = Vec::with_capacity(HEADER as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(g as u32).to_le_bytes());
        head.extend_from_slice(&(layers as u32).to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(&(h.len() as u64).to_le_bytes());
        head.extend_from_slice(&self.id);
        put(&mut f, &head)?;
        let mut buf = Vec::with_capacity(IO_BLOCK);
        for c in h.chunks(IO_BLOCK / 4) {
            buf.clear();
            c.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            put(&mut f, &buf)?;
        }
        let digest = sha.finalize();
        f.write_all(&digest)?;
        f.commit()?;
        Ok(())
    }

    /// Read group `g`'s file, checking it completely; returns (layers completed, values).
    fn read(&self, g: usize, n: u64, keep: bool) -> Result<(usize, Vec<f32>), EvalError> {
        let p = self.group_path(g);
        let bad = |off: u64, r: String| EvalError::file(&p, Some(off), r);
        let mut f = std::fs::File::open(&p).map_err(|e| io("open", &p, e))?;
        let size = f.metadata().map_err(|e| io("stat", &p, e))?.len();
        let want = n
            .checked_mul(4)
            .and_then(|b| b.checked_add(HEADER + 32))
            .ok_or_else(|| bad(24, "size overflows".into()))?;
        if size != want {
            return Err(bad(
                size.min(want),
                format!(
                    "{size} bytes, expected {want} for {n} values (truncated or not this run's)"
                ),
            ));
        }
        let mut head = [0u8; HEADER as usize];
        f.read_exact(&mut head).map_err(|e| io("read", &p, e))?;
        let u32at = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        if &head[..8] != MAGIC || u32at(8) != VERSION {
            return Err(bad(
                0,
                "not a grokit hidden-state file (magic/version)".into(),
            ));
        }
        if u32at(12) as usize != g {
            return Err(bad(12, format!("holds group {}, expected {g}", u32at(12))));
        }
        if head[32..64] != self.id {
            return Err(bad(
                32,
                "belongs to another run (identity hash differs)".into(),
            ));
        }
        let declared = u64::from_le_bytes([
            head[24], head[25], head[26], head[27], head[28], head[29], head[30], head[31],
        ]);
        if declared != n {
            return Err(bad(24, format!("declares {declared} values, expected {n}")));
        }
        let layers = u32at(16) as usize;
        let mut sha = Sha256::new();
        sha.update(head);
        let mut out = Vec::with_capacity(if keep { n as usize } else { 0 });
        let mut left = (n * 4) as usize;
        let mut buf = vec![0u8; IO_BLOCK.min(left.max(1))];
        while left > 0 {
            let k = left.min(buf.len());
            f.read_exact(&mut buf[..k]).map_err(|e| io("read", &p, e))?;
            sha.update(&buf[..k]);
            if keep {
                out.extend(
                    buf[..k]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            left -= k;
        }
        let mut tail = [0u8; 32];
        f.read_exact(&mut tail).map_err(|e| io("read", &p, e))?;
        if sha.finalize()[..] != tail {
            return Err(bad(
                want - 32,
                "checksum mismatch: the file was modified or damaged".into(),
            ));
        }
        Ok((layers, out))
    }

    /// Check group `g`'s file completely; returns its completed layers.
    fn check(&self, g: usize, n: u64) -> Result<usize, EvalError> {
        self.read(g, n, false).map(|r| r.0)
    }

    /// Load group `g` (`n` values), which must have completed exactly `layers` layers.
    pub fn load(&self, g: usize, n: u64, layers: usize) -> Result<Vec<f32>, EvalError> {
        let (got, h) = self.read(g, n, true)?;
        if got != layers {
            return Err(EvalError::file(
                self.group_path(g),
                Some(16),
                format!("at layer {got}, expected {layers} (changed during the run?)"),
            ));
        }
        Ok(h)
    }

    /// Remove the state (after a successful run): the group files, `run.json`, stale
    /// temporaries, and the directory when this run created it.
    pub fn remove(self) -> Result<(), EvalError> {
        for g in 0..self.groups.len() {
            let p = self.group_path(g);
            for q in [temp_path_for(&p), p] {
                if q.exists() {
                    std::fs::remove_file(&q).map_err(|e| io("remove", &q, e))?;
                }
            }
        }
        let run = self.dir.join(RUN);
        std::fs::remove_file(&run).map_err(|e| io("remove", &run, e))?;
        if self.created {
            let _ = std::fs::remove_dir(&self.dir);
        }
        Ok(())
    }
}

/// The fields in which two identities differ, for the refusal message.
fn differences(saved: &Identity, now: &Identity) -> String {
    let short = |h: &str| h.chars().take(12).collect::<String>();
    let fields = |i: &Identity| {
        [
            ("grokit", i.grokit.clone()),
            ("model", short(&i.model)),
            ("layers", i.n_layers.to_string()),
            ("width", i.d_model.to_string()),
            ("tokens", short(&i.tokens)),
            ("ctx", i.ctx.to_string()),
            ("chunks", i.n_chunks.to_string()),
            ("shard", format!("{:?}", i.chunks)),
            ("BOS", format!("{:?}", i.bos)),
            ("precision", i.precision.clone()),
        ]
    };
    let d: Vec<String> = fields(saved)
        .into_iter()
        .zip(fields(now))
        .filter(|(a, b)| a.1 != b.1)
        .map(|((what, a), (_, b))| format!("{what}: saved {a}, now {b}"))
        .collect();
    d.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity {
            grokit: "0".into(),
            model: "m".repeat(64),
            n_layers: 2,
            d_model: 4,
            tokens: "t".repeat(64),
            ctx: 8,
            n_chunks: 3,
            chunks: 0..3,
            bos: None,
            precision: "f32".into(),
        }
    }

    #[test]
    fn save_load_resume_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("s");
        let nv = |r: &Range<usize>| (r.len() * 8 * 4) as u64;
        let groups = vec![0..2, 2..3];
        let one: Vec<Range<usize>> = std::iter::once(0..3).collect();
        let (s, f) = StateDir::open(&dir, &ident(), groups.clone(), nv, false).unwrap();
        assert_eq!(f, Found::Fresh);
        let h0: Vec<f32> = (0..64).map(|i| i as f32 * 0.5).collect();
        s.save(0, 1, &h0).unwrap();
        assert_eq!(s.load(0, 64, 1).unwrap(), h0);
        assert!(s.load(0, 64, 2).is_err());
        // without --resume the state is protected
        let e = StateDir::open(&dir, &ident(), groups.clone(), nv, false).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        // another run is refused, naming what differs
        let mut other = ident();
        other.ctx = 16;
        let e = StateDir::open(&dir, &other, groups.clone(), nv, true).unwrap_err();
        assert!(e.to_string().contains("ctx: saved 8, now 16"), "{e}");
        // resumed: the saved grouping wins, group 0 at layer 1, group 1 fresh
        let (s, f) = StateDir::open(&dir, &ident(), one.clone(), nv, true).unwrap();
        assert_eq!(f, Found::Resumed(0));
        assert_eq!(s.groups(), &groups[..]);
        assert_eq!(s.done, vec![1, 0]);
        // tampering: one flipped payload byte is found at open
        let p = s.group_path(0);
        let mut b = std::fs::read(&p).unwrap();
        b[100] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let e = StateDir::open(&dir, &ident(), one.clone(), nv, true).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        // truncation
        std::fs::write(&p, &b[..b.len() - 1]).unwrap();
        let e = StateDir::open(&dir, &ident(), one.clone(), nv, true).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // a group file of another group
        let (s, _) = {
            std::fs::remove_file(&p).unwrap();
            StateDir::open(&dir, &ident(), one.clone(), nv, true).unwrap()
        };
        s.save(1, 1, &(0..32).map(|i| i as f32).collect::<Vec<_>>())
            .unwrap();
        std::fs::rename(s.group_path(1), s.group_path(0)).unwrap();
        let e = StateDir::open(&dir, &ident(), one.clone(), nv, true).unwrap_err();
        assert!(e.to_string().contains("expected 352"), "{e}");
        let (s, _) = {
            std::fs::remove_file(s.group_path(0)).unwrap();
            StateDir::open(&dir, &ident(), one.clone(), nv, true).unwrap()
        };
        s.remove().unwrap();
        assert!(!dir.exists());
    }
}
