//===- ONNXDialect.td - ONNX import staging dialect --------*- tablegen -*-===//

#ifndef QOPT_DIALECT_ONNX_IR_ONNXDIALECT_TD
#define QOPT_DIALECT_ONNX_IR_ONNXDIALECT_TD

include "mlir/IR/OpBase.td"

def ONNX_Dialect : Dialect {
  let name = "onnx";
  let cppNamespace = "::mlir::qopt";
  let summary = "ONNX nodes as imported, before conversion";
  let description = [{
    A staging dialect of the front end: `qopt-translate --import-onnx` (and
    `qoptc`) read an ONNX graph into `func.func @main` with one `onnx.node`
    per node, keyed by operator type, domain and opset, with the node's
    attributes kept as written. `convert-onnx-to-qopt` (after
    `qopt-raise-onnx`) replaces every one by QOpt and upstream ops; nothing
    past the front end sees this dialect. Keeping the file format out of
    the QOpt dialect lets QOpt describe models, not ONNX.
  }];
  // What the importer records of the model file on the module.
  let discardableAttrs = (ins
    "::mlir::IntegerAttr":$ir_version,
    // Opset per domain; the default domain is spelled "ai.onnx".
    "::mlir::DictionaryAttr":$opset_import,
    // "producer_name producer_version".
    "::mlir::StringAttr":$producer
  );
}

class ONNX_Op<string mnemonic, list<Trait> traits = []>
    : Op<ONNX_Dialect, mnemonic, traits>;

#endif // QOPT_DIALECT_ONNX_IR_ONNXDIALECT_TD
