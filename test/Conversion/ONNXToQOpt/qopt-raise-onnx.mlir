// RUN: qopt-opt %s -split-input-file --qopt-raise-onnx | FileCheck %s
// Decomposed layers, as torch.onnx exports them, become QOpt graph ops.
// Numerics: test/e2e/models.test runs models built from these subgraphs.

qopt.param @model.layers.0.mlp.up_proj.weight : tensor<8x16xf32>
qopt.param @model.layers.0.mlp.up_proj.bias : tensor<16xf32>
// MatMul with a K x N weight parameter and the Add of its bias.
// CHECK-LABEL: func.func @linear_matmul_add
// CHECK-SAME: (%[[X:.*]]: tensor<?x?x8xf32>)
// CHECK-DAG: %[[W:.*]] = qopt.load_param @model.layers.0.mlp.up_proj.weight
// CHECK-DAG: %[[B:.*]] = qopt.load_param @model.layers.0.mlp.up_proj.bias
// CHECK: %[[WT:.*]] = linalg.transpose ins(%[[W]] : tensor<8x16xf32>) outs(%{{.*}} : tensor<16x8xf32>) permutation = [1, 0]
// CHECK: %[[Y:.*]] = qopt.linear %[[X]], %[[WT]], %[[B]] module "model.layers.0.mlp.up_proj" : (tensor<?x?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<?x?x16xf32>
// CHECK-NOT: onnx.node
// CHECK: %[[C:.*]] = tensor.cast %[[Y]] : tensor<?x?x16xf32> to tensor<*xf32>
// CHECK: return %[[C]]
func.func @linear_matmul_add(%x: tensor<?x?x8xf32>) -> tensor<*xf32> {
  %w = qopt.load_param @model.layers.0.mlp.up_proj.weight : tensor<8x16xf32>
  %b = qopt.load_param @model.layers.0.mlp.up_proj.bias : tensor<16xf32>
  %0 = onnx.node "MatMul" opset 17 (%x, %w) {} : (tensor<?x?x8xf32>, tensor<8x16xf32>) -> tensor<*xf32>
  %1 = onnx.node "Add" opset 17 (%0, %b) {} : (tensor<*xf32>, tensor<16xf32>) -> tensor<*xf32>
  return %1 : tensor<*xf32>
}

// -----

