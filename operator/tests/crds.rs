//! The committed CRD YAML (`crds/`, and the chart's `crds/`) must be exactly what the Rust types
//! generate: a field added to the types but not to the YAML would be pruned by the apiserver
//! and silently ignored. `FERROKV_UPDATE_CRDS=1 cargo test -p ferrokv-operator --test crds`
//! rewrites the files.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_types() {
    let docs = ferrokv_operator::crd_documents().expect("render CRDs");
    let dirs = [repo().join("crds"), repo().join("charts/ferrokv-operator/crds")];
    let update = std::env::var_os("FERROKV_UPDATE_CRDS").is_some();
    let mut drift = Vec::new();
    for dir in &dirs {
        for (file, yaml) in &docs {
            let path = dir.join(file);
            if update {
                std::fs::create_dir_all(dir).expect("create crds dir");
                std::fs::write(&path, yaml).expect("write CRD");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(committed) if committed == *yaml => {}
                Ok(_) => drift.push(format!("{} differs from the types", path.display())),
                Err(e) => drift.push(format!("{}: {e}", path.display())),
            }
        }
    }
    assert!(
        drift.is_empty(),
        "CRDs drifted from operator/src/crd.rs:\n  {}\nregenerate with: FERROKV_UPDATE_CRDS=1 cargo test -p ferrokv-operator --test crds",
        drift.join("\n  ")
    );
}
