// RUN: not qopt-opt %s -split-input-file --convert-onnx-to-qopt 2>&1 | FileCheck %s
// Nodes the conversion cannot honour: an error naming the node, op type,
// domain and opset (the node name comes from its NameLoc, as the importer
// sets it).

func.func @unknown_op(%x: tensor<2xf32>) -> tensor<2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'the_node' (Frobnicate, opset 17): 'Frobnicate' is not an operator of the default ONNX domain at this opset
  %0 = onnx.node "Frobnicate" opset 17 (%x) {} : (tensor<2xf32>) -> tensor<2xf32> loc("the_node")
  return %0 : tensor<2xf32>
}

// -----

func.func @contrib_op(%x: tensor<2xf32>) -> tensor<2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'n' (com.microsoft.FusedThing, opset 1): operator 'FusedThing' of domain 'com.microsoft' is not supported
  %0 = onnx.node "FusedThing" domain "com.microsoft" opset 1 (%x) {} : (tensor<2xf32>) -> tensor<2xf32> loc("n")
  return %0 : tensor<2xf32>
}

// -----

func.func @too_old(%x: tensor<2xf32>) -> tensor<2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'old' (Softmax, opset 11): opset 11 is older than the oldest supported version of this operator (13)
  %0 = onnx.node "Softmax" opset 11 (%x) {} : (tensor<2xf32>) -> tensor<2xf32> loc("old")
  return %0 : tensor<2xf32>
}

// -----

func.func @broadcast(%x: tensor<3xf32>, %y: tensor<4xf32>) -> tensor<4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'add' (Add, opset 17): operands cannot be broadcast together: dimension 0 is 3 in one and 4 in another
  %0 = onnx.node "Add" opset 17 (%x, %y) {} : (tensor<3xf32>, tensor<4xf32>) -> tensor<4xf32> loc("add")
  return %0 : tensor<4xf32>
}

// -----

func.func @mixed_types(%x: tensor<3xf32>, %y: tensor<3xf16>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mul' (Mul, opset 17): inputs have different element types ('f32' and 'f16')
  %0 = onnx.node "Mul" opset 17 (%x, %y) {} : (tensor<3xf32>, tensor<3xf16>) -> tensor<3xf32> loc("mul")
  return %0 : tensor<3xf32>
}

// -----

func.func @gelu(%x: tensor<3xf32>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'g' (Gelu, opset 20): approximate must be 'none' or 'tanh', got 'cubic'
  %0 = onnx.node "Gelu" opset 20 (%x) {approximate = "cubic"} : (tensor<3xf32>) -> tensor<3xf32> loc("g")
  return %0 : tensor<3xf32>
}

// -----

func.func @reshape_two_infer(%x: tensor<2x6xf32>) -> tensor<?x?xf32> {
  %s = arith.constant dense<[-1, -1]> : tensor<2xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Reshape, opset 14): shape has more than one -1
  %0 = onnx.node "Reshape" opset 14 (%x, %s) {} : (tensor<2x6xf32>, tensor<2xi64>) -> tensor<?x?xf32> loc("r")
  return %0 : tensor<?x?xf32>
}

// -----

func.func @reshape_bad_count(%x: tensor<2x6xf32>) -> tensor<?x5xf32> {
  %s = arith.constant dense<[-1, 5]> : tensor<2xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Reshape, opset 14): cannot reshape 12 elements with the given shape
  %0 = onnx.node "Reshape" opset 14 (%x, %s) {} : (tensor<2x6xf32>, tensor<2xi64>) -> tensor<?x5xf32> loc("r")
  return %0 : tensor<?x5xf32>
}

// -----

func.func @matmul_inner(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) -> tensor<2x5xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (MatMul, opset 13): inner dimensions differ: 3 vs 4
  %0 = onnx.node "MatMul" opset 13 (%a, %b) {} : (tensor<2x3xf32>, tensor<4x5xf32>) -> tensor<2x5xf32> loc("mm")
  return %0 : tensor<2x5xf32>
}

// -----

func.func @transpose_perm(%x: tensor<2x3xf32>) -> tensor<3x2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 't' (Transpose, opset 13): perm is not a permutation of 0..1
  %0 = onnx.node "Transpose" opset 13 (%x) {perm = array<i64: 0, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32> loc("t")
  return %0 : tensor<3x2xf32>
}

// -----

