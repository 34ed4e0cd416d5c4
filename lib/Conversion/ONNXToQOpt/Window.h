//===- Window.h - Convolution and pooling windows ---------------*- C++ -*-===//
//
// Internal to the ONNX-to-QOpt conversion: the kernel window (strides,
// dilations, pads, auto_pad) that Conv and the pooling operators share;
// defined in Convolution.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_LIB_CONVERSION_ONNXTOQOPT_WINDOW_H
#define QOPT_LIB_CONVERSION_ONNXTOQOPT_WINDOW_H

#include "Patterns.h"

namespace mlir::qopt::onnx {

/// A kernel window: per spatial dimension the kernel size, stride,
/// dilation and begin / end padding.
struct Window {
  SmallVector<int64_t> kernel, strides, dilations, padsBegin, padsEnd;
};

/// Reads kernel/strides/dilations/pads/auto_pad for `spatial` dims of input
/// sizes `in` (static where auto_pad needs them).
FailureOr<Window> readWindow(ONNXNodeOp op, ArrayRef<int64_t> kernel,
                             ArrayRef<int64_t> in);

/// Pads the spatial dims (from 2 on) of `x` with `value`.
Value padSpatial(OpBuilder &b, Location loc, Value x, const Window &w,
                 Attribute value);

/// Output spatial sizes: floor or ceil of
/// (padded - dilation * (kernel - 1) - 1) / stride + 1. A window larger
/// than the padded input is an error naming `op` (checked at run time for
/// dynamic sizes).
FailureOr<SmallVector<OpFoldResult>> outputSizes(ONNXNodeOp op, OpBuilder &b,
                                                 Location loc, Value padded,
                                                 const Window &w,
                                                 bool ceilMode);

} // namespace mlir::qopt::onnx

#endif // QOPT_LIB_CONVERSION_ONNXTOQOPT_WINDOW_H
