//===- Passes.td - CPU code generation -------------------*- tablegen -*-===//

#ifndef QOPT_TARGET_CPU_TRANSFORMS_PASSES_TD
#define QOPT_TARGET_CPU_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

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

def QOptLinalgToBLASPass : Pass<"qopt-linalg-to-blas", "::mlir::ModuleOp"> {
  let summary = "Calls the CPU kernel library for f32 matrix products";
  let description = [{
    Runs on bufferized IR: every f32 contraction `C += A·B` — a
    `linalg.generic` whose body is a multiply-add (as the ONNX conversion and
    the QOpt lowering emit matrix products), `linalg.matmul` or
    `linalg.batch_matmul` — operands indexed by loop dimensions or broadcast
    (constant 0), and at most two loops outside the matrix product (a batch,
    or a further reduction such as a weight gradient's sum over batch and
    sequence, which accumulates into the same C and is folded into K where
    the operands are contiguous), becomes a call to `qopt_kernel_sgemm` of the CPU
    kernel library (`lib/Runtime/Kernels/CPU`). The call passes each
    operand's aligned pointer, offset and strides, so transposed, broadcast
    and strided operands need no copies; the kernel folds outer loops into
    the rows where the layout allows and calls a tuned, multi-threaded BLAS
    (OpenBLAS), packing only what BLAS cannot address. Other contractions
    are left to the loop lowering.

    A product `x·Wᵀ` whose W is a quantized weight expanded just for it (a
    loop nest marked `qopt.dequantized`, whose buffer nothing else reads)
    becomes one call to `qopt_kernel_qlinear` instead, which reads the codes
    in place: 4-bit integer codes (signed, or with zero points) and NF4 in
    groups along K or per channel, 8-bit integer codes, with f32 scales
    (double-quantized ones expanded first); the loop nest is erased. For a
    few rows (decode) it streams the weight once per call; for many
    (prefill) it expands tiles of W for BLAS. Other formats keep the
    expansion and `qopt_kernel_sgemm`.
  }];
  let options = [
    Option<"int8Activations", "int8-activations", "bool", "false",
           "Quantized products quantize their activations to int8 per block "
           "of 32 on the fly and use integer dot products (AVX-512 VNNI; "
           "CPUs without it compute in f32)">,
  ];
  let dependentDialects = ["::mlir::func::FuncDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::arith::ArithDialect"];
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

#endif // QOPT_TARGET_CPU_TRANSFORMS_PASSES_TD