func.func @reduce_axes(%x: tensor<2x3xf32>, %axes: tensor<1xi64>) -> tensor<2x1xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 's' (ReduceSum, opset 13): axes must be a constant
  %0 = onnx.node "ReduceSum" opset 13 (%x, %axes) {} : (tensor<2x3xf32>, tensor<1xi64>) -> tensor<2x1xf32> loc("s")
  return %0 : tensor<2x1xf32>
}

// -----

func.func @softmax_axis(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 's' (Softmax, opset 13): axis 2 is out of range for rank 2
  %0 = onnx.node "Softmax" opset 13 (%x) {axis = 2 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32> loc("s")
  return %0 : tensor<2x3xf32>
}

// -----

func.func @dropout_training(%x: tensor<3xf32>, %r: tensor<f32>, %t: tensor<i1>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'd' (Dropout, opset 13): training_mode must be a constant false: only inference dropout is supported
  %0 = onnx.node "Dropout" opset 13 (%x, %r, %t) {} : (tensor<3xf32>, tensor<f32>, tensor<i1>) -> tensor<3xf32> loc("d")
  return %0 : tensor<3xf32>
}

// -----

func.func @unsigned(%x: tensor<3xui8>) -> tensor<3xui8> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'a' (Add, opset 14): element type 'ui8' is not supported yet
  %0 = onnx.node "Add" opset 14 (%x, %x) {} : (tensor<3xui8>, tensor<3xui8>) -> tensor<3xui8> loc("a")
  return %0 : tensor<3xui8>
}

// -----

func.func @cast_to(%x: tensor<3xf32>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'c' (Cast, opset 19): cast to ONNX type 8 is not supported yet
  %0 = onnx.node "Cast" opset 19 (%x) {to = 8 : i64} : (tensor<3xf32>) -> tensor<3xf32> loc("c")
  return %0 : tensor<3xf32>
}

// -----

func.func @declared_type(%x: tensor<3xf32>) -> tensor<4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Relu, opset 14): computes 'tensor<3xf32>' but the model declares 'tensor<4xf32>'
  %0 = onnx.node "Relu" opset 14 (%x) {} : (tensor<3xf32>) -> tensor<4xf32> loc("r")
  return %0 : tensor<4xf32>
}

// -----

func.func @nbits_3(%a: tensor<2x64xf32>, %b: tensor<8x2x12xui8>, %s: tensor<16xf32>) -> tensor<2x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (com.microsoft.MatMulNBits, opset 1): 3-bit weights are not supported yet
  %0 = onnx.node "MatMulNBits" domain "com.microsoft" opset 1 (%a, %b, %s) {K = 64 : i64, N = 8 : i64, bits = 3 : i64, block_size = 32 : i64}
      : (tensor<2x64xf32>, tensor<8x2x12xui8>, tensor<16xf32>) -> tensor<2x8xf32> loc("mm")
  return %0 : tensor<2x8xf32>
}

// -----

func.func @nbits_k(%a: tensor<2x32xf32>, %b: tensor<8x2x16xui8>, %s: tensor<16xf32>) -> tensor<2x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mmk' (com.microsoft.MatMulNBits, opset 1): A's last dimension must be K (64)
  %0 = onnx.node "MatMulNBits" domain "com.microsoft" opset 1 (%a, %b, %s) {K = 64 : i64, N = 8 : i64, bits = 4 : i64, block_size = 32 : i64}
      : (tensor<2x32xf32>, tensor<8x2x16xui8>, tensor<16xf32>) -> tensor<2x8xf32> loc("mmk")
  return %0 : tensor<2x8xf32>
}

// -----

func.func @conv_window_too_large(%x: tensor<1x1x2x2xf32>, %w: tensor<1x1x3x3xf32>) -> tensor<*xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'cw' (Conv, opset 11): the window (extent 3) is larger than the padded input (2) in spatial dimension 0
  %0 = onnx.node "Conv" opset 11 (%x, %w) {} : (tensor<1x1x2x2xf32>, tensor<1x1x3x3xf32>) -> tensor<*xf32> loc("cw")
  return %0 : tensor<*xf32>
}

// -----

