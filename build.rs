// `sqlx::migrate!` embeds the files of `migrations/` at compile time, but a stable compiler
// cannot tell cargo about them: without this, adding a migration leaves a stale binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
