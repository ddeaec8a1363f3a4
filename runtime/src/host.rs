//! The host machine as the JIT sees it.

use cranelift_codegen::settings::{self, Configurable};

/// The target Cranelift builds for on this machine, and the CPU features the
/// kernels can rely on. This becomes the artifact's target signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTarget {
    /// The target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub triple: String,
    /// Enabled ISA flags that matter for kernels (e.g. `has_avx2`, `has_avx512f`).
    pub features: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot target this host with Cranelift: {0}")]
pub struct HostError(String);

/// Detect the host ISA through `cranelift-native`, optimising for speed.
pub fn host_target() -> Result<HostTarget, HostError> {
    let mut flags = settings::builder();
    flags
        .set("opt_level", "speed")
        .map_err(|e| HostError(e.to_string()))?;
    let isa = cranelift_native::builder()
        .map_err(|e| HostError(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| HostError(e.to_string()))?;
    let features = isa
        .isa_flags()
        .iter()
        .filter(|v| v.as_bool() == Some(true))
        .map(|v| v.name.to_string())
        .collect();
    Ok(HostTarget {
        triple: isa.triple().to_string(),
        features,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects_the_host() {
        let t = super::host_target().expect("cranelift supports the CI host");
        assert!(!t.triple.is_empty());
        #[cfg(target_arch = "x86_64")]
        {
            assert!(t.triple.starts_with("x86_64"), "{}", t.triple);
            // Every x86-64 host Cranelift accepts has SSE2; SSE4.2 and friends
            // are detected at run time, so the list must agree with std's view.
            assert_eq!(
                t.features.iter().any(|f| f == "has_avx2"),
                std::is_x86_feature_detected!("avx2")
            );
        }
    }
}
