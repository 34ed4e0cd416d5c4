// RUN: qopt-opt %s --qopt-insert-fake-quant="weights=int4:group=4,asym activations=int8:per-token" | FileCheck %s
// RUN: qopt-opt %s --qopt-insert-fake-quant="weights=fp8-e4m3 target-modules=k_proj" | FileCheck %s --check-prefix=FP8
// RUN: qopt-opt %s --qopt-insert-fake-quant="weights=int8" --qopt-convert-qat --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=CONVERT
// Errors: bad specs, groups that do not divide K, nothing selected.
// RUN: not qopt-opt %s --qopt-insert-fake-quant 2>&1 | FileCheck %s --check-prefix=ERR-NONE
// RUN: qopt-opt %s --qopt-insert-fake-quant="weights=nf4:block=16 target-modules=q_proj" | FileCheck %s --check-prefix=NF4
// RUN: qopt-opt %s --qopt-insert-fake-quant="weights=fp4:block=16 target-modules=q_proj" --qopt-convert-qat --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=FP4
// RUN: not qopt-opt %s --qopt-insert-fake-quant="weights=nf5" 2>&1 | FileCheck %s --check-prefix=ERR-FMT
// RUN: not qopt-opt %s --qopt-insert-fake-quant="weights=nf4:double-quant" 2>&1 | FileCheck %s --check-prefix=ERR-DQ
// RUN: not qopt-opt %s --qopt-insert-fake-quant="weights=nf4:block=24 target-modules=q_proj" 2>&1 | FileCheck %s --check-prefix=ERR-BLOCK
// RUN: not qopt-opt %s --qopt-insert-fake-quant="activations=nf4:per-token" 2>&1 | FileCheck %s --check-prefix=ERR-ACTNF4
// RUN: not qopt-opt %s --qopt-insert-fake-quant="activations=int8:per-token,static" 2>&1 | FileCheck %s --check-prefix=ERR-STATIC-TOKEN
// RUN: not qopt-opt %s --qopt-insert-fake-quant="activations=int8:per-tensor,static,asym" 2>&1 | FileCheck %s --check-prefix=ERR-STATIC-ASYM
// RUN: not qopt-opt %s --qopt-insert-fake-quant="activations=int8:per-tensor,static" 2>&1 | FileCheck %s --check-prefix=ERR-STATIC-NOFILE
// RUN: not qopt-opt %s --qopt-insert-fake-quant="activations=int8:per-tensor,static activation-stats=%t.missing" 2>&1 | FileCheck %s --check-prefix=ERR-STATIC-MISSING
// RUN: not qopt-opt %s --qopt-insert-fake-quant="activations=int8:per-tensor activation-stats=%t.missing" 2>&1 | FileCheck %s --check-prefix=ERR-STATIC-DYNAMIC
// RUN: not qopt-opt %s --qopt-insert-fake-quant="weights=int4:group=3" 2>&1 | FileCheck %s --check-prefix=ERR-GROUP
// RUN: not qopt-opt %s --qopt-insert-fake-quant="weights=int4:per-token" 2>&1 | FileCheck %s --check-prefix=ERR-OPT
// RUN: not qopt-opt %s --qopt-insert-fake-quant="weights=int4:per-tensor" 2>&1 | FileCheck %s --check-prefix=ERR-INTTENSOR
// RUN: not qopt-opt %s --qopt-insert-fake-quant="activations=int8" 2>&1 | FileCheck %s --check-prefix=ERR-ACT
// RUN: not qopt-opt %s --qopt-insert-fake-quant="weights=int4 target-modules=o_proj" 2>&1 | FileCheck %s --check-prefix=ERR-SEL

