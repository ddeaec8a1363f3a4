//! A model: a verified graph and its weights, loaded from `name.kir` plus
//! `name.safetensors` beside it.

use std::path::{Path, PathBuf};

use crate::graph::Graph;
use crate::weights::{Weights, WeightsError};

#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    pub weights: Weights,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{path}:{err}")]
    Parse {
        path: String,
        err: crate::text::ParseError,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Weights(Vec<WeightsError>),
}

/// `model.kir` → `model.safetensors`.
pub fn weights_path(kir: &Path) -> PathBuf {
    kir.with_extension("safetensors")
}

impl Model {
    /// Parse and verify `path`; load the weights beside it if the graph has params.
    pub fn load_kir(path: &Path) -> Result<Model, LoadError> {
        let p = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        let graph = crate::text::parse(&src).map_err(|err| LoadError::Parse {
            path: p.clone(),
            err,
        })?;
        let weights = if graph.params().is_empty() {
            Weights::default()
        } else {
            let wp = weights_path(path);
            let w = Weights::load(&wp).map_err(|e| LoadError::Weights(vec![e]))?;
            w.check(&graph, &wp.display().to_string())
                .map_err(LoadError::Weights)?;
            w
        };
        Ok(Model { graph, weights })
    }
}
