//===- QOptMarkers.h - Attributes lowerings leave for training --*- C++ -*-===//
//
// Discardable attributes on ops of the lowered model (linalg, tensor) that
// tell the differentiation and the train-step builder what the math alone
// would get wrong or wasteful. A light header: lowerings outside the
// dialect (shared linalg builders) set them too.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_DIALECT_QOPT_IR_QOPTMARKERS_H
#define QOPT_DIALECT_QOPT_IR_QOPTMARKERS_H

#include "mlir/Support/LLVM.h"
#include "llvm/ADT/StringRef.h"

namespace mlir::qopt {
/// On an op of the lowered model: its results are constants to training
/// (torch's detach()); set by lowerings, read by the differentiation. Also
/// on the row maximum that stabilises a softmax or log-sum-exp: the result
/// does not depend on it, so its gradient is exactly zero (no pass needed).
constexpr StringLiteral kNoGradientAttr = "qopt.no_gradient";
/// On an op of the lowered model computed from parameters alone (a
/// dequantized weight): the backward pass computes it again where it needs
/// it instead of keeping the forward's value alive (QLoRA's memory: no
/// float copy of a frozen quantized weight lives from forward to backward).
constexpr StringLiteral kRecomputeAttr = "qopt.recompute";
/// On a quantizer's rounding (a scalar op in a loop body) or on a whole
/// codebook quantizer op: differentiated as the identity of its first
/// operand (the straight-through estimator); clamps around it still mask.
constexpr StringLiteral kStraightThroughAttr = "qopt.straight_through";
/// On a lowered quantizer: a factor per operand for the gradients it
/// passes back (LSQ's gradient scale g for the step and offset).
constexpr StringLiteral kGradientScaleAttr = "qopt.gradient_scale";
/// On the op of the lowered model that adds a sublayer's output to the
/// residual stream (`qopt.residual_add`'s loop, the module path as value):
/// the boundaries of gradient checkpointing, whose results the backward
/// pass keeps while it recomputes what lies between them.
constexpr StringLiteral kCheckpointAttr = "qopt.checkpoint";
/// On a `linalg.softmax` whose fully masked rows (all -inf, NaN in plain
/// softmax) are to be 0, as torch's `Where(IsNaN(P), 0, P)` guard after it
/// makes them: its lowering computes them as 0 without a NaN.
constexpr StringLiteral kSafeSoftmaxAttr = "qopt.safe_softmax";
/// On the loop of the lowered model that applies training-mode dropout
/// (its first input is the undropped value): an entry that evaluates
/// (`eval_step`) replaces its result by that input.
constexpr StringLiteral kDropoutAttr = "qopt.dropout";
/// On the loop nest that expands a quantized weight into floats (inputs:
/// codes, scales, zero points, offset): the `!qopt.qtensor` type it
/// expands. The CPU target replaces it and the product that reads it by a
/// kernel that reads the codes in place.
constexpr StringLiteral kDequantizedAttr = "qopt.dequantized";
/// On a `qopt.fake_quant` of activations whose scales qopt-insert-fake-quant
/// computes from them as the model runs (max|x| / qmax, or min–max with a
/// zero point; 1 where the range is 0): what kPerTokenQuantAttr needs.
constexpr StringLiteral kDynamicScalesAttr = "qopt.dynamic_scales";
/// On the loop that fake-quantizes activations per token with scales
/// computed from them (max|x| / qmax over the last axis, 1 where 0; a
/// signed integer format without zero point): the format's bits; for FP8
/// E4M3FN (max|x| / 448), kPerTokenFP8E4M3. The CPU target reads the
/// loop's input instead where a quantized product follows and runs that
/// product on integer codes, quantizing as the loop would; the CUDA target
/// also runs FP8 tokens times FP8 weights on their codes.
constexpr StringLiteral kPerTokenQuantAttr = "qopt.per_token_quant";
/// kPerTokenQuantAttr's value for E4M3FN tokens (the CUDA kernel library's
/// kTokenFP8E4M3, in the `bits` of its calls).
constexpr int64_t kPerTokenFP8E4M3 = 0xE4;
} // namespace mlir::qopt

#endif // QOPT_DIALECT_QOPT_IR_QOPTMARKERS_H
