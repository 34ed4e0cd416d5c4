// RUN: not qopt-opt %s -split-input-file --convert-onnx-to-qopt 2>&1 | FileCheck %s
// Resize forms the conversion refuses, each with the node named.

func.func @cubic(%x: tensor<1x1x4x4xf32>, %s: tensor<4xf32>) -> tensor<1x1x8x8xf32> {
  %none = onnx.none
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Resize, opset 19): mode 'cubic' is not supported (nearest and linear are)
  %0 = onnx.node "Resize" opset 19 (%x, %none, %s) {mode = "cubic"} : (tensor<1x1x4x4xf32>, none, tensor<4xf32>) -> tensor<1x1x8x8xf32> loc("r")
  return %0 : tensor<1x1x8x8xf32>
}

// -----

func.func @crop(%x: tensor<1x1x4x4xf32>, %s: tensor<4xf32>) -> tensor<1x1x8x8xf32> {
  %none = onnx.none
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Resize, opset 19): coordinate_transformation_mode 'tf_crop_and_resize' is not supported
  %0 = onnx.node "Resize" opset 19 (%x, %none, %s) {coordinate_transformation_mode = "tf_crop_and_resize"} : (tensor<1x1x4x4xf32>, none, tensor<4xf32>) -> tensor<1x1x8x8xf32> loc("r")
  return %0 : tensor<1x1x8x8xf32>
}

// -----

func.func @antialias(%x: tensor<1x1x4x4xf32>, %s: tensor<4xf32>) -> tensor<1x1x2x2xf32> {
  %none = onnx.none
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Resize, opset 19): antialias is not supported
  %0 = onnx.node "Resize" opset 19 (%x, %none, %s) {antialias = 1 : i64, mode = "linear"} : (tensor<1x1x4x4xf32>, none, tensor<4xf32>) -> tensor<1x1x2x2xf32> loc("r")
  return %0 : tensor<1x1x2x2xf32>
}

// -----

func.func @neither(%x: tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32> {
  %none = onnx.none
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Resize, opset 19): needs exactly one of scales or sizes
  %0 = onnx.node "Resize" opset 19 (%x, %none, %none, %none) {} : (tensor<1x1x4x4xf32>, none, none, none) -> tensor<1x1x4x4xf32> loc("r")
  return %0 : tensor<1x1x4x4xf32>
}

// -----

func.func @count(%x: tensor<1x1x4x4xf32>, %s: tensor<3xf32>) -> tensor<1x1x8x8xf32> {
  %none = onnx.none
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Resize, opset 19): needs one scale or size per resized axis (4)
  %0 = onnx.node "Resize" opset 19 (%x, %none, %s) {} : (tensor<1x1x4x4xf32>, none, tensor<3xf32>) -> tensor<1x1x8x8xf32> loc("r")
  return %0 : tensor<1x1x8x8xf32>
}