// ERR-NONE: error: qopt-insert-fake-quant: nothing to insert: give 'weights' and/or 'activations'
// ERR-FMT: error: qopt-insert-fake-quant: weights 'nf5': format 'nf5' has no fake quantizer here (int2 to int8, fp8-e4m3, fp8-e5m2, nf4, fp4)
// ERR-DQ: error: qopt-insert-fake-quant: weights 'nf4:double-quant': double-quant is not simulated: QLoRA's codes use the unquantized absmax and its values the double-quantized one, which one fake-quant cannot express (fake-quantize without it)
// ERR-BLOCK: error: qopt-insert-fake-quant: the weight of 'model.q_proj' has 32 elements, not a multiple of the block size 24
// ERR-STATIC-TOKEN: error: qopt-insert-fake-quant: activations 'int8:per-token,static': static activation scales are symmetric and per-tensor (one absmax per layer from calibration)
// ERR-STATIC-ASYM: error: qopt-insert-fake-quant: activations 'int8:per-tensor,static,asym': static activation scales are symmetric and per-tensor
// ERR-STATIC-NOFILE: error: qopt-insert-fake-quant: static activation scales need activation-stats=FILE (a safetensors file with each layer's <module>.input_absmax, as qopt-calibrate writes) or qoptc --calibration-data
// ERR-STATIC-MISSING: error: qopt-insert-fake-quant: activation-stats '{{.*}}.missing': {{.*}}o such file or directory
// ERR-STATIC-DYNAMIC: error: qopt-insert-fake-quant: activation-stats is read for static activation scales (activations=int8:per-tensor,static)
// ERR-ACTNF4: error: qopt-insert-fake-quant: activations 'nf4:per-token': nf4 and fp4 are weight formats (bitsandbytes' blocks of the flattened weight)

// NF4 (bitsandbytes' rounding): the absmax of each block of 16 of the
// flattened weight, no guard for zero blocks.
// NF4: %[[F:.*]] = tensor.collapse_shape %[[W:.*]] {{\[\[}}0, 1]] : tensor<4x8xf32> into tensor<32xf32>
// NF4: %[[B:.*]] = tensor.expand_shape %[[F]] {{\[\[}}0, 1]] output_shape [2, 16] : tensor<32xf32> into tensor<2x16xf32>
// NF4: qopt.fake_quant %[[W]] scale %{{.*}} format(#qopt.nf4) granularity(#qopt.per_block<16>) {qopt.qat_spec = "nf4:block=16"} : (tensor<4x8xf32>, tensor<2xf32>) -> tensor<4x8xf32>

// FP4 converted: bitsandbytes' layout, its absmax per block.
// FP4-DAG: qopt.param @model.q_proj.weight.absmax : tensor<2xf32>
// FP4-DAG: qopt.param @model.q_proj.weight : tensor<4x4xi8>
// FP4: !qopt.qtensor<4x8, #qopt.bnb_fp4, #qopt.per_block<16>, scales = f32>
// ERR-GROUP: error: qopt-insert-fake-quant: the weight of 'model.q_proj' has 8 input features, not a multiple of the group size 3
// ERR-OPT: error: qopt-insert-fake-quant: weights 'int4:per-token': unknown option 'per-token' for int4 weights (group=N, per-channel, per-tensor, sym, asym)
// ERR-INTTENSOR: error: qopt-insert-fake-quant: weights 'int4:per-tensor': integer weights take per-channel or group=N scales
// ERR-ACT: error: qopt-insert-fake-quant: activations 'int8': activations take per-token or per-tensor scales
// ERR-SEL: error: qopt-insert-fake-quant: no linear layer matches the selection

