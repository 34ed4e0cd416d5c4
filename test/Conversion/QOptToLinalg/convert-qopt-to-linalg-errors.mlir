// RUN: qopt-opt %s -split-input-file -verify-diagnostics --convert-qopt-to-linalg

// What the lowering cannot handle is an error at this pass, naming the op
// and why, not a failure later in bufferization.

func.func @hadamard_dynamic(%x: tensor<2x?xf32>) -> tensor<2x?xf32> {
  // expected-error @+1 {{'qopt.hadamard' could not be lowered to linalg: Hadamard transforms need a static size (a static dimension or block)}}
  %0 = qopt.hadamard %x : (tensor<2x?xf32>) -> tensor<2x?xf32>
  return %0 : tensor<2x?xf32>
}

// -----

!dq = !qopt.qtensor<4x64, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<4, #qopt.dynamic8, #qopt.per_block<256>, scales = f32, offset>>
func.func @quantize_nested_short(%x: tensor<4x64xf32>) -> !dq {
  // expected-error @+1 {{'qopt.quantize' could not be lowered to linalg: the double-quantized scales: per_block scales at run time need a static shape whose size is a multiple of the block}}
  %0 = qopt.quantize %x : tensor<4x64xf32> -> !dq
  return %0 : !dq
}

// -----

!dz = !qopt.qtensor<4x64, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<4, #qopt.int<8, unsigned, zero_point>, #qopt.per_tensor, scales = f32>>
func.func @quantize_nested_zero_points(%x: tensor<4x64xf32>) -> !dz {
  // expected-error @+1 {{'qopt.quantize' could not be lowered to linalg: scales of type !qopt.qtensor<4, #qopt.int<8, unsigned, zero_point>, #qopt.per_tensor, scales = f32> are computed at compile time only (qopt-quantize-weights); at run time they are f32, E8M0 under E2M1 codes (MXFP4), or quantized once more with f32 scales and no zero points (double quantization, NVFP4)}}
  %0 = qopt.quantize %x : tensor<4x64xf32> -> !dz
  return %0 : !dz
}

// -----

!nv = !qopt.qtensor<4x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 16>, scales = !qopt.qtensor<4x4, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>>
func.func @quantize_nested_int(%x: tensor<4x64xf32>) -> !nv {
  // expected-error @+1 {{'qopt.quantize' could not be lowered to linalg: double-quantized scales at run time are QLoRA's, under bitsandbytes' codes (NF4, FP4, 8-bit dynamic), or NVFP4's (E2M1 codes, E4M3 scales per tensor)}}
  %0 = qopt.quantize %x : tensor<4x64xf32> -> !nv
  return %0 : !nv
}

// -----

!mx = !qopt.qtensor<4x64, #qopt.float<f8E4M3FN>, #qopt.per_group<axis = 1, size = 32>, scales = f8E8M0FNU>
func.func @quantize_mxfp8(%x: tensor<4x64xf32>) -> !mx {
  // expected-error @+1 {{'qopt.quantize' could not be lowered to linalg: scales of type f8E8M0FNU are computed at compile time only (qopt-quantize-weights); at run time they are f32, E8M0 under E2M1 codes (MXFP4), or quantized once more with f32 scales and no zero points (double quantization, NVFP4)}}
  %0 = qopt.quantize %x : tensor<4x64xf32> -> !mx
  return %0 : !mx
}

// -----

!dd = !qopt.qtensor<?x64, #qopt.nf4, #qopt.per_token, scales = !qopt.qtensor<?, #qopt.dynamic8, #qopt.per_tensor, scales = f32, offset>>
func.func @quantize_nested_dynamic(%x: tensor<?x64xf32>) -> !dd {
  // expected-error @+1 {{'qopt.quantize' could not be lowered to linalg: double-quantized scales with an offset (their mean) at run time need a static number of scales}}
  %0 = qopt.quantize %x : tensor<?x64xf32> -> !dd
  return %0 : !dd
}

// -----

func.func @quantize_short_group(%x: tensor<4x60xf32>) -> !qopt.qtensor<4x60, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32> {
  // expected-error @+1 {{'qopt.quantize' could not be lowered to linalg: per_group scales at run time need a static dimension that is a multiple of the group size}}
  %0 = qopt.quantize %x : tensor<4x60xf32> -> !qopt.qtensor<4x60, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
  return %0 : !qopt.qtensor<4x60, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
}

// -----

func.func @quantize_dynamic_packed(%x: tensor<4x?xf32>) -> !qopt.qtensor<4x?, #qopt.int<4>, #qopt.per_channel<0>, scales = f32> {
  // expected-error @+1 {{'qopt.quantize' could not be lowered to linalg: a dynamic innermost dimension of packed 4-bit codes has no known size}}
  %0 = qopt.quantize %x : tensor<4x?xf32> -> !qopt.qtensor<4x?, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
  return %0 : !qopt.qtensor<4x?, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
}

// -----

!pk = !qopt.qtensor<8x?, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
func.func @dynamic_packed(%w: !pk) -> tensor<8x?xf32> {
  // expected-error @+1 {{'qopt.dequantize' could not be lowered to linalg: a dynamic innermost dimension of packed 4-bit codes has no known size}}
  %0 = qopt.dequantize %w : !pk -> tensor<8x?xf32>
  return %0 : tensor<8x?xf32>
}

// -----

!blk = !qopt.qtensor<?x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>
func.func @dynamic_block(%w: !blk) -> tensor<?x64xf32> {
  // expected-error @+1 {{'qopt.dequantize' could not be lowered to linalg: per_block scales need a static shape}}
  %0 = qopt.dequantize %w : !blk -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

func.func @fake_quant_block(%x: tensor<?x64xf32>, %s: tensor<?xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'qopt.fake_quant' could not be lowered to linalg: per_block granularity needs static shapes}}
  %0 = qopt.fake_quant %x scale %s format(#qopt.int<8>) granularity(#qopt.per_block<64>) : (tensor<?x64xf32>, tensor<?xf32>) -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}
