//! Writes the example models' weights deterministically, and rewrites each
//! `.kir` in canonical form (so `kiln print` reproduces it byte for byte).
//!
//!     cargo run --example gen_weights [-- DIR]
//!
//! The weights depend only on each param's name, type and `WEIGHT_SEED`, so
//! running this again reproduces the committed files exactly.

use std::path::PathBuf;

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("examples/models"), PathBuf::from);
    for (name, _) in kiln::examples::MODELS {
        let kir = dir.join(format!("{name}.kir"));
        let src = std::fs::read_to_string(&kir).map_err(|e| format!("{}: {e}", kir.display()))?;
        let g = kiln::ir::parse(&src).map_err(|e| format!("{}:{e}", kir.display()))?;
        let w = kiln::init::init_weights(&g, kiln::examples::WEIGHT_SEED)?;
        let st = kiln::ir::model::weights_path(&kir);
        w.save(&st).map_err(|e| e.to_string())?;
        std::fs::write(&kir, kiln::ir::print(&g)).map_err(|e| format!("{}: {e}", kir.display()))?;
        let n: usize = w.0.values().map(|t| t.len()).sum();
        println!("{}: {} params -> {}", kir.display(), n, st.display());
    }
    Ok(())
}
