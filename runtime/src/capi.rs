//! The C API (`runtime/include/kiln.h`): load a `.kiln` artifact, query its
//! inputs and outputs, run it into the caller's buffers, read the last
//! error, free.
//!
//! Every entry point runs under `catch_unwind`, so no Rust panic crosses
//! the boundary (a panic becomes `KILN_ERR_PANIC`). Null pointers, wrong
//! counts, ranks, shapes, dtypes and byte lengths, and output buffers that
//! overlap each other or an input are reported as `KILN_ERR_INVALID_ARGUMENT`
//! with a message naming the argument, input or output. What C cannot
//! check for us (a pointer to too little memory, a freed session) is the
//! caller's contract, written in the header.
//!
//! The names here are the header's (`kiln_session`, `kiln_tensor`, ...);
//! `runtime/tests/capi_header.rs` checks that every `#[no_mangle]` function
//! and every enum constant below is declared identically in `kiln.h`.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use kiln_ir::DType;

use crate::artifact::ArtifactError;
use crate::exec::ExecError;
use crate::session::{IoInfo, Session, SessionError, SessionOptions, TensorView};
use crate::zero_copy::TensorViewMut;

/// A function's result.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kiln_status {
    KILN_OK = 0,
    /// A null pointer, a bad index, count, rank, shape, dtype or length.
    KILN_ERR_INVALID_ARGUMENT = 1,
    /// The artifact file could not be read.
    KILN_ERR_IO = 2,
    /// The bytes are not a valid artifact (magic, checksum, truncation, ...).
    KILN_ERR_FORMAT = 3,
    /// A valid artifact this build or CPU cannot run (version, CPU features).
    KILN_ERR_UNSUPPORTED = 4,
    /// A step failed while running.
    KILN_ERR_RUN = 5,
    /// A bug in kiln: a Rust panic, caught at the boundary.
    KILN_ERR_PANIC = 6,
}

/// Element types. The numbers are ONNX's `TensorProto.DataType` codes;
/// `KILN_DTYPE_OTHER` is a type without a C code (quantized int8, float8,
/// int4 ...; one byte per element).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kiln_dtype {
    KILN_DTYPE_OTHER = 0,
    KILN_DTYPE_F32 = 1,
    KILN_DTYPE_U8 = 2,
    KILN_DTYPE_I8 = 3,
    KILN_DTYPE_U16 = 4,
    KILN_DTYPE_I16 = 5,
    KILN_DTYPE_I32 = 6,
    KILN_DTYPE_I64 = 7,
    KILN_DTYPE_BOOL = 9,
    KILN_DTYPE_F16 = 10,
    KILN_DTYPE_F64 = 11,
    KILN_DTYPE_U32 = 12,
    KILN_DTYPE_U64 = 13,
    KILN_DTYPE_BF16 = 16,
}

fn dtype_code(d: DType) -> kiln_dtype {
    use kiln_dtype::*;
    match d {
        DType::F32 => KILN_DTYPE_F32,
        DType::F64 => KILN_DTYPE_F64,
        DType::F16 => KILN_DTYPE_F16,
        DType::BF16 => KILN_DTYPE_BF16,
        DType::I8 => KILN_DTYPE_I8,
        DType::U8 => KILN_DTYPE_U8,
        DType::I16 => KILN_DTYPE_I16,
        DType::I32 => KILN_DTYPE_I32,
        DType::I64 => KILN_DTYPE_I64,
        DType::Bool => KILN_DTYPE_BOOL,
        DType::U16 => KILN_DTYPE_U16,
        DType::U32 => KILN_DTYPE_U32,
        DType::U64 => KILN_DTYPE_U64,
        DType::QI8(_) | DType::QU8(_) | DType::Narrow(_) => KILN_DTYPE_OTHER,
    }
}

/// A tensor the caller owns: `dtype` is a `kiln_dtype` value, `shape`
/// points to `rank` dimensions, `data` to `byte_len` bytes (little-endian,
/// row-major). Inputs are only read.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kiln_tensor {
    pub dtype: i32,
    pub rank: usize,
    pub shape: *const usize,
    pub data: *mut std::ffi::c_void,
    pub byte_len: usize,
}

