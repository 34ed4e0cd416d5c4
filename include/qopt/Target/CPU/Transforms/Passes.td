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

    First, a sum of a contraction's result and another tensor of its type
    (a residual connection, a second product such as a LoRA branch) becomes
    the contraction's starting accumulator: the product computes
    `C = (init + r) + A·B` (the kernels accumulate into C), and the sum's
    own pass over the output is gone. A zero-filled accumulator is replaced
    by `r` itself; otherwise `init + r` is one elementwise op, fused with
    the init's producer (a broadcast bias). Only a named contraction or a
    generic whose body is exactly `acc + a*b`, whose result has no other
    use, is changed (a sum under a unary op, e.g. `-(acc + a*b)`, is not).
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QOptCPUMathPass : Pass<"qopt-cpu-math", "::mlir::ModuleOp"> {
  let summary = "Vectorizable forms of the math functions models use most";
  let description = [{
    Rewrites `math.powf` with small constant exponents (x^2, x^3, x^0.5,
    x^-1 …) into multiplications, square roots and divisions, and
    `math.tanh`, `math.erf` (GELU) and `math.exp` (softmax, sigmoid, SiLU)
    into MLIR's polynomial approximations, which LLVM vectorizes instead of
    calling libm once per element. The approximations are accurate to a
    few ulp in f32 (`exp`: relative error ≤ 3.1e-7 over [-87.3, 88.7],
    against libm's < 1 ulp; 0 below -87.7, where libm still returns
    subnormals, and +inf above 88.7; the ONNX node tests and whole-model
    comparisons with onnxruntime run through them).
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
    groups along K or per channel, 8-bit integer codes, FP8 (E4M3FN, E5M2)
    per channel or per tensor, with f32 scales (double-quantized ones
    expanded first); the loop nest is erased. For a few rows (decode) it
    streams the weight once per call; for many (prefill) it runs a GEMM
    (int8 activations: VNNI register tiles; f32: blocks of W dequantized
    into the f32 kernel's panels). Other formats keep the expansion and
    `qopt_kernel_sgemm`.

    With `cuda-qlinear=NAME` (the CUDA target) only the quantized products
    the CUDA kernel library takes (int4 / uint4 / int8 / uint8 / NF4 / FP8
    codes, K and the scale group multiples of 32) become calls, of `NAME` with
    `qopt_kernel_qlinear`'s arguments (`qopt_cuda_qlinear`, which launches
    the GEMV for a few rows and the tiled GEMM for more, or
    `qopt_cuda_qlinear_emulated`, which runs them on the CPU), including
    products `dY·W` that read the expanded weight untransposed (a linear
    layer's dX in the backward: flag 8, which the CPU kernel does not
    take); with
    `cuda-sgemm=NAME` too, the other products become calls of `NAME` with
    `qopt_kernel_sgemm`'s arguments (`qopt_cuda_sgemm`, the tiled GEMM, or
    `qopt_cuda_sgemm_emulated`), except those reading a constant (host
    memory, which the GPU cannot read); the rest stay loop nests
    (kernels).

    With `cuda-qlinear-lora=NAME` too, a LoRA layer's sum `y = x·Wᵀ +
    s·(z·Bᵀ)` (an elementwise loop nest adding the quantized product and
    `s` times an f32 product `z·Bᵀ`, both computed from zeros into
    buffers nothing else reads, `z` the branch's `x·Aᵀ`) becomes one call
    of `NAME` (`qopt_cuda_qlinear_lora`, or `_emulated`), which writes `y`
    with the branch added in the kernels' epilogue (the GEMV's lanes add
    its rank terms before their reduction; the GEMM runs them as further K
    steps): the branch's product, its buffer and the sum's kernel go.
    Where `z = x·Aᵀ` is itself a product from zeros over the quantized
    product's own `x` (same buffer, same indexing; `A` the same for every
    outer index, contiguous along K; nothing but the branch reading `z` and
    nothing writing `x` or `A` before the call), the call computes `z` too
    (A's pointer, offset and strides follow the scale; zeros: `z` given):
    the launch's first blocks write `z`, the others wait for them before
    their epilogue, so the whole LoRA layer is one launch and `z` still
    holds `x·Aᵀ` for the backward.

    On the CUDA target, a library product whose C starts as zeros that only
    it reads (C allocated here, contiguous, every outer loop indexing it,
    or for the f32 calls none: a weight gradient summed over batch and
    sequence, which the GEMM folds into K;
    the last use of C before it fills C with 0 or copies zeros into it)
    writes C instead of adding to it: the zeros' copy or fill (a kernel of
    its own) goes, and the call is `NAME_overwrite` for `cuda-sgemm=NAME`
    (`qopt_cuda_sgemm_overwrite`, `qopt_cuda_sgemm_emulated_overwrite`) or
    sets flag 16 of the quantized calls.

    With `cuda-matmul-precision=medium` (`qoptc
    --cuda-matmul-precision=medium`, which also names the GEMM's
    tensor-core entry `qopt_cuda_sgemm_bf16` as `cuda-sgemm`), the
    quantized calls set flag 64: the products that take the GEMM round
    their operands to bf16 and multiply on the tensor cores (f32
    accumulators); with `high`, flag 128: tf32 (`qopt_cuda_sgemm_tf32`).
    Per-token (W8A8 / W4A4) products, integer GEMMs, do not.

    The CUDA quantized calls also read double-quantized scales as they are
    (QLoRA's: 8-bit codes of a 256-value constant table times an absmax per
    block, plus an offset): where the f32 scales come from a loop nest of
    that form that nothing else reads, the call takes the codes, absmax,
    block, offset and table (eight arguments after C's; zeros: f32 scales)
    and the nest goes.

    A quantized product on the activations of a dynamic per-token
    quantizer (int4 / uint4 / int8 codes without zero points for int8,
    tokens of 2-8 bits) reads the quantizer's input and sets flag
    `4 | bits << 8`: the CUDA library quantizes the rows and multiplies
    the integer codes (the quantizer's reduction and loop go). E4M3
    tokens (`qopt.per_token_quant = 228`) before an FP8 weight with one
    scale per row or per tensor do the same (`bits` 228: E4M3 codes,
    multiplied on the tensor cores); the CPU target keeps their loop. With
    `cuda-quantize-rows=NAME` the rows of an input of the identity layout
    are quantized once, by a call of `NAME` (`qopt_cuda_quantize_rows`)
    just before the quantizer, into int8 codes laid out as the input and
    one f32 step per row, and every product of that quantizer (a layer's
    q, k and v projections) reads them (flag 32; the steps' pointer and
    offset in the nested scales' first slots). With `cuda-norm=NORM` and
    `cuda-norm-quant=FUSED` too, where that input is the whole output of
    a call of `NORM` (`qopt_cuda_norm`) that nothing reads in between and
    whose inputs nothing writes in between, one call of `FUSED`
    (`qopt_cuda_norm_quant`: the norm's arguments, then the bits, whether
    y is still wanted, and the codes' and steps' pointers and offsets)
    replaces both: the norm's warps write the codes and steps (y only
    where something reads it later; else its buffer goes). Likewise with
    `cuda-hadamard=H` and `cuda-hadamard-quant=HQ` for a call of `H`
    (`qopt_cuda_hadamard`, QuaRot's online rotation) over rows of at most
    23040: one call of `HQ` (`qopt_cuda_hadamard_quant`, a block a row).
    Where no norm or Hadamard transform writes the rows but a loop nest
    that only smooths them (`y = x / s` or `x · s`, `s` along K:
    SmoothQuant's where no norm takes `s` in gamma) and nothing else reads
    them, the quantization reads x and applies `s` itself, and the nest
    goes.

    With `cuda-adamw=A` (the CUDA target), a train step's AdamW updates
    (OptimizerBuilder's loop nests, marked `qopt.adamw`, whose bodies are
    exactly its formula) that share the step's scalars become one call of
    `A` (`qopt_cuda_adamw`, multi-tensor: one launch for up to 256
    parameters) at the last of them, the parameters' buffers in a table on
    the stack. Where bufferization gave a later update an earlier one's dead
    gradient allocation, that update first gets a fresh buffer (which every
    later use takes); a nest whose buffers are still used in between starts
    a call of its own.
  }];
  let options = [
    Option<"int8Activations", "int8-activations", "bool", "false",
           "Quantized products quantize their activations to int8 per block "
           "of 32 on the fly and use integer dot products (AVX-512 VNNI; "
           "CPUs without it compute in f32)">,
    Option<"cudaQLinear", "cuda-qlinear", "std::string", "\"\"",
           "Call this CUDA quantized-GEMV entry for the quantized products "
           "it takes, and leave every other product as loops">,
    Option<"cudaSgemm", "cuda-sgemm", "std::string", "\"\"",
           "With cuda-qlinear: call this CUDA GEMM entry (qopt_kernel_sgemm's "
           "arguments) for the other products whose operands are not "
           "constants">,
    Option<"cudaMatmulPrecision", "cuda-matmul-precision", "std::string",
           "\"highest\"",
           "With cuda-qlinear: `high` / `medium`: the quantized calls ask "
           "for the GEMM's tensor-core entries (flag 128: operands rounded "
           "to tf32; 64: to bf16; f32 accumulators; the GEMV of up to 16 "
           "rows stays f32); `highest`: f32">,
    Option<"cudaQLinearLoRA", "cuda-qlinear-lora", "std::string", "\"\"",
           "With cuda-qlinear: call this CUDA entry (qopt_cuda_qlinear_lora's "
           "arguments) for a quantized product plus a LoRA branch z·Bᵀ, "
           "summed by an elementwise loop nest">,
    Option<"cudaQuantizeRows", "cuda-quantize-rows", "std::string", "\"\"",
           "With cuda-qlinear: quantize the input of each per-token "
           "quantizer whose products the W8A8 calls take once, with this "
           "entry (qopt_cuda_quantize_rows' arguments), and give those "
           "calls its int8 codes and steps">,
    Option<"cudaNorm", "cuda-norm", "std::string", "\"\"",
           "With cuda-quantize-rows and cuda-norm-quant: the norm entry "
           "(qopt_cuda_norm's arguments) whose output such a quantization "
           "reads">,
    Option<"cudaNormQuant", "cuda-norm-quant", "std::string", "\"\"",
           "With cuda-quantize-rows and cuda-norm: compute such a norm and "
           "the quantization of its output in one call of this entry "
           "(qopt_cuda_norm_quant's arguments)">,
    Option<"cudaHadamard", "cuda-hadamard", "std::string", "\"\"",
           "With cuda-quantize-rows and cuda-hadamard-quant: the Hadamard "
           "entry (qopt_cuda_hadamard's arguments) whose output such a "
           "quantization reads">,
    Option<"cudaAdamW", "cuda-adamw", "std::string", "\"\"",
           "Update the parameters of a train step's AdamW loop nests "
           "(OptimizerBuilder's, marked qopt.adamw: f32, identity layouts, "
           "the body exactly the optimizer's formula) with one call of this "
           "multi-tensor entry per step (qopt_cuda_adamw): the count, flags "
           "(1: weight decay, 2: clipping), the step's scalars and the "
           "body's constants (f32), then a [count, 8] i64 table on the "
           "stack: each parameter's seven buffers' addresses and its "
           "elements. Deallocations between the nests move after the "
           "call">,
    Option<"cudaHadamardQuant", "cuda-hadamard-quant", "std::string", "\"\"",
           "With cuda-quantize-rows and cuda-hadamard: compute such a "
           "Hadamard transform (rows of at most 23040) and the quantization "
           "of its output in one call of this entry "
           "(qopt_cuda_hadamard_quant's arguments)">,
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
    `scf.for` loops, and turns the last dimension of a multi-dimensional one
    into an `scf.for` inside it, so that a loop nest from
    `convert-linalg-to-parallel-loops` becomes one parallel region over its
    outer dimensions (on the kernel library's threads, via
    `qopt-parallel-to-pool`, which splits their combined index) whose
    threads each run plain loops over the last, contiguous dimension that
    LLVM vectorizes. Keeping more than the first dimension parallel leaves
    work to split when the first is a batch of 1 (in nests of three or more
    dimensions: a 2-D nest keeps only its first).

    With `last-dim-sequential=false` (the CUDA target) an outer loop keeps
    all its dimensions parallel: each becomes one GPU thread's iteration,
    and neighbouring threads take neighbouring elements of the last one.
  }];
  let options = [
    Option<"lastDimSequential", "last-dim-sequential", "bool", "true",
           "Turn the last dimension of an outer multi-dimensional loop into "
           "an scf.for inside it">,
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect"];
}

def QOptParallelToPoolPass
    : Pass<"qopt-parallel-to-pool", "::mlir::ModuleOp"> {
  let summary = "Runs each outermost scf.parallel on the kernel library's "
                "thread pool";
  let description = [{
    Outlines the body of every outermost `scf.parallel` (as
    `qopt-serialize-nested-parallel` leaves them: no nesting, the last
    dimension already an `scf.for`) into a private function
    `@<func>_parallel(%ctx: !llvm.ptr, %begin: i64, %end: i64)` that runs
    iterations `[begin, end)` of the dimensions' combined index (the last
    varying fastest; each induction variable recovered by division by the
    trip counts of the dimensions after it), and replaces the loop with a call
    of the CPU kernel library's
    `qopt_kernel_parallel_for(fn, ctx, iterations, work)`. The library
    splits the iterations into contiguous ranges over the same thread pool
    that its matrix products use (one pool, sized by the model's thread
    count), or runs them all on the calling thread where `work` — the
    iterations times those of the loops nested first in the body, as far as
    their bounds are known before the loop — is too small to pay for
    waking the threads (a decode step's vectors).

    The loop's captured values travel in one struct on the caller's stack:
    memrefs as their LLVM descriptors (bridged with
    `builtin.unrealized_conversion_cast`, which the memref-to-LLVM
    conversion and `reconcile-unrealized-casts` fold away), indices as
    `i64`; constants and `memref.get_global` are recreated in the body. A
    loop whose body contains a `cf.assert` (a failed check unwinds the
    model's entry on the calling thread) or a call, or captures a value of
    a type without an LLVM form, stays as it is and runs sequentially.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::LLVM::LLVMDialect"];
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