func.func @nbits_padded(%a: tensor<2x48xf32>, %b: tensor<8x2x16xui8>, %s: tensor<16xf32>) -> tensor<2x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (com.microsoft.MatMulNBits, opset 1): K = 48 must be a multiple of block_size 32 (padded blocks are not supported yet)
  %0 = onnx.node "MatMulNBits" domain "com.microsoft" opset 1 (%a, %b, %s) {K = 48 : i64, N = 8 : i64, bits = 4 : i64, block_size = 32 : i64}
      : (tensor<2x48xf32>, tensor<8x2x16xui8>, tensor<16xf32>) -> tensor<2x8xf32> loc("mm")
  return %0 : tensor<2x8xf32>
}

// -----

func.func @nbits_scales(%a: tensor<2x64xf32>, %b: tensor<8x2x16xui8>, %s: tensor<15xf32>) -> tensor<2x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (com.microsoft.MatMulNBits, opset 1): scales must hold N * K / block_size = 16 values of A's element type
  %0 = onnx.node "MatMulNBits" domain "com.microsoft" opset 1 (%a, %b, %s) {K = 64 : i64, N = 8 : i64, bits = 4 : i64, block_size = 32 : i64}
      : (tensor<2x64xf32>, tensor<8x2x16xui8>, tensor<15xf32>) -> tensor<2x8xf32> loc("mm")
  return %0 : tensor<2x8xf32>
}

// -----

func.func @einsum_ellipsis(%a: tensor<2x3xf32>) -> tensor<3x2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'e' (Einsum, opset 12): only explicit equations (with '->', without '...') are supported
  %0 = onnx.node "Einsum" opset 12 (%a) {equation = "...ij->...ji"} : (tensor<2x3xf32>) -> tensor<3x2xf32> loc("e")
  return %0 : tensor<3x2xf32>
}

// -----

func.func @conv_channels(%x: tensor<1x3x8x8xf32>, %w: tensor<4x2x3x3xf32>) -> tensor<1x4x6x6xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'c' (Conv, opset 11): channels do not match: X has 3, W expects 2 x group 1
  %0 = onnx.node "Conv" opset 11 (%x, %w) {} : (tensor<1x3x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<1x4x6x6xf32> loc("c")
  return %0 : tensor<1x4x6x6xf32>
}

// -----

func.func @conv_autopad(%x: tensor<1x3x?x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x?x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'c' (Conv, opset 11): auto_pad SAME_UPPER needs static spatial sizes
  %0 = onnx.node "Conv" opset 11 (%x, %w) {auto_pad = "SAME_UPPER"} : (tensor<1x3x?x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x?x8xf32> loc("c")
  return %0 : tensor<1x4x?x8xf32>
}

// -----

func.func @conv_strides(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'c' (Conv, opset 11): strides, dilations and pads must match the kernel's 2 spatial dimensions
  %0 = onnx.node "Conv" opset 11 (%x, %w) {strides = array<i64: 1>} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32> loc("c")
  return %0 : tensor<1x4x6x6xf32>
}

// -----

func.func @pool_ceil(%x: tensor<1x3x?x8xf32>) -> tensor<1x3x?x4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'p' (MaxPool, opset 12): ceil_mode = 1 needs static spatial sizes
  %0 = onnx.node "MaxPool" opset 12 (%x) {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, ceil_mode = 1 : i64} : (tensor<1x3x?x8xf32>) -> tensor<1x3x?x4xf32> loc("p")
  return %0 : tensor<1x3x?x4xf32>
}

// -----

func.func @pool_window_too_large(%x: tensor<1x3x2x2xf32>) -> tensor<1x3x1x1xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'p' (MaxPool, opset 12): the window is larger than the padded input
  %0 = onnx.node "MaxPool" opset 12 (%x) {kernel_shape = array<i64: 3, 3>, ceil_mode = 1 : i64} : (tensor<1x3x2x2xf32>) -> tensor<1x3x1x1xf32> loc("p")
  return %0 : tensor<1x3x1x1xf32>
}

// -----

func.func @pool_kernel(%x: tensor<1x3x8x8xf32>) -> tensor<1x3x4x4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'p' (AveragePool, opset 11): needs kernel_shape with 2 entries
  %0 = onnx.node "AveragePool" opset 11 (%x) {} : (tensor<1x3x8x8xf32>) -> tensor<1x3x4x4xf32> loc("p")
  return %0 : tensor<1x3x4x4xf32>
}

// -----

func.func @bn_training(%x: tensor<1x3x4xf32>, %s: tensor<3xf32>) -> tensor<1x3x4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'bn' (BatchNormalization, opset 15): training_mode = 1 is not supported
  %0 = onnx.node "BatchNormalization" opset 15 (%x, %s, %s, %s, %s) {training_mode = 1 : i64} : (tensor<1x3x4xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x3x4xf32> loc("bn")
  return %0 : tensor<1x3x4xf32>
}

