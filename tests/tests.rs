//! grokit's one integration test binary: module declarations only.
mod architecture;
mod cli;
mod convert;
mod faults;
mod gguf;
mod hostile;
mod perplexity;
mod quant;
mod quantize;
mod reference;
mod safetensors_io;
mod source;
mod tokenizer;
mod util;
mod verify;
