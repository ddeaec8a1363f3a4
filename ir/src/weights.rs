//! Named weights, stored beside a `.kir` file as safetensors.
//!
//! Every dtype safetensors has maps onto it (F8_E4M3 is e4m3fn; F4 is e2m1,
//! packed two to a byte, first element in the low nibble). The 4- and 2-bit
//! integers and the quantized types have no safetensors dtype.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};

use crate::dtype::{DType, Narrow};
use crate::graph::Graph;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("param %{name}: {msg}")]
    Param { name: String, msg: String },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights(pub BTreeMap<String, Tensor>);

fn to_st(d: DType) -> Option<StDtype> {
    Some(match d {
        DType::F32 => StDtype::F32,
        DType::F64 => StDtype::F64,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I8 => StDtype::I8,
        DType::U8 => StDtype::U8,
        DType::I16 => StDtype::I16,
        DType::I32 => StDtype::I32,
        DType::I64 => StDtype::I64,
        DType::Bool => StDtype::BOOL,
        DType::U16 => StDtype::U16,
        DType::U32 => StDtype::U32,
        DType::U64 => StDtype::U64,
        DType::Narrow(Narrow::F8E4M3FN) => StDtype::F8_E4M3,
        DType::Narrow(Narrow::F8E4M3FNUZ) => StDtype::F8_E4M3FNUZ,
        DType::Narrow(Narrow::F8E5M2) => StDtype::F8_E5M2,
        DType::Narrow(Narrow::F8E5M2FNUZ) => StDtype::F8_E5M2FNUZ,
        DType::Narrow(Narrow::F8E8M0) => StDtype::F8_E8M0,
        DType::Narrow(Narrow::F4E2M1) => StDtype::F4,
        // safetensors has no 4- or 2-bit integers.
        DType::Narrow(Narrow::I4 | Narrow::U4 | Narrow::I2 | Narrow::U2)
        | DType::QI8(_)
        | DType::QU8(_) => return None,
    })
}

fn from_st(d: StDtype) -> Option<DType> {
    Some(match d {
        StDtype::F32 => DType::F32,
        StDtype::F64 => DType::F64,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::I8 => DType::I8,
        StDtype::U8 => DType::U8,
        StDtype::I16 => DType::I16,
        StDtype::I32 => DType::I32,
        StDtype::I64 => DType::I64,
        StDtype::BOOL => DType::Bool,
        StDtype::U16 => DType::U16,
        StDtype::U32 => DType::U32,
        StDtype::U64 => DType::U64,
        StDtype::F8_E4M3 => DType::Narrow(Narrow::F8E4M3FN),
        StDtype::F8_E4M3FNUZ => DType::Narrow(Narrow::F8E4M3FNUZ),
        StDtype::F8_E5M2 => DType::Narrow(Narrow::F8E5M2),
        StDtype::F8_E5M2FNUZ => DType::Narrow(Narrow::F8E5M2FNUZ),
        StDtype::F8_E8M0 => DType::Narrow(Narrow::F8E8M0),
        StDtype::F4 => DType::Narrow(Narrow::F4E2M1),
        _ => return None,
    })
}

impl Weights {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name)
    }
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.0.insert(name.into(), t);
    }

    /// Decode a safetensors buffer. `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Weights, WeightsError> {
        let file_err = |msg: String| WeightsError::File {
            path: origin.to_string(),
            msg,
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
        let mut out = BTreeMap::new();
        for (name, view) in st.tensors() {
            let dtype = from_st(view.dtype()).ok_or_else(|| {
                file_err(format!(
                    "tensor `{name}` has unsupported dtype {:?}",
                    view.dtype()
                ))
            })?;
            let t = Tensor::from_packed_bytes(dtype, view.shape(), view.data())
                .map_err(|e| file_err(format!("tensor `{name}`: {e}")))?;
            out.insert(name, t);
        }
        Ok(Weights(out))
    }

    pub fn load(path: &Path) -> Result<Weights, WeightsError> {
        let bytes = std::fs::read(path).map_err(|e| WeightsError::File {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Weights::from_bytes(&bytes, &path.display().to_string())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, WeightsError> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>, StDtype)> = self
            .0
            .iter()
            .map(|(k, t)| {
                let d = to_st(t.dtype()).ok_or_else(|| WeightsError::Param {
                    name: k.clone(),
                    msg: format!("dtype {} cannot be stored in safetensors", t.dtype()),
                })?;
                Ok((k.clone(), t.to_packed_bytes(), t.shape().to_vec(), d))
            })
            .collect::<Result<_, WeightsError>>()?;
        // Sizes match by construction, except that safetensors refuses a
        // 4-bit tensor that does not end on a byte boundary.
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(k, b, s, d)| {
                TensorView::new(*d, s.clone(), b)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| WeightsError::Param {
                        name: k.clone(),
                        msg: format!("cannot be stored in safetensors: {e}"),
                    })
            })
            .collect::<Result<_, WeightsError>>()?;
        safetensors::serialize(views, None).map_err(|e| WeightsError::File {
            path: "<memory>".into(),
            msg: e.to_string(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), WeightsError> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|e| WeightsError::File {
            path: path.display().to_string(),
            msg: e.to_string(),
        })
    }

    /// Check that every param of `g` has a weight of the declared dtype and
    /// shape. Reports every problem, not just the first.
    pub fn check(&self, g: &Graph, origin: &str) -> Result<(), Vec<WeightsError>> {
        let mut errs = Vec::new();
        for &p in g.params() {
            let v = g.value(p);
            let name = v.name.clone().unwrap_or_default();
            match self.0.get(&name) {
                None => errs.push(WeightsError::Param {
                    name,
                    msg: format!("missing from {origin}"),
                }),
                Some(t) => {
                    let dims = v.ty.shape.concrete();
                    if t.dtype() != v.ty.dtype || dims.as_deref() != Some(t.shape()) {
                        errs.push(WeightsError::Param {
                            name,
                            msg: format!("declared {} but {origin} holds {}", v.ty, t.ty()),
                        });
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn new_dtypes_round_trip_through_safetensors() {
        let mut w = Weights::default();
        w.insert("u", Tensor::U64(arr1(&[u64::MAX, 0]).into_dyn()));
        w.insert("h", Tensor::U16(arr1(&[7u16]).into_dyn()));
        w.insert(
            "f8",
            Tensor::Narrow(Narrow::F8E4M3FN, arr1(&[0x7Eu8, 0x01]).into_dyn()),
        );
        w.insert(
            "f4",
            Tensor::Narrow(Narrow::F4E2M1, arr1(&[0x7u8, 0xF, 0x1, 0x8]).into_dyn()),
        );
        let back = Weights::from_bytes(&w.to_bytes().unwrap(), "mem").unwrap();
        assert_eq!(back, w);
        // An odd number of fp4 values does not fill its last byte.
        w.insert(
            "f4",
            Tensor::Narrow(Narrow::F4E2M1, arr1(&[0x7u8, 0xF, 0x1]).into_dyn()),
        );
        let e = w.to_bytes().unwrap_err().to_string();
        assert!(e.contains("f4") && e.contains("safetensors"), "{e}");
        let mut bad = Weights::default();
        bad.insert("i4", Tensor::Narrow(Narrow::I4, arr1(&[1u8]).into_dyn()));
        assert!(bad.to_bytes().unwrap_err().to_string().contains("i4"));
    }
}
