//! The `.kir` text format: canonical round trips, snapshots, and parse errors
//! with line and column.

use kiln_ir::{parse, print, text::parse_unverified};

fn roundtrip(src: &str) -> String {
    let g = parse(src).unwrap_or_else(|e| panic!("parse failed: {e}\n{src}"));
    let p1 = print(&g);
    let g2 = parse(&p1).unwrap_or_else(|e| panic!("reparse failed: {e}\n{p1}"));
    let p2 = print(&g2);
    assert_eq!(p1, p2, "print(parse(print(g))) != print(g)");
    p1
}

const SMALL: &str = r#"
# comments and blank lines are ignored
graph small {
  input %x: f32[N,4]
  input %y: f32[4]
  param %w: f32[4]
  %a = add(%x, %w)
  %b = leaky_relu(%a) {alpha = 0.2}
  %c = mul(%b, %y)
  %d = gelu(%c) {approximate = "tanh"}
  %m = gt(%d, %x)
  %s = where(%m, %d, %x)
  output out = %s
  output mask = %m
}
"#;

#[test]
fn canonical_form_snapshot() {
    insta::assert_snapshot!(roundtrip(SMALL));
}

#[test]
fn names_that_need_quotes_roundtrip() {
    let src = r#"graph "my graph" {
  input %"0": f32[2]
  input %"has space": f32[2]
  %r = add(%"0", %"has space") @"node/with \"quotes\""
  output "out put" = %r
}
"#;
    let p = roundtrip(src);
    assert!(p.contains(r#"input %"0": f32[2]"#), "{p}");
    assert!(p.contains(r#"@"node/with \"quotes\"""#), "{p}");
    assert!(p.contains(r#"output "out put" = %0"#), "{p}");
}

#[test]
fn numbering_is_canonical_regardless_of_source_names_and_order() {
    // Same graph, different names and a different (still valid) node order.
    let a = "graph g {\n input %x: f32[3]\n %p = exp(%x)\n %q = neg(%x)\n %r = add(%p, %q)\n output o = %r\n}";
    let b = "graph g {\n input %x: f32[3]\n %9 = neg(%x)\n %zz = exp(%x)\n %1 = add(%zz, %9)\n output o = %1\n}";
    assert_eq!(print(&parse(a).unwrap()), print(&parse(b).unwrap()));
}

#[test]
fn float_attributes_roundtrip_exactly() {
    for alpha in ["0.1", "1e-7", "3.0000001", "-0.0", "1e300", "5e-324"] {
        let src = format!("graph g {{\n input %x: f64[2]\n %y = leaky_relu(%x) {{alpha = {alpha}}}\n output y = %y\n}}");
        let g = parse(&src).unwrap();
        let printed = roundtrip(&print(&g));
        let want: f64 = alpha.parse().unwrap();
        let g2 = parse(&printed).unwrap();
        let n = g2.node_ids()[0];
        let got = match &g2.node(n).op.attrs()[0].1 {
            kiln_ir::AttrValue::Float(x) => *x,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "alpha {alpha} printed as {printed}"
        );
    }
}

#[test]
fn dtypes_and_quantized_types_roundtrip() {
    let mut src = String::from("graph g {\n");
    for (i, d) in [
        "f32",
        "f64",
        "f16",
        "bf16",
        "i8",
        "u8",
        "i16",
        "i32",
        "i64",
        "bool",
        "qi8<0.5,-3>",
        "qu8<0.0078125,128>",
    ]
    .iter()
    .enumerate()
    {
        src.push_str(&format!("  input %x{i}: {d}[2,N]\n  output o{i} = %x{i}\n"));
    }
    src.push_str("}\n");
    let p = roundtrip(&src);
    assert!(p.contains("qi8<0.5,-3>[2,N]"), "{p}");
    assert!(p.contains("bf16[2,N]"), "{p}");
}

#[test]
fn scalar_types_roundtrip() {
    roundtrip("graph g {\n input %x: f32[]\n %y = exp(%x)\n output y = %y\n}");
}

/// Parse `src` and return the error as `line:col: message`.
fn parse_err(src: &str) -> String {
    parse(src)
        .map(|g| print(&g))
        .expect_err("expected a parse error")
        .to_string()
}

#[test]
fn errors_carry_line_and_column() {
    let cases: &[(&str, &str)] = &[
        ("graph g {\n  input %x: f32[2]\n  %y = frobnicate(%x)\n  output y = %y\n}", "3:8: unknown op `frobnicate`"),
        ("graph g {\n  input %x: f32[2]\n  %y = relu(%z)\n  output y = %y\n}", "3:13: %z is not defined"),
        ("graph g {\n  input %x: f32[2]\n  %y = relu(%x\n  output y = %y\n}", "4:3: expected `,`"),
        ("graph g {\n  input %x: f32[2]\n  %y = leaky_relu(%x) {beta = 1.0}\n  output y = %y\n}", "3:23: leaky_relu: unknown attribute(s): beta"),
        ("graph g {\n  input %x: f32[2]\n  %y = leaky_relu(%x) {alpha = \"big\"}\n  output y = %y\n}", "3:23: leaky_relu: attribute `alpha`: expected float, found string"),
        ("graph g {\n  input %x: f33[2]\n}", "2:13: unknown dtype `f33`"),
        ("graph g {\n  input %x: f32[2]\n  input %x: f32[3]\n}", "3:3: %x is defined twice"),
        ("graph g {\n  input %x: f32[2]\n  %y = relu(%x): f32[3]\n  output y = %y\n}", "3:3: node %y (relu): result 0 is declared f32[3] but the op produces f32[2]"),
        ("graph g {\n  input %x: f32[2]\n  input %w: f32[3]\n  %y = add(%x, %w)\n  output y = %y\n}", "4:8: add: shape error: cannot broadcast"),
        ("graph g {\n  input %x: f32[2]\n  %y = relu(%x)\n", "4:1: unexpected end of file"),
        ("graph g {\n  input %x: f32[2] $\n}", "2:20: unexpected character `$`"),
        ("graph g {\n  input %x: i32[2]\n  %y = exp(%x)\n  output y = %y\n}", "3:8: exp: dtype error: exp takes a float type, found i32"),
        ("graph g {\n  input %x: f32[2]\n  output y = %x\n  output y = %x\n}", "4:3: output `y` is defined twice"),
        ("graph g {\n  input %x: f32[2]\n}", "1:1: the graph has no outputs"),
        ("graph g {\n  input %s: str[2]\n}", "2:13: unknown dtype `str`"),
        ("graph g {\n  %0 = constant() {value = tensor<f32[3]>[1.0, 2.0]}\n  output y = %0\n}", "2:28: tensor literal of type f32[3] needs 3 values, found 2"),
        ("graph g {\n  input %x: f32[2]\n  %y = add(%x)\n  output y = %y\n}", "3:8: add: expected 2 inputs, found 1"),
        ("graph g {\n  input %x: f32[2] \"unterminated\n}", "2:20: unterminated string"),
    ];
    for (src, want) in cases {
        let got = parse_err(src);
        assert!(
            got.starts_with(want),
            "for source:\n{src}\nwant prefix: {want}\n got: {got}"
        );
    }
}

#[test]
fn garbage_never_panics() {
    // Every prefix of a valid file, and some byte noise, must give an error or a
    // graph, never a panic.
    let src = SMALL;
    for i in 0..src.len() {
        if src.is_char_boundary(i) {
            let _ = parse(&src[..i]);
            let _ = parse_unverified(&src[..i]);
        }
    }
    for junk in [
        "%",
        "@",
        "graph",
        "graph {",
        "graph g { %",
        "graph g { %0 = ",
        "\"",
        "-",
        "-i",
        "1e",
        "graph g { input %x: f32[-1] }",
        "graph g { input %x: qi8<1.0>[1] }",
    ] {
        let _ = parse(junk);
    }
}

#[test]
fn new_dtypes_spell_and_roundtrip() {
    let src = r#"
graph dt {
  input %a: u64[3]
  input %b: f8e4m3fn[2]
  input %c: i4[2]
  %k = constant() {value = tensor<u64[2]>[18446744073709551615, 9223372036854775808]}
  %k2 = constant() {value = tensor<u64[3]>[1, 2, 3]}
  %s = add(%a, %k2)
  %f = cast(%b) {to = f32}
  %e = cast(%f) {to = f8e8m0, saturate = 0, round_mode = "nearest"}
  %g = cast(%f) {to = f8e5m2, saturate = 0}
  %h = cast(%c) {to = u16}
  %q = constant() {value = tensor<f4e2m1[3]>[-6.0, 0.5, 1.5]}
  %r = constant() {value = tensor<i2[2]>[-2, 1]}
  output s = %s
  output e = %e
  output g = %g
  output h = %h
  output k = %k
  output q = %q
  output r = %r
}
"#;
    let p = roundtrip(src);
    for want in [
        "input %a: u64[3]",
        "f8e4m3fn[2]",
        "i4[2]",
        "tensor<u64[2]>[18446744073709551615, 9223372036854775808]",
        "{to = f8e8m0, saturate = 0, round_mode = \"nearest\"}: f8e8m0[2]",
        "{to = f8e5m2, saturate = 0}: f8e5m2[2]",
        "cast(%c) {to = u16}: u16[2]",
        "tensor<f4e2m1[3]>[-6.0, 0.5, 1.5]",
        "tensor<i2[2]>[-2, 1]",
    ] {
        assert!(p.contains(want), "missing `{want}` in\n{p}");
    }
    // Casts to types that ignore saturate/round_mode print neither.
    assert!(p.contains("cast(%b) {to = f32}: f32[2]"), "{p}");
    // Arithmetic refuses the storage-only types.
    let bad = "graph g {\n input %x: f8e4m3fn[2]\n %y = add(%x, %x)\n output y = %y\n}";
    assert!(parse(bad).unwrap_err().to_string().contains("numeric"));
    let bad = "graph g {\n %k = constant() {value = tensor<u64[1]>[-1]}\n output k = %k\n}";
    assert!(parse(bad).unwrap_err().to_string().contains("out of range"));
}
