//! The binary form of a [`Kernel`], as the artifact carries it.
//!
//! Compact and versioned. Integers are LEB128 varints (signed ones
//! zig-zagged), so the usual kernel takes a few dozen bytes:
//!
//! ```text
//! kernel := "KKRN" version:u8 name:str
//!           nbufs:uv (role:u8 len:uv)*
//!           nouter:uv (extent:uv)* inner:uv
//!           nexprs:uv expr* nstmts:uv stmt*
//! str    := len:uv utf8-bytes
//! access := buf:uv offset:sv nstrides:uv (stride:sv)* inner_stride:sv
//! expr   := 0 access | 1 bits:u32le | 2 k:uv | 3 op:u8 a:uv
//!         | 4 op:u8 a:uv b:uv | 5 cmp:u8 a:uv b:uv t:uv f:uv
//! stmt   := 0 kind:u8 expr:uv | 1 access expr:uv
//! ```
//!
//! The decoder never panics and never allocates more than the input can
//! fill: every element costs at least one byte, so a count larger than the
//! bytes left is an error before anything is reserved. A decoded kernel has
//! passed [`Kernel::validate`].

use super::{Access, BufDecl, Expr, KReduce, Kernel, KernelError, Role, Stmt};

const MAGIC: &[u8; 4] = b"KKRN";
/// Bumped whenever the layout above changes; old versions are rejected.
pub const KERNEL_FORMAT_VERSION: u8 = 1;

/// Why bytes are not a kernel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("kernel bytes, at byte {pos}: {msg}")]
    Malformed { pos: usize, msg: String },
    #[error(transparent)]
    Invalid(#[from] KernelError),
}

use super::{ALL_BINARY as BINARY, ALL_CMP as CMP, ALL_UNARY as UNARY};
const REDUCE: [KReduce; 3] = [KReduce::Sum, KReduce::Max, KReduce::Min];

fn code<T: PartialEq>(table: &[T], v: &T) -> u8 {
    table.iter().position(|t| t == v).unwrap_or(0) as u8
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn uv(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn sv(&mut self, v: i64) {
        self.uv(((v << 1) ^ (v >> 63)) as u64);
    }
    fn access(&mut self, a: &Access) {
        self.uv(a.buf as u64);
        self.sv(a.offset);
        self.uv(a.outer_strides.len() as u64);
        for &s in &a.outer_strides {
            self.sv(s);
        }
        self.sv(a.inner_stride);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, DecodeError>;

impl Reader<'_> {
    fn fail<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(DecodeError::Malformed {
            pos: self.pos,
            msg: msg.into(),
        })
    }
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn u8(&mut self) -> R<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.fail("unexpected end of data"),
        }
    }
    fn uv(&mut self) -> R<u64> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                self.pos = start;
                return self.fail("varint overflows 64 bits");
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.pos = start;
        self.fail("varint longer than 10 bytes")
    }
    fn sv(&mut self) -> R<i64> {
        let u = self.uv()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn usize(&mut self) -> R<usize> {
        let v = self.uv()?;
        usize::try_from(v).or_else(|_| self.fail(format!("{v} does not fit in usize")))
    }
    fn u32(&mut self) -> R<u32> {
        let v = self.uv()?;
        u32::try_from(v).or_else(|_| self.fail(format!("{v} does not fit in u32")))
    }
    /// A count of items that take at least `min_bytes` each.
    fn count(&mut self, what: &str, min_bytes: usize) -> R<usize> {
        let n = self.usize()?;
        if n > self.left() / min_bytes {
            return self.fail(format!(
                "{n} {what} cannot fit in the {} bytes left",
                self.left()
            ));
        }
        Ok(n)
    }
    fn pick<T: Copy>(&mut self, table: &[T], what: &str) -> R<T> {
        let c = self.u8()?;
        match table.get(c as usize) {
            Some(&t) => Ok(t),
            None => {
                self.pos -= 1;
                self.fail(format!("unknown {what} code {c}"))
            }
        }
    }
    fn access(&mut self) -> R<Access> {
        let buf = self.u32()?;
        let offset = self.sv()?;
        let n = self.count("strides", 1)?;
        let mut outer_strides = Vec::with_capacity(n);
        for _ in 0..n {
            outer_strides.push(self.sv()?);
        }
        Ok(Access {
            buf,
            offset,
            outer_strides,
            inner_stride: self.sv()?,
        })
    }
}

