// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas | FileCheck %s

// A [batch, seq, k] activation times a transposed 2-D weight: M = seq, one
// outer loop (batch), B read through its strides (n, k order).
// CHECK-LABEL: func.func @linear
// CHECK-SAME: (%[[X:.*]]: memref<?x?x16xf32>, %[[W:.*]]: memref<32x16xf32>, %[[Y:.*]]: memref<?x?x32xf32>)
// CHECK: %[[C0:.*]] = arith.constant 0 : index
// CHECK: %[[C1:.*]] = arith.constant 1 : index
// CHECK: %[[B:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x?x16xf32>
// CHECK: %[[S:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x?x16xf32>
// CHECK: %{{.*}}, %[[XOFF:.*]], %{{.*}}:3, %[[XS:.*]]:3 = memref.extract_strided_metadata %[[X]]
// CHECK: %[[XP:.*]] = memref.extract_aligned_pointer_as_index %[[X]]
// CHECK: %{{.*}}, %[[WOFF:.*]], %{{.*}}:2, %[[WS:.*]]:2 = memref.extract_strided_metadata %[[W]]
// CHECK: %[[WP:.*]] = memref.extract_aligned_pointer_as_index %[[W]]
// CHECK: %{{.*}}, %[[YOFF:.*]], %{{.*}}:3, %[[YS:.*]]:3 = memref.extract_strided_metadata %[[Y]]
// CHECK: %[[YP:.*]] = memref.extract_aligned_pointer_as_index %[[Y]]
// CHECK: call @qopt_kernel_sgemm(%[[C1]], %[[B]], %[[S]], %{{.*}}, %{{.*}}, %[[XP]], %[[XOFF]], %[[C0]], %[[XS]]#0, %[[XS]]#1, %[[XS]]#2, %[[WP]], %[[WOFF]], %[[C0]], %[[C0]], %[[WS]]#1, %[[WS]]#0, %[[YP]], %[[YOFF]], %[[C0]], %[[YS]]#0, %[[YS]]#1, %[[YS]]#2)
// CHECK-NOT: linalg.generic
// CHECK: func.func private @qopt_kernel_sgemm(index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index)
#x = affine_map<(b, m, n, k) -> (b, m, k)>
#w = affine_map<(b, m, n, k) -> (n, k)>
#y = affine_map<(b, m, n, k) -> (b, m, n)>
func.func @linear(%x: memref<?x?x16xf32>, %w: memref<32x16xf32>, %y: memref<?x?x32xf32>) {
  linalg.generic {indexing_maps = [#x, #w, #y],
                  iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x?x16xf32>, memref<32x16xf32>) outs(%y : memref<?x?x32xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// A weight gradient, dW[k, n] = sum over batch and sequence of
// X[b, s, k] * dY[b, s, n]: K is the sequence, the batch an outer loop
// that C does not move along (stride 0: the kernel accumulates, or folds it
// into K where A and B are contiguous).
// CHECK-LABEL: func.func @weight_gradient
// CHECK-SAME: (%[[X:.*]]: memref<?x?x16xf32>, %[[DY:.*]]: memref<?x?x32xf32>, %[[DW:.*]]: memref<16x32xf32>)
// CHECK: %[[C0:.*]] = arith.constant 0 : index
// CHECK: %[[C1:.*]] = arith.constant 1 : index
// CHECK: %[[B:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x?x16xf32>
// CHECK: %[[S:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x?x16xf32>
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}:3, %[[XS:.*]]:3 = memref.extract_strided_metadata %[[X]]
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}:3, %[[YS:.*]]:3 = memref.extract_strided_metadata %[[DY]]
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}:2, %[[WS:.*]]:2 = memref.extract_strided_metadata %[[DW]]
// CHECK: call @qopt_kernel_sgemm(%[[C1]], %[[B]], %{{.*}}, %{{.*}}, %[[S]], %{{.*}}, %{{.*}}, %[[C0]], %[[XS]]#0, %[[XS]]#2, %[[XS]]#1, %{{.*}}, %{{.*}}, %[[C0]], %[[YS]]#0, %[[YS]]#1, %[[YS]]#2, %{{.*}}, %{{.*}}, %[[C0]], %[[C0]], %[[WS]]#0, %[[WS]]#1)
#gx = affine_map<(b, s, k, n) -> (b, s, k)>
#gy = affine_map<(b, s, k, n) -> (b, s, n)>
#gw = affine_map<(b, s, k, n) -> (k, n)>
func.func @weight_gradient(%x: memref<?x?x16xf32>, %dy: memref<?x?x32xf32>, %dw: memref<16x32xf32>) {
  linalg.generic {indexing_maps = [#gx, #gy, #gw],
                  iterator_types = ["reduction", "reduction", "parallel", "parallel"]}
      ins(%x, %dy : memref<?x?x16xf32>, memref<?x?x32xf32>) outs(%dw : memref<16x32xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Named products are handled too.
// CHECK-LABEL: func.func @named
// CHECK: call @qopt_kernel_sgemm
// CHECK: call @qopt_kernel_sgemm
// CHECK-NOT: linalg.
func.func @named(%a: memref<4x8xf32>, %b: memref<8x5xf32>, %c: memref<4x5xf32>,
                 %ba: memref<3x4x8xf32>, %bb: memref<3x8x5xf32>, %bc: memref<3x4x5xf32>) {
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x5xf32>) outs(%c : memref<4x5xf32>)
  linalg.batch_matmul ins(%ba, %bb : memref<3x4x8xf32>, memref<3x8x5xf32>) outs(%bc : memref<3x4x5xf32>)
  return
}

// -----

// Left alone: other element types, bodies that are not a multiply-add,
// tensors (before bufferization).
// CHECK-LABEL: func.func @not_products
// CHECK-NOT: call @qopt_kernel_sgemm
// CHECK: linalg.matmul
// CHECK: linalg.generic
// CHECK: linalg.matmul
func.func @not_products(%a: memref<4x8xi32>, %b: memref<8x5xi32>, %c: memref<4x5xi32>,
                        %fa: memref<4x8xf32>, %fb: memref<8x5xf32>, %fc: memref<4x5xf32>,
                        %ta: tensor<4x8xf32>, %tb: tensor<8x5xf32>, %tc: tensor<4x5xf32>) -> tensor<4x5xf32> {
  linalg.matmul ins(%a, %b : memref<4x8xi32>, memref<8x5xi32>) outs(%c : memref<4x5xi32>)
  linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (k, n)>, affine_map<(m, n, k) -> (m, n)>],
                  iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%fa, %fb : memref<4x8xf32>, memref<8x5xf32>) outs(%fc : memref<4x5xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %m = arith.maximumf %acc, %p : f32
    linalg.yield %m : f32
  }
  %r = linalg.matmul ins(%ta, %tb : tensor<4x8xf32>, tensor<8x5xf32>) outs(%tc : tensor<4x5xf32>) -> tensor<4x5xf32>
  return %r : tensor<4x5xf32>
}
