//===- Passes.td - qopt conversion passes ------------------*- tablegen -*-===//

#ifndef QOPT_CONVERSION_PASSES_TD
#define QOPT_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertONNXToQOptPass : Pass<"convert-onnx-to-qopt", "::mlir::ModuleOp"> {
  let summary = "Converts imported ONNX nodes into the graph dialects";
  let description = [{
    Rewrites every `qopt.onnx_node` that `qopt-translate --import-onnx`
    produced into `linalg`, `tensor`, `arith` and `math` ops on tensors (and
    QOpt ops where they fit), following the ONNX operator specification of
    the node's opset. Handlers are kept in a table keyed by (domain, op type,
    since-version), as the ONNX changelog versions operators.

    Broadcasting follows numpy/ONNX rules; a dynamic dimension is assumed to
    match the other operands' size (a runtime size of 1 is not broadcast).
    Values that shape computations need as constants (Reshape's shape,
    reduction axes, …) are read from constants and inline parameters;
    otherwise they are computed at run time where the operator allows.

    A node no handler supports, or one whose attributes or inputs the
    handler cannot honour, is an error naming the node, op type, domain and
    opset — unless `allow-unsupported` is set, which leaves it in place.
  }];
  let options = [
    Option<"allowUnsupported", "allow-unsupported", "bool", "false",
           "Leave nodes that cannot be converted as qopt.onnx_node instead "
           "of failing">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect",
    "::mlir::qopt::QOptDialect"
  ];
}

def QOptMaterializeParamsPass : Pass<"qopt-materialize-params",
                                     "::mlir::ModuleOp"> {
  let summary = "Replaces reads of inline parameters by constants";
  let description = [{
    Every `qopt.load_param` of a parameter whose data is inline becomes an
    `arith.constant` of that data, so upstream folding and execution without
    a runtime (mlir-runner) see the values; inline parameters left without
    readers are removed. Parameters stored in files are left to the
    runtime.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def ConvertQOptToLinalgPass : Pass<"convert-qopt-to-linalg", "::mlir::ModuleOp"> {
  let summary = "Lowers QOpt graph ops to their linalg reference semantics";
  let description = [{
    Rewrites QOpt ops into `linalg.generic` on tensors that compute exactly
    what each op's description says; this is the semantics the CPU path
    executes and the other backends are checked against. Lowered so far:
    `qopt.rms_norm`, `qopt.layer_norm` (statistics in f32 whatever the
    element type), `qopt.linear` and `qopt.lora` (with DoRA, gate and middle
    parts; inference: dropout is the identity) with float weights,
    `qopt.smooth`, `qopt.fake_quant` / `qopt.lsq` forward (every format and
    granularity; `per_block` needs static shapes) and `qopt.hadamard` for
    power-of-two sizes (a fast Walsh–Hadamard transform). Other QOpt ops
    (quantized weights, `quantize`/`dequantize`, Hadamard orders m·2^k) are
    left in place and fail later in the pipeline.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect"
  ];
}

#endif // QOPT_CONVERSION_PASSES_TD
