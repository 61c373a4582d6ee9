//! Dump every tensor of a checkpoint as exact f32 (release orientation) into raw `.f32` files,
//! one per parameter (experts concatenated), for the numpy cross-check in
//! tests/interop/synth_pickle.py. Usage: dequant_dump CKPT OUTDIR
use grokit::source::grok::{Checkpoint, OpenOptions};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (ckpt, out) = (
        args.get(1).ok_or("usage: dequant_dump CKPT OUTDIR")?,
        args.get(2).ok_or("usage: dequant_dump CKPT OUTDIR")?,
    );
    let ck = Checkpoint::open(std::path::Path::new(ckpt), &OpenOptions::default())?;
    std::fs::create_dir_all(out)?;
    for t in &ck.tensors {
        let mut f = std::io::BufWriter::new(std::fs::File::create(
            std::path::Path::new(out).join(t.spec.file_name() + ".f32"),
        )?);
        let experts = if t.weight().shape.rank() == 3 {
            t.weight().shape.dims()[0] as usize
        } else {
            0
        };
        let parts: Vec<Option<usize>> = if experts > 0 {
            (0..experts).map(Some).collect()
        } else {
            vec![None]
        };
        for e in parts {
            let (_, v) = ck.read_f32(t, e)?;
            for x in v {
                f.write_all(&x.to_le_bytes())?;
            }
        }
    }
    Ok(())
}
