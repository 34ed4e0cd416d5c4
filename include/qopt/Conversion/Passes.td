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

    Broadcasting follows numpy/ONNX rules. Where the types cannot decide
    whether a dimension broadcasts (a dynamic size that may be 1 at run
    time), the run decides: the operand is expanded when its size is 1 and
    the result's is not, and sizes that are neither equal nor 1 stop the run
    with an error naming the node (`cf.assert`, see
    `qopt-lower-runtime-checks`). Indexed reads and writes check their
    indices the same way; negative indices count from the end where ONNX
    says so.
    Values that shape computations need as constants (Reshape's shape,
    reduction axes, …) are read from constants and inline parameters;
    otherwise they are computed at run time where the operator allows.

    As the walk reaches them, decomposed layers are raised to QOpt ops
    first (the patterns of `qopt-raise-onnx`: linear layers to
    `qopt.linear`, RMSNorm chains to `qopt.rms_norm`), so that they are
    found even where the model's declared types are unranked: by then their
    inputs carry the types conversion refined.

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
    "::mlir::cf::ControlFlowDialect", "::mlir::scf::SCFDialect",
    "::mlir::qopt::QOptDialect"
  ];
}

def QOptRaiseONNXPass : Pass<"qopt-raise-onnx", "::mlir::ModuleOp"> {
  let summary = "Recognises decomposed layers in imported ONNX graphs";
  let description = [{
    Exporters write layers as chains of primitive nodes. This pass finds
    them among the `qopt.onnx_node` ops and replaces them with the QOpt graph
    ops that the adapter, quantization and rotation passes match on:

    * **linear layers**: `MatMul(x, W)` with a 2-D weight parameter
      (`K×N`, as torch.onnx stores `nn.Linear` weights transposed), plus an
      `Add` of a 1-D bias parameter when it follows, and `Gemm(x, W, b)` with
      `transB = 1`, `alpha = beta = 1` → `qopt.linear` (with a
      `linalg.transpose` of `W` in the first case);
    * **RMSNorm**: `Pow(x, 2)` (or `Mul(x, x)`) → `ReduceMean` over the last
      axis with `keepdims` → `Add(ε)` → `Sqrt` → `Div(x, ·)` (or `Mul` by
      `Reciprocal`/`Div(1, ·)`) → `Mul(γ)` → `qopt.rms_norm`.

    Nodes are only replaced when every intermediate value has no other use,
    so the rewrite never duplicates work or changes other outputs.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::qopt::QOptDialect"];
}

def QOptMaterializeParamsPass : Pass<"qopt-materialize-params",
                                     "::mlir::ModuleOp"> {
  let summary = "Replaces reads of inline parameters by constants";
  let description = [{
    Every `qopt.load_param` of a parameter whose data is inline becomes an
    `arith.constant` of that data (signless integers and floats; unsigned
    ones stay parameters, which `qopt-params-to-arguments` passes in), so upstream folding and execution without
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
    power-of-two sizes (a fast Walsh–Hadamard transform), and
    `qopt.dequantize` and quantized `qopt.linear` weights for integer and
    NF4 formats of 2, 4 or 8 bits with plain float scales (the weight is
    dequantized, then multiplied). Other QOpt ops (`quantize`, double
    quantization, float formats in storage, Hadamard orders m·2^k) are left
    in place and fail later in the pipeline.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect"
  ];
}

def QOptParamsToArgumentsPass : Pass<"qopt-params-to-arguments",
                                     "::mlir::ModuleOp"> {
  let summary = "Makes parameters the runtime provides into entry arguments";
  let description = [{
    Compiled models take the parameters that are not inline (weights kept
    in files, parameters without data) — and inline ones of unsigned integer
    type, which no constant op holds — as arguments of the entry function
    (the public `func.func` that reads them), after the model's own inputs and in
    declaration order, so that the runtime can hand over memory-mapped
    weights without a copy. Each new argument carries the parameter's name
    (`qopt.param`), its data when it has some (`qopt.external` or
    `qopt.inline`) and
    `bufferization.writable = false`: the weights are read-only, and
    bufferization copies before any write. The parameters' declarations are
    removed. Reads of such parameters from more than one function, or from a
    private one, are an error.
  }];
}

def QOptLinalgToBLASPass : Pass<"qopt-linalg-to-blas", "::mlir::ModuleOp"> {
  let summary = "Calls the CPU kernel library for f32 matrix products";
  let description = [{
    Runs on bufferized IR: every f32 contraction `C += A·B` — a
    `linalg.generic` whose body is a multiply-add (as the ONNX conversion and
    the QOpt lowering emit matrix products), `linalg.matmul` or
    `linalg.batch_matmul` — with one reduction dimension, operands indexed by
    loop dimensions or broadcast (constant 0), and at most two loops outside
    the matrix product, becomes a call to `qopt_kernel_sgemm` of the CPU
    kernel library (`lib/Runtime/Kernels/CPU`). The call passes each
    operand's aligned pointer, offset and strides, so transposed, broadcast
    and strided operands need no copies; the kernel folds outer loops into
    the rows where the layout allows and calls a tuned, multi-threaded BLAS
    (OpenBLAS), packing only what BLAS cannot address. Other contractions
    are left to the loop lowering.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::arith::ArithDialect"];
}

def QOptFuseElementwisePass : Pass<"qopt-fuse-elementwise", "::mlir::ModuleOp"> {
  let summary = "Fuses elementwise producers without recomputation";
  let description = [{
    Upstream elementwise fusion on tensors, restricted to fusions that never
    compute a value twice: a `linalg.generic` with only parallel loops is
    merged into its single consumer when the consumer reads it through a
    permutation of all its loops (elementwise chains, and reductions over
    them). Pure data movement (`linalg.transpose`, `linalg.broadcast`, or a
    generic that yields its input) folds into any single consumer, where it
    becomes an indexing map: a transposed weight or attention head is then
    read in place by the matrix product instead of being copied. Matrix
    products otherwise keep their operands materialized, so they stay plain
    multiply-add contractions for `qopt-linalg-to-blas`.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QOptCPUMathPass : Pass<"qopt-cpu-math", "::mlir::ModuleOp"> {
  let summary = "Vectorizable forms of the math functions models use most";
  let description = [{
    Rewrites `math.powf` with small constant exponents (x^2, x^3, x^0.5,
    x^-1 …) into multiplications, square roots and divisions, and
    `math.tanh` and `math.erf` (GELU) into MLIR's polynomial approximations,
    which LLVM vectorizes instead of calling libm once per element. The
    approximations are accurate to a few ulp in f32 (the ONNX node tests
    and whole-model comparisons with onnxruntime run through them).
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::vector::VectorDialect"];
}

def QOptSerializeNestedParallelPass
    : Pass<"qopt-serialize-nested-parallel", "::mlir::ModuleOp"> {
  let summary = "Keeps only the outermost scf.parallel of each loop nest";
  let description = [{
    Rewrites every `scf.parallel` nested inside another one into sequential
    `scf.for` loops, and keeps only the first dimension of a
    multi-dimensional one parallel (the others become `scf.for` inside), so
    that a loop nest from `convert-linalg-to-parallel-loops` becomes one
    parallel region over its outermost dimension (OpenMP, via
    `convert-scf-to-openmp`) whose threads each run plain, vectorizable
    inner loops — instead of a nested region per outer iteration, or one
    collapsed index whose coordinates are recomputed by division.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect"];
}

def QOptLowerRuntimeChecksPass
    : Pass<"qopt-lower-runtime-checks", "::mlir::ModuleOp"> {
  let summary = "Turns cf.assert into an error status of the compiled model";
  let description = [{
    The ONNX conversion guards what only the run can decide — indices within
    their axis (`Gather`, `GatherElements`, `GatherND`, `ScatterND`,
    `ScatterElements`), sizes that broadcast, element counts that reshape —
    with `cf.assert`, whose message names the node. Upstream lowers a failed
    assertion to `abort()`. This pass instead makes each one call
    `qopt_kernel_check_failed(message)` of the CPU kernel library when its
    condition is false; the kernel returns from the model's entry to
    `qopt_kernel_run_guarded`, so the runtime reports the message as the
    run's error (`qopt-run` and Python print it) and the model never reads
    or writes outside a buffer. Each message becomes a private constant
    string; identical messages share one.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::LLVM::LLVMDialect"];
}

#endif // QOPT_CONVERSION_PASSES_TD
