//! Extraction and chunking (see the crate docs once written).