// -----

func.func @pad_mode(%x: tensor<2x3xf32>) -> tensor<4x5xf32> {
  %p = arith.constant dense<[1, 1, 1, 1]> : tensor<4xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'pad' (Pad, opset 13): mode 'mirror' is unknown
  %0 = onnx.node "Pad" opset 13 (%x, %p) {mode = "mirror"} : (tensor<2x3xf32>, tensor<4xi64>) -> tensor<4x5xf32> loc("pad")
  return %0 : tensor<4x5xf32>
}

// -----

func.func @pad_crop_below_zero(%x: tensor<2x3xf32>) -> tensor<0x1xf32> {
  %p = arith.constant dense<[-2, -1, -1, -1]> : tensor<4xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'pad' (Pad, opset 13): pads crop dimension 0 below zero
  %0 = onnx.node "Pad" opset 13 (%x, %p) {} : (tensor<2x3xf32>, tensor<4xi64>) -> tensor<0x1xf32> loc("pad")
  return %0 : tensor<0x1xf32>
}

// -----

func.func @pad_empty(%x: tensor<0x3xf32>) -> tensor<2x3xf32> {
  %p = arith.constant dense<[1, 0, 1, 0]> : tensor<4xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'pad' (Pad, opset 13): cannot pad empty dimension 0
  %0 = onnx.node "Pad" opset 13 (%x, %p) {mode = "edge"} : (tensor<0x3xf32>, tensor<4xi64>) -> tensor<2x3xf32> loc("pad")
  return %0 : tensor<2x3xf32>
}

// -----

func.func @pad_pads_type(%x: tensor<2x3xf32>, %p: tensor<4xi32>) -> tensor<4x5xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'pad' (Pad, opset 13): pads must be a 1-D int64 tensor
  %0 = onnx.node "Pad" opset 13 (%x, %p) {} : (tensor<2x3xf32>, tensor<4xi32>) -> tensor<4x5xf32> loc("pad")
  return %0 : tensor<4x5xf32>
}

// -----

