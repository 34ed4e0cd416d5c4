// RUN: qopt-opt %s -canonicalize -split-input-file | FileCheck %s

// disassemble(assemble(parts)) -> parts
// CHECK-LABEL: func.func @disassemble_of_assemble
// CHECK-SAME: (%[[D:.*]]: tensor<64x16xi8>, %[[S:.*]]: tensor<64xf16>, %[[Z:.*]]: tensor<64xi8>)
// CHECK-NOT: qopt.{{[a-z_]+}} {{[%@]}}
// CHECK: return %[[D]], %[[S]], %[[Z]]
func.func @disassemble_of_assemble(%d: tensor<64x16xi8>, %s: tensor<64xf16>, %z: tensor<64xi8>)
    -> (tensor<64x16xi8>, tensor<64xf16>, tensor<64xi8>) {
  %q = qopt.assemble %d, %s zero_points %z : (tensor<64x16xi8>, tensor<64xf16>, tensor<64xi8>)
      -> !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_channel<0>, scales = f16>
  %d2, %s2, %z2 = qopt.disassemble %q : !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_channel<0>, scales = f16>
      -> tensor<64x16xi8>, tensor<64xf16> zero_points tensor<64xi8>
  return %d2, %s2, %z2 : tensor<64x16xi8>, tensor<64xf16>, tensor<64xi8>
}

// -----

// With an offset (double-quantized scales).
// CHECK-LABEL: func.func @disassemble_of_assemble_offset
// CHECK-SAME: (%[[D:.*]]: tensor<32xi8>, %[[S:.*]]: tensor<1xf32>, %[[O:.*]]: tensor<f32>)
// CHECK-NOT: qopt.{{[a-z_]+}} {{[%@]}}
// CHECK: return %[[D]], %[[S]], %[[O]]
func.func @disassemble_of_assemble_offset(%d: tensor<32xi8>, %s: tensor<1xf32>, %o: tensor<f32>)
    -> (tensor<32xi8>, tensor<1xf32>, tensor<f32>) {
  %q = qopt.assemble %d, %s offset %o : (tensor<32xi8>, tensor<1xf32>, tensor<f32>)
      -> !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>
  %d2, %s2, %o2 = qopt.disassemble %q : !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>
      -> tensor<32xi8>, tensor<1xf32> offset tensor<f32>
  return %d2, %s2, %o2 : tensor<32xi8>, tensor<1xf32>, tensor<f32>
}

// -----

// assemble(disassemble(q)) -> q
// CHECK-LABEL: func.func @assemble_of_disassemble
// CHECK-SAME: (%[[Q:[^:]*]]: !qopt.qtensor{{.*}} {
// CHECK-NOT: qopt.{{[a-z_]+}} {{[%@]}}
// CHECK: return %[[Q]]
func.func @assemble_of_disassemble(%q: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>)
    -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32> {
  %d, %s = qopt.disassemble %q : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
      -> tensor<64x16xi8>, tensor<32xf32>
  %r = qopt.assemble %d, %s : (tensor<64x16xi8>, tensor<32xf32>)
      -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  return %r : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
}

// -----

// The same storage reinterpreted as another type is a real change: no fold.
// CHECK-LABEL: func.func @assemble_of_disassemble_other_type
// CHECK: qopt.disassemble
// CHECK: qopt.assemble
func.func @assemble_of_disassemble_other_type(%q: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>)
    -> !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_block<64>, scales = f32> {
  %d, %s = qopt.disassemble %q : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
      -> tensor<64x16xi8>, tensor<32xf32>
  %r = qopt.assemble %d, %s : (tensor<64x16xi8>, tensor<32xf32>)
      -> !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_block<64>, scales = f32>
  return %r : !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_block<64>, scales = f32>
}

// -----

// Mixing parts of two quantized tensors: no fold.
// CHECK-LABEL: func.func @assemble_mixed_parts
// CHECK: qopt.assemble
func.func @assemble_mixed_parts(%q: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>,
                                %s2: tensor<32xf32>)
    -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32> {
  %d, %s = qopt.disassemble %q : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
      -> tensor<64x16xi8>, tensor<32xf32>
  %r = qopt.assemble %d, %s2 : (tensor<64x16xi8>, tensor<32xf32>)
      -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  return %r : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
}

