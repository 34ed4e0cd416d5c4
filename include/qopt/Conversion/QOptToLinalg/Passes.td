//===- Passes.td - QOpt to linalg ------------------------*- tablegen -*-===//

#ifndef QOPT_CONVERSION_QOPTTOLINALG_PASSES_TD
#define QOPT_CONVERSION_QOPTTOLINALG_PASSES_TD

include "mlir/Pass/PassBase.td"

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
    power-of-two sizes (a fast Walsh–Hadamard transform), and
    `qopt.dequantize` and quantized `qopt.linear` weights for integer and
    NF4 formats of 2, 4 or 8 bits with plain float scales (the weight is
    dequantized, then multiplied). Other QOpt ops (`quantize`, double
    quantization, float formats in storage, Hadamard orders m·2^k) are left
    in place and fail later in the pipeline.

    Sizes the types leave open are checked at run time: where an input's
    dimension is dynamic but must equal a weight's (a linear layer's or
    adapter's K, a norm's scale and bias, SmoothQuant's scales), a
    `cf.assert` naming the node stops the run instead of reading out of
    bounds.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::cf::ControlFlowDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect"
  ];
}

#endif // QOPT_CONVERSION_QOPTTOLINALG_PASSES_TD
