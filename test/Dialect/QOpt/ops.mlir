// RUN: qopt-opt %s | FileCheck %s
// Round trip: the printed form parses to the same IR, also in generic form.
// RUN: qopt-opt %s | qopt-opt | FileCheck %s
// RUN: qopt-opt %s --mlir-print-op-generic | qopt-opt | FileCheck %s

// CHECK-LABEL: qopt.param @model.layers.0.mlp.up_proj.weight : tensor<64x32xf32> = #qopt.external<"model.safetensors", offset = 1024, length = 8192>
qopt.param @model.layers.0.mlp.up_proj.weight : tensor<64x32xf32>
    = #qopt.external<"model.safetensors", offset = 1024, length = 8192>
// CHECK: qopt.param @ln.weight : tensor<32xf32> = dense<1.000000e+00> : tensor<32xf32>
qopt.param @ln.weight : tensor<32xf32> = dense<1.0> : tensor<32xf32>
// CHECK: qopt.param trainable @lora_A : tensor<4x32xf32>{{$}}
qopt.param trainable @lora_A : tensor<4x32xf32>
// CHECK: qopt.param @codes : tensor<64x16xi8> = #qopt.external<"weights/q.bin", offset = 0, length = 1024>
qopt.param @codes : tensor<64x16xi8> = #qopt.external<"weights/q.bin", offset = 0, length = 1024>
// Lengths count bytes of the element type: 3 x bf16 = 6.
// CHECK: qopt.param @odd : tensor<3xbf16> = #qopt.external<"w.bin", offset = 6, length = 6>
qopt.param @odd : tensor<3xbf16> = #qopt.external<"w.bin", offset = 6, length = 6>

// CHECK: qopt.param state @adam.step : tensor<f32> = dense<0.000000e+00> : tensor<f32>
qopt.param state @adam.step : tensor<f32> = dense<0.0> : tensor<f32>

// CHECK-LABEL: func.func @params
func.func @params() -> (tensor<64x32xf32>, tensor<4x32xf32>, tensor<2xi64>) {
  // CHECK: qopt.load_param @model.layers.0.mlp.up_proj.weight : tensor<64x32xf32>
  %w = qopt.load_param @model.layers.0.mlp.up_proj.weight : tensor<64x32xf32>
  // CHECK: qopt.load_param @lora_A : tensor<4x32xf32>
  %a = qopt.load_param @lora_A : tensor<4x32xf32>
  // CHECK: qopt.store_param @lora_A, %{{.*}} : tensor<4x32xf32>
  qopt.store_param @lora_A, %a : tensor<4x32xf32>
  %s = qopt.load_param @adam.step : tensor<f32>
  // CHECK: qopt.store_param @adam.step, %{{.*}} : tensor<f32>
  qopt.store_param @adam.step, %s : tensor<f32>
  // CHECK: qopt.random_key : tensor<2xi64>
  %k = qopt.random_key : tensor<2xi64>
  // CHECK: qopt.random_uniform %{{.*}} stream 3 : tensor<2xi64> -> tensor<4x8xf32>
  %u = qopt.random_uniform %k stream 3 : tensor<2xi64> -> tensor<4x8xf32>
  %n = arith.constant 5 : index
  // CHECK: qopt.random_uniform %{{.*}}[%{{.*}}] stream 4 : tensor<2xi64> -> tensor<?x8xf32>
  %v = qopt.random_uniform %k[%n] stream 4 : tensor<2xi64> -> tensor<?x8xf32>
  return %w, %a, %k : tensor<64x32xf32>, tensor<4x32xf32>, tensor<2xi64>
}

