// RUN: qopt-opt %s -split-input-file --convert-onnx-to-qopt --canonicalize | FileCheck %s
// The structure of converted nodes; numerics are checked against the ONNX
// reference outputs by test/e2e/node-tests.test.

// Broadcasting: size-1 and missing dimensions read index 0; dynamic sizes
// come from the operand that has them.
// CHECK-DAG: #[[ID:.*]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-DAG: #[[ROW:.*]] = affine_map<(d0, d1) -> (d1)>
// CHECK-LABEL: func.func @add_broadcast
// CHECK-SAME: (%[[X:.*]]: tensor<?x4xf32>, %[[B:.*]]: tensor<4xf32>)
// CHECK: %[[D:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<?x4xf32>
// CHECK: %[[E:.*]] = tensor.empty(%[[D]]) : tensor<?x4xf32>
// CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[ROW]], #[[ID]]], iterator_types = ["parallel", "parallel"]} ins(%[[X]], %[[B]] : tensor<?x4xf32>, tensor<4xf32>) outs(%[[E]] : tensor<?x4xf32>)
// CHECK: arith.addf
func.func @add_broadcast(%x: tensor<?x4xf32>, %b: tensor<4xf32>) -> tensor<?x4xf32> {
  %0 = onnx.node "Add" opset 14 (%x, %b) {} : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

// Batched MatMul: one contraction, the reduction loop last.
// CHECK-DAG: #[[A:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG: #[[B:.*]] = affine_map<(d0, d1, d2, d3) -> (d3, d2)>
// CHECK-DAG: #[[C:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @matmul
// CHECK: linalg.fill
// CHECK: linalg.generic {indexing_maps = [#[[A]], #[[B]], #[[C]]], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
// CHECK: arith.mulf
// CHECK: arith.addf
func.func @matmul(%a: tensor<?x?x8xf32>, %w: tensor<8x16xf32>) -> tensor<?x?x16xf32> {
  %0 = onnx.node "MatMul" opset 13 (%a, %w) {} : (tensor<?x?x8xf32>, tensor<8x16xf32>) -> tensor<?x?x16xf32>
  return %0 : tensor<?x?x16xf32>
}

// -----

// A constant shape with 0 (copy) and -1 (infer) folds to static sizes.
// CHECK-LABEL: func.func @reshape_static
// CHECK: %[[R:.*]] = tensor.reshape %{{.*}}(%{{.*}}) : (tensor<2x3x4xf32>, tensor<2xindex>) -> tensor<2x12xf32>
// CHECK: return %[[R]]
func.func @reshape_static(%x: tensor<2x3x4xf32>) -> tensor<2x12xf32> {
  %s = arith.constant dense<[0, -1]> : tensor<2xi64>
  %0 = onnx.node "Reshape" opset 14 (%x, %s) {} : (tensor<2x3x4xf32>, tensor<2xi64>) -> tensor<2x12xf32>
  return %0 : tensor<2x12xf32>
}

// -----

// A shape computed at run time (Shape -> Gather -> Concat, as exporters emit
// it) stays correct with dynamic sizes. Shape arithmetic is followed to its
// sources: the first entry is the input's first dimension itself, the -1
// is known to be the constant -1 and resolved from the element count, which
// is checked at run time.
// CHECK-LABEL: func.func @reshape_dynamic
// CHECK: %[[D0:.*]] = tensor.dim %arg0, %c0
// CHECK: arith.divui
// CHECK: cf.assert %{{.*}}, "node '?' (Reshape, opset 14): the shape does not keep the input's element count"
// CHECK: tensor.from_elements %[[D0]], %{{.*}} : tensor<2xindex>
// CHECK: tensor.reshape
func.func @reshape_dynamic(%x: tensor<?x?x4xf32>) -> tensor<?x?xf32> {
  %shape = onnx.node "Shape" opset 15 (%x) {end = 2 : i64} : (tensor<?x?x4xf32>) -> tensor<2xi64>
  %minus = arith.constant dense<[-1]> : tensor<1xi64>
  %first = arith.constant dense<[0]> : tensor<1xi64>
  %b = onnx.node "Gather" opset 13 (%shape, %first) {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>) -> tensor<1xi64>
  %s = onnx.node "Concat" opset 13 (%b, %minus) {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>) -> tensor<2xi64>
  %0 = onnx.node "Reshape" opset 14 (%x, %s) {} : (tensor<?x?x4xf32>, tensor<2xi64>) -> tensor<?x?xf32>
  return %0 : tensor<?x?xf32>
}

// -----

// The model's declared type is kept with a cast where the conversion knows
// more.
// CHECK-LABEL: func.func @declared_less_static
// CHECK: %[[G:.*]] = linalg.generic
// CHECK: %[[C:.*]] = tensor.cast %[[G]] : tensor<2x3xf32> to tensor<?x3xf32>
// CHECK: return %[[C]]
func.func @declared_less_static(%x: tensor<2x3xf32>) -> tensor<?x3xf32> {
  %0 = onnx.node "Relu" opset 14 (%x) {} : (tensor<2x3xf32>) -> tensor<?x3xf32>
  return %0 : tensor<?x3xf32>
}

// -----

// Omitted optional inputs: Clip with only a maximum.
// CHECK-LABEL: func.func @clip_max_only
// CHECK-NOT: onnx.none
// CHECK: linalg.generic
// CHECK: arith.minimumf
// CHECK-NOT: arith.maximumf
func.func @clip_max_only(%x: tensor<3xf32>, %hi: tensor<f32>) -> tensor<3xf32> {
  %none = onnx.none
  %0 = onnx.node "Clip" opset 13 (%x, %none, %hi) {} : (tensor<3xf32>, none, tensor<f32>) -> tensor<3xf32>
  return %0 : tensor<3xf32>
}

// -----

// Raising during conversion: the MatMul's input is unranked as declared,
// but conversion has refined it by the time the MatMul is reached, so the
// layer still becomes qopt.linear.
qopt.param @proj.weight : tensor<4x6xf32>
// CHECK-LABEL: func.func @raise_after_refinement
// CHECK: %[[R:.*]] = linalg.generic
// CHECK: %[[T:.*]] = linalg.transpose
// CHECK: qopt.linear %[[R]], %[[T]] module "proj" : (tensor<2x4xf32>, tensor<6x4xf32>) -> tensor<2x6xf32>
func.func @raise_after_refinement(%x: tensor<2x4xf32>) -> tensor<*xf32> {
  %w = qopt.load_param @proj.weight : tensor<4x6xf32>
  %0 = onnx.node "Relu" opset 14 (%x) {} : (tensor<2x4xf32>) -> tensor<*xf32>
  %1 = onnx.node "MatMul" opset 13 (%0, %w) {} : (tensor<*xf32>, tensor<4x6xf32>) -> tensor<*xf32>
  return %1 : tensor<*xf32>
}

// -----

// MatMulNBits: the model's buffers assembled into a quantized tensor (uint4,
// zero points unpacked to one per byte, groups of block_size along K) that
// qopt.linear consumes.
// CHECK-LABEL: func.func @matmul_nbits
// CHECK: %[[Q:.*]] = qopt.assemble %{{.*}}, %{{.*}} zero_points %{{.*}} : (tensor<8x32xi8>, tensor<8x2xf32>, tensor<8x2xi8>) -> !qopt.qtensor<8x64, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
// CHECK: qopt.linear %{{.*}}, %[[Q]] : (tensor<?x64xf32>, !qopt.qtensor<8x64, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 32>, scales = f32>) -> tensor<?x8xf32>
func.func @matmul_nbits(%a: tensor<?x64xf32>, %b: tensor<8x2x16xui8>, %s: tensor<16xf32>, %z: tensor<8xui8>) -> tensor<?x8xf32> {
  %0 = onnx.node "MatMulNBits" domain "com.microsoft" opset 1 (%a, %b, %s, %z) {K = 64 : i64, N = 8 : i64, bits = 4 : i64, block_size = 32 : i64}
      : (tensor<?x64xf32>, tensor<8x2x16xui8>, tensor<16xf32>, tensor<8xui8>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

// Einsum: one generic, letters missing from the output summed.
// CHECK-DAG: #[[A:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG: #[[B:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d3, d2)>
// CHECK-DAG: #[[C:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @einsum_bmm
// CHECK: linalg.generic {indexing_maps = [#[[A]], #[[B]], #[[C]]], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
func.func @einsum_bmm(%a: tensor<2x3x4xf32>, %b: tensor<2x4x5xf32>) -> tensor<2x3x5xf32> {
  %0 = onnx.node "Einsum" opset 12 (%a, %b) {equation = "bij, bjk -> bik"} : (tensor<2x3x4xf32>, tensor<2x4x5xf32>) -> tensor<2x3x5xf32>
  return %0 : tensor<2x3x5xf32>
}

// -----

// DequantizeLinear of an int8 weight parameter per output channel (as
// onnxruntime's quantizer writes it) becomes a QOpt quantized tensor; an
// activation is dequantized arithmetically.
qopt.param @w : tensor<16x8xi8>
qopt.param @ws : tensor<8xf32>
qopt.param @wz : tensor<8xi8>
// CHECK-LABEL: func.func @dequantize_weight
// CHECK-DAG: %[[W:.*]] = qopt.load_param @w
// CHECK-DAG: %[[S:.*]] = qopt.load_param @ws
// CHECK-DAG: %[[Z:.*]] = qopt.load_param @wz
// CHECK: %[[Q:.*]] = qopt.assemble %[[W]], %[[S]] zero_points %[[Z]] : (tensor<16x8xi8>, tensor<8xf32>, tensor<8xi8>) -> !qopt.qtensor<16x8, #qopt.int<8, zero_point>, #qopt.per_channel<1>, scales = f32>
// CHECK: qopt.dequantize %[[Q]] : !qopt.qtensor<16x8, #qopt.int<8, zero_point>, #qopt.per_channel<1>, scales = f32> -> tensor<16x8xf32>
// CHECK: linalg.generic
// CHECK-NOT: qopt.assemble
func.func @dequantize_weight(%x: tensor<4x8xi8>, %xs: tensor<f32>) -> (tensor<16x8xf32>, tensor<4x8xf32>) {
  %w = qopt.load_param @w : tensor<16x8xi8>
  %ws = qopt.load_param @ws : tensor<8xf32>
  %wz = qopt.load_param @wz : tensor<8xi8>
  %0 = onnx.node "DequantizeLinear" opset 21 (%w, %ws, %wz) {axis = 1 : i64} : (tensor<16x8xi8>, tensor<8xf32>, tensor<8xi8>) -> tensor<16x8xf32>
  %1 = onnx.node "DequantizeLinear" opset 21 (%x, %xs) {} : (tensor<4x8xi8>, tensor<f32>) -> tensor<4x8xf32>
  return %0, %1 : tensor<16x8xf32>, tensor<4x8xf32>
}

// -----

// QDQ linear layer: MatMul(x, DequantizeLinear(W_int8)) is a qopt.linear of
// the dequantized weight (module path from the weight's node-name path).
// CHECK-LABEL: func.func @qdq_linear
// CHECK: %[[Q:.*]] = qopt.assemble
// CHECK: %[[D:.*]] = qopt.dequantize %[[Q]] : !qopt.qtensor<16x8, #qopt.int<8>, #qopt.per_channel<1>, scales = f32> -> tensor<16x8xf32>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[D]] : tensor<16x8xf32>)
// CHECK: qopt.linear %{{.*}}, %[[T]] module "layers.0.fc" : (tensor<?x16xf32>, tensor<8x16xf32>) -> tensor<?x8xf32>
func.func @qdq_linear(%x: tensor<?x16xf32>) -> tensor<?x8xf32> {
  %w = qopt.load_param @w : tensor<16x8xi8>
  %ws = qopt.load_param @ws : tensor<8xf32>
  %0 = onnx.node "DequantizeLinear" opset 21 (%w, %ws) {axis = 1 : i64} : (tensor<16x8xi8>, tensor<8xf32>) -> tensor<16x8xf32>
  %1 = onnx.node "MatMul" opset 21 (%x, %0) {} : (tensor<?x16xf32>, tensor<16x8xf32>) -> tensor<?x8xf32> loc("/layers.0/fc/MatMul")
  return %1 : tensor<?x8xf32>
}
qopt.param @w : tensor<16x8xi8>
qopt.param @ws : tensor<8xf32>

// -----

// A node whose raise attempt replaces a chain it feeds (here the SiLU of
// its result) is still converted itself.
// CHECK-LABEL: func.func @raise_downstream
// CHECK-NOT: onnx.node
// CHECK: %[[M:.*]] = linalg.generic
// CHECK: arith.mulf
// CHECK: qopt.silu %[[M]]
func.func @raise_downstream(%a: tensor<2x4xf32>, %b: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %m = onnx.node "Mul" opset 14 (%a, %b) {} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  %s = onnx.node "Sigmoid" opset 13 (%m) {} : (tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = onnx.node "Mul" opset 14 (%m, %s) {} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
