// RUN: not qopt-opt %s -split-input-file --convert-onnx-to-qopt 2>&1 | FileCheck %s
// Attention forms the conversion refuses, each with the node named.

func.func @past(%q: tensor<1x2x3x4xf32>, %k: tensor<1x2x3x4xf32>, %v: tensor<1x2x3x4xf32>, %pk: tensor<1x2x1x4xf32>, %pv: tensor<1x2x1x4xf32>) -> tensor<1x2x3x4xf32> {
  %none = onnx.none
  // CHECK: error: {{(loc\(".*"\): )?}}node 'a' (Attention, opset 23): past key/value and nonpad_kv_seqlen inputs are not supported yet
  %0 = onnx.node "Attention" opset 23 (%q, %k, %v, %none, %pk, %pv) {} : (tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, none, tensor<1x2x1x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x3x4xf32> loc("a")
  return %0 : tensor<1x2x3x4xf32>
}

// -----

func.func @heads(%q: tensor<1x3x3x4xf32>, %k: tensor<1x2x3x4xf32>, %v: tensor<1x2x3x4xf32>) -> tensor<1x3x3x4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'a' (Attention, opset 23): needs static head counts, Q's a multiple of K's and V's
  %0 = onnx.node "Attention" opset 23 (%q, %k, %v) {} : (tensor<1x3x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>) -> tensor<1x3x3x4xf32> loc("a")
  return %0 : tensor<1x3x3x4xf32>
}

// -----

func.func @f16(%q: tensor<1x2x3x4xf16>) -> tensor<1x2x3x4xf16> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'a' (Attention, opset 23): needs ranked f32 Q, K and V
  %0 = onnx.node "Attention" opset 23 (%q, %q, %q) {} : (tensor<1x2x3x4xf16>, tensor<1x2x3x4xf16>, tensor<1x2x3x4xf16>) -> tensor<1x2x3x4xf16> loc("a")
  return %0 : tensor<1x2x3x4xf16>
}

// -----

func.func @three_d(%q: tensor<1x3x8xf32>) -> tensor<1x3x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'a' (Attention, opset 23): 3-D inputs need q_num_heads and kv_num_heads dividing static hidden sizes
  %0 = onnx.node "Attention" opset 23 (%q, %q, %q) {q_num_heads = 3 : i64, kv_num_heads = 3 : i64} : (tensor<1x3x8xf32>, tensor<1x3x8xf32>, tensor<1x3x8xf32>) -> tensor<1x3x8xf32> loc("a")
  return %0 : tensor<1x3x8xf32>
}