// CHECK-LABEL: func.func @formats
func.func @formats(
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.int<8>, #qopt.per_tensor, scales = f32>
  %a: !qopt.qtensor<64x32, #qopt.int<8, signed>, #qopt.per_tensor, scales = f32>,
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 16>, scales = f16>
  %b: !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 16>, scales = f16>,
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.int<2>, #qopt.per_channel<0>, scales = bf16>
  %c: !qopt.qtensor<64x32, #qopt.int<2>, #qopt.per_channel<0>, scales = bf16>,
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.int<3, zero_point>, #qopt.per_channel<1>, scales = f32>
  %d: !qopt.qtensor<64x32, #qopt.int<3, zero_point>, #qopt.per_channel<1>, scales = f32>,
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  %e: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>,
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>
  %f: !qopt.qtensor<64x32, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>,
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.float<f8E5M2>, #qopt.per_channel<0>, scales = f32>
  %g: !qopt.qtensor<64x32, #qopt.float<f8E5M2>, #qopt.per_channel<0>, scales = f32>,
  // CHECK-SAME: !qopt.qtensor<?x64, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 32>, scales = f8E8M0FNU>
  %h: !qopt.qtensor<?x64, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 32>, scales = f8E8M0FNU>,
  // NVFP4: FP8 block scales, themselves scaled per tensor.
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 16>, scales = !qopt.qtensor<64x2, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>>
  %i: !qopt.qtensor<64x32, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 16>, scales = !qopt.qtensor<64x2, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>>,
  // QLoRA double quantization, as bitsandbytes stores it (8-bit dynamic
  // codes), and with int8 scales.
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<32, #qopt.dynamic8, #qopt.per_block<256>, scales = f32, offset>>
  %j: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<32, #qopt.dynamic8, #qopt.per_block<256>, scales = f32, offset>>,
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>>
  %j2: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>>,
  // bitsandbytes' FP4.
  // CHECK-SAME: !qopt.qtensor<64x32, #qopt.bnb_fp4, #qopt.per_block<64>, scales = f32>
  %j3: !qopt.qtensor<64x32, #qopt.bnb_fp4, #qopt.per_block<64>, scales = f32>,
  // CHECK-SAME: !qopt.qtensor<2x8x16, #qopt.int<8>, #qopt.per_token, scales = f32>
  %k: !qopt.qtensor<2x8x16, #qopt.int<8>, #qopt.per_token, scales = f32>) {
  return
}

// CHECK-LABEL: func.func @assemble
func.func @assemble(%codes: tensor<64x16xi8>, %s: tensor<32xf32>,
                    %zp_codes: tensor<64x16xi8>, %zs: tensor<64x2xf16>, %zp: tensor<64x2xi8>,
                    %dq: tensor<32xi8>, %ds: tensor<1xf32>, %off: tensor<f32>,
                    %zs_f: tensor<64x32xf32>) {
  // CHECK: %[[Q:.*]] = qopt.assemble %{{.*}}, %{{.*}} : (tensor<64x16xi8>, tensor<32xf32>) -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  %q = qopt.assemble %codes, %s : (tensor<64x16xi8>, tensor<32xf32>)
      -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  // CHECK: qopt.disassemble %[[Q]] : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32> -> tensor<64x16xi8>, tensor<32xf32>
  %c2, %s2 = qopt.disassemble %q : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
      -> tensor<64x16xi8>, tensor<32xf32>
  // CHECK: qopt.assemble %{{.*}}, %{{.*}} zero_points %{{.*}} : (tensor<64x16xi8>, tensor<64x2xf16>, tensor<64x2xi8>)
  %z = qopt.assemble %zp_codes, %zs zero_points %zp : (tensor<64x16xi8>, tensor<64x2xf16>, tensor<64x2xi8>)
      -> !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 16>, scales = f16>
  // Double quantization: the scales are a quantized tensor with an offset.
  // CHECK: %[[S:.*]] = qopt.assemble %{{.*}}, %{{.*}} offset %{{.*}} : (tensor<32xi8>, tensor<1xf32>, tensor<f32>)
  %sq = qopt.assemble %dq, %ds offset %off : (tensor<32xi8>, tensor<1xf32>, tensor<f32>)
      -> !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>
  // CHECK: qopt.assemble %{{.*}}, %[[S]] :
  %dd = qopt.assemble %codes, %sq : (tensor<64x16xi8>, !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>)
      -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>>
  // CHECK: qopt.disassemble %{{.*}} : {{.*}} -> tensor<32xi8>, tensor<1xf32> offset tensor<f32>
  %a1, %a2, %a3 = qopt.disassemble %sq : !qopt.qtensor<32, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>
      -> tensor<32xi8>, tensor<1xf32> offset tensor<f32>
  // A 3-bit row of 32 elements packs into 12 bytes.
  // CHECK: qopt.disassemble %{{.*}} -> tensor<64x12xi8>, tensor<64xf32> zero_points tensor<64xi8>
  %t0 = qopt.quantize %zs_f : tensor<64x32xf32> -> !qopt.qtensor<64x32, #qopt.int<3, zero_point>, #qopt.per_channel<0>, scales = f32>
  %t1, %t2, %t3 = qopt.disassemble %t0 : !qopt.qtensor<64x32, #qopt.int<3, zero_point>, #qopt.per_channel<0>, scales = f32>
      -> tensor<64x12xi8>, tensor<64xf32> zero_points tensor<64xi8>
  return
}