/// A loaded model (opaque to C).
pub struct kiln_session {
    session: Session,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

type Failure = (kiln_status, String);

fn invalid(msg: impl Into<String>) -> Failure {
    (kiln_status::KILN_ERR_INVALID_ARGUMENT, msg.into())
}

fn session_failure(e: SessionError) -> Failure {
    use kiln_status::*;
    let code = match &e {
        SessionError::Artifact(ArtifactError::Io { .. }) => KILN_ERR_IO,
        SessionError::Artifact(
            ArtifactError::UnsupportedVersion { .. } | ArtifactError::MissingFeature { .. },
        ) => KILN_ERR_UNSUPPORTED,
        SessionError::Artifact(_) => KILN_ERR_FORMAT,
        SessionError::Input { .. }
        | SessionError::InputCount { .. }
        | SessionError::Exec(ExecError::Input { .. } | ExecError::Output { .. }) => {
            KILN_ERR_INVALID_ARGUMENT
        }
        SessionError::Exec(_) | SessionError::Other(_) => KILN_ERR_RUN,
    };
    (code, e.to_string())
}

/// Run `f` with panics caught; record a failure's message for
/// `kiln_last_error` and return its code.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> kiln_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => kiln_status::KILN_OK,
        Ok(Err((code, msg))) => {
            set_error(&msg);
            code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(&format!("internal error (panic): {what}"));
            kiln_status::KILN_ERR_PANIC
        }
    }
}

fn wrap(session: Session) -> Box<kiln_session> {
    let cname = |i: &IoInfo| CString::new(i.name.replace('\0', "\\0")).unwrap_or_default();
    Box::new(kiln_session {
        input_names: session.inputs().iter().map(cname).collect(),
        output_names: session.outputs().iter().map(cname).collect(),
        session,
    })
}

/// # Safety
/// `p` is null or valid for writes of a `T`.
unsafe fn write_out<T>(p: *mut T, what: &str, v: T) -> Result<(), Failure> {
    if p.is_null() {
        return Err(invalid(format!("`{what}` is null")));
    }
    // SAFETY: non-null, and the caller promises it is valid for writes.
    unsafe { p.write(v) };
    Ok(())
}

/// # Safety
/// `s` is null or a pointer from `kiln_session_load*` not yet freed.
unsafe fn session_ref<'a>(s: *const kiln_session) -> Result<&'a kiln_session, Failure> {
    // SAFETY: null is refused by `as_ref`; otherwise the caller promises a
    // live session, which no one mutates (runs take `&Session`).
    unsafe { s.as_ref() }.ok_or_else(|| invalid("`session` is null"))
}

fn io_at<'a>(io: &'a [IoInfo], index: usize, kind: &str) -> Result<&'a IoInfo, Failure> {
    io.get(index).ok_or_else(|| {
        invalid(format!(
            "{kind} index {index} is out of range (the model has {})",
            io.len()
        ))
    })
}

/// Which list a per-index query reads.
#[derive(Clone, Copy)]
enum Side {
    Input,
    Output,
}

/// The body of every per-input and per-output query: check the session and
/// the index, then write `f(session, info)` to `out`.
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes of a `T`.
unsafe fn query<T>(
    session: *const kiln_session,
    side: Side,
    index: usize,
    out: *mut T,
    f: impl FnOnce(&kiln_session, &IoInfo) -> T,
) -> kiln_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(session) }?;
        let io = match side {
            Side::Input => io_at(s.session.inputs(), index, "input")?,
            Side::Output => io_at(s.session.outputs(), index, "output")?,
        };
        let v = f(s, io);
        // SAFETY: the caller's contract.
        unsafe { write_out(out, "out", v) }
    })
}

/// The library's version, e.g. "0.1.0" (a static string).
#[no_mangle]
pub extern "C" fn kiln_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed call on this thread ("" if none). Valid
/// until the next failing kiln call on this thread.
#[no_mangle]
pub extern "C" fn kiln_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr()))
        .unwrap_or(c"internal error reading the last error".as_ptr())
}

/// Load an artifact file with `threads` worker threads (0: all cores).
///
/// # Safety
/// `path` is null or a NUL-terminated string; `out` is null or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_load(
    path: *const c_char,
    threads: usize,
    out: *mut *mut kiln_session,
) -> kiln_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("`out` is null"));
        }
        if path.is_null() {
            return Err(invalid("`path` is null"));
        }
        // SAFETY: non-null and NUL-terminated by the caller's contract.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        #[cfg(unix)]
        let p = std::path::PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes),
        );
        #[cfg(not(unix))]
        let p = std::path::PathBuf::from(
            std::str::from_utf8(bytes).map_err(|_| invalid("`path` is not UTF-8"))?,
        );
        let s = Session::load(&p, &SessionOptions { threads }).map_err(session_failure)?;
        // SAFETY: `out` checked non-null above; valid for writes by contract.
        unsafe { write_out(out, "out", Box::into_raw(wrap(s))) }
    })
}

