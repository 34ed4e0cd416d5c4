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
    parts; dropout is the identity unless `training-dropout` is set) with float or quantized
    weights, `qopt.smooth`, `qopt.fake_quant` / `qopt.lsq` forward (every
    format and granularity; `per_block` needs static shapes),
    `qopt.hadamard` for power-of-two sizes (a fast Walsh–Hadamard
    transform), `qopt.random_uniform`, `qopt.embedding` (ids checked
    against the table's rows at run time), and `qopt.dequantize` (and quantized
    weights, dequantized then multiplied) for integer and NF4 formats of 2,
    4 or 8 bits with plain float scales, of static or dynamic shape. The
    mid-level upstream ops the ONNX conversion produces are lowered here too,
    late: `linalg.softmax` to its stable form (sums accumulated in f32; one
    marked `qopt.safe_softmax`, torch's softmax guarded by
    `Where(IsNaN(P), 0, P)`, gives a row of -inf 0 through finite steps);
    the products (`linalg.matmul`, `linalg.batch_matmul`, `linalg.contract`)
    stay named for the targets' kernel selection.

    Quantized tensors then become their storage wherever they flow: a 1:N
    type conversion replaces each `!qopt.qtensor` value by its codes, scales
    (a nested quantized scale by its own storage), zero points and offset in
    function signatures, calls, returns, branches and `scf.for` / `scf.if` /
    `scf.while`, so a quantized tensor may be a function argument or result,
    a loop-carried value or a conditional's result; `qopt.assemble` and
    `qopt.disassemble` vanish. This step is a dialect conversion in which
    QOpt is illegal (parameters and the random key excepted, which
    `qopt-params-to-arguments` handles): a QOpt op the pass cannot lower
    (`qopt.quantize`, double-quantized scales, float formats in storage,
    Hadamard orders m·2^k, …) is an error naming the op and why.

    Sizes the types leave open are checked at run time: where an input's
    dimension is dynamic but must equal a weight's (a linear layer's or
    adapter's K, a norm's scale and bias, SmoothQuant's scales, the scales
    of a quantized tensor of dynamic shape), a `cf.assert` naming the node
    stops the run instead of reading out of bounds.
  }];
  let options = [
    Option<"trainingDropout", "training-dropout", "bool", /*default=*/"false",
           "Apply each qopt.lora's dropout to its adapter's input (training "
           "mode, as PEFT's lora_dropout): the mask is qopt.random_uniform's "
           "numbers of the run's key (qopt.random_key) in the stream of the "
           "32-bit FNV-1a hash of the layer's module path (without one, its "
           "position among the module's qopt.lora ops; the next free number "
           "on a collision), an element dropped where u < p, "
           "survivors scaled by 1/(1-p). Off, dropout is the identity "
           "(inference)">,
    Option<"attentionLibrary", "attention-library", "std::string",
           /*default=*/"\"\"",
           "Lower each qopt.attention the named kernel takes (f32 query, "
           "key, value and result; an f32 or i1 mask or none; static head "
           "sizes up to 128) to one call of it instead of linalg: its "
           "arguments are flags (float mask 1, bool mask 2, causal 4, soft "
           "cap 8), the scale and soft cap (f64), then query, key, value, "
           "the mask (rank 4; the query where there is none) and the "
           "output as strided memrefs (`<name>_i1` for a bool mask). The "
           "CUDA target sets it (qopt_cuda_attention, the kernel library's "
           "fused forward pass); the checks of the op's sizes stay in the "
           "IR. qopt.attention_grad becomes a call of `<name>_backward` "
           "(then the output, its gradient, and the query, key and value "
           "gradients and a [B, Hq, S, 2] f32 scratch buffer)">,
    Option<"keepAttention", "keep-attention", "bool", /*default=*/"false",
           "Leave each qopt.attention that attention-library's kernel "
           "would take as it is (qoptc's train step for the CUDA target: "
           "qopt-build-train-step then differentiates it whole into "
           "qopt.attention_grad, and qopt-cuda-codegen lowers both to "
           "library calls, so no [B, H, S, L] probabilities are stored for "
           "the backward)">,
    Option<"keepNorms", "keep-norms", "bool", /*default=*/"false",
           "Leave each qopt.rms_norm / qopt.layer_norm that norm-library's "
           "kernel would take (f32, over the last axis) as it is "
           "(qoptc's train step for the CUDA target: qopt-build-train-step "
           "then differentiates it whole into qopt.norm_grad, and "
           "qopt-cuda-codegen lowers both to library calls)">,
    Option<"hadamardLibrary", "hadamard-library", "std::string",
           /*default=*/"\"\"",
           "Lower each f32 qopt.hadamard over the last axis (of a static "
           "size) whose block n = base * 2^k is from 2 to 23040, with a "
           "base of at most 252 (longer: base * 2^k / 8192 at most 252), "
           "to one call of the named fast "
           "Walsh-Hadamard transform: flags (1: signs), n, the scale "
           "1/sqrt(n) (f64), then the input viewed as [rows, D], the signs, "
           "H_base (an i8 constant [base, base]; [[1]] for powers of two) "
           "and the output as strided memrefs. The CUDA target sets it "
           "(qopt_cuda_hadamard)">,
    Option<"normLibrary", "norm-library", "std::string", /*default=*/"\"\"",
           "Lower each qopt.rms_norm / qopt.layer_norm of f32 data over the "
           "last axis to one call of the named row kernel: flags (LayerNorm "
           "1, beta 2) and epsilon (f64), then the input viewed as [rows, "
           "D], gamma, beta (gamma where there is none) and the output as "
           "strided memrefs. The CUDA target sets it (qopt_cuda_norm, a warp "
           "per row). qopt.norm_grad becomes a call of `<name>_backward`: "
           "flags (LayerNorm 1, gamma's gradient wanted 4, beta's 8) and "
           "epsilon, then the input viewed as [rows, D], gamma, the output's "
           "gradient as [rows, D], and the input's, gamma's and beta's "
           "gradients">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::bufferization::BufferizationDialect",
    "::mlir::cf::ControlFlowDialect", "::mlir::func::FuncDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect"
  ];
}

#endif // QOPT_CONVERSION_QOPTTOLINALG_PASSES_TD
