//! `cargo bench -p kmsflow`: prints the runtime's cost figures (see `kmsflow bench runtime`).

fn main() {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return;
        }
    };
    match rt.block_on(kmsflow::bench::runtime(500)) {
        Ok(figures) => print!("{figures}"),
        Err(e) => eprintln!("benchmark failed: {e}"),
    }
}
