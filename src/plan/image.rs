//! The name an exported image of a plan goes by, shared by `container export` (the
//! OCI archive's reference) and `container kube` (the manifests' `image:`).
//!
//! Invariant: pure. The digest is the sha256 of the plan's JSON (every map in a plan
//! is ordered, so the same plan always gives the same digest), and the reference
//! is `localhost/container-<name>:<first 12 hex digits>`: a changed plan names a new
//! image, an unchanged one the image already loaded.

use super::types::Plan;
use sha2::{Digest, Sha256};

/// The sha256 of the plan's JSON, in hex.
pub fn plan_digest(plan: &Plan) -> String {
    let json = serde_json::to_vec(plan).expect("a plan serializes");
    Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
}

/// The image repository of a container: `localhost/container-<name>`.
pub fn repository(plan: &Plan) -> String {
    format!("localhost/container-{}", plan.name)
}

/// The image reference of a plan: `localhost/container-<name>:<12 hex digits>`.
pub fn reference(plan: &Plan) -> String {
    format!("{}:{}", repository(plan), &plan_digest(plan)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::test_plan;

    #[test]
    fn the_reference_follows_the_plan() {
        let a = test_plan("name = \"web\"\nbase = \"debian:trixie\"\n");
        let same = test_plan("name = \"web\"\nbase = \"debian:trixie\"\n");
        let other = test_plan("name = \"web\"\nbase = \"debian:bookworm\"\n");
        assert_eq!(plan_digest(&a), plan_digest(&same));
        assert_eq!(plan_digest(&a).len(), 64);
        assert_ne!(reference(&a), reference(&other));
        let r = reference(&a);
        assert!(r.starts_with("localhost/container-web:") && r.len() == "localhost/container-web:".len() + 12, "{r}");
    }
}
