//! The extraction child for tests and benchmarks: what `quire extract-child` does.

fn main() {
    std::process::exit(extract::child_main());
}