func.func @slice_step0(%x: tensor<4xf32>) -> tensor<?xf32> {
  %s = arith.constant dense<[0]> : tensor<1xi64>
  %e = arith.constant dense<[4]> : tensor<1xi64>
  %a = arith.constant dense<[0]> : tensor<1xi64>
  %z = arith.constant dense<[0]> : tensor<1xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sl' (Slice, opset 13): step 0 on axis 0
  %0 = onnx.node "Slice" opset 13 (%x, %s, %e, %a, %z) {} : (tensor<4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?xf32> loc("sl")
  return %0 : tensor<?xf32>
}

// -----

// ends and steps of another length than starts (once read past the
// compiler's own arrays).
func.func @slice_short_ends(%x: tensor<4x4xf32>) -> tensor<?x?xf32> {
  %s = arith.constant dense<[0, 1]> : tensor<2xi64>
  %e = arith.constant dense<[4]> : tensor<1xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sl2' (Slice, opset 13): starts and ends differ in length
  %0 = onnx.node "Slice" opset 13 (%x, %s, %e) {} : (tensor<4x4xf32>, tensor<2xi64>, tensor<1xi64>) -> tensor<?x?xf32> loc("sl2")
  return %0 : tensor<?x?xf32>
}

// -----

func.func @slice_short_steps(%x: tensor<4x4xf32>) -> tensor<?x?xf32> {
  %s = arith.constant dense<[0, 1]> : tensor<2xi64>
  %e = arith.constant dense<[4, 4]> : tensor<2xi64>
  %a = arith.constant dense<[0, 1]> : tensor<2xi64>
  %z = arith.constant dense<[1]> : tensor<1xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sl3' (Slice, opset 13): starts and steps differ in length
  %0 = onnx.node "Slice" opset 13 (%x, %s, %e, %a, %z) {} : (tensor<4x4xf32>, tensor<2xi64>, tensor<2xi64>, tensor<2xi64>, tensor<1xi64>) -> tensor<?x?xf32> loc("sl3")
  return %0 : tensor<?x?xf32>
}

// -----

func.func @expand_bad(%x: tensor<3xf32>) -> tensor<4xf32> {
  %s = arith.constant dense<[4]> : tensor<1xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'ex' (Expand, opset 13): cannot expand dimension of size 3 to 4
  %0 = onnx.node "Expand" opset 13 (%x, %s) {} : (tensor<3xf32>, tensor<1xi64>) -> tensor<4xf32> loc("ex")
  return %0 : tensor<4xf32>
}

// -----

func.func @split_count(%x: tensor<6xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %s = arith.constant dense<[2, 2, 2]> : tensor<3xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sp' (Split, opset 13): split has 3 entries for 2 outputs
  %0:2 = onnx.node "Split" opset 13 (%x, %s) {} : (tensor<6xf32>, tensor<3xi64>) -> (tensor<3xf32>, tensor<3xf32>) loc("sp")
  return %0#0, %0#1 : tensor<3xf32>, tensor<3xf32>
}

// -----

func.func @trilu_rank(%x: tensor<3xf32>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'tr' (Trilu, opset 14): needs an input of rank 2 or more
  %0 = onnx.node "Trilu" opset 14 (%x) {} : (tensor<3xf32>) -> tensor<3xf32> loc("tr")
  return %0 : tensor<3xf32>
}

// -----

func.func @rmsnorm_stats(%x: tensor<2x4xf32>, %g: tensor<4xf32>) -> (tensor<2x4xf32>, tensor<2x1xf32>) {
  // RMSNormalization has one output (the schema says so; a second is an
  // error before any handler runs).
  // CHECK: error: {{(loc\(".*"\): )?}}node 'ln' (RMSNormalization, opset 23): RMSNormalization produces 1 outputs, has 2
  %0:2 = onnx.node "RMSNormalization" opset 23 (%x, %g) {} : (tensor<2x4xf32>, tensor<4xf32>) -> (tensor<2x4xf32>, tensor<2x1xf32>) loc("ln")
  return %0#0, %0#1 : tensor<2x4xf32>, tensor<2x1xf32>
}

// -----

func.func @tile_repeats(%x: tensor<2x3xf32>, %r: tensor<2xi64>) -> tensor<?x?xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'ti' (Tile, opset 13): needs a ranked input and constant repeats, one per dimension
  %0 = onnx.node "Tile" opset 13 (%x, %r) {} : (tensor<2x3xf32>, tensor<2xi64>) -> tensor<?x?xf32> loc("ti")
  return %0 : tensor<?x?xf32>
}

// -----

func.func @gather_elements_rank(%x: tensor<2x3xf32>, %i: tensor<2xi64>) -> tensor<2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'ge' (GatherElements, opset 13): needs data and integer indices of the same rank
  %0 = onnx.node "GatherElements" opset 13 (%x, %i) {} : (tensor<2x3xf32>, tensor<2xi64>) -> tensor<2xf32> loc("ge")
  return %0 : tensor<2xf32>
}

// -----

func.func @cumsum_axis(%x: tensor<4xf32>, %a: tensor<i64>) -> tensor<4xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'cs' (CumSum, opset 14): needs a ranked input and a constant axis
  %0 = onnx.node "CumSum" opset 14 (%x, %a) {} : (tensor<4xf32>, tensor<i64>) -> tensor<4xf32> loc("cs")
  return %0 : tensor<4xf32>
}

// -----

func.func @einsum_diag(%x: tensor<3x3xf32>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'es' (Einsum, opset 12): repeated letters (diagonals) are not supported
  %0 = onnx.node "Einsum" opset 12 (%x) {equation = "ii->i"} : (tensor<3x3xf32>) -> tensor<3xf32> loc("es")
  return %0 : tensor<3xf32>
}

// -----

func.func @argmax_axis(%x: tensor<3xf32>) -> tensor<1xi64> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'am' (ArgMax, opset 13): axis 3 is out of range for rank 1
  %0 = onnx.node "ArgMax" opset 13 (%x) {axis = 3 : i64} : (tensor<3xf32>) -> tensor<1xi64> loc("am")
  return %0 : tensor<1xi64>
}

// -----

func.func @mnb_zp_float(%a: tensor<2x64xf32>, %b: tensor<8x2x16xui8>, %s: tensor<16xf32>, %z: tensor<16xf32>) -> tensor<2x8xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (com.microsoft.MatMulNBits, opset 1): float zero points are not supported yet
  %0 = onnx.node "MatMulNBits" domain "com.microsoft" opset 1 (%a, %b, %s, %z) {K = 64 : i64, N = 8 : i64, bits = 4 : i64, block_size = 32 : i64}
      : (tensor<2x64xf32>, tensor<8x2x16xui8>, tensor<16xf32>, tensor<16xf32>) -> tensor<2x8xf32> loc("mm")
  return %0 : tensor<2x8xf32>
}