impl Kernel {
    /// The binary form (see the module docs of `kernel::codec`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Append the binary form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.0.extend_from_slice(MAGIC);
        w.u8(KERNEL_FORMAT_VERSION);
        w.uv(self.name.len() as u64);
        w.0.extend_from_slice(self.name.as_bytes());
        w.uv(self.bufs.len() as u64);
        for b in &self.bufs {
            w.u8(match b.role {
                Role::Input => 0,
                Role::Output => 1,
            });
            w.uv(b.len as u64);
        }
        w.uv(self.outer.len() as u64);
        for &n in &self.outer {
            w.uv(n as u64);
        }
        w.uv(self.inner as u64);
        w.uv(self.exprs.len() as u64);
        for e in &self.exprs {
            match e {
                Expr::Load(a) => {
                    w.u8(0);
                    w.access(a);
                }
                Expr::Const(bits) => {
                    w.u8(1);
                    w.0.extend_from_slice(&bits.to_le_bytes());
                }
                Expr::Scalar(k) => {
                    w.u8(2);
                    w.uv(*k as u64);
                }
                Expr::Unary(op, a) => {
                    w.u8(3);
                    w.u8(code(&UNARY, op));
                    w.uv(*a as u64);
                }
                Expr::Binary(op, a, b) => {
                    w.u8(4);
                    w.u8(code(&BINARY, op));
                    w.uv(*a as u64);
                    w.uv(*b as u64);
                }
                Expr::Select {
                    cmp,
                    a,
                    b,
                    on_true,
                    on_false,
                } => {
                    w.u8(5);
                    w.u8(code(&CMP, cmp));
                    for v in [a, b, on_true, on_false] {
                        w.uv(*v as u64);
                    }
                }
            }
        }
        w.uv(self.stmts.len() as u64);
        for s in &self.stmts {
            match s {
                Stmt::Reduce { kind, expr } => {
                    w.u8(0);
                    w.u8(code(&REDUCE, kind));
                    w.uv(*expr as u64);
                }
                Stmt::Store { dst, expr } => {
                    w.u8(1);
                    w.access(dst);
                    w.uv(*expr as u64);
                }
            }
        }
    }

    /// Decode exactly one kernel filling all of `bytes`, and validate it.
    pub fn decode(bytes: &[u8]) -> Result<Kernel, DecodeError> {
        let (k, used) = Kernel::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(DecodeError::Malformed {
                pos: used,
                msg: format!("{} bytes after the kernel", bytes.len() - used),
            });
        }
        Ok(k)
    }

    /// Decode and validate a kernel at the start of `bytes`; also returns how
    /// many bytes it took.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Kernel, usize), DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        for &m in MAGIC {
            if r.u8()? != m {
                r.pos -= 1;
                return r.fail("not a kernel (bad magic)");
            }
        }
        let v = r.u8()?;
        if v != KERNEL_FORMAT_VERSION {
            r.pos -= 1;
            return r.fail(format!(
                "kernel format version {v}, this build reads {KERNEL_FORMAT_VERSION}"
            ));
        }
        let n = r.count("name bytes", 1)?;
        let name = match std::str::from_utf8(&r.bytes[r.pos..r.pos + n]) {
            Ok(s) => s.to_string(),
            Err(e) => return r.fail(format!("kernel name is not UTF-8: {e}")),
        };
        r.pos += n;
        let n = r.count("buffers", 2)?;
        let mut bufs = Vec::with_capacity(n);
        for _ in 0..n {
            let role = r.pick(&[Role::Input, Role::Output], "buffer role")?;
            bufs.push(BufDecl {
                role,
                len: r.usize()?,
            });
        }
        let n = r.count("outer dims", 1)?;
        let mut outer = Vec::with_capacity(n);
        for _ in 0..n {
            outer.push(r.usize()?);
        }
        let inner = r.usize()?;
        let n = r.count("expressions", 2)?;
        let mut exprs = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = r.u8()?;
            exprs.push(match tag {
                0 => Expr::Load(r.access()?),
                1 => {
                    let mut b = [0u8; 4];
                    for x in &mut b {
                        *x = r.u8()?;
                    }
                    Expr::Const(u32::from_le_bytes(b))
                }
                2 => Expr::Scalar(r.u32()?),
                3 => Expr::Unary(r.pick(&UNARY, "unary op")?, r.u32()?),
                4 => Expr::Binary(r.pick(&BINARY, "binary op")?, r.u32()?, r.u32()?),
                5 => Expr::Select {
                    cmp: r.pick(&CMP, "comparison")?,
                    a: r.u32()?,
                    b: r.u32()?,
                    on_true: r.u32()?,
                    on_false: r.u32()?,
                },
                t => {
                    r.pos -= 1;
                    return r.fail(format!("unknown expression tag {t}"));
                }
            });
        }
        let n = r.count("statements", 3)?;
        let mut stmts = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = r.u8()?;
            stmts.push(match tag {
                0 => Stmt::Reduce {
                    kind: r.pick(&REDUCE, "reduction")?,
                    expr: r.u32()?,
                },
                1 => Stmt::Store {
                    dst: r.access()?,
                    expr: r.u32()?,
                },
                t => {
                    r.pos -= 1;
                    return r.fail(format!("unknown statement tag {t}"));
                }
            });
        }
        let k = Kernel {
            name,
            bufs,
            outer,
            inner,
            exprs,
            stmts,
        };
        k.validate()?;
        Ok((k, r.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{KBinary, KCmp, KUnary};

    fn acc(buf: u32, offset: i64, outer: Vec<i64>, inner: i64) -> Access {
        Access {
            buf,
            offset,
            outer_strides: outer,
            inner_stride: inner,
        }
    }

    /// Uses every expression and statement form, negative numbers included.
    fn sample() -> Kernel {
        let buf = |role, len| BufDecl { role, len };
        Kernel {
            name: "sample_κ".into(),
            bufs: vec![
                buf(Role::Input, 24),
                buf(Role::Input, 4),
                buf(Role::Output, 24),
            ],
            outer: vec![2, 3],
            inner: 4,
            exprs: vec![
                Expr::Load(acc(0, 3, vec![12, 4], -1)),
                Expr::Load(acc(1, 0, vec![0, 0], 1)),
                Expr::Const((-1.5f32).to_bits()),
                Expr::Binary(KBinary::Mul, 0, 2),
                Expr::Unary(KUnary::Erf, 3),
                Expr::Scalar(0),
                Expr::Select {
                    cmp: KCmp::Ge,
                    a: 4,
                    b: 1,
                    on_true: 5,
                    on_false: 4,
                },
            ],
            stmts: vec![
                Stmt::Reduce {
                    kind: KReduce::Min,
                    expr: 4,
                },
                Stmt::Store {
                    dst: acc(2, 0, vec![12, 4], 1),
                    expr: 6,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let k = sample();
        k.validate().unwrap();
        let bytes = k.encode();
        assert!(bytes.len() < 100, "{} bytes", bytes.len());
        assert_eq!(Kernel::decode(&bytes).unwrap(), k);
        // Prefix decoding leaves what follows.
        let mut more = bytes.clone();
        more.extend_from_slice(b"rest");
        assert_eq!(Kernel::decode_prefix(&more).unwrap(), (k, bytes.len()));
        assert!(matches!(
            Kernel::decode(&more),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn every_op_code_round_trips() {
        let mut k = sample();
        for (i, op) in UNARY.iter().enumerate() {
            k.exprs[4] = Expr::Unary(*op, 3);
            for (j, b) in BINARY.iter().enumerate() {
                k.exprs[3] = Expr::Binary(*b, 0, 2);
                let c = CMP[(i + j) % CMP.len()];
                k.exprs[6] = Expr::Select {
                    cmp: c,
                    a: 4,
                    b: 1,
                    on_true: 5,
                    on_false: 4,
                };
                k.stmts[0] = Stmt::Reduce {
                    kind: REDUCE[(i + j) % REDUCE.len()],
                    expr: 4,
                };
                assert_eq!(Kernel::decode(&k.encode()).unwrap(), k);
            }
        }
    }

    #[test]
    fn bad_bytes_are_errors_never_panics() {
        let k = sample();
        let bytes = k.encode();
        for n in 0..bytes.len() {
            assert!(Kernel::decode(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        // Flip every bit pattern of every byte: each result is an error or a
        // kernel that validates (decode validates what it returns).
        for at in 0..bytes.len() {
            for x in 1..=255u8 {
                let mut b = bytes.clone();
                b[at] ^= x;
                if let Ok(k2) = Kernel::decode(&b) {
                    k2.validate().unwrap();
                    assert_eq!(Kernel::decode(&k2.encode()).unwrap(), k2);
                }
            }
        }
        assert!(matches!(
            Kernel::decode(b"KKRN\x63"),
            Err(DecodeError::Malformed { pos: 4, .. })
        ));
        // Huge counts are refused before allocating.
        let mut b = b"KKRN\x01\x00".to_vec();
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        let e = Kernel::decode(&b).unwrap_err().to_string();
        assert!(e.contains("cannot fit"), "{e}");
        // An 11-byte varint.
        let mut b = b"KKRN\x01".to_vec();
        b.extend_from_slice(&[0x80; 11]);
        assert!(Kernel::decode(&b).is_err());
    }

    #[test]
    fn hostile_shapes_are_rejected_by_validation() {
        let mut k = sample();
        k.outer = vec![usize::MAX, 3];
        let e = Kernel::decode(&k.encode()).unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
        // A deep DAG (each node uses the previous one twice) validates fast.
        let mut k = sample();
        k.exprs.truncate(3);
        for i in 3..200u32 {
            k.exprs.push(Expr::Binary(KBinary::Add, i - 1, i - 1));
        }
        k.stmts = vec![Stmt::Store {
            dst: acc(2, 0, vec![12, 4], 1),
            expr: 199,
        }];
        assert_eq!(Kernel::decode(&k.encode()).unwrap(), k);
    }
}
