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

// Products stay named (the mid-level op set): a batched activation times a
// 2-D weight is one linalg.contract whose weight map leaves the batch loop
// out, the reduction loop last.
// CHECK-DAG: #[[A:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>
// CHECK-DAG: #[[B:.*]] = affine_map<(d0, d1, d2, d3) -> (d3, d2)>
// CHECK-DAG: #[[C:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @matmul
// CHECK: %[[Z:.*]] = linalg.fill
// CHECK: linalg.contract indexing_maps = [#[[A]], #[[B]], #[[C]]] ins(%arg0, %arg1 : tensor<?x?x8xf32>, tensor<8x16xf32>) outs(%[[Z]] : tensor<?x?x16xf32>)
func.func @matmul(%a: tensor<?x?x8xf32>, %w: tensor<8x16xf32>) -> tensor<?x?x16xf32> {
  %0 = onnx.node "MatMul" opset 13 (%a, %w) {} : (tensor<?x?x8xf32>, tensor<8x16xf32>) -> tensor<?x?x16xf32>
  return %0 : tensor<?x?x16xf32>
}

// -----

// The plain forms are linalg.matmul and linalg.batch_matmul; a size-1 batch
// dimension the other operand broadcasts is sliced away, so the product is
// a linalg.contract leaving that loop out of the operand's map. Integer
// products stay linalg.generic.
// CHECK-DAG: #[[L:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d1, d2, d4)>
// CHECK-DAG: #[[R:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d4, d3)>
// CHECK-DAG: #[[O:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @products
// CHECK: linalg.matmul ins(%arg0, %arg1 : tensor<2x3xf32>, tensor<3x4xf32>)
// CHECK: linalg.batch_matmul ins(%arg2, %arg3 : tensor<5x2x3xf32>, tensor<5x3x4xf32>)
// CHECK: %[[E:.*]] = tensor.extract_slice %arg4[0, 0, 0, 0] [1, 7, 2, 3] [1, 1, 1, 1] : tensor<1x7x2x3xf32> to tensor<7x2x3xf32>
// CHECK: %[[F:.*]] = tensor.extract_slice %arg5[0, 0, 0, 0] [6, 1, 3, 4] [1, 1, 1, 1] : tensor<6x1x3x4xf32> to tensor<6x3x4xf32>
// CHECK: linalg.contract indexing_maps = [#[[L]], #[[R]], #[[O]]] ins(%[[E]], %[[F]] : tensor<7x2x3xf32>, tensor<6x3x4xf32>)
// CHECK: linalg.matmul ins(%arg0, %arg1 : tensor<2x3xf32>, tensor<3x4xf32>)
// CHECK: linalg.generic {{.*}} ins(%arg6, %arg7 : tensor<2x3xi32>, tensor<3x4xi32>)
func.func @products(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>, %c: tensor<5x2x3xf32>, %d: tensor<5x3x4xf32>, %e: tensor<1x7x2x3xf32>, %f: tensor<6x1x3x4xf32>, %i: tensor<2x3xi32>, %j: tensor<3x4xi32>) -> (tensor<2x4xf32>, tensor<5x2x4xf32>, tensor<6x7x2x4xf32>, tensor<2x4xf32>, tensor<2x4xi32>) {
  %0 = onnx.node "MatMul" opset 13 (%a, %b) {} : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  %1 = onnx.node "MatMul" opset 13 (%c, %d) {} : (tensor<5x2x3xf32>, tensor<5x3x4xf32>) -> tensor<5x2x4xf32>
  %2 = onnx.node "MatMul" opset 13 (%e, %f) {} : (tensor<1x7x2x3xf32>, tensor<6x1x3x4xf32>) -> tensor<6x7x2x4xf32>
  %3 = onnx.node "Gemm" opset 13 (%a, %b) {} : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  %4 = onnx.node "MatMul" opset 13 (%i, %j) {} : (tensor<2x3xi32>, tensor<3x4xi32>) -> tensor<2x4xi32>
  return %0, %1, %2, %3, %4 : tensor<2x4xf32>, tensor<5x2x4xf32>, tensor<6x7x2x4xf32>, tensor<2x4xf32>, tensor<2x4xi32>
}

// -----