// -----

func.func @reshape_copy(%x: tensor<6xf32>) -> tensor<?x?xf32> {
  %s = arith.constant dense<[2, 0]> : tensor<2xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Reshape, opset 14): shape entry 1 is 0 (copy) but the input has rank 1
  %0 = onnx.node "Reshape" opset 14 (%x, %s) {} : (tensor<6xf32>, tensor<2xi64>) -> tensor<?x?xf32> loc("r")
  return %0 : tensor<?x?xf32>
}

// -----

func.func @reshape_neg(%x: tensor<6xf32>) -> tensor<?x?xf32> {
  %s = arith.constant dense<[2, -5]> : tensor<2xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Reshape, opset 14): shape entry 1 is -5
  %0 = onnx.node "Reshape" opset 14 (%x, %s) {} : (tensor<6xf32>, tensor<2xi64>) -> tensor<?x?xf32> loc("r")
  return %0 : tensor<?x?xf32>
}

// -----

func.func @reshape_shape(%x: tensor<6xf32>, %s: tensor<?xi64>) -> tensor<*xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Reshape, opset 14): the shape input must be 1-D with a static length
  %0 = onnx.node "Reshape" opset 14 (%x, %s) {} : (tensor<6xf32>, tensor<?xi64>) -> tensor<*xf32> loc("r")
  return %0 : tensor<*xf32>
}

// -----

func.func @flatten_axis(%x: tensor<2x3xf32>) -> tensor<6x1xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'f' (Flatten, opset 13): axis 3 is out of range for rank 2
  %0 = onnx.node "Flatten" opset 13 (%x) {axis = 3 : i64} : (tensor<2x3xf32>) -> tensor<6x1xf32> loc("f")
  return %0 : tensor<6x1xf32>
}

// -----

func.func @squeeze_size(%x: tensor<2x3xf32>) -> tensor<3xf32> {
  %a = arith.constant dense<[0]> : tensor<1xi64>
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sq' (Squeeze, opset 13): cannot squeeze axis 0 of size 2
  %0 = onnx.node "Squeeze" opset 13 (%x, %a) {} : (tensor<2x3xf32>, tensor<1xi64>) -> tensor<3xf32> loc("sq")
  return %0 : tensor<3xf32>
}

// -----

func.func @squeeze_dynamic(%x: tensor<?x1xf32>) -> tensor<*xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sq' (Squeeze, opset 13): squeezing all size-1 axes needs static sizes; give axes
  %0 = onnx.node "Squeeze" opset 13 (%x) {} : (tensor<?x1xf32>) -> tensor<*xf32> loc("sq")
  return %0 : tensor<*xf32>
}

// -----

func.func @unsqueeze_axes(%x: tensor<2xf32>) -> tensor<*xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'u' (Unsqueeze, opset 13): Unsqueeze takes 2 inputs, has 1
  %0 = onnx.node "Unsqueeze" opset 13 (%x) {} : (tensor<2xf32>) -> tensor<*xf32> loc("u")
  return %0 : tensor<*xf32>
}

// -----

func.func @gather_float_idx(%x: tensor<4xf32>, %i: tensor<2xf32>) -> tensor<2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'g' (Gather, opset 13): needs ranked data and integer indices
  %0 = onnx.node "Gather" opset 13 (%x, %i) {} : (tensor<4xf32>, tensor<2xf32>) -> tensor<2xf32> loc("g")
  return %0 : tensor<2xf32>
}

// -----

func.func @constant_string() -> tensor<f32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'k' (Constant, opset 13): only tensor, float(s) and int(s) values are supported
  %0 = onnx.node "Constant" opset 13 () {value_string = "x"} : () -> tensor<f32> loc("k")
  return %0 : tensor<f32>
}

// -----

func.func @split_runtime(%x: tensor<6xf32>, %s: tensor<2xi64>) -> (tensor<3xf32>, tensor<3xf32>) {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sp' (Split, opset 13): split must be a constant
  %0:2 = onnx.node "Split" opset 13 (%x, %s) {} : (tensor<6xf32>, tensor<2xi64>) -> (tensor<3xf32>, tensor<3xf32>) loc("sp")
  return %0#0, %0#1 : tensor<3xf32>, tensor<3xf32>
}

