//! Batch parsing on arbitrary bytes: never panics, and whatever it accepts re-encodes to JSON
//! that parses back to the same batch.
#![no_main]

use edgewatch_protocol::{Batch, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = Batch::from_json(data) {
        let json = serde_json::to_vec(&batch).expect("a valid batch serializes");
        // Re-encoding can grow a batch (`1e2` becomes `100.0`); only in-limit ones must re-parse.
        if json.len() <= limits::MAX_BATCH_BYTES {
            assert_eq!(Batch::from_json(&json).expect("re-encoded batch parses"), batch);
        }
    }
});
