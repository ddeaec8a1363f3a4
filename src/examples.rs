//! The example models, embedded so that `kiln demo` needs no files.

/// (name, `.kir` source) for every model in `examples/models/`.
pub const MODELS: &[(&str, &str)] = &[
    ("mlp", include_str!("../examples/models/mlp.kir")),
    ("lenet5", include_str!("../examples/models/lenet5.kir")),
    (
        "vgg_small",
        include_str!("../examples/models/vgg_small.kir"),
    ),
    (
        "resnet_block",
        include_str!("../examples/models/resnet_block.kir"),
    ),
];

/// The seed `gen_weights` uses for the committed safetensors files.
pub const WEIGHT_SEED: u64 = 2026;

pub fn source(name: &str) -> Option<&'static str> {
    MODELS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
