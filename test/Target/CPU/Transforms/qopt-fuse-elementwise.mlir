// RUN: qopt-opt %s -split-input-file --qopt-fuse-elementwise | FileCheck %s

#id = affine_map<(d0, d1) -> (d0, d1)>
#t = affine_map<(d0, d1) -> (d1, d0)>

// An elementwise chain becomes one loop nest.
// CHECK-LABEL: func.func @chain
// CHECK: linalg.generic
// CHECK: math.exp
// CHECK: arith.mulf
// CHECK-NOT: linalg.generic
func.func @chain(%a: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %0 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%x: f32, %o: f32):
    %y = math.exp %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8xf32>
  %1 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%0, %a : tensor<4x8xf32>, tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %z = arith.mulf %x, %y : f32
    linalg.yield %z : f32
  } -> tensor<4x8xf32>
  return %1 : tensor<4x8xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>

// A computed operand of a matrix product stays materialized (fusing it
// would compute it once per column); a transposed weight folds into the
// product's indexing map.
// CHECK-LABEL: func.func @product
// CHECK: %[[G:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]
// CHECK: math.tanh
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[WT:.*]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[G]], %{{.*}} : tensor<4x8xf32>, tensor<5x8xf32>)
// CHECK-NOT: linalg.transpose
func.func @product(%a: tensor<4x8xf32>, %w: tensor<5x8xf32>, %acc: tensor<4x5xf32>) -> tensor<4x5xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %act = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%x: f32, %o: f32):
    %y = math.tanh %x : f32
    linalg.yield %y : f32
  } -> tensor<4x8xf32>
  %et = tensor.empty() : tensor<8x5xf32>
  %wt = linalg.transpose ins(%w : tensor<5x8xf32>) outs(%et : tensor<8x5xf32>) permutation = [1, 0]
  %r = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (k, n)>, affine_map<(m, n, k) -> (m, n)>],
                       iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%act, %wt : tensor<4x8xf32>, tensor<8x5xf32>) outs(%acc : tensor<4x5xf32>) {
  ^bb0(%x: f32, %y: f32, %c: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  } -> tensor<4x5xf32>
  return %r : tensor<4x5xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#bc = affine_map<(d0, d1) -> (d1)>

// A residual added to a product with a bias: the product starts from
// bias + residual (one elementwise nest, the broadcast fused into it) and
// the sum after it is gone.
// CHECK-LABEL: func.func @residual_into_accumulator
// CHECK-SAME: (%[[X:.*]]: tensor<4x8xf32>, %[[W:.*]]: tensor<8x5xf32>, %[[B:.*]]: tensor<5xf32>, %[[R:.*]]: tensor<4x5xf32>)
// CHECK: %[[INIT:.*]] = linalg.generic {{.*}} ins(%[[B]], %[[R]] : tensor<5xf32>, tensor<4x5xf32>)
// CHECK: arith.addf
// CHECK: %[[P:.*]] = linalg.matmul ins(%[[X]], %[[W]] : {{.*}}) outs(%[[INIT]] : tensor<4x5xf32>)
// CHECK-NOT: linalg.generic
// CHECK: return %[[P]]
func.func @residual_into_accumulator(%x: tensor<4x8xf32>, %w: tensor<8x5xf32>, %b: tensor<5xf32>, %r: tensor<4x5xf32>) -> tensor<4x5xf32> {
  %e = tensor.empty() : tensor<4x5xf32>
  %init = linalg.generic {indexing_maps = [#bc, #id], iterator_types = ["parallel", "parallel"]}
      ins(%b : tensor<5xf32>) outs(%e : tensor<4x5xf32>) {
  ^bb0(%v: f32, %o: f32):
    linalg.yield %v : f32
  } -> tensor<4x5xf32>
  %p = linalg.matmul ins(%x, %w : tensor<4x8xf32>, tensor<8x5xf32>) outs(%init : tensor<4x5xf32>) -> tensor<4x5xf32>
  %s = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%r, %p : tensor<4x5xf32>, tensor<4x5xf32>) outs(%e : tensor<4x5xf32>) {
  ^bb0(%u: f32, %v: f32, %o: f32):
    %z = arith.addf %u, %v : f32
    linalg.yield %z : f32
  } -> tensor<4x5xf32>
  return %s : tensor<4x5xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>

// A zero-filled accumulator is replaced by the addend, here computed after
// the product (the product moves down to the sum). Two products summed (a
// LoRA branch): the second starts from the first.
// CHECK-LABEL: func.func @zero_accumulator
// CHECK: %[[R:.*]] = arith.addf
// CHECK: %[[P:.*]] = linalg.matmul {{.*}} outs(%[[R]] : tensor<4x5xf32>)
// CHECK: %[[Q:.*]] = linalg.matmul {{.*}} outs(%[[P]] : tensor<4x5xf32>)
// CHECK-NOT: linalg.generic
// CHECK: return %[[Q]]
func.func @zero_accumulator(%x: tensor<4x8xf32>, %w: tensor<8x5xf32>, %v: tensor<8x5xf32>, %r0: tensor<4x5xf32>) -> tensor<4x5xf32> {
  %c = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x5xf32>
  %init = linalg.fill ins(%c : f32) outs(%e : tensor<4x5xf32>) -> tensor<4x5xf32>
  %p = linalg.matmul ins(%x, %w : tensor<4x8xf32>, tensor<8x5xf32>) outs(%init : tensor<4x5xf32>) -> tensor<4x5xf32>
  %q = linalg.matmul ins(%x, %v : tensor<4x8xf32>, tensor<8x5xf32>) outs(%init : tensor<4x5xf32>) -> tensor<4x5xf32>
  %r = arith.addf %r0, %r0 : tensor<4x5xf32>
  %s = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%p, %r : tensor<4x5xf32>, tensor<4x5xf32>) outs(%e : tensor<4x5xf32>) {
  ^bb0(%u: f32, %t: f32, %o: f32):
    %z = arith.addf %t, %u : f32
    linalg.yield %z : f32
  } -> tensor<4x5xf32>
  %t = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%s, %q : tensor<4x5xf32>, tensor<4x5xf32>) outs(%e : tensor<4x5xf32>) {
  ^bb0(%u: f32, %t: f32, %o: f32):
    %z = arith.addf %u, %t : f32
    linalg.yield %z : f32
  } -> tensor<4x5xf32>
  return %t : tensor<4x5xf32>
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>

// Not folded: a product read twice (its value is needed alone), a
// difference, and a contraction whose body negates its sum (upstream's
// contraction check admits it; another start would change its result).
// CHECK-LABEL: func.func @not_folded
// CHECK: %[[P:.*]] = linalg.matmul
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[P]] :
// CHECK: arith.addf
// CHECK: %[[Q:.*]] = linalg.matmul
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[Q]] :
// CHECK: arith.subf
// CHECK: %[[N:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
// CHECK: arith.negf
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[N]] :
// CHECK: arith.addf
func.func @not_folded(%x: tensor<4x8xf32>, %w: tensor<8x5xf32>, %r: tensor<4x5xf32>) -> (tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>) {
  %c = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x5xf32>
  %init = linalg.fill ins(%c : f32) outs(%e : tensor<4x5xf32>) -> tensor<4x5xf32>
  %p = linalg.matmul ins(%x, %w : tensor<4x8xf32>, tensor<8x5xf32>) outs(%init : tensor<4x5xf32>) -> tensor<4x5xf32>
  %s = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%r, %p : tensor<4x5xf32>, tensor<4x5xf32>) outs(%e : tensor<4x5xf32>) {
  ^bb0(%u: f32, %v: f32, %o: f32):
    %z = arith.addf %u, %v : f32
    linalg.yield %z : f32
  } -> tensor<4x5xf32>
  %q = linalg.matmul ins(%x, %w : tensor<4x8xf32>, tensor<8x5xf32>) outs(%init : tensor<4x5xf32>) -> tensor<4x5xf32>
  %d = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%r, %q : tensor<4x5xf32>, tensor<4x5xf32>) outs(%e : tensor<4x5xf32>) {
  ^bb0(%u: f32, %v: f32, %o: f32):
    %z = arith.subf %u, %v : f32
    linalg.yield %z : f32
  } -> tensor<4x5xf32>
  %n = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (k, n)>, affine_map<(m, n, k) -> (m, n)>],
                       iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : tensor<4x8xf32>, tensor<8x5xf32>) outs(%init : tensor<4x5xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %t = arith.addf %acc, %m : f32
    %u = arith.negf %t : f32
    linalg.yield %u : f32
  } -> tensor<4x5xf32>
  %ns = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%r, %n : tensor<4x5xf32>, tensor<4x5xf32>) outs(%e : tensor<4x5xf32>) {
  ^bb0(%u: f32, %v: f32, %o: f32):
    %z = arith.addf %u, %v : f32
    linalg.yield %z : f32
  } -> tensor<4x5xf32>
  return %s, %p, %d, %ns : tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>, tensor<4x5xf32>
}
