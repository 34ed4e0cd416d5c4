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

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD
