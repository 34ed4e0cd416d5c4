// RUN: not qopt-opt %s -split-input-file --convert-onnx-to-qopt 2>&1 | FileCheck %s
// QuantizeLinear / DequantizeLinear / MatMulInteger inputs the conversion
// refuses, each with the node named.

func.func @dq_float8(%x: tensor<4xf8E4M3FN>, %s: tensor<f32>) -> tensor<4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'dq' (DequantizeLinear, opset 21): input of type 'f8E4M3FN' is not supported (8-, 16- and 32-bit integers are)
  %0 = onnx.node "DequantizeLinear" opset 21 (%x, %s) {} : (tensor<4xf8E4M3FN>, tensor<f32>) -> tensor<4xf32> loc("dq")
  return %0 : tensor<4xf32>
}

// -----

func.func @dq_axis(%x: tensor<2x4xi8>, %s: tensor<3xf32>) -> tensor<2x4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'dq' (DequantizeLinear, opset 21): per-axis scale must be 1-D with 4 values (axis 1)
  %0 = onnx.node "DequantizeLinear" opset 21 (%x, %s) {} : (tensor<2x4xi8>, tensor<3xf32>) -> tensor<2x4xf32> loc("dq")
  return %0 : tensor<2x4xf32>
}

// -----

func.func @dq_zero_point_type(%x: tensor<4xi8>, %s: tensor<f32>, %z: tensor<ui8>) -> tensor<4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'dq' (DequantizeLinear, opset 21): zero point type differs from the input's
  %0 = onnx.node "DequantizeLinear" opset 21 (%x, %s, %z) {} : (tensor<4xi8>, tensor<f32>, tensor<ui8>) -> tensor<4xf32> loc("dq")
  return %0 : tensor<4xf32>
}

// -----

func.func @q_int4(%x: tensor<4xf32>, %s: tensor<f32>, %z: tensor<i4>) -> tensor<4xi4> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'q' (QuantizeLinear, opset 21): output type 'i4' is not supported (8- and 16-bit integers are)
  %0 = onnx.node "QuantizeLinear" opset 21 (%x, %s, %z) {} : (tensor<4xf32>, tensor<f32>, tensor<i4>) -> tensor<4xi4> loc("q")
  return %0 : tensor<4xi4>
}

// -----

func.func @q_output_dtype(%x: tensor<4xf32>, %s: tensor<f32>) -> tensor<4xi32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'q' (QuantizeLinear, opset 21): output_dtype 6 is not supported (8- and 16-bit integers are)
  %0 = onnx.node "QuantizeLinear" opset 21 (%x, %s) {output_dtype = 6 : i64} : (tensor<4xf32>, tensor<f32>) -> tensor<4xi32> loc("q")
  return %0 : tensor<4xi32>
}

// -----

func.func @mmi_float(%a: tensor<2x3xf32>, %b: tensor<3x4xi8>) -> tensor<2x4xi32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (MatMulInteger, opset 10): A must be a ranked (u)int8 tensor
  %0 = onnx.node "MatMulInteger" opset 10 (%a, %b) {} : (tensor<2x3xf32>, tensor<3x4xi8>) -> tensor<2x4xi32> loc("mm")
  return %0 : tensor<2x4xi32>
}

// -----

func.func @mmi_zero_point(%a: tensor<2x3xi8>, %b: tensor<3x4xi8>, %za: tensor<2x2xi8>) -> tensor<2x4xi32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (MatMulInteger, opset 10): a_zero_point must be a scalar or 1-D tensor of 'i8'
  %0 = onnx.node "MatMulInteger" opset 10 (%a, %b, %za) {} : (tensor<2x3xi8>, tensor<3x4xi8>, tensor<2x2xi8>) -> tensor<2x4xi32> loc("mm")
  return %0 : tensor<2x4xi32>
}

// -----

// A blocked scale must hold ceil(size / block_size) entries along the axis
// and the input's size elsewhere (it was read past its end before).
func.func @blocked_scale_short(%x: tensor<4x8xi8>, %s: tensor<4x1xf32>) -> tensor<4x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'dqb' (DequantizeLinear, opset 21): blocked scale or zero point has 1 entries in dimension 1, expected 2
  %0 = onnx.node "DequantizeLinear" opset 21 (%x, %s) {axis = 1 : i64, block_size = 4 : i64} : (tensor<4x8xi8>, tensor<4x1xf32>) -> tensor<4x8xf32> loc("dqb")
  return %0 : tensor<4x8xf32>
}
