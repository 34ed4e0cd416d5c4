//===- Passes.td - QOpt transformation passes --------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD
#define QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def QOptFoldZeroLoRAPass : Pass<"qopt-fold-zero-lora", "::mlir::ModuleOp"> {
  let summary = "Replaces LoRA branches that are exactly zero by the base linear";
  let description = [{
    A `qopt.lora` whose up-projection `B` (or SoRA gate) is all zeros adds
    nothing to its base layer: `x · Wᵀ + scale · z · 0 + b = x · Wᵀ + b`.
    This pass rewrites such ops into `qopt.linear`, e.g. to export a model
    whose adapters were never trained or were pruned to zero.

    Canonicalization never does this, because `B = 0` is how LoRA *starts*
    training. Zeros are recognised in constants and in non-trainable
    parameters with inline data; a `trainable` parameter is only taken at
    its initial value with `include-trainable=true`. DoRA branches (with a
    `magnitude`) are kept: with `B = 0` they still rescale each output row
    by `m / ‖W‖`.

    ```mlir
    // Before
    %y = qopt.lora %x, %w, %a, %zero bias(%b) alpha = 16.0 : ...
    // After
    %y = qopt.linear %x, %w, %b : ...
    ```
  }];
  let options = [
    Option<"includeTrainable", "include-trainable", "bool", "false",
           "Also fold branches whose B or gate is a trainable parameter "
           "whose initial value is zero">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptMergeLoRAPass : Pass<"qopt-merge-lora", "::mlir::ModuleOp"> {
  let summary = "Merges LoRA branches into their base weights (PEFT's merge_and_unload)";
  let description = [{
    Every `qopt.lora` becomes a `qopt.linear` whose weight is a new
    parameter holding

    ```
    W' = W + scale · B · M · diag(g) · A
    ```

    (`M` the LoRA-XS/SB middle and `g` the SoRA gate, where present;
    `scale` = alpha / r, or alpha / √r with rsLoRA), and for DoRA
    `W'' = (m / ‖W'‖_row) ⊙ W'` row by row — the result PEFT's
    `merge_and_unload()` computes. Dropout does not enter (inference). The
    new weight keeps `W`'s element type, is computed at compile time from
    the parameters' data (inline, resource or `#qopt.external` in
    `model-dir`; for trainable factors, the values the IR holds: their
    initial or loaded ones) and is stored as a `dense_resource` blob; it is named
    `<module>.weight` (the layer's module path) and is not trainable. The
    base weight may be read through the transpose that raising puts on
    MatMul weights. Parameters nothing reads afterwards are removed.

    A branch whose factors are not parameters with data (e.g. run-time
    adapter slots) or whose base weight is quantized is an error naming the
    layer.

    ```mlir
    // Before
    %y = qopt.lora %x, %w, %a, %b alpha = 16.0 module "q_proj" : ...
    // After: @q_proj.weight = dense_resource<…> holds W + 16/r · B·A
    %w2 = qopt.load_param @q_proj.weight : tensor<64x64xf32>
    %y = qopt.linear %x, %w2 module "q_proj" : ...
    ```
  }];
  let options = [
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from (the "
           "model's folder; default: the working directory)">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptRelayoutQuantizedWeightsPass
    : Pass<"qopt-relayout-quantized-weights", "::mlir::ModuleOp"> {
  let summary = "Stores QDQ-quantized MatMul weights as the layer's N×K "
                "quantized weight";
  let description = [{
    A QDQ export quantizes a `MatMul` weight as stored, K×N with one scale
    per output column (`DequantizeLinear(W_int8, scales, axis = 1)`), so
    raising gives `qopt.linear(x, transpose(dequantize(q)))`: a linear
    layer with a float weight dequantized and transposed on every run. This
    pass writes the codes transposed, N×K, into a new parameter (a
    `dense_resource` blob computed at compile time from the parameter's
    data: inline, resource or `#qopt.external` in `model-dir`) and gives
    the layer the quantized weight itself,
    `qopt.linear(x, assemble(codesᵀ, scales) : !qopt.qtensor<N×K, …,
    #qopt.per_channel<0>>)` — what a quantized layer looks like to the
    passes and kernels that follow. The scales and zero points are shared
    unchanged. The new parameter is named `<module>.weight` after the
    layer's module path (else `<codes>.nk`); the K×N codes are removed when
    nothing else reads them.

    Rewritten: `qopt.linear` and `qopt.lora` whose weight is a 2-D transpose
    of `qopt.dequantize` of a `qopt.assemble` of a parameter's 8-bit codes,
    per tensor or per channel along N. Codes given at run time (a
    parameter without data) keep the transpose. Data that cannot be read is
    an error naming the parameter.

    ```mlir
    // Before
    %q = qopt.assemble %w, %s : (tensor<16x8xi8>, tensor<8xf32>)
        -> !qopt.qtensor<16x8, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
    %d = qopt.dequantize %q : ... -> tensor<16x8xf32>
    %t = linalg.transpose ins(%d : tensor<16x8xf32>) outs(...) permutation = [1, 0]
    %y = qopt.linear %x, %t module "fc" : ...
    // After: @fc.weight = dense_resource<…> holds the codes transposed
    %c = qopt.load_param @fc.weight : tensor<8x16xi8>
    %q2 = qopt.assemble %c, %s : (tensor<8x16xi8>, tensor<8xf32>)
        -> !qopt.qtensor<8x16, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
    %y = qopt.linear %x, %q2 module "fc" : ...
    ```
  }];
  let options = [
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from (the "
           "model's folder; default: the working directory)">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptMaterializeParamsPass : Pass<"qopt-materialize-params",
                                     "::mlir::ModuleOp"> {
  let summary = "Replaces reads of inline parameters by constants";
  let description = [{
    Every `qopt.load_param` of a frozen parameter whose data is inline
    `dense<…>` becomes an `arith.constant` of that data (signless integers
    and floats; unsigned ones stay parameters, which
    `qopt-params-to-arguments` passes in), so upstream folding and
    execution without a runtime (mlir-runner) see the values; inline
    parameters left without readers are removed. Parameters stored in
    files or resource blobs, and mutable (`trainable` / `state`) ones, are
    left to the runtime.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
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

    Mutable (`trainable` / `state`) parameters are always passed, whatever
    their data, marked `qopt.trainable` or `qopt.state`. A
    `qopt.store_param` becomes a result of the entry, after the model's
    outputs, marked with the parameter's name (`qopt.param`): the runtime
    takes that buffer as the parameter's new value after a successful run
    (no copy). A read after a store in the same call reads the stored value.
    Stores must be in the entry's body (not in nested regions); a
    parameter stored twice keeps the last value.

    `qopt.random_key` becomes one more argument, marked `qopt.rng_key`,
    after the parameters: the runtime passes `[seed, counter]` and advances
    the counter after every successful run.
  }];
}

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD
