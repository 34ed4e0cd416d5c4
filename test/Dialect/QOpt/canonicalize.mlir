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