// -----

func.func @where_types(%c: tensor<3xi1>, %x: tensor<3xf32>, %y: tensor<3xf16>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'w' (Where, opset 16): X and Y have different element types
  %0 = onnx.node "Where" opset 16 (%c, %x, %y) {} : (tensor<3xi1>, tensor<3xf32>, tensor<3xf16>) -> tensor<3xf32> loc("w")
  return %0 : tensor<3xf32>
}

// -----

func.func @mod_float(%x: tensor<3xf32>) -> tensor<3xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'm' (Mod, opset 13): float inputs need fmod = 1
  %0 = onnx.node "Mod" opset 13 (%x, %x) {} : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32> loc("m")
  return %0 : tensor<3xf32>
}

// -----

func.func @pow_int(%x: tensor<3xi32>) -> tensor<3xi32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'p' (Pow, opset 15): integer base 'i32' is not supported yet
  %0 = onnx.node "Pow" opset 15 (%x, %x) {} : (tensor<3xi32>, tensor<3xi32>) -> tensor<3xi32> loc("p")
  return %0 : tensor<3xi32>
}

// -----

func.func @sqrt_int(%x: tensor<3xi32>) -> tensor<3xi32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 's' (Sqrt, opset 13): needs a float input, got 'i32'
  %0 = onnx.node "Sqrt" opset 13 (%x) {} : (tensor<3xi32>) -> tensor<3xi32> loc("s")
  return %0 : tensor<3xi32>
}

// -----

func.func @slice_axes(%x: tensor<4xf32>, %s: tensor<1xi64>, %e: tensor<1xi64>, %a: tensor<1xi64>) -> tensor<?xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'sl' (Slice, opset 13): axes must be a constant
  %0 = onnx.node "Slice" opset 13 (%x, %s, %e, %a) {} : (tensor<4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<?xf32> loc("sl")
  return %0 : tensor<?xf32>
}

// -----

func.func @matmul_types(%a: tensor<2x3xf32>, %b: tensor<3x2xf16>) -> tensor<2x2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (MatMul, opset 13): needs inputs of one signless element type
  %0 = onnx.node "MatMul" opset 13 (%a, %b) {} : (tensor<2x3xf32>, tensor<3x2xf16>) -> tensor<2x2xf32> loc("mm")
  return %0 : tensor<2x2xf32>
}

// -----

func.func @gemm_rank(%a: tensor<2x3x4xf32>, %b: tensor<4x2xf32>) -> tensor<2x2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'gm' (Gemm, opset 13): needs 2-D A and B
  %0 = onnx.node "Gemm" opset 13 (%a, %b) {} : (tensor<2x3x4xf32>, tensor<4x2xf32>) -> tensor<2x2xf32> loc("gm")
  return %0 : tensor<2x2xf32>
}

// -----

// Hand-written IR is checked against the operator schemas too: counts
// before any raising pattern or handler reads an input, attribute kinds.
func.func @matmul_one_input(%x: tensor<2x2xf32>) -> tensor<2x2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'mm' (MatMul, opset 17): MatMul takes 2 inputs, has 1
  %0 = onnx.node "MatMul" opset 17 (%x) {} : (tensor<2x2xf32>) -> tensor<2x2xf32> loc("mm")
  return %0 : tensor<2x2xf32>
}

// -----

func.func @float_trans(%a: tensor<2x2xf32>, %b: tensor<2x2xf32>) -> tensor<2x2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'g' (Gemm, opset 17): attribute 'transA' must be INT, got 1.000000e+00 : f32
  %0 = onnx.node "Gemm" opset 17 (%a, %b) {transA = 1.0 : f32} : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32> loc("g")
  return %0 : tensor<2x2xf32>
}

// -----

func.func @unknown_attribute(%a: tensor<2x2xf32>) -> tensor<2x2xf32> {
  // CHECK: error: {{(loc\(".*"\): )?}}node 'r' (Relu, opset 17): Relu has no attribute 'alpha'
  %0 = onnx.node "Relu" opset 17 (%a) {alpha = 1.0 : f32} : (tensor<2x2xf32>) -> tensor<2x2xf32> loc("r")
  return %0 : tensor<2x2xf32>
}
