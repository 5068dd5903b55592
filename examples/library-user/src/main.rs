//! `cargo run -p dlm-example-library`: trains the library example and prints what it reached.

fn main() -> dlm_core::Result<()> {
    let o = dlm_example_library::run(400, 60, 3)?;
    println!(
        "exact match on 500 test examples: {:.1}% before training, {:.1}% after",
        100.0 * o.before,
        100.0 * o.after
    );
    Ok(())
}