// int4 in groups of 4 with zero points on q_proj and k_proj (not the head):
// min / max per group of the expanded weight, the scale and zero point, the
// weight fake-quant marked with its spec; int8 per-token on the inputs.
// CHECK-LABEL: func.func @m
// CHECK: %[[E:.*]] = tensor.expand_shape %[[W:.*]] {{\[\[}}0], [1, 2]] output_shape [4, 2, 4] : tensor<4x8xf32> into tensor<4x2x4xf32>
// CHECK: linalg.reduce { arith.minimumf } ins(%[[E]] : tensor<4x2x4xf32>) {{.*}}dimensions = [2]
// CHECK: linalg.reduce { arith.maximumf } ins(%[[E]] : tensor<4x2x4xf32>) {{.*}}dimensions = [2]
// CHECK: %[[WQ:.*]] = qopt.fake_quant %[[W]] scale %{{.*}} zero_point %{{.*}} format(#qopt.int<4, unsigned, zero_point>) granularity(#qopt.per_group<axis = 1, size = 4>) {qopt.qat_spec = "int4:group=4,asym"} : (tensor<4x8xf32>, tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<4x8xf32>
// CHECK: linalg.reduce ins(%arg0 : tensor<?x8xf32>) {{.*}}dimensions = [1]
// CHECK: %[[XQ:.*]] = qopt.fake_quant %arg0 scale %{{.*}} format(#qopt.int<8>) granularity(#qopt.per_token) {qopt.dynamic_scales} : (tensor<?x8xf32>, tensor<?xf32>) -> tensor<?x8xf32>
// CHECK: qopt.linear %[[XQ]], %[[WQ]] module "model.q_proj"
// CHECK: qopt.fake_quant {{.*}}qopt.qat_spec = "int4:group=4,asym"
// CHECK: qopt.linear {{.*}} module "model.k_proj"
// CHECK: qopt.linear %{{.*}}, %{{.*}} module "lm_head" : (tensor<?x4xf32>, tensor<10x4xf32>)

// FP8 E4M3 per tensor on k_proj only: absmax over both dimensions.
// FP8: qopt.linear %arg0, %{{.*}} module "model.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>)
// FP8: linalg.reduce ins(%{{.*}} : tensor<2x8xf32>) {{.*}}dimensions = [0, 1]
// FP8: qopt.fake_quant %{{.*}} scale %{{.*}} format(#qopt.float<f8E4M3FN>) granularity(#qopt.per_tensor) {qopt.qat_spec = "fp8-e4m3"} : (tensor<2x8xf32>, tensor<f32>) -> tensor<2x8xf32>

// Convert: each weight fake-quant becomes the packed int8 weight (per
// channel), the float weights and the scale computations go.
// CONVERT-NOT: qopt.param @wq
// CONVERT-NOT: qopt.fake_quant
// CONVERT-NOT: linalg.reduce
// CONVERT-DAG: qopt.param @model.q_proj.weight : tensor<4x8xi8>
// CONVERT-DAG: qopt.param @model.k_proj.weight.scales : tensor<2xf32>
// CONVERT: qopt.linear %arg0, %{{.*}} module "model.q_proj" : (tensor<?x8xf32>, !qopt.qtensor<4x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>)

qopt.param @wq : tensor<4x8xf32> = dense<[[0.5, -1.0, 2.0, 0.0, 1.5, 0.25, -0.75, 3.0], [-2.0, 1.0, 0.5, 0.125, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0], [0.3, 0.6, 0.9, 1.2, 7.0, -7.0, 0.5, -0.5]]> : tensor<4x8xf32>
qopt.param @wk : tensor<2x8xf32> = dense<[[1.0, -0.5, 0.25, 2.0, -3.0, 0.0, 0.75, 1.25], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]> : tensor<2x8xf32>
qopt.param @head : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
qopt.param @emb : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
func.func @m(%x: tensor<?x8xf32>) -> (tensor<?x10xf32>, tensor<?x2xf32>, tensor<3x4xf32>) {
  %wq = qopt.load_param @wq : tensor<4x8xf32>
  %q = qopt.linear %x, %wq module "model.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %wk = qopt.load_param @wk : tensor<2x8xf32>
  %k = qopt.linear %x, %wk module "model.k_proj" : (tensor<?x8xf32>, tensor<2x8xf32>) -> tensor<?x2xf32>
  %wh = qopt.load_param @head : tensor<10x4xf32>
  %h = qopt.linear %q, %wh module "lm_head" : (tensor<?x4xf32>, tensor<10x4xf32>) -> tensor<?x10xf32>
  %e = qopt.load_param @emb : tensor<10x4xf32>
  %ids = arith.constant dense<[0, 1, 2]> : tensor<3xi64>
  %t = qopt.embedding %ids, %e : (tensor<3xi64>, tensor<10x4xf32>) -> tensor<3x4xf32>
  return %h, %k, %t : tensor<?x10xf32>, tensor<?x2xf32>, tensor<3x4xf32>
}
