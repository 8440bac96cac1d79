//! `ferrokv-sandbox`: start, stop and describe the local Kubernetes sandbox.

fn main() -> anyhow::Result<()> {
    Ok(())
}
