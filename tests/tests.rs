//! grokit's one integration test binary: module declarations only.
mod util;
mod reference;
mod source;
mod cli;
mod architecture;
mod quant;
mod gguf;
mod safetensors_io;
mod tokenizer;
mod verify;
mod hostile;
mod quantize;
mod convert;