/// Load an artifact from `len` bytes at `data` (copied as needed; the
/// bytes may be freed after the call).
///
/// # Safety
/// `data` is null or valid for reading `len` bytes; `out` is null or valid
/// for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_load_bytes(
    data: *const u8,
    len: usize,
    threads: usize,
    out: *mut *mut kiln_session,
) -> kiln_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("`out` is null"));
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if data.is_null() {
            return Err(invalid(format!("`data` is null but `len` is {len}")));
        } else if len > isize::MAX as usize {
            return Err(invalid(format!("`len` {len} is too large")));
        } else {
            // SAFETY: non-null, `len` ≤ isize::MAX, and readable by contract.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        let s = Session::from_bytes(bytes, &SessionOptions { threads }).map_err(session_failure)?;
        // SAFETY: `out` checked non-null above; valid for writes by contract.
        unsafe { write_out(out, "out", Box::into_raw(wrap(s))) }
    })
}

/// Free a session (null is ignored). It must not be running.
///
/// # Safety
/// `session` is null or a pointer from `kiln_session_load*`, freed once.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_free(session: *mut kiln_session) {
    if session.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: from `Box::into_raw` in a load function, not yet freed
        // (the caller's contract).
        drop(unsafe { Box::from_raw(session) });
    }));
}

/// Number of inputs.
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_input_count(
    session: *const kiln_session,
    out: *mut usize,
) -> kiln_status {
    guard(|| {
        // SAFETY: the contract above.
        let s = unsafe { session_ref(session) }?;
        // SAFETY: the contract above.
        unsafe { write_out(out, "out", s.session.inputs().len()) }
    })
}

/// Number of outputs.
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_output_count(
    session: *const kiln_session,
    out: *mut usize,
) -> kiln_status {
    guard(|| {
        // SAFETY: the contract above.
        let s = unsafe { session_ref(session) }?;
        // SAFETY: the contract above.
        unsafe { write_out(out, "out", s.session.outputs().len()) }
    })
}

/// Input `index`'s name (NUL-terminated, valid while the session lives).
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_input_name(
    session: *const kiln_session,
    index: usize,
    out: *mut *const c_char,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe {
        query(session, Side::Input, index, out, |s, _| {
            s.input_names[index].as_ptr()
        })
    }
}

/// Output `index`'s name (NUL-terminated, valid while the session lives).
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_output_name(
    session: *const kiln_session,
    index: usize,
    out: *mut *const c_char,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe {
        query(session, Side::Output, index, out, |s, _| {
            s.output_names[index].as_ptr()
        })
    }
}

/// Input `index`'s element type.
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_input_dtype(
    session: *const kiln_session,
    index: usize,
    out: *mut kiln_dtype,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe {
        query(session, Side::Input, index, out, |_, io| {
            dtype_code(io.dtype)
        })
    }
}

/// Output `index`'s element type.
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_output_dtype(
    session: *const kiln_session,
    index: usize,
    out: *mut kiln_dtype,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe {
        query(session, Side::Output, index, out, |_, io| {
            dtype_code(io.dtype)
        })
    }
}

/// Input `index`'s rank (number of dimensions).
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_input_rank(
    session: *const kiln_session,
    index: usize,
    out: *mut usize,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe { query(session, Side::Input, index, out, |_, io| io.shape.len()) }
}

/// Output `index`'s rank (number of dimensions).
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_output_rank(
    session: *const kiln_session,
    index: usize,
    out: *mut usize,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe { query(session, Side::Output, index, out, |_, io| io.shape.len()) }
}

/// Input `index`'s dimensions: `*out` points to `rank` values, valid while
/// the session lives.
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_input_shape(
    session: *const kiln_session,
    index: usize,
    out: *mut *const usize,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe { query(session, Side::Input, index, out, |_, io| io.shape.as_ptr()) }
}

/// Output `index`'s dimensions: `*out` points to `rank` values, valid
/// while the session lives.
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_output_shape(
    session: *const kiln_session,
    index: usize,
    out: *mut *const usize,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe { query(session, Side::Output, index, out, |_, io| io.shape.as_ptr()) }
}

