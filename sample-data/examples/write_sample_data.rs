//! Writes the sample data of every city and lists the files.
//!
//! ```text
//! cargo run -p polder-sample-data --example write_sample_data -- [DIR]
//! ```
//!
//! `DIR` defaults to `target/sample-data`.

use std::path::PathBuf;

fn main() -> Result<(), polder_sample_data::Error> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/sample-data"), PathBuf::from);
    for (city, tables) in polder_sample_data::write_all(&dir)? {
        for table in tables {
            println!(
                "{city:<10} {:<15} {:<8} {}",
                table.name,
                table.format,
                table.path.display()
            );
        }
    }
    Ok(())
}
