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

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD
