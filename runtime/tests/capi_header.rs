//! `include/kiln.h` is hand-written; this test keeps it in sync with
//! `src/capi.rs`: every `#[no_mangle]` function is declared in the header
//! with the same parameter names and C types (and nothing else is), and the
//! enums and `kiln_tensor` have the same members in the same order.

use std::collections::BTreeMap;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Spaces only where C needs them: `const char **` → `const char**`.
fn norm(t: &str) -> String {
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    t.replace(" *", "*").replace("* ", "*")
}

/// A Rust FFI type in C spelling.
fn c_type(rust: &str) -> String {
    let mut t = rust.trim();
    let mut layers = Vec::new();
    loop {
        if let Some(r) = t.strip_prefix("*const ") {
            layers.push(true);
            t = r.trim();
        } else if let Some(r) = t.strip_prefix("*mut ") {
            layers.push(false);
            t = r.trim();
        } else {
            break;
        }
    }
    // Only the innermost pointer may be const (`const T**`).
    assert!(
        layers.iter().rev().skip(1).all(|c| !c),
        "unsupported pointer type {rust}"
    );
    let base = match t {
        "c_char" => "char",
        "u8" => "uint8_t",
        "i32" => "int32_t",
        "usize" => "size_t",
        "std::ffi::c_void" | "c_void" => "void",
        "()" => "void",
        other if other.starts_with("kiln_") => other,
        other => panic!("no C spelling for Rust type {other}"),
    };
    let konst = if layers.last() == Some(&true) {
        "const "
    } else {
        ""
    };
    norm(&format!("{konst}{base}{}", "*".repeat(layers.len())))
}

type Sig = (String, Vec<(String, String)>);

fn rust_functions(src: &str) -> BTreeMap<String, Sig> {
    let mut out = BTreeMap::new();
    for chunk in src.split("\n#[no_mangle]\n").skip(1) {
        let start = chunk.find("fn ").expect("fn after #[no_mangle]") + 3;
        let rest = &chunk[start..];
        let open = rest.find('(').unwrap();
        let name = rest[..open].trim().to_string();
        let close = rest.find(')').unwrap();
        let params = rest[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, t) = p.split_once(':').expect("name: type");
                (n.trim().to_string(), c_type(t))
            })
            .collect();
        let after = &rest[close + 1..rest.find('{').unwrap()];
        let ret = match after.trim().strip_prefix("->") {
            Some(r) => c_type(r),
            None => "void".into(),
        };
        assert!(
            out.insert(name.clone(), (ret, params)).is_none(),
            "{name} twice"
        );
    }
    out
}

fn strip_c_comments(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("*/").expect("closed comment");
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn c_functions(src: &str) -> BTreeMap<String, Sig> {
    let mut out = BTreeMap::new();
    for stmt in src.split(';') {
        let s = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(open) = s.find('(') else { continue };
        if s.contains('{') || s.contains("typedef") || !s.ends_with(')') {
            continue;
        }
        let head = &s[..open];
        let name_at = head
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let name = head[name_at..].to_string();
        let ret = norm(&head[..name_at]);
        let params_s = &s[open + 1..s.len() - 1];
        let params = if params_s.trim() == "void" {
            Vec::new()
        } else {
            params_s
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    let at = p
                        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap()
                        + 1;
                    (p[at..].to_string(), norm(&p[..at]))
                })
                .collect()
        };
        assert!(
            out.insert(name.clone(), (ret, params)).is_none(),
            "{name} twice"
        );
    }
    out
}

/// `(NAME, value)` of a Rust `enum name { A = 0, ... }`.
fn rust_enum(src: &str, name: &str) -> Vec<(String, i64)> {
    let at = src
        .find(&format!("pub enum {name} {{"))
        .unwrap_or_else(|| panic!("no enum {name}"));
    let body = &src[at..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && l.contains('='))
        .map(|l| {
            let (n, v) = l.trim_end_matches(',').split_once('=').unwrap();
            (n.trim().to_string(), v.trim().parse().unwrap())
        })
        .collect()
}

fn c_enum(src: &str, name: &str) -> Vec<(String, i64)> {
    let at = src
        .find(&format!("typedef enum {name} {{"))
        .unwrap_or_else(|| panic!("no enum {name} in kiln.h"));
    let body = &src[at..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    body.split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once('=').unwrap();
            (n.trim().to_string(), v.trim().parse().unwrap())
        })
        .collect()
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let rust = rust_functions(&read("src/capi.rs"));
    let c = c_functions(&strip_c_comments(&read("include/kiln.h")));
    assert!(rust.len() >= 18, "only {} exports found", rust.len());
    for (name, sig) in &rust {
        match c.get(name) {
            None => panic!("kiln.h does not declare {name}"),
            Some(h) => assert_eq!(h, sig, "{name}: header (left) vs capi.rs (right)"),
        }
    }
    for name in c.keys() {
        assert!(
            rust.contains_key(name),
            "kiln.h declares {name}, capi.rs does not export it"
        );
    }
}

#[test]
fn header_enums_and_tensor_match() {
    let rs = read("src/capi.rs");
    let h = strip_c_comments(&read("include/kiln.h"));
    for e in ["kiln_status", "kiln_dtype"] {
        let (r, c) = (rust_enum(&rs, e), c_enum(&h, e));
        assert!(!r.is_empty());
        assert_eq!(c, r, "{e}: header (left) vs capi.rs (right)");
    }
    // kiln_tensor's fields, in order.
    let at = rs.find("pub struct kiln_tensor {").unwrap();
    let body = &rs[at..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    let rust_fields: Vec<(String, String)> = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .map(|l| {
            let (n, t) = l.trim_end_matches(',').split_once(':').unwrap();
            (n.trim().to_string(), c_type(t))
        })
        .collect();
    let at = h.find("typedef struct kiln_tensor {").unwrap();
    let body = &h[at..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    let c_fields: Vec<(String, String)> = body
        .split(';')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let at = l
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap()
                + 1;
            (l[at..].to_string(), norm(&l[..at]))
        })
        .collect();
    assert_eq!(
        c_fields, rust_fields,
        "kiln_tensor: header (left) vs capi.rs (right)"
    );
}

/// The comparison itself can fail: a changed parameter type is caught.
#[test]
fn a_mismatch_is_detected() {
    let rs = read("src/capi.rs").replacen("threads: usize", "threads: i32", 1);
    let rust = rust_functions(&rs);
    let c = c_functions(&strip_c_comments(&read("include/kiln.h")));
    assert_ne!(rust.get("kiln_session_load"), c.get("kiln_session_load"));
}
