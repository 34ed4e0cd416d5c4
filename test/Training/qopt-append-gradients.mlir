// RUN: qopt-opt %s --qopt-append-gradients -split-input-file | FileCheck %s

// A linear layer's adjoints are multiply-add contractions again (what the
// BLAS lowering calls); the frozen weight gets none, and the gradients are
// named after the arguments.
// CHECK-LABEL: func.func @linear
// CHECK-SAME: -> (tensor<f32>, tensor<4x3xf32> {qopt.name = "grad.w"})
func.func @linear(%x: tensor<5x4xf32>, %w: tensor<4x3xf32> {qopt.trainable, qopt.param = "w"},
                  %frozen: tensor<3xf32>) -> tensor<f32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<5x3xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<5x3xf32>) -> tensor<5x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<5x4xf32>, tensor<4x3xf32>) outs(%f : tensor<5x3xf32>) -> tensor<5x3xf32>
  %e0 = tensor.empty() : tensor<f32>
  %f0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<f32>) -> tensor<f32>
  %l = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (j)>, affine_map<(i, j) -> ()>],
      iterator_types = ["reduction", "reduction"]} ins(%y, %frozen : tensor<5x3xf32>, tensor<3xf32>) outs(%f0 : tensor<f32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %o, %m : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %l : tensor<f32>
}
// dL/dy[i, j] = frozen[j]: one parallel generic over the loss's loops.
// CHECK: %[[DY:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]} ins(%{{.*}}, %{{.*}} : tensor<f32>, tensor<3xf32>)
// dL/dw = xᵀ·dy: i is the reduction, the body a multiply-add.
// CHECK: %[[DW:.*]] = linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}, #{{.*}}], iterator_types = ["reduction", "parallel", "parallel"]} ins(%[[DY]], %arg0 : tensor<5x3xf32>, tensor<5x4xf32>)
// CHECK-NEXT: ^bb0(%[[A:.*]]: f32, %[[B:.*]]: f32, %[[ACC:.*]]: f32):
// CHECK-NEXT: %[[M:.*]] = arith.mulf %[[A]], %[[B]] : f32
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[ACC]], %[[M]] : f32
// CHECK-NEXT: linalg.yield %[[S]]
// CHECK: return %{{.*}}, %[[DW]] : tensor<f32>, tensor<4x3xf32>

// -----

// No trainable argument: the function is left alone.
// CHECK-LABEL: func.func @frozen
// CHECK-SAME: -> tensor<f32>
func.func @frozen(%x: tensor<f32>) -> tensor<f32> {
  return %x : tensor<f32>
}

// -----

// The loss does not depend on the trainable argument: its gradient is zero.
// CHECK-LABEL: func.func @unused
// CHECK: %[[Z:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<3xf32>)
// CHECK: return %{{.*}}, %[[Z]]
func.func @unused(%x: tensor<f32>, %w: tensor<3xf32> {qopt.trainable}) -> tensor<f32> {
  return %x : tensor<f32>
}

// -----

// A weight computed from parameters alone (a dequantized weight, marked
// qopt.recompute) is computed again where the backward pass needs it, so
// the forward's float copy need not stay alive; the copy is marked apart so
// that CSE keeps it.
// CHECK-LABEL: func.func @recompute
// CHECK: %[[W:.*]] = linalg.generic {{.*}} ins(%arg1 : tensor<4x3xi8>)
// CHECK: } -> tensor<4x3xf32>
// CHECK: %[[Y:.*]] = linalg.matmul ins(%arg0, %[[W]]
// CHECK: %[[W2:.*]] = linalg.generic {{.*}} ins(%arg1 : tensor<4x3xi8>) outs(%{{.*}} : tensor<4x3xf32>) attrs = {qopt.recompute = "backward"}
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[W2]] : tensor<5x3xf32>, tensor<4x3xf32>)
func.func @recompute(%x: tensor<5x4xf32> {qopt.trainable}, %codes: tensor<4x3xi8>) -> tensor<f32> {
  %z = arith.constant 0.0 : f32
  %ew = tensor.empty() : tensor<4x3xf32>
  %w = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}
      ins(%codes : tensor<4x3xi8>) outs(%ew : tensor<4x3xf32>) attrs = {qopt.recompute} {
  ^bb0(%c: i8, %o: f32):
    %f = arith.sitofp %c : i8 to f32
    linalg.yield %f : f32
  } -> tensor<4x3xf32>
  %e = tensor.empty() : tensor<5x3xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<5x3xf32>) -> tensor<5x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<5x4xf32>, tensor<4x3xf32>) outs(%f : tensor<5x3xf32>) -> tensor<5x3xf32>
  %e0 = tensor.empty() : tensor<f32>
  %f0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<f32>) -> tensor<f32>
  %l = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> ()>], iterator_types = ["reduction", "reduction"]}
      ins(%y : tensor<5x3xf32>) outs(%f0 : tensor<f32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %o, %a : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %l : tensor<f32>
}

