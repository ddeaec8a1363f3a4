//! Decodes the ONNX backend test data (`node/*/model.onnx` and every
//! `node/*/test_data_set_*/*.pb`) when it is present.
//!
//! The directory is `$KILN_ONNX_TESTS`, or by default `../shared/onnx-tests`
//! relative to the workspace root. Tensors of types kiln does not support
//! (strings, float8, int4, ...) and `.pb` files that hold sequences, maps or
//! optionals rather than tensors may fail to decode, but nothing may panic,
//! every model must decode, and every tensor of a supported type must convert.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_compiler::onnx::{
    dtype_from_onnx, load_model, proto, read_tensor_pb, tensor_from_proto, tensor_to_proto,
    OnnxError,
};
use prost::Message;

fn data_dir() -> PathBuf {
    match std::env::var_os("KILN_ONNX_TESTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/onnx-tests"),
    }
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    v.sort();
    v
}

/// The kind of a decode failure, for the summary.
fn kind(e: &OnnxError) -> String {
    match e {
        OnnxError::Io { .. } => "I/O".to_string(),
        OnnxError::Decode { .. } => "not a TensorProto".to_string(),
        OnnxError::Tensor { message, .. } => match message.find("unsupported data type ") {
            Some(i) => message[i..].to_string(),
            None => "other tensor error".to_string(),
        },
    }
}

#[test]
fn onnx_backend_test_data_decodes() {
    let root = data_dir();
    let node = root.join("node");
    if !node.is_dir() {
        eprintln!(
            "skipping: ONNX test data not found at {} (set KILN_ONNX_TESTS to its directory)",
            node.display()
        );
        return;
    }

    let (mut models, mut initializers, mut pbs, mut tensors, mut non_tensors) = (0, 0, 0, 0, 0);
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unexpected = Vec::new();

    for case in sorted_dir(&node) {
        let model_path = case.join("model.onnx");
        let mut graph = None;
        if model_path.is_file() {
            match load_model(&model_path) {
                Ok(m) => {
                    models += 1;
                    let g = graph.insert(m.graph.unwrap_or_default());
                    for init in &g.initializer {
                        match tensor_from_proto(init) {
                            Ok(_) => initializers += 1,
                            Err(e) => failures.entry(kind(&e)).or_default().push(e.to_string()),
                        }
                    }
                }
                Err(e) => unexpected.push(e.to_string()),
            }
        }
        for set in sorted_dir(&case) {
            let is_set = set
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_data_set_"));
            if !is_set || !set.is_dir() {
                continue;
            }
            for pb in sorted_dir(&set) {
                if pb.extension().and_then(|e| e.to_str()) != Some("pb") {
                    continue;
                }
                pbs += 1;
                let bytes = std::fs::read(&pb).expect("readable .pb");
                let where_ = pb.strip_prefix(&node).unwrap_or(&pb).display().to_string();
                let result = read_tensor_pb(&bytes);
                if !declared_as_tensor(graph.as_ref(), &pb) {
                    // A sequence, map or optional: decoding it as a tensor may
                    // succeed or fail, but must not panic.
                    non_tensors += 1;
                    continue;
                }
                match result {
                    Ok((name, t)) => {
                        tensors += 1;
                        // Re-encoding gives the same tensor back.
                        let again = tensor_from_proto(&tensor_to_proto(&name, &t));
                        if again.as_ref().ok() != Some(&t) {
                            unexpected.push(format!("{where_}: round trip changed the tensor"));
                        }
                    }
                    Err(e) => {
                        // Only element types kiln cannot hold may fail.
                        let supported = proto::TensorProto::decode(bytes.as_slice())
                            .is_ok_and(|p| dtype_from_onnx(p.data_type()).is_some());
                        let msg = format!("{where_}: {e}");
                        if supported {
                            unexpected.push(msg.clone());
                        }
                        failures.entry(kind(&e)).or_default().push(msg);
                    }
                }
            }
        }
    }

    println!("ONNX test data at {}", root.display());
    println!("  models decoded:        {models}");
    println!("  initializers decoded:  {initializers}");
    println!("  .pb files:             {pbs}");
    println!("  .pb tensors decoded:   {tensors}");
    println!("  .pb non-tensor values: {non_tensors} (sequences, maps, optionals; not checked)");
    for (kind, list) in &failures {
        println!("  failed ({kind}): {} e.g. {}", list.len(), list[0]);
    }
    assert!(
        models > 0 && tensors > 0,
        "found no test data under {}",
        node.display()
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected failures:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}

/// Whether the model declares the graph input or output that `pb`
/// (`input_K.pb` or `output_K.pb`) holds as a tensor, rather than as a
/// sequence, map or optional, whose `.pb` is not a `TensorProto` but may
/// happen to parse as one. Unknown cases count as tensors.
fn declared_as_tensor(graph: Option<&proto::GraphProto>, pb: &Path) -> bool {
    let Some(graph) = graph else { return true };
    let stem = pb.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let (list, k) = if let Some(k) = stem.strip_prefix("input_") {
        (&graph.input, k)
    } else if let Some(k) = stem.strip_prefix("output_") {
        (&graph.output, k)
    } else {
        return true;
    };
    let Some(info) = k.parse::<usize>().ok().and_then(|k| list.get(k)) else {
        return true;
    };
    match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(proto::type_proto::Value::TensorType(_)) | None => true,
        Some(_) => false,
    }
}
