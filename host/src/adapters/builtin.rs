//! The adapters compiled into the binary by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/builtin_adapters.rs"));