/// Input `index`'s size in bytes (elements × element size).
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_input_byte_len(
    session: *const kiln_session,
    index: usize,
    out: *mut usize,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe { query(session, Side::Input, index, out, |_, io| io.byte_len()) }
}

/// Output `index`'s size in bytes (elements × element size).
///
/// # Safety
/// `session` is null or live; `out` is null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_output_byte_len(
    session: *const kiln_session,
    index: usize,
    out: *mut usize,
) -> kiln_status {
    // SAFETY: the contract above.
    unsafe { query(session, Side::Output, index, out, |_, io| io.byte_len()) }
}

/// The byte range of a tensor's data, checked against its declaration.
/// Only then is the shape read (exactly `rank == declared rank` values).
///
/// # Safety
/// `t.shape` is null or valid for reading `t.rank` values.
unsafe fn check_tensor(t: &kiln_tensor, io: &IoInfo, what: &str) -> Result<(), Failure> {
    let bad = |msg: String| invalid(format!("{what} `{}`: {msg}", io.name));
    let code = dtype_code(io.dtype);
    if t.dtype != code as i32 {
        return Err(bad(format!(
            "dtype code {} given, the model declares {} (code {})",
            t.dtype, io.dtype, code as i32
        )));
    }
    if t.rank != io.shape.len() {
        return Err(bad(format!(
            "rank {} given, the model declares {:?}",
            t.rank, io.shape
        )));
    }
    let shape: &[usize] = if t.rank == 0 {
        &[]
    } else if t.shape.is_null() {
        return Err(bad(format!("`shape` is null for rank {}", t.rank)));
    } else {
        // SAFETY: non-null, `rank` values by contract; `rank` equals the
        // declared rank, so it is small.
        unsafe { std::slice::from_raw_parts(t.shape, t.rank) }
    };
    if shape != io.shape.as_slice() {
        return Err(bad(format!(
            "shape {shape:?} given, the model declares {:?}",
            io.shape
        )));
    }
    if t.byte_len != io.byte_len() {
        return Err(bad(format!(
            "{} bytes given, {}{:?} needs {}",
            t.byte_len,
            io.dtype,
            io.shape,
            io.byte_len()
        )));
    }
    if t.byte_len > 0 && t.data.is_null() {
        return Err(bad("`data` is null".into()));
    }
    Ok(())
}

fn range(t: &kiln_tensor) -> std::ops::Range<usize> {
    let a = t.data as usize;
    a..a.saturating_add(t.byte_len)
}

