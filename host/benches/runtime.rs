//! `cargo bench -p kmsflow`: prints the runtime's and the journal's cost figures (see
//! `kmsflow bench runtime` and `kmsflow bench journal`).

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
    match rt.block_on(kmsflow::bench::journal(1000, 20)) {
        Ok(figures) => print!("{figures}"),
        Err(e) => eprintln!("journal benchmark failed: {e}"),
    }
}