// -----

// Quantization is lossy: dequantize(quantize(x)) is not x, and
// quantize(dequantize(q)) can pick new scales. Neither folds.
// CHECK-LABEL: func.func @no_quant_roundtrip_fold
// CHECK: qopt.quantize
// CHECK: qopt.dequantize
// CHECK: qopt.dequantize
// CHECK: qopt.quantize
func.func @no_quant_roundtrip_fold(%x: tensor<64x32xf32>,
                                   %q: !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>)
    -> (tensor<64x32xf32>, !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>) {
  %0 = qopt.quantize %x : tensor<64x32xf32> -> !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
  %1 = qopt.dequantize %0 : !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32> -> tensor<64x32xf32>
  %2 = qopt.dequantize %q : !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32> -> tensor<64x32xf32>
  %3 = qopt.quantize %2 : tensor<64x32xf32> -> !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
  return %1, %3 : tensor<64x32xf32>, !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
}

// -----

// A LoRA branch whose B is zero still starts training from there: canonicalize
// keeps it (qopt-fold-zero-lora removes it on request).
// CHECK-LABEL: func.func @zero_lora_kept
// CHECK: qopt.lora
func.func @zero_lora_kept(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>, %a: tensor<2x4xf32>) -> tensor<2x8xf32> {
  %b = arith.constant dense<0.0> : tensor<8x2xf32>
  %y = qopt.lora %x, %w, %a, %b alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

// Unused pure ops go away.
// CHECK-LABEL: func.func @dead
// CHECK-NOT: qopt.{{[a-z_]+}} {{[%@]}}
// CHECK: return
qopt.param @w : tensor<8x4xf32>
func.func @dead(%x: tensor<2x4xf32>) {
  %w = qopt.load_param @w : tensor<8x4xf32>
  %y = qopt.linear %x, %w : (tensor<2x4xf32>, tensor<8x4xf32>) -> tensor<2x8xf32>
  %h = qopt.hadamard %x : (tensor<2x4xf32>) -> tensor<2x4xf32>
  return
}

// -----

// H_n H_n = I for a power-of-two n without signs.
// CHECK-LABEL: func.func @hadamard_involution
// CHECK-SAME: (%[[X:[^:]*]]: tensor<4x64xf32>
// CHECK-NOT: qopt.hadamard %[[X]]
// CHECK: %[[KEEP1:.*]] = qopt.hadamard %[[X]] signs
// CHECK: %[[KEEP2:.*]] = qopt.hadamard %[[KEEP1]] signs
// CHECK: %[[H12:.*]] = qopt.hadamard %{{.*}} : (tensor<4x12xf32>)
// CHECK: %[[H12B:.*]] = qopt.hadamard %[[H12]] : (tensor<4x12xf32>)
// CHECK: %[[BLK:.*]] = qopt.hadamard %[[X]] block = 16
// CHECK: %[[MIX:.*]] = qopt.hadamard %[[BLK]] :
// CHECK: return %[[X]], %[[KEEP2]], %[[H12B]], %[[MIX]]
func.func @hadamard_involution(%x: tensor<4x64xf32>, %s: tensor<64xf32>, %y: tensor<4x12xf32>)
    -> (tensor<4x64xf32>, tensor<4x64xf32>, tensor<4x12xf32>, tensor<4x64xf32>) {
  %0 = qopt.hadamard %x : (tensor<4x64xf32>) -> tensor<4x64xf32>
  %1 = qopt.hadamard %0 axis = 1 : (tensor<4x64xf32>) -> tensor<4x64xf32>
  // With signs: H D H D is not the identity.
  %2 = qopt.hadamard %x signs %s : (tensor<4x64xf32>, tensor<64xf32>) -> tensor<4x64xf32>
  %3 = qopt.hadamard %2 signs %s : (tensor<4x64xf32>, tensor<64xf32>) -> tensor<4x64xf32>
  // Order 12 (a tabulated matrix, not necessarily symmetric): kept.
  %4 = qopt.hadamard %y : (tensor<4x12xf32>) -> tensor<4x12xf32>
  %5 = qopt.hadamard %4 : (tensor<4x12xf32>) -> tensor<4x12xf32>
  // Different block sizes: kept.
  %6 = qopt.hadamard %x block = 16 : (tensor<4x64xf32>) -> tensor<4x64xf32>
  %7 = qopt.hadamard %6 : (tensor<4x64xf32>) -> tensor<4x64xf32>
  return %1, %3, %5, %7 : tensor<4x64xf32>, tensor<4x64xf32>, tensor<4x12xf32>, tensor<4x64xf32>
}

// -----

// CHECK-LABEL: func.func @smooth_by_ones
// CHECK-SAME: (%[[X:[^:]*]]: tensor<2x3xf32>
// CHECK: %[[S:.*]] = qopt.smooth %[[X]], %{{.*}} :
// CHECK: return %[[X]], %[[S]]
func.func @smooth_by_ones(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>) {
  %ones = arith.constant dense<1.0> : tensor<3xf32>
  %other = arith.constant dense<[1.0, 2.0, 1.0]> : tensor<3xf32>
  %0 = qopt.smooth %x, %ones : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  %1 = qopt.smooth %x, %other : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  return %0, %1 : tensor<2x3xf32>, tensor<2x3xf32>
}

// -----

// CHECK-LABEL: func.func @fake_quant_idempotent
// CHECK-SAME: (%[[X:[^:]*]]: tensor<4x8xf32>, %[[S:[^:]*]]: tensor<4xf32>, %[[T:[^:]*]]: tensor<4xf32>)
// CHECK: %[[Q:.*]] = qopt.fake_quant %[[X]] scale %[[S]] format(#qopt.int<4>)
// CHECK-NOT: qopt.fake_quant %[[Q]] scale %[[S]] format(#qopt.int<4>)
// CHECK: %[[OTHER_SCALE:.*]] = qopt.fake_quant %[[Q]] scale %[[T]] format(#qopt.int<4>)
// CHECK: %[[OTHER_FORMAT:.*]] = qopt.fake_quant %[[Q]] scale %[[S]] format(#qopt.int<8>)
// CHECK: return %[[Q]], %[[OTHER_SCALE]], %[[OTHER_FORMAT]]
func.func @fake_quant_idempotent(%x: tensor<4x8xf32>, %s: tensor<4xf32>, %t: tensor<4xf32>)
    -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %0 = qopt.fake_quant %x scale %s format(#qopt.int<4>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  %1 = qopt.fake_quant %0 scale %s format(#qopt.int<4>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  %2 = qopt.fake_quant %0 scale %t format(#qopt.int<4>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  %3 = qopt.fake_quant %0 scale %s format(#qopt.int<8>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  return %1, %2, %3 : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}

// -----

// A linear layer of a dequantized weight takes the quantized weight (and
// dequantizes it itself), keeping its module.
// CHECK-LABEL: func.func @linear_of_dequantize
// CHECK-SAME: (%[[X:.*]]: tensor<?x32xf32>, %[[Q:.*]]: !qopt.qtensor
// CHECK: %[[Y:.*]] = qopt.linear %[[X]], %[[Q]] module "fc" : (tensor<?x32xf32>, !qopt.qtensor<64x32, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>) -> tensor<?x64xf32>
// CHECK-NOT: qopt.dequantize
// CHECK: return %[[Y]]
func.func @linear_of_dequantize(%x: tensor<?x32xf32>, %q: !qopt.qtensor<64x32, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>) -> tensor<?x64xf32> {
  %w = qopt.dequantize %q : !qopt.qtensor<64x32, #qopt.int<8>, #qopt.per_channel<0>, scales = f32> -> tensor<64x32xf32>
  %y = qopt.linear %x, %w module "fc" : (tensor<?x32xf32>, tensor<64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
