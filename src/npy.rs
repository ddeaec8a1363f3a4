//! `.npy` files for inputs and outputs.

use std::path::Path;

use kiln_ir::Tensor;
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

/// Read a `.npy` file of any dtype kiln supports (f16/bf16 excepted).
pub fn read(path: &Path) -> Result<Tensor, String> {
    let open = || std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()));
    macro_rules! attempt {
        ($t:ty, $v:ident) => {
            if let Ok(a) = ArrayD::<$t>::read_npy(open()?) {
                return Ok(Tensor::$v(a));
            }
        };
    }
    attempt!(f32, F32);
    attempt!(f64, F64);
    attempt!(i64, I64);
    attempt!(i32, I32);
    attempt!(i16, I16);
    attempt!(i8, I8);
    attempt!(u8, U8);
    attempt!(u16, U16);
    attempt!(u32, U32);
    attempt!(u64, U64);
    attempt!(bool, Bool);
    // Re-read once more to surface the real reason (bad header, unsupported dtype...).
    match ArrayD::<f32>::read_npy(open()?) {
        Ok(a) => Ok(Tensor::F32(a)),
        Err(e) => Err(format!("{}: cannot read as .npy: {e}", path.display())),
    }
}

pub fn write(path: &Path, t: &Tensor) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let r = match t {
        Tensor::F32(a) => a.write_npy(f),
        Tensor::F64(a) => a.write_npy(f),
        Tensor::I64(a) => a.write_npy(f),
        Tensor::I32(a) => a.write_npy(f),
        Tensor::I16(a) => a.write_npy(f),
        Tensor::I8(a) => a.write_npy(f),
        Tensor::U8(a) => a.write_npy(f),
        Tensor::Bool(a) => a.write_npy(f),
        Tensor::U16(a) => a.write_npy(f),
        Tensor::U32(a) => a.write_npy(f),
        Tensor::U64(a) => a.write_npy(f),
        // numpy has no float8/fp4/int4 types: write the values as f32 (every
        // narrow value is exact there).
        Tensor::Narrow(..) => t.to_f64().mapv(|x| x as f32).write_npy(f),
        // numpy has f16 but ndarray-npy does not; widen to f32 rather than fail.
        Tensor::F16(_) | Tensor::BF16(_) => t
            .cast(kiln_ir::DType::F32)
            .to_f64()
            .mapv(|x| x as f32)
            .write_npy(f),
    };
    r.map_err(|e| format!("{}: {e}", path.display()))
}