qopt.param @fc.weight : tensor<16x8xf32>
qopt.param @fc.bias : tensor<16xf32>
// Gemm with transB = 1 (nn.Linear on 2-D input): the weight is already N x K.
// CHECK-LABEL: func.func @linear_gemm
// CHECK: qopt.linear %{{.*}}, %{{.*}}, %{{.*}} module "fc" : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<4x16xf32>
// CHECK-NOT: linalg.transpose
func.func @linear_gemm(%x: tensor<4x8xf32>) -> tensor<4x16xf32> {
  %w = qopt.load_param @fc.weight : tensor<16x8xf32>
  %b = qopt.load_param @fc.bias : tensor<16xf32>
  %0 = onnx.node "Gemm" opset 13 (%x, %w, %b) {transB = 1 : i64} : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

// GPT-2's Conv1D: Gemm with transB = 0 stores the weight K x N.
qopt.param @h.0.attn.c_attn.weight : tensor<8x24xf32>
qopt.param @h.0.attn.c_attn.bias : tensor<24xf32>
// CHECK-LABEL: func.func @linear_gemm_conv1d
// CHECK: %[[WT:.*]] = linalg.transpose ins(%{{.*}} : tensor<8x24xf32>) outs(%{{.*}} : tensor<24x8xf32>) permutation = [1, 0]
// CHECK: qopt.linear %{{.*}}, %[[WT]], %{{.*}} module "h.0.attn.c_attn" : (tensor<?x8xf32>, tensor<24x8xf32>, tensor<24xf32>) -> tensor<?x24xf32>
func.func @linear_gemm_conv1d(%x: tensor<?x8xf32>) -> tensor<?x24xf32> {
  %w = qopt.load_param @h.0.attn.c_attn.weight : tensor<8x24xf32>
  %b = qopt.load_param @h.0.attn.c_attn.bias : tensor<24xf32>
  %0 = onnx.node "Gemm" opset 13 (%x, %w, %b) {} : (tensor<?x8xf32>, tensor<8x24xf32>, tensor<24xf32>) -> tensor<?x24xf32>
  return %0 : tensor<?x24xf32>
}

// -----

// Exports without constant folding: MatMul(x, Transpose(W)) with torch's
// N x K parameter; the weight is used as it is and the Transpose goes,
// unless something else reads it. A Transpose of another permutation is
// not a weight layout.
qopt.param @m.model.layers.0.self_attn.q_proj.weight : tensor<16x8xf32>
qopt.param @m.model.layers.0.self_attn.k_proj.weight : tensor<16x8xf32>
// CHECK-LABEL: func.func @linear_transposed_param
// CHECK: %[[W:.*]] = qopt.load_param @m.model.layers.0.self_attn.q_proj.weight
// CHECK-NOT: "Transpose"
// CHECK: qopt.linear %{{.*}}, %[[W]] module "m.model.layers.0.self_attn.q_proj" : (tensor<?x?x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
// CHECK: %[[K:.*]] = qopt.load_param @m.model.layers.0.self_attn.k_proj.weight
// CHECK: %[[KT:.*]] = onnx.node "Transpose" opset 13 (%[[K]])
// CHECK: qopt.linear %{{.*}}, %[[K]] module "m.model.layers.0.self_attn.k_proj"
// CHECK: onnx.node "MatMul"
// CHECK: return %{{.*}}, %{{.*}}, %[[KT]]
func.func @linear_transposed_param(%x: tensor<?x?x8xf32>, %y: tensor<?x?x16xf32>) -> (tensor<?x?x16xf32>, tensor<?x?x16xf32>, tensor<8x16xf32>, tensor<?x?x8xf32>) {
  %w = qopt.load_param @m.model.layers.0.self_attn.q_proj.weight : tensor<16x8xf32>
  %wt = onnx.node "Transpose" opset 13 (%w) {perm = array<i64: 1, 0>} : (tensor<16x8xf32>) -> tensor<8x16xf32>
  %0 = onnx.node "MatMul" opset 13 (%x, %wt) {} : (tensor<?x?x8xf32>, tensor<8x16xf32>) -> tensor<?x?x16xf32>
  %k = qopt.load_param @m.model.layers.0.self_attn.k_proj.weight : tensor<16x8xf32>
  %kt = onnx.node "Transpose" opset 13 (%k) {} : (tensor<16x8xf32>) -> tensor<8x16xf32>
  %1 = onnx.node "MatMul" opset 13 (%x, %kt) {} : (tensor<?x?x8xf32>, tensor<8x16xf32>) -> tensor<?x?x16xf32>
  %id = onnx.node "Transpose" opset 13 (%k) {perm = array<i64: 0, 1>} : (tensor<16x8xf32>) -> tensor<16x8xf32>
  %2 = onnx.node "MatMul" opset 13 (%y, %id) {} : (tensor<?x?x16xf32>, tensor<16x8xf32>) -> tensor<?x?x8xf32>
  return %0, %1, %kt, %2 : tensor<?x?x16xf32>, tensor<?x?x16xf32>, tensor<8x16xf32>, tensor<?x?x8xf32>
}

// -----

// A bias that only broadcasts ([1]) or a K that does not match is left to
// the conversion's Gemm (which reports the mismatch).
qopt.param @fc.weight : tensor<16x8xf32>
qopt.param @fc.bias : tensor<1xf32>
// CHECK-LABEL: func.func @gemm_not_linear
// CHECK-COUNT-2: onnx.node "Gemm"
// CHECK-NOT: qopt.linear
func.func @gemm_not_linear(%x: tensor<4x8xf32>, %y: tensor<4x6xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>) {
  %w = qopt.load_param @fc.weight : tensor<16x8xf32>
  %b = qopt.load_param @fc.bias : tensor<1xf32>
  %0 = onnx.node "Gemm" opset 13 (%x, %w, %b) {transB = 1 : i64} : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<1xf32>) -> tensor<4x16xf32>
  %1 = onnx.node "Gemm" opset 13 (%y, %w) {transB = 1 : i64} : (tensor<4x6xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  return %0, %1 : tensor<4x16xf32>, tensor<4x16xf32>
}

// -----

// The module path, where the weight's name does not give it: from torch's
// dynamo exporter's name scopes (the last entry names the op), else from a
// TorchScript node name (the last component names the op).
qopt.param @val_43 : tensor<8x16xf32>
qopt.param @"onnx::MatMul_702" : tensor<8x16xf32>
qopt.param @model.w : tensor<8x16xf32>
// CHECK-LABEL: func.func @module_paths
// CHECK: qopt.linear {{.*}} module "m.model.layers.0.self_attn.q_proj" :
// CHECK: qopt.linear {{.*}} module "model.layers.0.mlp.up_proj" :
// CHECK: qopt.linear %{{[^ ]*}}, %{{[^ ]*}} : (tensor<2x8xf32>, tensor<16x8xf32>) -> tensor<2x16xf32>
func.func @module_paths(%x: tensor<2x8xf32>) -> (tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>) {
  %w0 = qopt.load_param @val_43 : tensor<8x16xf32>
  %0 = onnx.node "MatMul" opset 20 (%x, %w0) {} metadata {namespace = ": __main__.CausalLM/m", "pkg.torch.onnx.name_scopes" = "['', 'm', 'm.model', 'm.model.layers.0', 'm.model.layers.0.self_attn', 'm.model.layers.0.self_attn.q_proj', 'linear']"} : (tensor<2x8xf32>, tensor<8x16xf32>) -> tensor<2x16xf32>
  %w1 = qopt.load_param @"onnx::MatMul_702" : tensor<8x16xf32>
  %1 = onnx.node "MatMul" opset 17 (%x, %w1) {} : (tensor<2x8xf32>, tensor<8x16xf32>) -> tensor<2x16xf32> loc("/model/layers.0/mlp/up_proj/MatMul")
  // Neither a path-like name nor a `.weight` parameter: no module.
  %w2 = qopt.load_param @model.w : tensor<8x16xf32>
  %2 = onnx.node "MatMul" opset 17 (%x, %w2) {} : (tensor<2x8xf32>, tensor<8x16xf32>) -> tensor<2x16xf32> loc("MatMul_3")
  return %0, %1, %2 : tensor<2x16xf32>, tensor<2x16xf32>, tensor<2x16xf32>
}

// -----

// A MatMul of two activations (attention scores) is not a linear layer, nor
// is a Gemm with alpha != 1.
qopt.param @w : tensor<16x8xf32>
// CHECK-LABEL: func.func @not_linear
// CHECK: onnx.node "MatMul"
// CHECK: onnx.node "Gemm"
// CHECK-NOT: qopt.linear
func.func @not_linear(%q: tensor<2x4x8xf32>, %k: tensor<2x8x4xf32>, %x: tensor<4x8xf32>) -> (tensor<2x4x4xf32>, tensor<4x16xf32>) {
  %0 = onnx.node "MatMul" opset 17 (%q, %k) {} : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %w = qopt.load_param @w : tensor<16x8xf32>
  %1 = onnx.node "Gemm" opset 13 (%x, %w) {transB = 1 : i64, alpha = 2.0 : f32} : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  return %0, %1 : tensor<2x4x4xf32>, tensor<4x16xf32>
}

// -----

qopt.param @model.norm.weight : tensor<8xf32>
// HF LlamaRMSNorm: Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul.
// CHECK-LABEL: func.func @rms_norm_div
// CHECK-SAME: (%[[X:.*]]: tensor<?x?x8xf32>)
// CHECK: %[[G:.*]] = qopt.load_param @model.norm.weight
// CHECK: %[[Y:.*]] = qopt.rms_norm %[[X]], %[[G]] epsilon = 9.9999999747524271E-7 : (tensor<?x?x8xf32>, tensor<8xf32>) -> tensor<?x?x8xf32>
// CHECK-NOT: onnx.node
// CHECK: return %[[Y]]
func.func @rms_norm_div(%x: tensor<?x?x8xf32>) -> tensor<?x?x8xf32> {
  %two = onnx.node "Constant" opset 17 () {value = dense<2.0> : tensor<f32>} : () -> tensor<f32>
  %eps = onnx.node "Constant" opset 17 () {value = dense<1.0e-6> : tensor<f32>} : () -> tensor<f32>
  %g = qopt.load_param @model.norm.weight : tensor<8xf32>
  %0 = onnx.node "Pow" opset 17 (%x, %two) {} : (tensor<?x?x8xf32>, tensor<f32>) -> tensor<?x?x8xf32>
  %1 = onnx.node "ReduceMean" opset 17 (%0) {axes = array<i64: -1>, keepdims = 1 : i64} : (tensor<?x?x8xf32>) -> tensor<?x?x1xf32>
  %2 = onnx.node "Add" opset 17 (%1, %eps) {} : (tensor<?x?x1xf32>, tensor<f32>) -> tensor<?x?x1xf32>
  %3 = onnx.node "Sqrt" opset 17 (%2) {} : (tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %4 = onnx.node "Div" opset 17 (%x, %3) {} : (tensor<?x?x8xf32>, tensor<?x?x1xf32>) -> tensor<?x?x8xf32>
  %5 = onnx.node "Mul" opset 17 (%4, %g) {} : (tensor<?x?x8xf32>, tensor<8xf32>) -> tensor<?x?x8xf32>
  return %5 : tensor<?x?x8xf32>
}

// -----

qopt.param @norm.weight : tensor<8xf32>
// rsqrt exported as Reciprocal(Sqrt(...)) multiplied in; gamma first; the
// square as Mul(x, x); opset 18 ReduceMean with axes as an input.
// CHECK-LABEL: func.func @rms_norm_reciprocal
// CHECK: qopt.rms_norm
// CHECK-NOT: onnx.node
func.func @rms_norm_reciprocal(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %eps = arith.constant dense<1.0e-5> : tensor<1xf32>
  %axes = arith.constant dense<[1]> : tensor<1xi64>
  %g = qopt.load_param @norm.weight : tensor<8xf32>
  %0 = onnx.node "Mul" opset 18 (%x, %x) {} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %1 = onnx.node "ReduceMean" opset 18 (%0, %axes) {} : (tensor<2x8xf32>, tensor<1xi64>) -> tensor<2x1xf32>
  %2 = onnx.node "Add" opset 18 (%eps, %1) {} : (tensor<1xf32>, tensor<2x1xf32>) -> tensor<2x1xf32>
  %3 = onnx.node "Sqrt" opset 18 (%2) {} : (tensor<2x1xf32>) -> tensor<2x1xf32>
  %4 = onnx.node "Reciprocal" opset 18 (%3) {} : (tensor<2x1xf32>) -> tensor<2x1xf32>
  %5 = onnx.node "Mul" opset 18 (%x, %4) {} : (tensor<2x8xf32>, tensor<2x1xf32>) -> tensor<2x8xf32>
  %6 = onnx.node "Mul" opset 18 (%g, %5) {} : (tensor<8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  return %6 : tensor<2x8xf32>
}

// -----

qopt.param @norm.weight : tensor<8xf32>
// An intermediate value read elsewhere keeps the chain as it is.
// CHECK-LABEL: func.func @rms_norm_shared
// CHECK-NOT: qopt.rms_norm
func.func @rms_norm_shared(%x: tensor<2x8xf32>) -> (tensor<2x8xf32>, tensor<2x1xf32>) {
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-5> : tensor<f32>
  %g = qopt.load_param @norm.weight : tensor<8xf32>
  %0 = onnx.node "Pow" opset 17 (%x, %two) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %1 = onnx.node "ReduceMean" opset 17 (%0) {axes = array<i64: -1>, keepdims = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x1xf32>
  %2 = onnx.node "Add" opset 17 (%1, %eps) {} : (tensor<2x1xf32>, tensor<f32>) -> tensor<2x1xf32>
  %3 = onnx.node "Sqrt" opset 17 (%2) {} : (tensor<2x1xf32>) -> tensor<2x1xf32>
  %4 = onnx.node "Div" opset 17 (%x, %3) {} : (tensor<2x8xf32>, tensor<2x1xf32>) -> tensor<2x8xf32>
  %5 = onnx.node "Mul" opset 17 (%4, %g) {} : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return %5, %3 : tensor<2x8xf32>, tensor<2x1xf32>
}

// -----

// GELU, erf form (torch.onnx of nn.GELU): x * 0.5 * (1 + erf(x / sqrt(2))).
// CHECK-LABEL: func.func @gelu_erf
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK: %[[Y:.*]] = qopt.gelu %[[X]] : tensor<2x8xf32>
// CHECK-NOT: onnx.node
// CHECK: return %[[Y]]
func.func @gelu_erf(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %sqrt2 = arith.constant dense<1.41421354> : tensor<f32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %half = arith.constant dense<0.5> : tensor<f32>
  %0 = onnx.node "Div" opset 17 (%x, %sqrt2) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %1 = onnx.node "Erf" opset 17 (%0) {} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  %2 = onnx.node "Add" opset 17 (%1, %one) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %3 = onnx.node "Mul" opset 17 (%x, %2) {} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %4 = onnx.node "Mul" opset 17 (%3, %half) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  return %4 : tensor<2x8xf32>
}

// -----

// GELU, tanh form (GPT-2's gelu_new), with the 0.5 on x first.
// CHECK-LABEL: func.func @gelu_tanh
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK: %[[Y:.*]] = qopt.gelu %[[X]] approximate = "tanh" : tensor<2x8xf32>
// CHECK-NOT: onnx.node
// CHECK: return %[[Y]]
func.func @gelu_tanh(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %three = arith.constant dense<3.0> : tensor<f32>
  %c = arith.constant dense<0.044715> : tensor<f32>
  %k = arith.constant dense<0.797884583> : tensor<f32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %half = arith.constant dense<0.5> : tensor<f32>
  %0 = onnx.node "Pow" opset 17 (%x, %three) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %1 = onnx.node "Mul" opset 17 (%0, %c) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %2 = onnx.node "Add" opset 17 (%x, %1) {} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %3 = onnx.node "Mul" opset 17 (%2, %k) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %4 = onnx.node "Tanh" opset 17 (%3) {} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  %5 = onnx.node "Mul" opset 17 (%x, %half) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %6 = onnx.node "Add" opset 17 (%4, %one) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %7 = onnx.node "Mul" opset 17 (%5, %6) {} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  return %7 : tensor<2x8xf32>
}

// -----

// A near miss: 0.6 instead of 0.5 is not a GELU.
// CHECK-LABEL: func.func @not_gelu
// CHECK-NOT: qopt.gelu
func.func @not_gelu(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %sqrt2 = arith.constant dense<1.41421354> : tensor<f32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %c = arith.constant dense<0.6> : tensor<f32>
  %0 = onnx.node "Div" opset 17 (%x, %sqrt2) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %1 = onnx.node "Erf" opset 17 (%0) {} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  %2 = onnx.node "Add" opset 17 (%1, %one) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %3 = onnx.node "Mul" opset 17 (%x, %2) {} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %4 = onnx.node "Mul" opset 17 (%3, %c) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  return %4 : tensor<2x8xf32>
}

// -----

// SiLU (LLaMA's gate activation): Mul(x, Sigmoid(x)), either order.
// CHECK-LABEL: func.func @silu
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK: %[[Y:.*]] = qopt.silu %[[X]] : tensor<2x8xf32>
// CHECK-NOT: onnx.node
// CHECK: return %[[Y]]
func.func @silu(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = onnx.node "Sigmoid" opset 13 (%x) {} : (tensor<2x8xf32>) -> tensor<2x8xf32>
  %1 = onnx.node "Mul" opset 14 (%0, %x) {} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  return %1 : tensor<2x8xf32>
}

// -----

qopt.param @ln.weight : tensor<8xf32>
qopt.param @ln.bias : tensor<8xf32>
// LayerNorm as exports before opset 17 write it; not an RMSNorm of x - mean.
// CHECK-LABEL: func.func @layer_norm_decomposed
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK-DAG: %[[G:.*]] = qopt.load_param @ln.weight
// CHECK-DAG: %[[B:.*]] = qopt.load_param @ln.bias
// CHECK: %[[Y:.*]] = qopt.layer_norm %[[X]], %[[G]], %[[B]] epsilon = 9.9999997473787516E-6 : (tensor<2x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
// CHECK-NOT: onnx.node
// CHECK-NOT: qopt.rms_norm
// CHECK: return %[[Y]]
func.func @layer_norm_decomposed(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %g = qopt.load_param @ln.weight : tensor<8xf32>
  %b = qopt.load_param @ln.bias : tensor<8xf32>
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-5> : tensor<f32>
  %mean = onnx.node "ReduceMean" opset 13 (%x) {axes = array<i64: -1>, keepdims = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x1xf32>
  %d = onnx.node "Sub" opset 14 (%x, %mean) {} : (tensor<2x8xf32>, tensor<2x1xf32>) -> tensor<2x8xf32>
  %sq = onnx.node "Pow" opset 15 (%d, %two) {} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>
  %var = onnx.node "ReduceMean" opset 13 (%sq) {axes = array<i64: -1>, keepdims = 1 : i64} : (tensor<2x8xf32>) -> tensor<2x1xf32>
  %ve = onnx.node "Add" opset 14 (%var, %eps) {} : (tensor<2x1xf32>, tensor<f32>) -> tensor<2x1xf32>
  %s = onnx.node "Sqrt" opset 13 (%ve) {} : (tensor<2x1xf32>) -> tensor<2x1xf32>
  %n = onnx.node "Div" opset 14 (%d, %s) {} : (tensor<2x8xf32>, tensor<2x1xf32>) -> tensor<2x8xf32>
  %m = onnx.node "Mul" opset 14 (%n, %g) {} : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  %y = onnx.node "Add" opset 14 (%m, %b) {} : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

// Malformed nodes (a MatMul or Gemm with one input) are left alone: the
// conversion's schema check reports them (raising crashed here before).
qopt.param @w : tensor<4x4xf32>
// CHECK-LABEL: func.func @malformed
// CHECK: onnx.node "MatMul" opset 13 (%{{[^,]*}}) {}
// CHECK: onnx.node "Gemm" opset 13 (%{{[^,]*}}) {}
// CHECK-NOT: qopt.linear
func.func @malformed(%x: tensor<2x4xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>) {
  %0 = onnx.node "MatMul" opset 13 (%x) {} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %1 = onnx.node "Gemm" opset 13 (%x) {} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  return %0, %1 : tensor<2x4xf32>, tensor<2x4xf32>
}

// -----

// torch's decomposed scaled_dot_product_attention (both exporters):
// Q·√s times Kᵀ·√s, an additive mask, Softmax, the NaN guard, times V →
// qopt.attention with scale s, reading K through Kᵀ's transpose.
// CHECK-LABEL: func.func @sdpa
// CHECK-NOT: "Transpose"
// CHECK: qopt.attention %arg0, %arg1, %arg2 mask(%{{.*}}) scale = 0.12499999{{[0-9]*}} : (tensor<1x4x?x8xf32>, tensor<1x4x?x8xf32>, tensor<1x4x?x8xf32>, tensor<1x1x?x?xf32>) -> tensor<1x4x?x8xf32>
// CHECK-NOT: "Softmax"
func.func @sdpa(%q: tensor<1x4x?x8xf32>, %k: tensor<1x4x?x8xf32>, %v: tensor<1x4x?x8xf32>, %m: tensor<1x1x?x?xf32>) -> tensor<1x4x?x8xf32> {
  %s = onnx.node "Constant" opset 17 () {value = dense<0.353553385> : tensor<f32>} : () -> tensor<f32>
  %kt = onnx.node "Transpose" opset 17 (%k) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x4x?x8xf32>) -> tensor<1x4x8x?xf32>
  %qs = onnx.node "Mul" opset 17 (%q, %s) {} : (tensor<1x4x?x8xf32>, tensor<f32>) -> tensor<1x4x?x8xf32>
  %ks = onnx.node "Mul" opset 17 (%kt, %s) {} : (tensor<1x4x8x?xf32>, tensor<f32>) -> tensor<1x4x8x?xf32>
  %a = onnx.node "MatMul" opset 17 (%qs, %ks) {} : (tensor<1x4x?x8xf32>, tensor<1x4x8x?xf32>) -> tensor<1x4x?x?xf32>
  %b = onnx.node "Add" opset 17 (%a, %m) {} : (tensor<1x4x?x?xf32>, tensor<1x1x?x?xf32>) -> tensor<1x4x?x?xf32>
  %p = onnx.node "Softmax" opset 17 (%b) {axis = -1 : i64} : (tensor<1x4x?x?xf32>) -> tensor<1x4x?x?xf32>
  %n = onnx.node "IsNaN" opset 17 (%p) {} : (tensor<1x4x?x?xf32>) -> tensor<1x4x?x?xi1>
  %z = onnx.node "Constant" opset 17 () {value = dense<0.0> : tensor<1xf32>} : () -> tensor<1xf32>
  %w = onnx.node "Where" opset 17 (%n, %z, %p) {} : (tensor<1x4x?x?xi1>, tensor<1xf32>, tensor<1x4x?x?xf32>) -> tensor<1x4x?x?xf32>
  %y = onnx.node "MatMul" opset 17 (%w, %v) {} : (tensor<1x4x?x?xf32>, tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return %y : tensor<1x4x?x8xf32>
}

// -----

// Without the NaN guard a fully masked row would be NaN, not
// qopt.attention's 0: left as it is.
// CHECK-LABEL: func.func @sdpa_unguarded
// CHECK-NOT: qopt.attention
// CHECK: "Softmax"
func.func @sdpa_unguarded(%q: tensor<1x4x3x8xf32>, %kt: tensor<1x4x8x3xf32>, %v: tensor<1x4x3x8xf32>) -> tensor<1x4x3x8xf32> {
  %s = onnx.node "Constant" opset 17 () {value = dense<0.353553385> : tensor<f32>} : () -> tensor<f32>
  %qs = onnx.node "Mul" opset 17 (%q, %s) {} : (tensor<1x4x3x8xf32>, tensor<f32>) -> tensor<1x4x3x8xf32>
  %ks = onnx.node "Mul" opset 17 (%kt, %s) {} : (tensor<1x4x8x3xf32>, tensor<f32>) -> tensor<1x4x8x3xf32>
  %a = onnx.node "MatMul" opset 17 (%qs, %ks) {} : (tensor<1x4x3x8xf32>, tensor<1x4x8x3xf32>) -> tensor<1x4x3x3xf32>
  %p = onnx.node "Softmax" opset 17 (%a) {axis = -1 : i64} : (tensor<1x4x3x3xf32>) -> tensor<1x4x3x3xf32>
  %y = onnx.node "MatMul" opset 17 (%p, %v) {} : (tensor<1x4x3x3xf32>, tensor<1x4x3x8xf32>) -> tensor<1x4x3x8xf32>
  return %y : tensor<1x4x3x8xf32>
}

// -----

// Where MatMul broadcasts a batch of one (or the mask has a static size the
// scores do not), qopt.attention would not: left as it is, no error.
// CHECK-LABEL: func.func @sdpa_broadcast
// CHECK-NOT: qopt.attention
// CHECK: "Softmax"
// CHECK-NOT: qopt.attention
// CHECK: "Softmax"
func.func @sdpa_broadcast(%q: tensor<2x4x3x8xf32>, %kt: tensor<1x4x8x3xf32>, %v: tensor<2x4x3x8xf32>, %q1: tensor<1x4x3x8xf32>, %kt1: tensor<1x4x8x3xf32>, %v1: tensor<1x4x3x8xf32>, %m: tensor<2x1x3x3xf32>) -> (tensor<2x4x3x8xf32>, tensor<2x4x3x8xf32>) {
  %s = onnx.node "Constant" opset 17 () {value = dense<0.353553385> : tensor<f32>} : () -> tensor<f32>
  %z = onnx.node "Constant" opset 17 () {value = dense<0.0> : tensor<1xf32>} : () -> tensor<1xf32>
  %qs = onnx.node "Mul" opset 17 (%q, %s) {} : (tensor<2x4x3x8xf32>, tensor<f32>) -> tensor<2x4x3x8xf32>
  %ks = onnx.node "Mul" opset 17 (%kt, %s) {} : (tensor<1x4x8x3xf32>, tensor<f32>) -> tensor<1x4x8x3xf32>
  %a = onnx.node "MatMul" opset 17 (%qs, %ks) {} : (tensor<2x4x3x8xf32>, tensor<1x4x8x3xf32>) -> tensor<2x4x3x3xf32>
  %p = onnx.node "Softmax" opset 17 (%a) {axis = -1 : i64} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32>
  %n = onnx.node "IsNaN" opset 17 (%p) {} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xi1>
  %w = onnx.node "Where" opset 17 (%n, %z, %p) {} : (tensor<2x4x3x3xi1>, tensor<1xf32>, tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32>
  %y = onnx.node "MatMul" opset 17 (%w, %v) {} : (tensor<2x4x3x3xf32>, tensor<2x4x3x8xf32>) -> tensor<2x4x3x8xf32>
  %qs1 = onnx.node "Mul" opset 17 (%q1, %s) {} : (tensor<1x4x3x8xf32>, tensor<f32>) -> tensor<1x4x3x8xf32>
  %ks1 = onnx.node "Mul" opset 17 (%kt1, %s) {} : (tensor<1x4x8x3xf32>, tensor<f32>) -> tensor<1x4x8x3xf32>
  %a1 = onnx.node "MatMul" opset 17 (%qs1, %ks1) {} : (tensor<1x4x3x8xf32>, tensor<1x4x8x3xf32>) -> tensor<1x4x3x3xf32>
  %b1 = onnx.node "Add" opset 17 (%a1, %m) {} : (tensor<1x4x3x3xf32>, tensor<2x1x3x3xf32>) -> tensor<2x4x3x3xf32>
  %p1 = onnx.node "Softmax" opset 17 (%b1) {axis = -1 : i64} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32>
  %n1 = onnx.node "IsNaN" opset 17 (%p1) {} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xi1>
  %w1 = onnx.node "Where" opset 17 (%n1, %z, %p1) {} : (tensor<2x4x3x3xi1>, tensor<1xf32>, tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32>
  %y1 = onnx.node "MatMul" opset 17 (%w1, %v1) {} : (tensor<2x4x3x3xf32>, tensor<1x4x3x8xf32>) -> tensor<2x4x3x8xf32>
  return %y, %y1 : tensor<2x4x3x8xf32>, tensor<2x4x3x8xf32>
}

// -----

// Hugging Face's apply_rotary_pos_emb (dynamo's form: constant slice
// bounds): x·cos + Concat(-x[..., 4:], x[..., :4])·sin → qopt.rotary. cos
// and sin have a dynamic batch that may be 1 (position ids of one row):
// checked and broadcast at run time.
// CHECK-LABEL: func.func @rotary
// CHECK-NOT: "Neg"
// CHECK: cf.assert {{.*}}"node '{{.*}}' (Add, opset 18): cos / sin do not broadcast to the rotated input"
// CHECK: %[[Y:.*]] = qopt.rotary %arg0, %{{.*}}, %{{.*}} : tensor<?x4x?x8xf32>, tensor<?x1x?x8xf32>, tensor<?x1x?x8xf32>
// CHECK-NOT: "Concat"
// CHECK: return %[[Y]]
func.func @rotary(%x: tensor<?x4x?x8xf32>, %cos: tensor<?x1x?x8xf32>, %sin: tensor<?x1x?x8xf32>) -> tensor<?x4x?x8xf32> {
  %h = arith.constant dense<4> : tensor<1xi64>
  %z = arith.constant dense<0> : tensor<1xi64>
  %e = arith.constant dense<9223372036854775807> : tensor<1xi64>
  %ax = arith.constant dense<-1> : tensor<1xi64>
  %one = arith.constant dense<1> : tensor<1xi64>
  %xc = onnx.node "Mul" opset 18 (%x, %cos) {} : (tensor<?x4x?x8xf32>, tensor<?x1x?x8xf32>) -> tensor<?x4x?x8xf32>
  %x1 = onnx.node "Slice" opset 18 (%x, %z, %h, %ax, %one) {} : (tensor<?x4x?x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?x4x?x4xf32>
  %x2 = onnx.node "Slice" opset 18 (%x, %h, %e, %ax, %one) {} : (tensor<?x4x?x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?x4x?x4xf32>
  %n = onnx.node "Neg" opset 18 (%x2) {} : (tensor<?x4x?x4xf32>) -> tensor<?x4x?x4xf32>
  %r = onnx.node "Concat" opset 18 (%n, %x1) {axis = -1 : si64} : (tensor<?x4x?x4xf32>, tensor<?x4x?x4xf32>) -> tensor<?x4x?x8xf32>
  %rs = onnx.node "Mul" opset 18 (%r, %sin) {} : (tensor<?x4x?x8xf32>, tensor<?x1x?x8xf32>) -> tensor<?x4x?x8xf32>
  %y = onnx.node "Add" opset 18 (%xc, %rs) {} : (tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>) -> tensor<?x4x?x8xf32>
  return %y : tensor<?x4x?x8xf32>
}

// -----

// Halves swapped the other way round (x[..., :4] negated) is not a
// rotation by these angles: left as it is.
// CHECK-LABEL: func.func @rotary_wrong_half
// CHECK-NOT: qopt.rotary
// CHECK: "Neg"
func.func @rotary_wrong_half(%x: tensor<2x4x3x8xf32>, %cos: tensor<1x1x3x8xf32>, %sin: tensor<1x1x3x8xf32>) -> tensor<2x4x3x8xf32> {
  %h = arith.constant dense<4> : tensor<1xi64>
  %z = arith.constant dense<0> : tensor<1xi64>
  %e = arith.constant dense<8> : tensor<1xi64>
  %ax = arith.constant dense<3> : tensor<1xi64>
  %xc = onnx.node "Mul" opset 18 (%x, %cos) {} : (tensor<2x4x3x8xf32>, tensor<1x1x3x8xf32>) -> tensor<2x4x3x8xf32>
  %x1 = onnx.node "Slice" opset 18 (%x, %z, %h, %ax) {} : (tensor<2x4x3x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<2x4x3x4xf32>
  %x2 = onnx.node "Slice" opset 18 (%x, %h, %e, %ax) {} : (tensor<2x4x3x8xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<2x4x3x4xf32>
  %n = onnx.node "Neg" opset 18 (%x1) {} : (tensor<2x4x3x4xf32>) -> tensor<2x4x3x4xf32>
  %r = onnx.node "Concat" opset 18 (%n, %x2) {axis = -1 : si64} : (tensor<2x4x3x4xf32>, tensor<2x4x3x4xf32>) -> tensor<2x4x3x8xf32>
  %rs = onnx.node "Mul" opset 18 (%r, %sin) {} : (tensor<2x4x3x8xf32>, tensor<1x1x3x8xf32>) -> tensor<2x4x3x8xf32>
  %y = onnx.node "Add" opset 18 (%xc, %rs) {} : (tensor<2x4x3x8xf32>, tensor<2x4x3x8xf32>) -> tensor<2x4x3x8xf32>
  return %y : tensor<2x4x3x8xf32>
}

// -----

// Residual connections: a linear layer's output added to a value a norm
// reads (pre-norm), then to that residual add; the module path is the
// output projection's. An Add of two other values stays an Add.
// CHECK-LABEL: func.func @residual
// CHECK: %[[H1:.*]] = qopt.residual_add %arg0, %{{.*}} module "model.layers.0.self_attn.o_proj" : tensor<?x?x8xf32>
// CHECK: qopt.residual_add %[[H1]], %{{.*}} module "model.layers.0.mlp.down_proj" : tensor<?x?x8xf32>
// CHECK: onnx.node "Add"
func.func @residual(%h: tensor<?x?x8xf32>, %g: tensor<8xf32>, %w: tensor<8x8xf32>, %other: tensor<?x?x8xf32>) -> (tensor<?x?x8xf32>, tensor<?x?x8xf32>) {
  %n0 = qopt.rms_norm %h, %g epsilon = 1.0e-6 : (tensor<?x?x8xf32>, tensor<8xf32>) -> tensor<?x?x8xf32>
  %o = qopt.linear %n0, %w module "model.layers.0.self_attn.o_proj" : (tensor<?x?x8xf32>, tensor<8x8xf32>) -> tensor<?x?x8xf32>
  %h1 = onnx.node "Add" opset 18 (%h, %o) {} : (tensor<?x?x8xf32>, tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  %d = qopt.linear %h1, %w module "model.layers.0.mlp.down_proj" : (tensor<?x?x8xf32>, tensor<8x8xf32>) -> tensor<?x?x8xf32>
  %h2 = onnx.node "Add" opset 18 (%h1, %d) {} : (tensor<?x?x8xf32>, tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  %a = onnx.node "Add" opset 18 (%other, %other) {} : (tensor<?x?x8xf32>, tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  return %h2, %a : tensor<?x?x8xf32>, tensor<?x?x8xf32>
}
