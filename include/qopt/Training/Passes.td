//===- Passes.td - Training passes -----------------------*- tablegen -*-===//

#ifndef QOPT_TRAINING_PASSES_TD
#define QOPT_TRAINING_PASSES_TD

include "mlir/Pass/PassBase.td"

def QOptAppendGradientsPass
    : Pass<"qopt-append-gradients", "::mlir::ModuleOp"> {
  let summary = "Returns the gradients of a function's first result with "
                "respect to its trainable arguments";
  let description = [{
    For each function with arguments marked `qopt.trainable`, whose first
    result is a float tensor of one element (a loss), appends one result per
    trainable argument: the gradient of the loss with respect to it, of the
    argument's type, named `qopt.name = "grad.<name>"` (the argument's
    `qopt.param` or `qopt.name`, else `argN`): the manifest lists it as an
    output of that name.

    Runs on tensors after `convert-qopt-to-linalg` and
    `convert-elementwise-to-linalg` (as the CPU pipeline places it); it is
    reverse-mode differentiation:

    - Every `linalg` op (generic or named, e.g. `linalg.contract`,
      `linalg.transpose`) has one rule, derived from its indexing maps and
      scalar body: the adjoint of an input is a `linalg.generic` over the
      same loops that recomputes the body, propagates the adjoint of each
      yielded value back to that input's block argument, and sums over the
      loops the input's map does not use. Sum reductions pass the result's
      adjoint to every term; max / min reductions to the terms equal to the
      result. A contraction's adjoints are thus contractions again (dA =
      dC·Bᵀ as a multiply-add generic), which the BLAS lowering calls.
    - Scalar bodies: `arith` add / sub / mul / div / neg / max / min /
      select / extf / truncf, `math` exp, exp2, expm1, log, log1p, log2,
      sqrt, rsqrt, tanh, erf, sin, cos, powf, fpowi, absf, fma; rounding
      (`roundeven`, `floor` …) has derivative zero (straight-through
      estimators are rules of the quantizer ops, not of rounding).
    - Data movement: `tensor.cast`, `reshape`, `expand_shape`,
      `collapse_shape`, `extract_slice`, `insert_slice`, `concat`, `pad`.

    Only ops that depend on a trainable argument and on which the loss
    depends are differentiated: frozen weights get no gradient and integer
    computations (masks, indices) are left alone. An op in that set without
    a rule — a gather from a trainable tensor, control flow, a reduction
    whose body is not a sum, max or min — is an error naming the op and
    its location (the ONNX node), never a wrong gradient.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::tensor::TensorDialect"];
}

#endif // QOPT_TRAINING_PASSES_TD
