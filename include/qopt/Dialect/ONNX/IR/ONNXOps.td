//===- ONNXOps.td - ONNX import staging ops ----------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_ONNX_IR_ONNXOPS_TD
#define QOPT_DIALECT_ONNX_IR_ONNXOPS_TD

include "qopt/Dialect/ONNX/IR/ONNXDialect.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

def ONNXNodeOp : ONNX_Op<"node"> {
  let summary = "an imported ONNX node, before conversion";
  let description = [{
    One node of an ONNX graph as the importer reads it: the operator type,
    its domain (empty for the default `ai.onnx` domain), the opset version
    the model imports for that domain, and the node's attributes as a
    dictionary (`f32` floats, `i64` integers, strings, dense tensors, and
    arrays of those). Inputs the node leaves out (ONNX's empty names) are
    `onnx.none` values; results have the types the model declares.

    The location is the node's name (a `NameLoc`), so diagnostics and pass
    options can refer to `/model/layers.0/self_attn/q_proj/MatMul`; the
    exporter's metadata (e.g. torch's `pkg.torch.onnx.name_scopes`) is kept
    in `metadata`.

    Conversion patterns keyed by (domain, op type, opset) rewrite these ops
    into the graph dialects; a node no pattern converts is reported with its
    name, op type, domain and opset. With `--allow-unsupported` it stays as
    this op for inspection.

    ```mlir
    %y = onnx.node "Gemm" opset 13 (%a, %w, %b) {alpha = 1.0 : f32, transB = 1 : i64}
        : (tensor<?x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> tensor<?x8xf32>
    %n = onnx.node "SkipLayerNormalization" domain "com.microsoft" opset 1 (%x, %s, %g)
        {epsilon = 9.99999974E-6 : f32} : (...) -> ...
    ```
  }];
  let arguments = (ins StrAttr:$op_type, DefaultValuedStrAttr<StrAttr, "">:$domain,
                       I64Attr:$opset, DictionaryAttr:$onnx_attrs,
                       OptionalAttr<DictionaryAttr>:$metadata,
                       Variadic<AnyType>:$inputs);
  let results = (outs Variadic<AnyType>:$outputs);
  let assemblyFormat = [{
    $op_type (`domain` $domain^)? `opset` $opset ` ` `(` $inputs `)` $onnx_attrs
    (`metadata` $metadata^)? attr-dict `:` functional-type($inputs, results)
  }];
  let hasVerifier = 1;
}

def ONNXNoneOp : ONNX_Op<"none", [Pure]> {
  let summary = "an optional ONNX input that the node leaves out";
  let description = [{
    ONNX marks an omitted optional input with an empty name, so that later
    inputs keep their positions (`Clip(x, "", max)`). The importer passes
    this op's result in its place.

    ```mlir
    %none = onnx.none
    %y = onnx.node "Clip" opset 13 (%x, %none, %max) {} : (tensor<4xf32>, none, tensor<f32>) -> tensor<4xf32>
    ```
  }];
  let results = (outs NoneType:$result);
  let assemblyFormat = "attr-dict";
}

#endif // QOPT_DIALECT_ONNX_IR_ONNXOPS_TD