// -----

// qopt.attention kept whole (the CUDA target's train step) differentiates
// into one qopt.attention_grad with the forward's attributes, the scale
// made explicit, its output and the output's adjoint; the key, which
// depends on no trainable argument, gets no gradient from it.
// CHECK-LABEL: func.func @attention
// CHECK: %[[Y:.*]] = qopt.attention %arg0, %arg1, %arg2 mask(%arg3) causal softcap = 5.000000e+01
// CHECK: %[[DQ:.*]], %{{.*}}, %[[DV:.*]] = qopt.attention_grad %arg0, %arg1, %arg2 mask(%arg3) output(%[[Y]], %{{.*}}) causal scale = 0.3535533905932737{{[0-9]*}} softcap = 5.000000e+01
// CHECK: return %{{.*}}, %[[DQ]], %[[DV]] :
func.func @attention(%q: tensor<1x4x3x8xf32> {qopt.trainable, qopt.param = "q"}, %k: tensor<1x2x3x8xf32>,
                     %v: tensor<1x2x3x8xf32> {qopt.trainable, qopt.param = "v"}, %m: tensor<1x1x3x3xf32>) -> tensor<f32> {
  %y = qopt.attention %q, %k, %v mask(%m) causal softcap = 50.0 : (tensor<1x4x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x1x3x3xf32>) -> tensor<1x4x3x8xf32>
  %z = arith.constant 0.0 : f32
  %e0 = tensor.empty() : tensor<f32>
  %f0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<f32>) -> tensor<f32>
  %l = linalg.generic {indexing_maps = [affine_map<(a, b, c, d) -> (a, b, c, d)>, affine_map<(a, b, c, d) -> ()>],
      iterator_types = ["reduction", "reduction", "reduction", "reduction"]} ins(%y : tensor<1x4x3x8xf32>) outs(%f0 : tensor<f32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %o, %a : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %l : tensor<f32>
}

// -----

// Norms kept whole (the CUDA target's train step) differentiate into one
// qopt.norm_grad each with the forward's epsilon (and `layer`); gamma's
// gradient is used where gamma is trainable, beta's where beta is.
// CHECK-LABEL: func.func @norms
// CHECK: %[[H:.*]] = qopt.rms_norm %arg0, %arg1 :
// CHECK: qopt.layer_norm %[[H]], %arg1, %arg2 :
// CHECK: %[[DH:.*]], %[[DG2:.*]], %[[DB:.*]] = qopt.norm_grad %[[H]], %arg1, %{{.*}} layer epsilon = 1.000000e-05
// CHECK: %[[DX:.*]], %[[DG1:.*]], %{{.*}} = qopt.norm_grad %arg0, %arg1, %[[DH]] epsilon = 9.9999999999999995E-7
// CHECK: %[[DG:.*]] = linalg.generic {{.*}} ins(%[[DG2]], %[[DG1]] :
// CHECK: return %{{.*}}, %[[DX]], %[[DG]], %[[DB]] :
func.func @norms(%x: tensor<3x8xf32> {qopt.trainable, qopt.param = "x"}, %g: tensor<8xf32> {qopt.trainable, qopt.param = "g"},
                 %b: tensor<8xf32> {qopt.trainable, qopt.param = "b"}) -> tensor<f32> {
  %h = qopt.rms_norm %x, %g : (tensor<3x8xf32>, tensor<8xf32>) -> tensor<3x8xf32>
  %y = qopt.layer_norm %h, %g, %b : (tensor<3x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<3x8xf32>
  %z = arith.constant 0.0 : f32
  %e0 = tensor.empty() : tensor<f32>
  %f0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<f32>) -> tensor<f32>
  %l = linalg.generic {indexing_maps = [affine_map<(a, b) -> (a, b)>, affine_map<(a, b) -> ()>],
      iterator_types = ["reduction", "reduction"]} ins(%y : tensor<3x8xf32>) outs(%f0 : tensor<f32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %o, %a : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %l : tensor<f32>
}