// Softmax stays named (linalg.softmax, lowered late); LogSoftmax, which has
// no upstream op, is its stable loops at once.
// CHECK-LABEL: func.func @softmax
// CHECK: linalg.softmax dimension(0) ins(%arg0 : tensor<3x5xf32>)
// CHECK-NOT: linalg.softmax
// CHECK: qopt.log_softmax %arg0 axis = 1 : tensor<3x5xf32>
func.func @softmax(%x: tensor<3x5xf32>) -> (tensor<3x5xf32>, tensor<3x5xf32>) {
  %0 = onnx.node "Softmax" opset 13 (%x) {axis = 0 : si64} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  %1 = onnx.node "LogSoftmax" opset 13 (%x) {} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  return %0, %1 : tensor<3x5xf32>, tensor<3x5xf32>
}

// -----

// torch's guard Where(IsNaN(P), 0, P) after a softmax (fully masked rows
// become 0) marks it safe: its lowering gives those rows 0 without a NaN,
// which training needs. Another use of P, or a guard to a value other
// than 0, leaves it plain.
// CHECK-LABEL: func.func @guarded_softmax
// CHECK: linalg.softmax {qopt.safe_softmax} dimension(1)
// CHECK: linalg.softmax dimension(1)
// CHECK-NOT: qopt.safe_softmax
// CHECK: return
func.func @guarded_softmax(%x: tensor<3x5xf32>) -> (tensor<3x5xf32>, tensor<3x5xf32>, tensor<3x5xf32>) {
  %zero = onnx.node "Constant" opset 17 () {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
  %one = onnx.node "Constant" opset 17 () {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
  %p = onnx.node "Softmax" opset 13 (%x) {axis = -1 : si64} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  %n = onnx.node "IsNaN" opset 17 (%p) {} : (tensor<3x5xf32>) -> tensor<3x5xi1>
  %g = onnx.node "Where" opset 16 (%n, %zero, %p) {} : (tensor<3x5xi1>, tensor<f32>, tensor<3x5xf32>) -> tensor<3x5xf32>
  %q = onnx.node "Softmax" opset 13 (%x) {axis = -1 : si64} : (tensor<3x5xf32>) -> tensor<3x5xf32>
  %m = onnx.node "IsNaN" opset 17 (%q) {} : (tensor<3x5xf32>) -> tensor<3x5xi1>
  %h = onnx.node "Where" opset 16 (%m, %one, %q) {} : (tensor<3x5xi1>, tensor<f32>, tensor<3x5xf32>) -> tensor<3x5xf32>
  return %g, %h, %q : tensor<3x5xf32>, tensor<3x5xf32>, tensor<3x5xf32>
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

// -----

// Gather of a 2-D float parameter along axis 0 is an embedding lookup,
// named after the table; a Gather of anything else stays a gather, its
// range check marked as one that reads the indices (qopt.data_check: a GPU
// target makes it on the device) and each index clamped into the data.
// CHECK-LABEL: func.func @embedding
// CHECK: %[[W:.*]] = qopt.load_param @model.embed_tokens.weight : tensor<10x4xf32>
// CHECK: qopt.embedding %arg0, %[[W]] module "model.embed_tokens" : (tensor<?x?xi64>, tensor<10x4xf32>) -> tensor<?x?x4xf32>
// CHECK-NOT: qopt.embedding
// CHECK: cf.assert %{{.*}}, "node '?' (Gather, opset 13): an index into axis 0 is out of range (valid: -10 to 9)" {qopt.data_check}
// CHECK: linalg.generic
// CHECK: %[[WRAPPED:.*]] = arith.select
// CHECK: %[[BELOW:.*]] = arith.minsi %[[WRAPPED]], %c9 : index
// CHECK: %[[ROW:.*]] = arith.maxsi %[[BELOW]], %c0 : index
// CHECK: tensor.extract %arg1[%[[ROW]], %{{.*}}] : tensor<10x4xf32>
func.func @embedding(%ids: tensor<?x?xi64>, %x: tensor<10x4xf32>) -> (tensor<?x?x4xf32>, tensor<?x?x4xf32>) {
  %w = qopt.load_param @model.embed_tokens.weight : tensor<10x4xf32>
  %0 = onnx.node "Gather" opset 13 (%w, %ids) {} : (tensor<10x4xf32>, tensor<?x?xi64>) -> tensor<?x?x4xf32>
  %1 = onnx.node "Gather" opset 13 (%x, %ids) {} : (tensor<10x4xf32>, tensor<?x?xi64>) -> tensor<?x?x4xf32>
  return %0, %1 : tensor<?x?x4xf32>, tensor<?x?x4xf32>
}
qopt.param @model.embed_tokens.weight : tensor<10x4xf32>

// -----

// Attention (opset 23) is qopt.attention, lowered late; 3-D inputs are split
// into heads around it; a mask dimension only the run can tell broadcasts
// is expanded as the run says.
// CHECK-LABEL: func.func @attention
// CHECK: qopt.attention %arg0, %arg1, %arg2 mask(%{{.*}}) causal scale = 2.500000e-01 : (tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x1x?x?xi1>) -> tensor<1x4x?x8xf32>
// CHECK-LABEL: func.func @attention_3d
// CHECK: linalg.transpose
// CHECK: qopt.attention %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x2x?x4xf32>, tensor<2x2x?x4xf32>, tensor<2x2x?x4xf32>) -> tensor<2x2x?x4xf32>
// CHECK: linalg.transpose
// CHECK: tensor.reshape
// CHECK-LABEL: func.func @attention_mask_run_time
// CHECK: cf.assert %{{.*}}, "node 'a' (Attention, opset 23): attn_mask does not broadcast to the scores"
// CHECK: scf.if
// CHECK: qopt.attention {{.*}} mask(
func.func @attention(%q: tensor<1x4x?x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x8xf32>, %m: tensor<1x1x?x?xi1>) -> tensor<1x4x?x8xf32> {
  %0 = onnx.node "Attention" opset 23 (%q, %k, %v, %m) {is_causal = 1 : si64, scale = 0.25 : f32} : (tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x1x?x?xi1>) -> tensor<1x4x?x8xf32>
  return %0 : tensor<1x4x?x8xf32>
}
func.func @attention_3d(%x: tensor<2x?x8xf32>) -> tensor<2x?x8xf32> {
  %0 = onnx.node "Attention" opset 23 (%x, %x, %x) {q_num_heads = 2 : si64, kv_num_heads = 2 : si64} : (tensor<2x?x8xf32>, tensor<2x?x8xf32>, tensor<2x?x8xf32>) -> tensor<2x?x8xf32>
  return %0 : tensor<2x?x8xf32>
}
func.func @attention_mask_run_time(%q: tensor<1x2x3x4xf32>, %m: tensor<?x3x3xf32>) -> tensor<1x2x3x4xf32> {
  %0 = onnx.node "Attention" opset 23 (%q, %q, %q, %m) {} : (tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<?x3x3xf32>) -> tensor<1x2x3x4xf32> loc("a")
  return %0 : tensor<1x2x3x4xf32>
}

// -----

// A transposed operand (a tied LM head: MatMul(h, Transpose(wte))) is read
// through a permuted map, never copied.
// CHECK-DAG: #[[WT:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-LABEL: func.func @matmul_transposed
// CHECK-NOT: linalg.transpose
// CHECK: linalg.contract indexing_maps = [#{{.*}}, #[[WT]], #{{.*}}] ins(%arg0, %arg1 : tensor<4x8xf32>, tensor<16x8xf32>)
func.func @matmul_transposed(%h: tensor<4x8xf32>, %wte: tensor<16x8xf32>) -> tensor<4x16xf32> {
  %t = onnx.node "Transpose" opset 13 (%wte) {perm = array<i64: 1, 0>} : (tensor<16x8xf32>) -> tensor<8x16xf32>
  %0 = onnx.node "MatMul" opset 13 (%h, %t) {} : (tensor<4x8xf32>, tensor<8x16xf32>) -> tensor<4x16xf32>
  return %0 : tensor<4x16xf32>
}

// -----

// The losses become qopt.cross_entropy (NegativeLogLikelihoodLoss reads
// log-probabilities); SoftmaxCrossEntropyLoss's log_prob output a
// qopt.log_softmax over the classes.
// CHECK-LABEL: func.func @losses
// CHECK: %[[L:.*]] = qopt.cross_entropy %arg0, %arg1 weight(%arg2) ignore_index = -1 : (tensor<?x5xf32>, tensor<?xi64>, tensor<5xf32>) -> tensor<f32>
// CHECK: %[[P:.*]] = qopt.log_softmax %arg0 axis = 1 : tensor<?x5xf32>
// CHECK: %[[N:.*]] = qopt.cross_entropy %arg3, %arg4 reduction = "none" log_probs : (tensor<2x5x3xf32>, tensor<2x3xi32>) -> tensor<2x3xf32>
// CHECK: return %[[L]], %[[P]], %[[N]]
func.func @losses(%x: tensor<?x5xf32>, %y: tensor<?xi64>, %w: tensor<5xf32>, %lp: tensor<2x5x3xf32>, %y3: tensor<2x3xi32>) -> (tensor<f32>, tensor<?x5xf32>, tensor<2x3xf32>) {
  %0:2 = onnx.node "SoftmaxCrossEntropyLoss" opset 13 (%x, %y, %w) {ignore_index = -1 : si64} : (tensor<?x5xf32>, tensor<?xi64>, tensor<5xf32>) -> (tensor<f32>, tensor<?x5xf32>)
  %1 = onnx.node "NegativeLogLikelihoodLoss" opset 13 (%lp, %y3) {reduction = "none"} : (tensor<2x5x3xf32>, tensor<2x3xi32>) -> tensor<2x3xf32>
  return %0#0, %0#1, %1 : tensor<f32>, tensor<?x5xf32>, tensor<2x3xf32>
}

// -----

// RotaryEmbedding: the half-width caches gathered by position_ids and
// expanded to [B, 1, S, R] (4-D input), then qopt.rotary.
// CHECK-LABEL: func.func @rotary_embedding
// CHECK: %[[C:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<2x1x3x8xf32>)
// CHECK: %[[S:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<2x1x3x8xf32>)
// CHECK: qopt.rotary %arg0, %[[C]], %[[S]] interleaved : tensor<2x4x3x8xf32>, tensor<2x1x3x8xf32>, tensor<2x1x3x8xf32>
func.func @rotary_embedding(%x: tensor<2x4x3x8xf32>, %cos: tensor<16x4xf32>, %sin: tensor<16x4xf32>, %pos: tensor<2x3xi64>) -> tensor<2x4x3x8xf32> {
  %0 = onnx.node "RotaryEmbedding" opset 23 (%x, %cos, %sin, %pos) {interleaved = 1 : si64} : (tensor<2x4x3x8xf32>, tensor<16x4xf32>, tensor<16x4xf32>, tensor<2x3xi64>) -> tensor<2x4x3x8xf32>
  return %0 : tensor<2x4x3x8xf32>
}

// -----

// Exports without constant folding compute Slice axes (and the like) from
// constants through Unsqueeze: that folds at conversion, so the slice is
// static: a strided view (forward steps). (Cast and Concat of constants do
// not fold yet: as starts they give a slice with run-time bounds.)
// CHECK-LABEL: func.func @computed_constants
// CHECK: tensor.extract_slice %arg0[0, 1] [4, 2] [1, 1] : tensor<4x6xf32> to tensor<4x2xf32>
func.func @computed_constants(%x: tensor<4x6xf32>) -> tensor<?x?xf32> {
  %c1 = onnx.node "Constant" opset 13 () {value = dense<1> : tensor<i64>} : () -> tensor<i64>
  %a0 = onnx.node "Constant" opset 13 () {value = dense<0> : tensor<1xi64>} : () -> tensor<1xi64>
  %axes = onnx.node "Unsqueeze" opset 13 (%c1, %a0) {} : (tensor<i64>, tensor<1xi64>) -> tensor<1xi64>
  %s = onnx.node "Constant" opset 13 () {value = dense<1> : tensor<1xi64>} : () -> tensor<1xi64>
  %e = onnx.node "Constant" opset 13 () {value = dense<3> : tensor<1xi64>} : () -> tensor<1xi64>
  %0 = onnx.node "Slice" opset 13 (%x, %s, %e, %axes) {} : (tensor<4x6xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?x?xf32>
  return %0 : tensor<?x?xf32>
}
