// RUN: qopt-opt %s -split-input-file -verify-diagnostics
// Every verifier error of the QOpt ops.

// expected-error@+1 {{parameter @w must have an integer or float element type, got 'index'}}
qopt.param @w : tensor<4xindex>

// -----

// expected-error@+1 {{parameter @w of type 'tensor<4611686018427387904x8xf32>' is too large to address}}
qopt.param @w : tensor<4611686018427387904x8xf32>

// -----

// expected-error@+1 {{inline data of @w has type 'tensor<2xf32>' but the parameter is declared 'tensor<4xf32>'}}
qopt.param @w : tensor<4xf32> = dense<1.0> : tensor<2xf32>

// -----

// expected-error@+1 {{external data of @w holds 15 bytes but 'tensor<4xf32>' needs 16}}
qopt.param @w : tensor<4xf32> = #qopt.external<"w.bin", offset = 0, length = 15>

// -----

// A resource blob (a weight a pass computed) of the wrong size.
// expected-error@+1 {{resource data of @w holds 12 bytes but 'tensor<4xf32>' needs 16}}
qopt.param @w : tensor<4xf32> = dense_resource<w_blob> : tensor<4xf32>

{-#
  dialect_resources: {
    builtin: {
      w_blob: "0x040000000000803F0000004000004040"
    }
  }
#-}

// -----

// Booleans are stored one byte each (as ONNX and numpy store them).
// expected-error@+1 {{external data of @mask holds 125 bytes but 'tensor<1000xi1>' needs 1000}}
qopt.param @mask : tensor<1000xi1> = #qopt.external<"m.onnx", offset = 0, length = 125>

// -----

// expected-error@+1 {{'qopt.param' op attribute 'type' failed to satisfy constraint: type attribute of statically shaped tensor}}
qopt.param @w : tensor<?xf32>

// -----

func.func @f() {
  // expected-error@+1 {{'qopt.param' op expects parent op 'builtin.module'}}
  "qopt.param"() <{sym_name = "w", type = tensor<4xf32>}> : () -> ()
  return
}

// -----

func.func @f() -> tensor<4xf32> {
  // expected-error@+1 {{'nope' does not name a qopt.param}}
  %0 = qopt.load_param @nope : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// expected-error@+1 {{parameter @p cannot be both trainable and state}}
qopt.param trainable state @p : tensor<4xf32>

// -----

qopt.param @w : tensor<4xf32>
func.func @f(%v: tensor<4xf32>) {
  // expected-error@+1 {{parameter @w is frozen: only trainable and state parameters can be written}}
  qopt.store_param @w, %v : tensor<4xf32>
  return
}

// -----

qopt.param state @s : tensor<4xf32>
func.func @f(%v: tensor<3xf32>) {
  // expected-error@+1 {{value type 'tensor<3xf32>' does not match the type of @s, 'tensor<4xf32>'}}
  qopt.store_param @s, %v : tensor<3xf32>
  return
}

// -----

func.func @f(%v: tensor<4xf32>) {
  // expected-error@+1 {{'nope' does not name a qopt.param}}
  qopt.store_param @nope, %v : tensor<4xf32>
  return
}

// -----

func.func @f(%k: tensor<2xi64>) -> tensor<?x4xf32> {
  // expected-error@+1 {{needs 1 dynamic sizes for its result type, got 0}}
  %u = qopt.random_uniform %k stream 1 : tensor<2xi64> -> tensor<?x4xf32>
  return %u : tensor<?x4xf32>
}

// -----

func.func @f(%k: tensor<2xi64>) -> tensor<4xf32> {
  // expected-error@+1 {{stream must fit 32 unsigned bits}}
  %u = qopt.random_uniform %k stream -1 : tensor<2xi64> -> tensor<4xf32>
  return %u : tensor<4xf32>
}

// -----

func.func @f() -> tensor<3xi64> {
  // expected-error@+1 {{the key is [seed, counter]: its type must be tensor<2xi64>, got 'tensor<3xi64>'}}
  %k = qopt.random_key : tensor<3xi64>
  return %k : tensor<3xi64>
}

// -----

qopt.param @w : tensor<4xf32>
func.func @f() -> tensor<4xf16> {
  // expected-error@+1 {{result type 'tensor<4xf16>' does not match the type of @w, 'tensor<4xf32>'}}
  %0 = qopt.load_param @w : tensor<4xf16>
  return %0 : tensor<4xf16>
}

// -----

func.func @f(%d: tensor<64x32xi8>, %s: tensor<32xf32>) {
  // expected-error@+1 {{packed data operand has type 'tensor<64x32xi8>' but '!qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>' stores its codes in 'tensor<64x16xi8>'}}
  %q = qopt.assemble %d, %s : (tensor<64x32xi8>, tensor<32xf32>) -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  return
}

// -----

func.func @f(%d: tensor<64x16xi8>, %s: tensor<64xf32>) {
  // expected-error@+1 {{scales operand has type 'tensor<64xf32>' but '!qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>' needs 'tensor<32xf32>'}}
  %q = qopt.assemble %d, %s : (tensor<64x16xi8>, tensor<64xf32>) -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  return
}

// -----

func.func @f(%d: tensor<64x16xi8>, %s: tensor<64xf32>) {
  // expected-error@+1 {{format #qopt.int<4, unsigned, zero_point> has zero points: expected a zero_points operand of type 'tensor<64xi8>'}}
  %q = qopt.assemble %d, %s : (tensor<64x16xi8>, tensor<64xf32>) -> !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_channel<0>, scales = f32>
  return
}

// -----

func.func @f(%d: tensor<64x16xi8>, %s: tensor<64xf32>, %z: tensor<32xi8>) {
  // expected-error@+1 {{zero points operand has type 'tensor<32xi8>' but '!qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_channel<0>, scales = f32>' needs 'tensor<64xi8>'}}
  %q = qopt.assemble %d, %s zero_points %z : (tensor<64x16xi8>, tensor<64xf32>, tensor<32xi8>) -> !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_channel<0>, scales = f32>
  return
}

// -----

func.func @f(%d: tensor<64x16xi8>, %s: tensor<64xf32>, %z: tensor<64xi8>) {
  // expected-error@+1 {{format #qopt.int<4> has no zero points; remove the zero_points operand}}
  %q = qopt.assemble %d, %s zero_points %z : (tensor<64x16xi8>, tensor<64xf32>, tensor<64xi8>) -> !qopt.qtensor<64x32, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
  return
}

// -----

func.func @f(%d: tensor<32xi8>, %s: tensor<1xf32>) {
  // expected-error@+1 {{the type has an offset: expected an offset operand}}
  %q = qopt.assemble %d, %s : (tensor<32xi8>, tensor<1xf32>) -> !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>
  return
}

// -----

func.func @f(%d: tensor<32xi8>, %s: tensor<1xf32>, %o: tensor<f32>) {
  // expected-error@+1 {{the type has no offset; remove the offset operand}}
  %q = qopt.assemble %d, %s offset %o : (tensor<32xi8>, tensor<1xf32>, tensor<f32>) -> !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32>
  return
}

// -----

func.func @f(%q: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>) {
  // expected-error@+1 {{scales result has type 'tensor<64xf32>' but '!qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>' needs 'tensor<32xf32>'}}
  %d, %s = qopt.disassemble %q : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32> -> tensor<64x16xi8>, tensor<64xf32>
  return
}

// -----

func.func @f(%x: tensor<64x16xf32>) {
  // expected-error@+1 {{float tensor has shape 64x16 but the quantized tensor has shape 64x32}}
  %q = qopt.quantize %x : tensor<64x16xf32> -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  return
}

// -----

func.func @f(%q: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>) {
  // expected-error@+1 {{float tensor has shape 32x64 but the quantized tensor has shape 64x32}}
  %x = qopt.dequantize %q : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32> -> tensor<32x64xf32>
  return
}

// -----

func.func @f(%x: tensor<f32>, %w: tensor<4x4xf32>) {
  // expected-error@+1 {{input must have rank 1 or more}}
  %y = qopt.linear %x, %w : (tensor<f32>, tensor<4x4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<4xf32>) {
  // expected-error@+1 {{weight must be 2-D (out_features x in_features), got shape 4}}
  %y = qopt.linear %x, %w : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @f(%x: tensor<2x8xf32>, %w: tensor<16x4xf32>) {
  // expected-error@+1 {{input has 8 features but the weight expects 4 (weight shape 16x4 is out x in)}}
  %y = qopt.linear %x, %w : (tensor<2x8xf32>, tensor<16x4xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %b: tensor<4xf32>) {
  // expected-error@+1 {{bias must have shape 16, got 4}}
  %y = qopt.linear %x, %w, %b : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<4xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %b: tensor<16xf16>) {
  // expected-error@+1 {{bias element type 'f16' differs from the input's 'f32'}}
  %y = qopt.linear %x, %w, %b : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<16xf16>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xbf16>) {
  // expected-error@+1 {{weight element type 'bf16' differs from the input's 'f32'; insert a cast or quantize the weight}}
  %y = qopt.linear %x, %w : (tensor<2x4xf32>, tensor<16x4xbf16>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>) {
  // expected-error@+1 {{result must be 'tensor<2x16xf32>', got 'tensor<2x4xf32>'}}
  %y = qopt.linear %x, %w : (tensor<2x4xf32>, tensor<16x4xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<4xf32>, %b: tensor<16x2xf32>) {
  // expected-error@+1 {{lora_a must be 2-D (rank x in_features), got 4}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<?x4xf32>, %b: tensor<16x2xf32>) {
  // expected-error@+1 {{lora_a must have a static, positive rank (first dimension)}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<?x4xf32>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x8xf32>, %b: tensor<16x2xf32>) {
  // expected-error@+1 {{lora_a must have shape 2x4, got 2x8}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x8xf32>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf32>, %b: tensor<2x16xf32>) {
  // expected-error@+1 {{lora_b must have shape 16x2, got 2x16}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf32>, tensor<2x16xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf16>, %b: tensor<16x2xf32>) {
  // expected-error@+1 {{lora_a element type 'f16' differs from the input's 'f32'}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf16>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf32>, %b: tensor<16x2xf32>, %m: tensor<4xf32>) {
  // expected-error@+1 {{magnitude (DoRA) must have shape 16, got 4}}
  %y = qopt.lora %x, %w, %a, %b magnitude(%m) alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf32>, tensor<16x2xf32>, tensor<4xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf32>, %b: tensor<16x2xf32>, %m: tensor<16xf32>) {
  // expected-error@+1 {{a DoRA branch cannot be marked merged (the row norms unmerging needs are not kept)}}
  %y = qopt.lora %x, %w, %a, %b magnitude(%m) alpha = 1.0 merged : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf32>, tensor<16x2xf32>, tensor<16xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x64xf32>, %q: !qopt.qtensor<16x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>, %a: tensor<2x64xf32>, %b: tensor<16x2xf32>) {
  // expected-error@+1 {{a branch on a quantized base weight cannot be marked merged}}
  %y = qopt.lora %x, %q, %a, %b alpha = 1.0 merged : (tensor<2x64xf32>, !qopt.qtensor<16x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>, tensor<2x64xf32>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf32>, %b: tensor<16x2xf32>, %m: tensor<2x3xf32>) {
  // expected-error@+1 {{middle must have shape 2x2, got 2x3}}
  %y = qopt.lora %x, %w, %a, %b middle(%m) alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf32>, tensor<16x2xf32>, tensor<2x3xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf32>, %b: tensor<16x2xf32>, %g: tensor<4xf32>) {
  // expected-error@+1 {{gate must have shape 2, got 4}}
  %y = qopt.lora %x, %w, %a, %b gate(%g) alpha = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf32>, tensor<16x2xf32>, tensor<4xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf32>, %b: tensor<16x2xf32>) {
  // expected-error@+1 {{alpha must be positive and finite, got 0}}
  %y = qopt.lora %x, %w, %a, %b alpha = 0.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf32>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<16x4xf32>, %a: tensor<2x4xf32>, %b: tensor<16x2xf32>) {
  // expected-error@+1 {{dropout must be in [0, 1), got 1}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 dropout = 1.0 : (tensor<2x4xf32>, tensor<16x4xf32>, tensor<2x4xf32>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>, %a: tensor<2x4xf32>, %b: tensor<16x2xf32>) {
  // The base linear is checked first.
  // expected-error@+1 {{result must be 'tensor<2x8xf32>', got 'tensor<2x16xf32>'}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<16x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<4xf32>) {
  // expected-error@+1 {{'qopt.fake_quant' op per_channel axis 2 is out of range for rank 2}}
  %y = qopt.fake_quant %x scale %s format(#qopt.int<8>) granularity(#qopt.per_channel<2>) : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<f32>, %s: tensor<f32>) {
  // expected-error@+1 {{'qopt.fake_quant' op per_token needs a tensor of rank 1 or more}}
  %y = qopt.fake_quant %x scale %s format(#qopt.int<8>) granularity(#qopt.per_token) : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<8xf32>) {
  // expected-error@+1 {{scale must have shape 4 for #qopt.per_channel<0> over an input of shape 4x8, got 8}}
  %y = qopt.fake_quant %x scale %s format(#qopt.int<8>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<4xf32>) {
  // expected-error@+1 {{format #qopt.int<8, unsigned, zero_point> has zero points: add a zero_point operand shaped like the scale}}
  %y = qopt.fake_quant %x scale %s format(#qopt.int<8, unsigned, zero_point>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<4xf32>, %z: tensor<8xf32>) {
  // expected-error@+1 {{zero_point must have the scale's shape 4, got 8}}
  %y = qopt.fake_quant %x scale %s zero_point %z format(#qopt.int<8, zero_point>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<4xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<4xf32>, %z: tensor<4xf32>) {
  // expected-error@+1 {{format #qopt.int<8> is symmetric: remove the zero_point operand or use a format with zero_point}}
  %y = qopt.lsq %x scale %s zero_point %z format(#qopt.int<8>) granularity(#qopt.per_channel<0>) : (tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<f32>) {
  // expected-error@+1 {{grad_scale must be positive and finite, got -1}}
  %y = qopt.lsq %x scale %s format(#qopt.int<4>) granularity(#qopt.per_tensor) grad_scale = -1.0 : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<f32>) {
  // expected-error@+1 {{'qopt.lsq' op failed to verify that all of {input, result} have same type}}
  %y = qopt.lsq %x scale %s format(#qopt.int<4>) granularity(#qopt.per_tensor) : (tensor<4x8xf32>, tensor<f32>) -> tensor<8x4xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<8xf32>) {
  // expected-error@+1 {{axis 2 is out of range for an input of rank 2 (expected -2 to 1)}}
  %y = qopt.smooth %x, %s axis = 2 : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<4xf32>) {
  // expected-error@+1 {{scale must have shape 8 (one per channel along axis 1), got 4}}
  %y = qopt.smooth %x, %s : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<8xf16>) {
  // expected-error@+1 {{scale element type 'f16' differs from the input's 'f32'}}
  %y = qopt.smooth %x, %s : (tensor<4x8xf32>, tensor<8xf16>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error@+1 {{axis -3 is out of range for an input of rank 2 (expected -2 to 1)}}
  %y = qopt.hadamard %x axis = -3 : (tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>) {
  // expected-error@+1 {{block must be positive, got 0}}
  %y = qopt.hadamard %x block = 0 : (tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x96xf32>) {
  // expected-error@+1 {{block 64 does not divide dimension 96 of axis 1}}
  %y = qopt.hadamard %x block = 64 : (tensor<4x96xf32>) -> tensor<4x96xf32>
  return
}

// -----

func.func @f(%x: tensor<4x?xf32>, %s: tensor<8xf32>) {
  // expected-error@+1 {{signs need a static transform size: give block or a static dimension}}
  %y = qopt.hadamard %x signs %s : (tensor<4x?xf32>, tensor<8xf32>) -> tensor<4x?xf32>
  return
}

// -----

func.func @f(%x: tensor<4x6xf32>) {
  // 6 = 3 * 2: there is no Hadamard matrix of order 6 (orders above 2 are multiples of 4).
  // expected-error@+1 {{no Hadamard matrix of order 6 is known: orders are 2^k, or m * 2^k with m = 4 * odd (12, 20, 28, 36, 44, 52, 60, ..., 172, ... up to 1020) built by the Paley or Williamson constructions; the nearest block-diagonal rotation is block = 2}}
  %y = qopt.hadamard %x : (tensor<4x6xf32>) -> tensor<4x6xf32>
  return
}

// -----

func.func @f(%x: tensor<4x3008xf32>) {
  // 3008 = 188 * 16 = 47 * 64: neither Paley construction reaches 188 and
  // no Williamson quadruple of order 47 exists; blocks of 64 do.
  // expected-error@+1 {{built by the Paley or Williamson constructions; the nearest block-diagonal rotation is block = 64}}
  %y = qopt.hadamard %x : (tensor<4x3008xf32>) -> tensor<4x3008xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<4xf32>) {
  // expected-error@+1 {{signs must have shape 8, got 4}}
  %y = qopt.hadamard %x signs %s : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<8xf16>) {
  // expected-error@+1 {{signs element type 'f16' differs from the input's 'f32'}}
  %y = qopt.hadamard %x signs %s : (tensor<4x8xf32>, tensor<8xf16>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8xf32>) {
  // expected-error@+1 {{epsilon must be non-negative and finite, got -1}}
  %y = qopt.rms_norm %x, %g epsilon = -1.0 : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<4x8xf32>) {
  // expected-error@+1 {{gamma must have the normalised shape 8 (input dimensions from axis 1), got 4x8}}
  %y = qopt.rms_norm %x, %g : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8xf32>) {
  // expected-error@+1 {{axis 5 is out of range for an input of rank 2 (expected -2 to 1)}}
  %y = qopt.rms_norm %x, %g axis = 5 : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8xf32>, %b: tensor<8xbf16>) {
  // expected-error@+1 {{beta element type 'bf16' differs from the input's 'f32'}}
  %y = qopt.layer_norm %x, %g, %b : (tensor<4x8xf32>, tensor<8xf32>, tensor<8xbf16>) -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%x: tensor<4x8xf32>, %g: tensor<8xf32>) {
  // expected-error@+1 {{epsilon must be non-negative and finite, got INF}}
  %y = qopt.layer_norm %x, %g epsilon = 0x7FF0000000000000 : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @gelu_approximate(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{approximate must be "none" or "tanh", got "fast"}}
  %0 = qopt.gelu %x approximate = "fast" : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// expected-error@+1 {{'qopt.param' must be a string, got 1 : i64}}
func.func @f(%w: tensor<4xf32> {qopt.param = 1 : i64}) {
  return
}

// -----

// expected-error@+1 {{'qopt.external' must be #qopt.external data, got "w.bin"}}
func.func @f(%w: tensor<4xf32> {qopt.external = "w.bin"}) {
  return
}

// -----

// expected-error@+1 {{'qopt.inline' must be dense or dense_resource elements, got 3 : i64}}
func.func @f(%w: tensor<4xf32> {qopt.inline = 3 : i64}) {
  return
}

// -----

// expected-error@+1 {{'qopt.dim_names' must be an array of strings, got [1]}}
func.func @f(%w: tensor<?xf32> {qopt.dim_names = [1]}) {
  return
}

// -----

// expected-error@+1 {{'qopt.trainable' is not a result attribute of the qopt dialect}}
func.func @f() -> (tensor<4xf32> {qopt.trainable}) {
  %0 = tensor.empty() : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// expected-error@+1 {{'qopt.weight' is not an argument attribute of the qopt dialect}}
func.func @f(%w: tensor<4xf32> {qopt.weight = "w"}) {
  return
}

// -----

func.func @embedding_table_rank(%ids: tensor<4xi64>, %w: tensor<100xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.embedding' op table must be 2-D (num_embeddings x embedding_dim), got shape 100}}
  %0 = qopt.embedding %ids, %w : (tensor<4xi64>, tensor<100xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @embedding_result_shape(%ids: tensor<4xi64>, %w: tensor<100x8xf32>) -> tensor<4x9xf32> {
  // expected-error@+1 {{'qopt.embedding' op result must have shape 4x8 (the ids' shape, then the embedding size), got 4x9}}
  %0 = qopt.embedding %ids, %w : (tensor<4xi64>, tensor<100x8xf32>) -> tensor<4x9xf32>
  return %0 : tensor<4x9xf32>
}

// -----

func.func @embedding_element_type(%ids: tensor<4xi64>, %w: tensor<100x8xf32>) -> tensor<4x8xf16> {
  // expected-error@+1 {{'qopt.embedding' op result element type 'f16' differs from the table's 'f32'}}
  %0 = qopt.embedding %ids, %w : (tensor<4xi64>, tensor<100x8xf32>) -> tensor<4x8xf16>
  return %0 : tensor<4x8xf16>
}

// -----

func.func @lora_embedding_table_rank(%ids: tensor<4xi64>, %w: tensor<100xf32>, %a: tensor<2x100xf32>, %b: tensor<8x2xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op table must be 2-D (num_embeddings x embedding_dim), got shape 100}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100xf32>, tensor<2x100xf32>, tensor<8x2xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @lora_embedding_result_shape(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<2x100xf32>, %b: tensor<8x2xf32>) -> tensor<4x9xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op result must have shape 4x8 (the ids' shape, then the embedding size), got 4x9}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<2x100xf32>, tensor<8x2xf32>) -> tensor<4x9xf32>
  return %0 : tensor<4x9xf32>
}

// -----

func.func @lora_embedding_element_type(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<2x100xf32>, %b: tensor<8x2xf32>) -> tensor<4x8xf16> {
  // expected-error@+1 {{'qopt.lora_embedding' op result element type 'f16' differs from the table's 'f32'}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<2x100xf32>, tensor<8x2xf32>) -> tensor<4x8xf16>
  return %0 : tensor<4x8xf16>
}

// -----

func.func @lora_embedding_a_rank(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<200xf32>, %b: tensor<8x2xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op lora_a must be 2-D (rank x num_embeddings), got 200}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<200xf32>, tensor<8x2xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @lora_embedding_dynamic_rank(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<?x100xf32>, %b: tensor<8x2xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op lora_a must have a static, positive rank (first dimension)}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<?x100xf32>, tensor<8x2xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @lora_embedding_a_shape(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<2x99xf32>, %b: tensor<8x2xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op lora_a must have shape 2x100, got 2x99}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<2x99xf32>, tensor<8x2xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @lora_embedding_b_shape(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<2x100xf32>, %b: tensor<2x8xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op lora_b must have shape 8x2, got 2x8}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<2x100xf32>, tensor<2x8xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @lora_embedding_b_type(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<2x100xf32>, %b: tensor<8x2xf16>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op lora_b element type 'f16' differs from the result's 'f32'}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 1.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<2x100xf32>, tensor<8x2xf16>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @lora_embedding_alpha(%ids: tensor<4xi64>, %w: tensor<100x8xf32>, %a: tensor<2x100xf32>, %b: tensor<8x2xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op alpha must be positive and finite, got 0}}
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 0.0 : (tensor<4xi64>, tensor<100x8xf32>, tensor<2x100xf32>, tensor<8x2xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @lora_embedding_merged_quantized(%ids: tensor<4xi64>, %q: !qopt.qtensor<100x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>, %a: tensor<2x100xf32>, %b: tensor<8x2xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.lora_embedding' op a branch on a quantized table cannot be marked merged}}
  %0 = qopt.lora_embedding %ids, %q, %a, %b alpha = 1.0 merged : (tensor<4xi64>, !qopt.qtensor<100x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>, tensor<2x100xf32>, tensor<8x2xf32>) -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @randlora_scale_basis_rank(%a: tensor<8x32xf32>, %l: tensor<8x4xf32>, %g: tensor<4x16xf32>) -> tensor<32x16xf32> {
  // expected-error@+1 {{'qopt.randlora_scale' op basis must be a static 3-D tensor, got 'tensor<8x32xf32>'}}
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x32xf32>, tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<32x16xf32>
  return %0 : tensor<32x16xf32>
}

// -----

func.func @randlora_scale_basis_middle(%a: tensor<8x2x32xf32>, %l: tensor<8x4xf32>, %g: tensor<4x16xf32>) -> tensor<32x16xf32> {
  // expected-error@+1 {{'qopt.randlora_scale' op basis must be r x 1 x M, got 8x2x32}}
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x2x32xf32>, tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<32x16xf32>
  return %0 : tensor<32x16xf32>
}

// -----

func.func @randlora_scale_lambda_rows(%a: tensor<8x1x32xf32>, %l: tensor<7x4xf32>, %g: tensor<4x16xf32>) -> tensor<28x16xf32> {
  // expected-error@+1 {{'qopt.randlora_scale' op lambda must have 8 rows (the basis' rank), got 7x4}}
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x1x32xf32>, tensor<7x4xf32>, tensor<4x16xf32>) -> tensor<28x16xf32>
  return %0 : tensor<28x16xf32>
}

// -----

func.func @randlora_scale_gamma_rows(%a: tensor<8x1x32xf32>, %l: tensor<8x4xf32>, %g: tensor<3x16xf32>) -> tensor<32x16xf32> {
  // expected-error@+1 {{'qopt.randlora_scale' op gamma must have 4 rows (lambda's bases), got 3x16}}
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x1x32xf32>, tensor<8x4xf32>, tensor<3x16xf32>) -> tensor<32x16xf32>
  return %0 : tensor<32x16xf32>
}

// -----

func.func @randlora_scale_basis_narrow(%a: tensor<8x1x8xf32>, %l: tensor<8x4xf32>, %g: tensor<4x16xf32>) -> tensor<32x16xf32> {
  // expected-error@+1 {{'qopt.randlora_scale' op the basis has 8 columns, fewer than gamma's 16}}
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x1x8xf32>, tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<32x16xf32>
  return %0 : tensor<32x16xf32>
}

// -----

func.func @randlora_scale_result(%a: tensor<8x1x32xf32>, %l: tensor<8x4xf32>, %g: tensor<4x16xf32>) -> tensor<16x32xf32> {
  // expected-error@+1 {{'qopt.randlora_scale' op result must have shape 32x16, got 16x32}}
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x1x32xf32>, tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<16x32xf32>
  return %0 : tensor<16x32xf32>
}

// -----

func.func @randlora_scale_type(%a: tensor<8x1x32xf16>, %l: tensor<8x4xf32>, %g: tensor<4x16xf32>) -> tensor<32x16xf32> {
  // expected-error@+1 {{'qopt.randlora_scale' op basis element type 'f16' differs from the result's 'f32'}}
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x1x32xf16>, tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<32x16xf32>
  return %0 : tensor<32x16xf32>
}

// -----

func.func @randlora_flatten_empty(%b: tensor<4x2x0xf32>) -> tensor<4x0xf32> {
  // expected-error@+1 {{'qopt.randlora_flatten' op basis must have a positive rank (last dimension), got 4x2x0}}
  %0 = qopt.randlora_flatten %b : (tensor<4x2x0xf32>) -> tensor<4x0xf32>
  return %0 : tensor<4x0xf32>
}

// -----

func.func @randlora_flatten_cols(%b: tensor<64x4x8xf32>) -> tensor<64x36xf32> {
  // expected-error@+1 {{'qopt.randlora_flatten' op result columns 36 must be nb x 8 with 0 < nb <= 4}}
  %0 = qopt.randlora_flatten %b : (tensor<64x4x8xf32>) -> tensor<64x36xf32>
  return %0 : tensor<64x36xf32>
}

// -----

func.func @randlora_flatten_rows(%b: tensor<64x4x8xf32>) -> tensor<65x32xf32> {
  // expected-error@+1 {{'qopt.randlora_flatten' op result rows 65 must be in [1, 64]}}
  %0 = qopt.randlora_flatten %b : (tensor<64x4x8xf32>) -> tensor<65x32xf32>
  return %0 : tensor<65x32xf32>
}

// -----

func.func @attention_heads(%q: tensor<1x3x5x8xf32>, %k: tensor<1x2x5x8xf32>, %v: tensor<1x2x5x8xf32>) -> tensor<1x3x5x8xf32> {
  // expected-error@+1 {{'qopt.attention' op needs the query's head count a multiple of the key's (got 3 and 2)}}
  %0 = qopt.attention %q, %k, %v : (tensor<1x3x5x8xf32>, tensor<1x2x5x8xf32>, tensor<1x2x5x8xf32>) -> tensor<1x3x5x8xf32>
  return %0 : tensor<1x3x5x8xf32>
}

// -----

func.func @attention_head_size(%q: tensor<1x2x5x8xf32>, %k: tensor<1x2x5x4xf32>, %v: tensor<1x2x5x8xf32>) -> tensor<1x2x5x8xf32> {
  // expected-error@+1 {{'qopt.attention' op query and key head sizes differ: 8 vs 4}}
  %0 = qopt.attention %q, %k, %v : (tensor<1x2x5x8xf32>, tensor<1x2x5x4xf32>, tensor<1x2x5x8xf32>) -> tensor<1x2x5x8xf32>
  return %0 : tensor<1x2x5x8xf32>
}

// -----

func.func @attention_result(%q: tensor<1x2x5x8xf32>, %k: tensor<1x2x6x8xf32>, %v: tensor<1x2x6x16xf32>) -> tensor<1x2x5x8xf32> {
  // expected-error@+1 {{'qopt.attention' op result must have shape 1x2x5x16, got 1x2x5x8}}
  %0 = qopt.attention %q, %k, %v : (tensor<1x2x5x8xf32>, tensor<1x2x6x8xf32>, tensor<1x2x6x16xf32>) -> tensor<1x2x5x8xf32>
  return %0 : tensor<1x2x5x8xf32>
}

// -----

func.func @attention_mask(%q: tensor<1x2x5x8xf32>, %k: tensor<1x2x6x8xf32>, %v: tensor<1x2x6x8xf32>, %m: tensor<5x5xi1>) -> tensor<1x2x5x8xf32> {
  // expected-error@+1 {{'qopt.attention' op mask of shape 5x5 does not broadcast to the scores' 1x2x5x6}}
  %0 = qopt.attention %q, %k, %v mask(%m) : (tensor<1x2x5x8xf32>, tensor<1x2x6x8xf32>, tensor<1x2x6x8xf32>, tensor<5x5xi1>) -> tensor<1x2x5x8xf32>
  return %0 : tensor<1x2x5x8xf32>
}

// -----

func.func @attention_scale(%q: tensor<1x2x5x?xf32>, %k: tensor<1x2x6x?xf32>, %v: tensor<1x2x6x8xf32>) -> tensor<1x2x5x8xf32> {
  // expected-error@+1 {{'qopt.attention' op needs a scale when the head size is dynamic}}
  %0 = qopt.attention %q, %k, %v : (tensor<1x2x5x?xf32>, tensor<1x2x6x?xf32>, tensor<1x2x6x8xf32>) -> tensor<1x2x5x8xf32>
  return %0 : tensor<1x2x5x8xf32>
}

// -----

func.func @log_softmax_axis(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  // expected-error@+1 {{'qopt.log_softmax' op axis 2 is out of range for an input of rank 2 (expected -2 to 1)}}
  %0 = qopt.log_softmax %x axis = 2 : tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

func.func @cross_entropy_rank(%x: tensor<8xf32>, %y: tensor<i64>) -> tensor<f32> {
  // expected-error@+1 {{'qopt.cross_entropy' op input must have rank 2 or more [N, C, d1…dk], got shape 8}}
  %0 = qopt.cross_entropy %x, %y : (tensor<8xf32>, tensor<i64>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @cross_entropy_labels(%x: tensor<4x8x3xf32>, %y: tensor<4x8xi64>) -> tensor<f32> {
  // expected-error@+1 {{'qopt.cross_entropy' op labels must have shape 4x3 (the input's without its class axis 1), got 4x8}}
  %0 = qopt.cross_entropy %x, %y : (tensor<4x8x3xf32>, tensor<4x8xi64>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @cross_entropy_weight(%x: tensor<4x8xf32>, %y: tensor<4xi64>, %w: tensor<7xf32>) -> tensor<f32> {
  // expected-error@+1 {{'qopt.cross_entropy' op weight must have shape 8 (one per class), got 7}}
  %0 = qopt.cross_entropy %x, %y weight(%w) : (tensor<4x8xf32>, tensor<4xi64>, tensor<7xf32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @cross_entropy_reduction(%x: tensor<4x8xf32>, %y: tensor<4xi64>) -> tensor<f32> {
  // expected-error@+1 {{'qopt.cross_entropy' op reduction must be "none", "sum" or "mean", got "max"}}
  %0 = qopt.cross_entropy %x, %y reduction = "max" : (tensor<4x8xf32>, tensor<4xi64>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @cross_entropy_result(%x: tensor<4x8xf32>, %y: tensor<4xi64>) -> tensor<f32> {
  // expected-error@+1 {{'qopt.cross_entropy' op result must have shape 4 for reduction "none", got }}
  %0 = qopt.cross_entropy %x, %y reduction = "none" : (tensor<4x8xf32>, tensor<4xi64>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @cross_entropy_element(%x: tensor<4x8xf32>, %y: tensor<4xi64>) -> tensor<f16> {
  // expected-error@+1 {{'qopt.cross_entropy' op result must have the input's element type}}
  %0 = qopt.cross_entropy %x, %y : (tensor<4x8xf32>, tensor<4xi64>) -> tensor<f16>
  return %0 : tensor<f16>
}

// -----

func.func @rotary_cos_sin(%x: tensor<2x4x8xf32>, %c: tensor<2x1x8xf32>, %s: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  // expected-error@+1 {{'qopt.rotary' op cos and sin must have one type, got 'tensor<2x1x8xf32>' and 'tensor<2x4x8xf32>'}}
  %0 = qopt.rotary %x, %c, %s : tensor<2x4x8xf32>, tensor<2x1x8xf32>, tensor<2x4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

func.func @rotary_rank(%x: tensor<2x4x8xf32>, %c: tensor<4x8xf32>) -> tensor<2x4x8xf32> {
  // expected-error@+1 {{'qopt.rotary' op cos and sin must have the input's rank 3, got 2}}
  %0 = qopt.rotary %x, %c, %c : tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

func.func @rotary_broadcast(%x: tensor<2x4x8xf32>, %c: tensor<2x3x8xf32>) -> tensor<2x4x8xf32> {
  // expected-error@+1 {{'qopt.rotary' op cos and sin dimension 1 (3) must be 1 or the input's (4)}}
  %0 = qopt.rotary %x, %c, %c : tensor<2x4x8xf32>, tensor<2x3x8xf32>, tensor<2x3x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

func.func @rotary_odd(%x: tensor<2x4x8xf32>, %c: tensor<2x1x5xf32>) -> tensor<2x4x8xf32> {
  // expected-error@+1 {{'qopt.rotary' op rotary width 5 must be even and positive}}
  %0 = qopt.rotary %x, %c, %c : tensor<2x4x8xf32>, tensor<2x1x5xf32>, tensor<2x1x5xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

func.func @rotary_wide(%x: tensor<2x4x8xf32>, %c: tensor<2x1x10xf32>) -> tensor<2x4x8xf32> {
  // expected-error@+1 {{'qopt.rotary' op rotary width 10 exceeds the input's feature size 8}}
  %0 = qopt.rotary %x, %c, %c : tensor<2x4x8xf32>, tensor<2x1x10xf32>, tensor<2x1x10xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

func.func @rotary_dynamic_width(%x: tensor<2x4x8xf32>, %c: tensor<2x1x?xf32>) -> tensor<2x4x8xf32> {
  // expected-error@+1 {{'qopt.rotary' op needs a static rotary width (the last dimension of cos and sin)}}
  %0 = qopt.rotary %x, %c, %c : tensor<2x4x8xf32>, tensor<2x1x?xf32>, tensor<2x1x?xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

func.func @residual_add_types(%h: tensor<2x8xf32>, %o: tensor<2x4xf32>) -> tensor<2x8xf32> {
  // expected-error@+1 {{'qopt.residual_add' op failed to verify that all of {stream, update, result} have same type}}
  %0 = "qopt.residual_add"(%h, %o) : (tensor<2x8xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}
