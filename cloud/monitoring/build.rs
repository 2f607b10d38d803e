//! The dashboard (dashboard/dist, built by scripts/build-dashboard.sh) is compiled into release
//! binaries. Its file names change with every build (content hashes), which the embedding macro
//! cannot notice by itself: rebuild this crate whenever that directory changes.

fn main() {
    println!("cargo:rerun-if-changed=../../dashboard/dist");
}