// CHECK-LABEL: func.func @quantize
func.func @quantize(%x: tensor<?x32xf32>, %w: tensor<64x32xbf16>) -> tensor<64x32xf16> {
  // CHECK: qopt.quantize %{{.*}} : tensor<?x32xf32> -> !qopt.qtensor<?x32, #qopt.int<8>, #qopt.per_token, scales = f32>
  %q = qopt.quantize %x : tensor<?x32xf32> -> !qopt.qtensor<?x32, #qopt.int<8>, #qopt.per_token, scales = f32>
  // CHECK: %[[W:.*]] = qopt.quantize %{{.*}} : tensor<64x32xbf16> -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  %qw = qopt.quantize %w : tensor<64x32xbf16> -> !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>
  // CHECK: qopt.dequantize %[[W]] : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32> -> tensor<64x32xf16>
  %d = qopt.dequantize %qw : !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32> -> tensor<64x32xf16>
  return %d : tensor<64x32xf16>
}

// CHECK-LABEL: func.func @linear
func.func @linear(%x: tensor<?x?x32xf32>, %w: tensor<64x32xf32>, %b: tensor<64xf32>,
                  %qw: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>)
    -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>) {
  // CHECK: qopt.linear %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x?x32xf32>, tensor<64x32xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  %y = qopt.linear %x, %w, %b : (tensor<?x?x32xf32>, tensor<64x32xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  // CHECK: qopt.linear %{{.*}}, %{{.*}} module "model.layers.0.mlp.up_proj" : (tensor<?x?x32xf32>, tensor<64x32xf32>) -> tensor<?x?x64xf32>
  %ym = qopt.linear %x, %w module "model.layers.0.mlp.up_proj" : (tensor<?x?x32xf32>, tensor<64x32xf32>) -> tensor<?x?x64xf32>
  // CHECK: qopt.linear %{{.*}}, %{{.*}} : (tensor<?x?x32xf32>, !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<?x?x64xf32>
  %z = qopt.linear %x, %qw : (tensor<?x?x32xf32>, !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<?x?x64xf32>
  return %y, %z : tensor<?x?x64xf32>, tensor<?x?x64xf32>
}

// CHECK-LABEL: func.func @lora
func.func @lora(%x: tensor<?x32xf32>, %w: tensor<64x32xf32>, %a: tensor<4x32xf32>,
                %bb: tensor<64x4xf32>, %bias: tensor<64xf32>, %m: tensor<64xf32>,
                %mid: tensor<4x4xf32>, %g: tensor<4xf32>,
                %qw: !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>) {
  // CHECK: qopt.lora %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} alpha = 8.000000e+00 : (tensor<?x32xf32>, tensor<64x32xf32>, tensor<4x32xf32>, tensor<64x4xf32>) -> tensor<?x64xf32>
  %0 = qopt.lora %x, %w, %a, %bb alpha = 8.0 : (tensor<?x32xf32>, tensor<64x32xf32>, tensor<4x32xf32>, tensor<64x4xf32>) -> tensor<?x64xf32>
  // CHECK: qopt.lora {{.*}} alpha = 8.000000e+00 module "q_proj" : (tensor<?x32xf32>
  %lm = qopt.lora %x, %w, %a, %bb alpha = 8.0 module "q_proj" : (tensor<?x32xf32>, tensor<64x32xf32>, tensor<4x32xf32>, tensor<64x4xf32>) -> tensor<?x64xf32>
  // CHECK: qopt.lora {{.*}} bias(%{{.*}}) alpha = 1.600000e+01 scaling = rslora dropout = 1.000000e-01 :
  %1 = qopt.lora %x, %w, %a, %bb bias(%bias) alpha = 16.0 scaling = rslora dropout = 0.1
      : (tensor<?x32xf32>, tensor<64x32xf32>, tensor<4x32xf32>, tensor<64x4xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  // DoRA on a QLoRA base.
  // CHECK: qopt.lora {{.*}} magnitude(%{{.*}}) alpha = 8.000000e+00 : (tensor<?x32xf32>, !qopt.qtensor
  %2 = qopt.lora %x, %qw, %a, %bb magnitude(%m) alpha = 8.0
      : (tensor<?x32xf32>, !qopt.qtensor<64x32, #qopt.nf4, #qopt.per_block<64>, scales = f32>, tensor<4x32xf32>, tensor<64x4xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  // LoRA-XS / LoRA-SB middle matrix and a SoRA gate; the default scaling is not printed.
  // CHECK: qopt.lora {{.*}} bias(%{{.*}}) middle(%{{.*}}) gate(%{{.*}}) alpha = 4.000000e+00 :
  %3 = qopt.lora %x, %w, %a, %bb bias(%bias) middle(%mid) gate(%g) alpha = 4.0 scaling = standard
      : (tensor<?x32xf32>, tensor<64x32xf32>, tensor<4x32xf32>, tensor<64x4xf32>, tensor<64xf32>, tensor<4x4xf32>, tensor<4xf32>) -> tensor<?x64xf32>
  return
}

// CHECK-LABEL: func.func @quantizers
func.func @quantizers(%x: tensor<2x8x32xf32>, %st: tensor<2x8xf32>, %w: tensor<64x32xf32>,
                      %sc: tensor<64xf32>, %sg: tensor<64x2xf32>, %zg: tensor<64x2xf32>,
                      %s0: tensor<f32>, %sb: tensor<32xf32>) {
  // CHECK: qopt.fake_quant %{{.*}} scale %{{.*}} format(#qopt.int<8>) granularity(#qopt.per_token) : (tensor<2x8x32xf32>, tensor<2x8xf32>) -> tensor<2x8x32xf32>
  %0 = qopt.fake_quant %x scale %st format(#qopt.int<8>) granularity(#qopt.per_token)
      : (tensor<2x8x32xf32>, tensor<2x8xf32>) -> tensor<2x8x32xf32>
  // CHECK: qopt.fake_quant %{{.*}} scale %{{.*}} zero_point %{{.*}} format(#qopt.int<4, unsigned, zero_point>) granularity(#qopt.per_group<axis = 1, size = 16>)
  %1 = qopt.fake_quant %w scale %sg zero_point %zg format(#qopt.int<4, unsigned, zero_point>)
      granularity(#qopt.per_group<axis = 1, size = 16>)
      : (tensor<64x32xf32>, tensor<64x2xf32>, tensor<64x2xf32>) -> tensor<64x32xf32>
  // CHECK: qopt.fake_quant %{{.*}} scale %{{.*}} format(#qopt.float<f8E4M3FN>) granularity(#qopt.per_tensor)
  %2 = qopt.fake_quant %w scale %s0 format(#qopt.float<f8E4M3FN>) granularity(#qopt.per_tensor)
      : (tensor<64x32xf32>, tensor<f32>) -> tensor<64x32xf32>
  // CHECK: qopt.lsq %{{.*}} scale %{{.*}} format(#qopt.int<4>) granularity(#qopt.per_channel<0>) grad_scale = 1.000000e-02 :
  %3 = qopt.lsq %w scale %sc format(#qopt.int<4>) granularity(#qopt.per_channel<0>) grad_scale = 0.01
      : (tensor<64x32xf32>, tensor<64xf32>) -> tensor<64x32xf32>
  // CHECK: qopt.lsq %{{.*}} scale %{{.*}} format(#qopt.nf4) granularity(#qopt.per_block<64>) :
  %4 = qopt.lsq %w scale %sb format(#qopt.nf4) granularity(#qopt.per_block<64>)
      : (tensor<64x32xf32>, tensor<32xf32>) -> tensor<64x32xf32>
  return
}

// CHECK-LABEL: func.func @outliers
func.func @outliers(%x: tensor<?x4096xf32>, %s: tensor<4096xf32>, %y: tensor<8x11008xf32>,
                    %z: tensor<4x14336xbf16>, %signs: tensor<128xf32>) {
  // CHECK: qopt.smooth %{{.*}}, %{{.*}} : (tensor<?x4096xf32>, tensor<4096xf32>) -> tensor<?x4096xf32>
  %0 = qopt.smooth %x, %s : (tensor<?x4096xf32>, tensor<4096xf32>) -> tensor<?x4096xf32>
  // CHECK: qopt.smooth %{{.*}}, %{{.*}} axis = 1 :
  %1 = qopt.smooth %x, %s axis = 1 : (tensor<?x4096xf32>, tensor<4096xf32>) -> tensor<?x4096xf32>
  // CHECK: qopt.hadamard %{{.*}} : (tensor<?x4096xf32>) -> tensor<?x4096xf32>
  %2 = qopt.hadamard %x : (tensor<?x4096xf32>) -> tensor<?x4096xf32>
  // 11008 = 172 * 64, 14336 = 28 * 512.
  // CHECK: qopt.hadamard %{{.*}} : (tensor<8x11008xf32>) -> tensor<8x11008xf32>
  %3 = qopt.hadamard %y : (tensor<8x11008xf32>) -> tensor<8x11008xf32>
  // CHECK: qopt.hadamard %{{.*}} axis = 1 : (tensor<4x14336xbf16>) -> tensor<4x14336xbf16>
  %4 = qopt.hadamard %z axis = 1 : (tensor<4x14336xbf16>) -> tensor<4x14336xbf16>
  // CHECK: qopt.hadamard %{{.*}} signs %{{.*}} block = 128 : (tensor<?x4096xf32>, tensor<128xf32>) -> tensor<?x4096xf32>
  %5 = qopt.hadamard %x signs %signs block = 128 : (tensor<?x4096xf32>, tensor<128xf32>) -> tensor<?x4096xf32>
  return
}

// CHECK-LABEL: func.func @norms
func.func @norms(%x: tensor<?x?x64xf32>, %g: tensor<64xf32>, %b: tensor<64xf32>,
                 %h: tensor<2x3x4xf32>, %g2: tensor<3x4xf32>) {
  // CHECK: qopt.rms_norm %{{.*}}, %{{.*}} : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  %0 = qopt.rms_norm %x, %g : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  // CHECK: qopt.rms_norm %{{.*}}, %{{.*}} epsilon = 1.000000e-05 :
  %1 = qopt.rms_norm %x, %g epsilon = 1.0e-05 : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  // CHECK: qopt.rms_norm %{{.*}}, %{{.*}} axis = 1 : (tensor<2x3x4xf32>, tensor<3x4xf32>) -> tensor<2x3x4xf32>
  %2 = qopt.rms_norm %h, %g2 axis = 1 : (tensor<2x3x4xf32>, tensor<3x4xf32>) -> tensor<2x3x4xf32>
  // CHECK: qopt.layer_norm %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  %3 = qopt.layer_norm %x, %g, %b : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  // CHECK: qopt.layer_norm %{{.*}}, %{{.*}} epsilon = 9.9999999999999998E-13 :
  %4 = qopt.layer_norm %x, %g epsilon = 1.0e-12 : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  return
}

// CHECK-LABEL: func.func @activations
func.func @activations(%x: tensor<?x8xf32>, %h: tensor<2x4xbf16>) -> (tensor<?x8xf32>, tensor<?x8xf32>, tensor<2x4xbf16>) {
  // CHECK: qopt.gelu %{{.*}} : tensor<?x8xf32>
  %0 = qopt.gelu %x : tensor<?x8xf32>
  // CHECK: qopt.gelu %{{.*}} approximate = "tanh" : tensor<?x8xf32>
  %1 = qopt.gelu %x approximate = "tanh" : tensor<?x8xf32>
  // CHECK: qopt.silu %{{.*}} : tensor<2x4xbf16>
  %2 = qopt.silu %h : tensor<2x4xbf16>
  return %0, %1, %2 : tensor<?x8xf32>, tensor<?x8xf32>, tensor<2x4xbf16>
}

// Attributes the dialect declares for entry arguments and results
// (discardableAttrs): parameters passed by the runtime, model names.
// CHECK-LABEL: func.func @boundary
// CHECK-SAME: {qopt.external = #qopt.external<"w.bin", offset = 0, length = 16>, qopt.param = "w"}
// CHECK-SAME: {qopt.inline = dense<[1, 2]> : tensor<2xui8>, qopt.param = "z"}
// CHECK-SAME: {qopt.dim_names = ["batch", ""], qopt.name = "logits"}
func.func @boundary(%w: tensor<4xf32> {qopt.param = "w", qopt.external = #qopt.external<"w.bin", offset = 0, length = 16>},
                    %z: tensor<2xui8> {qopt.param = "z", qopt.inline = dense<[1, 2]> : tensor<2xui8>})
    -> (tensor<?x4xf32> {qopt.name = "logits", qopt.dim_names = ["batch", ""]}) {
  %0 = tensor.empty() : tensor<1x4xf32>
  %c = tensor.cast %0 : tensor<1x4xf32> to tensor<?x4xf32>
  return %c : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @embedding
func.func @embedding(%ids: tensor<?x?xi64>, %w: tensor<100x8xf32>, %q: !qopt.qtensor<100x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>) -> (tensor<?x?x8xf32>, tensor<3x8xbf16>) {
  // CHECK: qopt.embedding %{{.*}}, %{{.*}} module "model.embed_tokens" : (tensor<?x?xi64>, tensor<100x8xf32>) -> tensor<?x?x8xf32>
  %0 = qopt.embedding %ids, %w module "model.embed_tokens" : (tensor<?x?xi64>, tensor<100x8xf32>) -> tensor<?x?x8xf32>
  %i = arith.constant dense<[1, 2, 3]> : tensor<3xi32>
  // CHECK: qopt.embedding %{{.*}}, %{{.*}} : (tensor<3xi32>, !qopt.qtensor<100x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>) -> tensor<3x8xbf16>
  %1 = qopt.embedding %i, %q : (tensor<3xi32>, !qopt.qtensor<100x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>) -> tensor<3x8xbf16>
  return %0, %1 : tensor<?x?x8xf32>, tensor<3x8xbf16>
}

// CHECK-LABEL: func.func @lora_embedding
func.func @lora_embedding(%ids: tensor<?x?xi64>, %w: tensor<100x8xf32>, %a: tensor<4x100xf32>, %b: tensor<8x4xf32>) -> (tensor<?x?x8xf32>, tensor<?x?x8xf32>) {
  // CHECK: qopt.lora_embedding %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} alpha = 8.000000e+00 module "model.embed_tokens" : (tensor<?x?xi64>, tensor<100x8xf32>, tensor<4x100xf32>, tensor<8x4xf32>) -> tensor<?x?x8xf32>
  %0 = qopt.lora_embedding %ids, %w, %a, %b alpha = 8.0 module "model.embed_tokens" : (tensor<?x?xi64>, tensor<100x8xf32>, tensor<4x100xf32>, tensor<8x4xf32>) -> tensor<?x?x8xf32>
  // CHECK: qopt.lora_embedding %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} alpha = 1.600000e+01 scaling = rslora merged : (tensor<?x?xi64>, tensor<100x8xf32>, tensor<4x100xf32>, tensor<8x4xf32>) -> tensor<?x?x8xf32>
  %1 = qopt.lora_embedding %ids, %w, %a, %b alpha = 16.0 scaling = rslora merged : (tensor<?x?xi64>, tensor<100x8xf32>, tensor<4x100xf32>, tensor<8x4xf32>) -> tensor<?x?x8xf32>
  return %0, %1 : tensor<?x?x8xf32>, tensor<?x?x8xf32>
}

// CHECK-LABEL: func.func @randlora
func.func @randlora(%a: tensor<8x1x32xf32>, %l: tensor<8x4xf32>, %g: tensor<4x16xf32>, %b: tensor<64x4x8xf32>) -> (tensor<32x16xf32>, tensor<64x32xf32>) {
  // CHECK: qopt.randlora_scale %{{.*}}, %{{.*}}, %{{.*}} : (tensor<8x1x32xf32>, tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<32x16xf32>
  %0 = qopt.randlora_scale %a, %l, %g : (tensor<8x1x32xf32>, tensor<8x4xf32>, tensor<4x16xf32>) -> tensor<32x16xf32>
  // CHECK: qopt.randlora_flatten %{{.*}} : (tensor<64x4x8xf32>) -> tensor<64x32xf32>
  %1 = qopt.randlora_flatten %b : (tensor<64x4x8xf32>) -> tensor<64x32xf32>
  return %0, %1 : tensor<32x16xf32>, tensor<64x32xf32>
}

// CHECK-LABEL: func.func @attention
func.func @attention(%q: tensor<1x4x?x8xf32>, %k: tensor<1x2x?x8xf32>, %v: tensor<1x2x?x16xf32>, %m: tensor<1x1x?x?xi1>) -> (tensor<1x4x?x16xf32>, tensor<1x4x?x16xf32>) {
  // CHECK: qopt.attention %{{.*}}, %{{.*}}, %{{.*}} mask(%{{.*}}) causal scale = 5.000000e-01 softcap = 3.000000e+01 : (tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x16xf32>, tensor<1x1x?x?xi1>) -> tensor<1x4x?x16xf32>
  %0 = qopt.attention %q, %k, %v mask(%m) causal scale = 0.5 softcap = 30.0 : (tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x16xf32>, tensor<1x1x?x?xi1>) -> tensor<1x4x?x16xf32>
  // CHECK: qopt.attention %{{.*}}, %{{.*}}, %{{.*}} : (tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x16xf32>) -> tensor<1x4x?x16xf32>
  %1 = qopt.attention %q, %k, %v : (tensor<1x4x?x8xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x16xf32>) -> tensor<1x4x?x16xf32>
  return %0, %1 : tensor<1x4x?x16xf32>, tensor<1x4x?x16xf32>
}

// CHECK-LABEL: func.func @losses
func.func @losses(%x: tensor<?x10xf32>, %y: tensor<?xi64>, %w: tensor<10xf32>, %x3: tensor<2x10x5xf32>, %y3: tensor<2x5xi32>) -> (tensor<?x10xf32>, tensor<f32>, tensor<2x5xf32>) {
  // CHECK: qopt.log_softmax %{{.*}} axis = 1 : tensor<?x10xf32>
  %0 = qopt.log_softmax %x axis = 1 : tensor<?x10xf32>
  // CHECK: qopt.cross_entropy %{{.*}}, %{{.*}} weight(%{{.*}}) ignore_index = -100 reduction = "sum" : (tensor<?x10xf32>, tensor<?xi64>, tensor<10xf32>) -> tensor<f32>
  %1 = qopt.cross_entropy %x, %y weight(%w) ignore_index = -100 reduction = "sum" : (tensor<?x10xf32>, tensor<?xi64>, tensor<10xf32>) -> tensor<f32>
  // CHECK: qopt.cross_entropy %{{.*}}, %{{.*}} reduction = "none" log_probs : (tensor<2x10x5xf32>, tensor<2x5xi32>) -> tensor<2x5xf32>
  %2 = qopt.cross_entropy %x3, %y3 reduction = "none" log_probs : (tensor<2x10x5xf32>, tensor<2x5xi32>) -> tensor<2x5xf32>
  return %0, %1, %2 : tensor<?x10xf32>, tensor<f32>, tensor<2x5xf32>
}

// CHECK-LABEL: func.func @rotary_residual
func.func @rotary_residual(%q: tensor<?x4x?x8xf32>, %c: tensor<?x1x?x8xf32>, %s: tensor<?x1x?x8xf32>, %c4: tensor<1x1x?x4xf32>, %h: tensor<?x?x32xf32>, %o: tensor<?x?x32xf32>) -> (tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>, tensor<?x?x32xf32>) {
  // CHECK: qopt.rotary %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x4x?x8xf32>, tensor<?x1x?x8xf32>, tensor<?x1x?x8xf32>
  %0 = qopt.rotary %q, %c, %s : tensor<?x4x?x8xf32>, tensor<?x1x?x8xf32>, tensor<?x1x?x8xf32>
  // CHECK: qopt.rotary %{{.*}}, %{{.*}}, %{{.*}} interleaved : tensor<?x4x?x8xf32>, tensor<1x1x?x4xf32>, tensor<1x1x?x4xf32>
  %1 = qopt.rotary %q, %c4, %c4 interleaved : tensor<?x4x?x8xf32>, tensor<1x1x?x4xf32>, tensor<1x1x?x4xf32>
  // CHECK: qopt.residual_add %{{.*}}, %{{.*}} module "model.layers.0.self_attn.o_proj" : tensor<?x?x32xf32>
  %2 = qopt.residual_add %h, %o module "model.layers.0.self_attn.o_proj" : tensor<?x?x32xf32>
  return %0, %1, %2 : tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>, tensor<?x?x32xf32>
}

// CHECK-LABEL: func.func @norm_grad
func.func @norm_grad(%x: tensor<?x?x64xf32>, %g: tensor<64xf32>, %dy: tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<64xf32>) {
  // CHECK: qopt.norm_grad %{{.*}}, %{{.*}}, %{{.*}} layer epsilon = 1.000000e-05 : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<64xf32>, tensor<64xf32>)
  %dx, %dg, %db = qopt.norm_grad %x, %g, %dy layer epsilon = 1.0e-05 : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<64xf32>, tensor<64xf32>)
  // CHECK: qopt.norm_grad %{{.*}}, %{{.*}}, %{{.*}} epsilon = 9.9999999999999995E-7
  %dx2, %dg2, %db2 = qopt.norm_grad %x, %g, %dy epsilon = 1.0e-06 : (tensor<?x?x64xf32>, tensor<64xf32>, tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<64xf32>, tensor<64xf32>)
  return %dx, %dg2 : tensor<?x?x64xf32>, tensor<64xf32>
}