/// Run: read `n_in` inputs (in input order) and write `n_out` outputs (in
/// output order) into the caller's buffers; f32 outputs a step computes are
/// written in place (zero-copy). Each tensor must match its declaration
/// exactly (dtype code, rank, shape, byte length); output buffers may not
/// overlap each other or an input. The session may run on several threads
/// at once. On failure the output buffers may hold partial results.
///
/// # Safety
/// `session` is null or live; `inputs` (`outputs`) is null or points to
/// `n_in` (`n_out`) tensors whose `shape` and `data` pointers are valid for
/// the lengths they state, `data` of outputs writable.
#[no_mangle]
pub unsafe extern "C" fn kiln_session_run(
    session: *const kiln_session,
    inputs: *const kiln_tensor,
    n_in: usize,
    outputs: *mut kiln_tensor,
    n_out: usize,
) -> kiln_status {
    guard(|| {
        // SAFETY: the contract above.
        let s = unsafe { session_ref(session) }?;
        let (ins_io, outs_io) = (s.session.inputs(), s.session.outputs());
        if n_in != ins_io.len() {
            return Err(invalid(format!(
                "{n_in} inputs given, the model has {}",
                ins_io.len()
            )));
        }
        if n_out != outs_io.len() {
            return Err(invalid(format!(
                "{n_out} outputs given, the model has {}",
                outs_io.len()
            )));
        }
        let tensors = |p: *const kiln_tensor, n: usize, what: &str| {
            if n == 0 {
                Ok(&[][..])
            } else if p.is_null() {
                Err(invalid(format!("`{what}` is null but its count is {n}")))
            } else {
                // SAFETY: non-null, `n` tensors by contract (and `n` is the
                // model's count, so small).
                Ok(unsafe { std::slice::from_raw_parts(p, n) })
            }
        };
        let ins = tensors(inputs, n_in, "inputs")?;
        let outs = tensors(outputs, n_out, "outputs")?;
        for (t, io) in ins.iter().zip(ins_io) {
            // SAFETY: the contract above.
            unsafe { check_tensor(t, io, "input") }?;
        }
        for (t, io) in outs.iter().zip(outs_io) {
            // SAFETY: the contract above.
            unsafe { check_tensor(t, io, "output") }?;
        }
        // Rust may not alias a buffer it writes: refuse overlaps.
        for (k, (o, io)) in outs.iter().zip(outs_io).enumerate() {
            let r = range(o);
            if r.is_empty() {
                continue;
            }
            let hit = |t: &kiln_tensor| {
                let q = range(t);
                !q.is_empty() && q.start < r.end && r.start < q.end
            };
            if let Some(j) = outs[..k].iter().position(hit) {
                return Err(invalid(format!(
                    "output `{}`'s buffer overlaps output `{}`'s",
                    io.name, outs_io[j].name
                )));
            }
            if let Some(j) = ins.iter().position(hit) {
                return Err(invalid(format!(
                    "output `{}`'s buffer overlaps input `{}`'s",
                    io.name, ins_io[j].name
                )));
            }
        }
        let in_views: Vec<TensorView> = ins
            .iter()
            .zip(ins_io)
            .map(|(t, io)| TensorView {
                dtype: io.dtype,
                shape: &io.shape,
                data: if t.byte_len == 0 {
                    &[]
                } else {
                    // SAFETY: checked non-null with `byte_len` equal to the
                    // declared size; readable by contract; only read.
                    unsafe { std::slice::from_raw_parts(t.data as *const u8, t.byte_len) }
                },
            })
            .collect();
        let mut out_views: Vec<TensorViewMut> = outs
            .iter()
            .zip(outs_io)
            .map(|(t, io)| TensorViewMut {
                dtype: io.dtype,
                shape: &io.shape,
                data: if t.byte_len == 0 {
                    &mut []
                } else {
                    // SAFETY: checked non-null with the declared size,
                    // writable by contract, and apart from every other
                    // buffer of this call (overlaps refused above).
                    unsafe { std::slice::from_raw_parts_mut(t.data as *mut u8, t.byte_len) }
                },
            })
            .collect();
        s.session
            .run_into(&in_views, &mut out_views)
            .map_err(session_failure)
    })
}

/// A status code's name, e.g. "KILN_ERR_IO" (a static string).
#[no_mangle]
pub extern "C" fn kiln_status_name(status: i32) -> *const c_char {
    let s: &CStr = match status {
        0 => c"KILN_OK",
        1 => c"KILN_ERR_INVALID_ARGUMENT",
        2 => c"KILN_ERR_IO",
        3 => c"KILN_ERR_FORMAT",
        4 => c"KILN_ERR_UNSUPPORTED",
        5 => c"KILN_ERR_RUN",
        6 => c"KILN_ERR_PANIC",
        _ => c"KILN_STATUS_UNKNOWN",
    };
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: `kiln_last_error` returns a NUL-terminated string that
        // lives until the next failing call on this thread.
        unsafe { CStr::from_ptr(kiln_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let st = guard(|| panic!("boom {}", 42));
        assert_eq!(st, kiln_status::KILN_ERR_PANIC);
        assert_eq!(last_error(), "internal error (panic): boom 42");
        let st = guard(|| Err(invalid("bad")));
        assert_eq!(st, kiln_status::KILN_ERR_INVALID_ARGUMENT);
        assert_eq!(last_error(), "bad");
    }

    #[test]
    fn null_and_garbage_are_errors() {
        let mut s: *mut kiln_session = std::ptr::null_mut();
        // SAFETY: valid pointers or null, as the contract allows.
        unsafe {
            assert_eq!(
                kiln_session_load_bytes(b"nope".as_ptr(), 4, 1, &mut s),
                kiln_status::KILN_ERR_FORMAT
            );
            assert!(s.is_null());
            let mut n = 0usize;
            assert_eq!(
                kiln_session_input_count(std::ptr::null(), &mut n),
                kiln_status::KILN_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                kiln_session_run(
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    std::ptr::null_mut(),
                    0
                ),
                kiln_status::KILN_ERR_INVALID_ARGUMENT
            );
            kiln_session_free(std::ptr::null_mut());
        }
        assert_eq!(last_error(), "`session` is null");
        // SAFETY: static NUL-terminated strings.
        let name = unsafe { CStr::from_ptr(kiln_status_name(3)) };
        assert_eq!(name.to_str().unwrap(), "KILN_ERR_FORMAT");
        // SAFETY: as above.
        let v = unsafe { CStr::from_ptr(kiln_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
