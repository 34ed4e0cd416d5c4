// RUN: %python %S/smooth_stats.py %t.qstats
// RUN: qopt-opt %s --qopt-smooth="stats=%t.qstats" | FileCheck %s
// RUN: qopt-opt %s --qopt-smooth="stats=%t.qstats fold=false" | FileCheck %s --check-prefix=NOFOLD
// Numerics (the function is unchanged, s against numpy): test/e2e/outliers.test.

// Every layer's input absmax is [4, 1] and the weights' column absmax
// [1, 4], so alpha = 0.5 gives s = sqrt(4 / 1), sqrt(1 / 4) = [2, 0.5].
//
// q and k read the RMSNorm's output: its scale becomes gamma / s = [0.5, 2],
// their columns W · s (q: [[1, 4], [-1, 2]] -> [[2, 2], [-2, 1]]); no
// qopt.smooth is left for them.
// CHECK-LABEL: func.func @attention
// CHECK: %[[G2:.*]] = qopt.load_param @layers.0.input_norm.weight
// CHECK: %[[N:.*]] = qopt.rms_norm %{{.*}}, %[[G2]]
// CHECK: qopt.linear %[[N]], %{{.*}} module "layers.0.q"
// CHECK: qopt.linear %[[N]], %{{.*}} module "layers.0.k"
// An input only a function argument gives: an explicit qopt.smooth by a new
// scale parameter [2, 0.5].
// CHECK: %[[SC:.*]] = qopt.load_param @layers.0.o.smooth_scale
// CHECK: %[[SM:.*]] = qopt.smooth %{{.*}}, %[[SC]]
// CHECK: qopt.linear %[[SM]], %{{.*}} module "layers.0.o"
// CHECK-DAG: qopt.param @layers.0.input_norm.weight : tensor<2xf32> = dense_resource<[[G:[^>]*]]>
// CHECK-DAG: qopt.param @layers.0.q.weight : tensor<2x2xf32> = dense_resource<[[Q:[^>]*]]>
// CHECK-DAG: qopt.param @layers.0.k.weight : tensor<2x2xf32> = dense_resource<
// CHECK-DAG: qopt.param @layers.0.o.smooth_scale : tensor<2xf32> = dense_resource<[[S:[^>]*]]>
// CHECK-DAG: qopt.param @mlp.up.weight : tensor<2x2xf32> = dense_resource<[[U:[^>]*]]>
// LLaMA's MLP: down_proj's division folds into up_proj's rows (silu(gate) ·
// up is linear in up); gate and up read an argument: one qopt.smooth.
// CHECK: func.func @mlp
// CHECK-COUNT-1: qopt.smooth
// CHECK-NOT: qopt.smooth
// CHECK: qopt.linear %{{.*}} module "mlp.down"
// up's columns (s = [2, 0.5]: [[2, 0.5], [2, 0.5]]), then its rows over
// down's s: [[1, 0.25], [4, 1]].
// CHECK-DAG: [[G]]: "0x400000000000003F00000040"
// CHECK-DAG: [[Q]]: "0x400000000000004000000040000000C00000803F"
// CHECK-DAG: [[S]]: "0x40000000000000400000003F"
// CHECK-DAG: [[U]]: "0x400000000000803F0000803E000080400000803F"
// NOFOLD-LABEL: func.func @attention
// NOFOLD-COUNT-2: qopt.smooth
// NOFOLD-LABEL: func.func @mlp
// NOFOLD-COUNT-2: qopt.smooth
qopt.param @layers.0.input_norm.weight : tensor<2xf32> = dense<1.0> : tensor<2xf32>
qopt.param @layers.0.q.weight : tensor<2x2xf32> = dense<[[1.0, 4.0], [-1.0, 2.0]]> : tensor<2x2xf32>
qopt.param @layers.0.k.weight : tensor<2x2xf32> = dense<[[0.5, 1.0], [1.0, -1.0]]> : tensor<2x2xf32>
qopt.param @layers.0.o.weight : tensor<1x2xf32> = dense<[[1.0, 4.0]]> : tensor<1x2xf32>
func.func @attention(%x: tensor<?x2xf32>, %h: tensor<?x2xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x1xf32>) {
  %g = qopt.load_param @layers.0.input_norm.weight : tensor<2xf32>
  %n = qopt.rms_norm %x, %g : (tensor<?x2xf32>, tensor<2xf32>) -> tensor<?x2xf32>
  %wq = qopt.load_param @layers.0.q.weight : tensor<2x2xf32>
  %wk = qopt.load_param @layers.0.k.weight : tensor<2x2xf32>
  %wo = qopt.load_param @layers.0.o.weight : tensor<1x2xf32>
  %q = qopt.linear %n, %wq module "layers.0.q" : (tensor<?x2xf32>, tensor<2x2xf32>) -> tensor<?x2xf32>
  %k = qopt.linear %n, %wk module "layers.0.k" : (tensor<?x2xf32>, tensor<2x2xf32>) -> tensor<?x2xf32>
  %o = qopt.linear %h, %wo module "layers.0.o" : (tensor<?x2xf32>, tensor<1x2xf32>) -> tensor<?x1xf32>
  return %q, %k, %o : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x1xf32>
}

qopt.param @mlp.gate.weight : tensor<2x2xf32> = dense<[[1.0, 4.0], [0.5, 0.5]]> : tensor<2x2xf32>
qopt.param @mlp.up.weight : tensor<2x2xf32> = dense<[[1.0, 1.0], [1.0, 1.0]]> : tensor<2x2xf32>
qopt.param @mlp.down.weight : tensor<1x2xf32> = dense<[[1.0, 4.0]]> : tensor<1x2xf32>
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @mlp(%h: tensor<4x2xf32>) -> tensor<4x1xf32> {
  %wg = qopt.load_param @mlp.gate.weight : tensor<2x2xf32>
  %wu = qopt.load_param @mlp.up.weight : tensor<2x2xf32>
  %wd = qopt.load_param @mlp.down.weight : tensor<1x2xf32>
  %gate = qopt.linear %h, %wg module "mlp.gate" : (tensor<4x2xf32>, tensor<2x2xf32>) -> tensor<4x2xf32>
  %act = qopt.silu %gate : tensor<4x2xf32>
  %up = qopt.linear %h, %wu module "mlp.up" : (tensor<4x2xf32>, tensor<2x2xf32>) -> tensor<4x2xf32>
  %e = tensor.empty() : tensor<4x2xf32>
  %m = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%act, %up : tensor<4x2xf32>, tensor<4x2xf32>) outs(%e : tensor<4x2xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %p = arith.mulf %a, %b : f32
    linalg.yield %p : f32
  } -> tensor<4x2xf32>
  %y = qopt.linear %m, %wd module "mlp.down" : (tensor<4x2xf32>, tensor<1x2xf32>) -> tensor<4x1xf32>
  return %y : tensor<4x1xf32>
}
