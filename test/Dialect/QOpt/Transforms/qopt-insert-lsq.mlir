// RUN: qopt-opt %s --qopt-insert-lsq="weights=int4" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s
// RUN: qopt-opt %s --qopt-insert-lsq="weights=int4:group=4,asym target-modules=k_proj" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=ASYM
// RUN: qopt-opt %s --qopt-insert-lsq="weights=int4:group=4,asym peqa=true" --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=PEQA
// RUN: qopt-opt %s --qopt-insert-lsq="weights=int8" --qopt-convert-qat --mlir-elide-resource-strings-if-larger=1 | FileCheck %s --check-prefix=CONVERT
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=fp8-e4m3" 2>&1 | FileCheck %s --check-prefix=ERR-FP8
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=int4:group=3" 2>&1 | FileCheck %s --check-prefix=ERR-GROUP
// RUN: not qopt-opt %s --qopt-insert-lsq="weights=int4 target-modules=v_proj" 2>&1 | FileCheck %s --check-prefix=ERR-RUNTIME

// ERR-FP8: error: qopt-insert-lsq: weights 'fp8-e4m3': learned steps are for integer formats
// ERR-GROUP: error: qopt-insert-lsq: the weight of 'model.q_proj' has 8 input features, not a multiple of the group size 3
// ERR-RUNTIME: error: qopt-insert-lsq: the weight of 'model.v_proj' is not a parameter with data or a constant: the steps are initialised from its values

// LSQ: a trainable step per output channel, the gradient scale
// 1 / sqrt(8 · 7), the spec for qopt-convert-qat; v_proj (given at run
// time) and the head are left alone.
// CHECK-DAG: qopt.param trainable @model.q_proj.weight_step : tensor<4xf32>
// CHECK-DAG: qopt.param trainable @model.k_proj.weight_step : tensor<2xf32>
// CHECK: %[[S:.*]] = qopt.load_param @model.q_proj.weight_step : tensor<4xf32>
// CHECK: %[[W:.*]] = qopt.lsq %{{.*}} scale %[[S]] format(#qopt.int<4>) granularity(#qopt.per_channel<0>) grad_scale = 0.1336306{{[0-9]*}} {qopt.qat_spec = "int4"} : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>
// CHECK: qopt.linear %arg0, %[[W]] module "model.q_proj"
// CHECK: qopt.linear %arg0, %arg1 module "model.v_proj"

// LSQ+ (asym): steps and offsets per group of 4; gradient scale 1/sqrt(4·15).
// ASYM-DAG: qopt.param trainable @model.k_proj.weight_step : tensor<2x2xf32>
// ASYM-DAG: qopt.param trainable @model.k_proj.weight_offset : tensor<2x2xf32>
// ASYM: qopt.lsq %{{.*}} scale %{{.*}} zero_point %{{.*}} format(#qopt.int<4, unsigned, zero_point>) granularity(#qopt.per_group<axis = 1, size = 4>) grad_scale = 0.1290994{{[0-9]*}}

// The PEQA layout: the packed weight, its scales trainable, codes and zero points not.
// PEQA-DAG: qopt.param trainable @model.q_proj.weight.scales : tensor<4x2xf32>
// PEQA-DAG: qopt.param @model.q_proj.weight.zero_points : tensor<4x2xi8>
// PEQA-DAG: qopt.param @model.q_proj.weight : tensor<4x4xi8>
// PEQA: qopt.linear %arg0, %{{.*}} module "model.q_proj" : (tensor<3x8xf32>, !qopt.qtensor<4x8, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 4>, scales = f32>)

// Convert: packed on the steps, which leave with the float weight.
// CONVERT-NOT: weight_step
// CONVERT-NOT: qopt.lsq
// CONVERT-DAG: qopt.param @model.q_proj.weight.scales : tensor<4xf32>
// CONVERT-DAG: qopt.param @model.q_proj.weight : tensor<4x8xi8>

qopt.param @wq : tensor<4x8xf32> = dense<[[0.5, -1.0, 2.0, 0.0, 1.5, 0.25, -0.75, 3.0], [-2.0, 1.0, 0.5, 0.125, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0], [0.3, 0.6, 0.9, 1.2, 7.0, -7.0, 0.5, -0.5]]> : tensor<4x8xf32>
qopt.param @wk : tensor<2x8xf32> = dense<[[1.0, -0.5, 0.25, 2.0, -3.0, 0.0, 0.75, 1.25], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]> : tensor<2x8xf32>
qopt.param @head : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
qopt.param @emb : tensor<10x4xf32> = dense<1.0> : tensor<10x4xf32>
func.func @m(%x: tensor<3x8xf32>, %wv: tensor<4x8xf32>) -> (tensor<3x10xf32>, tensor<3x2xf32>, tensor<3x4xf32>, tensor<3x4xf32>) {
  %wq = qopt.load_param @wq : tensor<4x8xf32>
  %q = qopt.linear %x, %wq module "model.q_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  %wk = qopt.load_param @wk : tensor<2x8xf32>
  %k = qopt.linear %x, %wk module "model.k_proj" : (tensor<3x8xf32>, tensor<2x8xf32>) -> tensor<3x2xf32>
  %v = qopt.linear %x, %wv module "model.v_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  %wh = qopt.load_param @head : tensor<10x4xf32>
  %h = qopt.linear %q, %wh module "lm_head" : (tensor<3x4xf32>, tensor<10x4xf32>) -> tensor<3x10xf32>
  %e = qopt.load_param @emb : tensor<10x4xf32>
  %ids = arith.constant dense<[0, 1, 2]> : tensor<3xi64>
  %t = qopt.embedding %ids, %e : (tensor<3xi64>, tensor<10x4xf32>) -> tensor<3x4xf32>
  return %h, %k, %t, %v : tensor<3x10xf32>, tensor<3x2xf32>, tensor<3x4xf32>, tensor<3x4xf32>
}
