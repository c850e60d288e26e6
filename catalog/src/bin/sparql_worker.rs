//! One SPARQL query in a process of its own; see `polder_catalog::worker`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    polder_catalog::worker::run(&args)
}
