// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas | FileCheck %s
// The CUDA target's form: only quantized products the CUDA library takes
// become calls (of the entry named); f32 products stay loop nests.
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas=cuda-qlinear=qopt_cuda_qlinear | FileCheck %s --check-prefix=CUDA
// With cuda-sgemm too (what the CUDA target runs): the other products call
// the CUDA GEMM, with qopt_kernel_sgemm's arguments, unless they read a
// constant (host memory).
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-sgemm=qopt_cuda_sgemm" | FileCheck %s --check-prefix=GEMM
// With cuda-matmul-precision=medium: the f32 products call the entry named
// (the pipeline names the tensor-core one); the quantized calls set flag
// 64, except on per-token codes (the W8A8 GEMM is integer); `high`: 128.
// Another value is an error naming it.
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-sgemm=qopt_cuda_sgemm_bf16 cuda-matmul-precision=medium" | FileCheck %s --check-prefix=BF16
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-sgemm=qopt_cuda_sgemm_tf32 cuda-matmul-precision=high" | FileCheck %s --check-prefix=TF32
// RUN: not qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-matmul-precision=low" 2>&1 | FileCheck %s --check-prefix=BADPRECISION
// BADPRECISION: error: qopt-linalg-to-blas: cuda-matmul-precision=low: unknown precision (highest, high or medium)

// A [batch, seq, k] activation times a transposed 2-D weight: M = seq, one
// outer loop (batch), B read through its strides (n, k order).
// CHECK-LABEL: func.func @linear
// CUDA-LABEL: func.func @linear
// CUDA-NOT: call
// CUDA: linalg.generic
// TF32-LABEL: func.func @linear
// TF32: call @qopt_cuda_sgemm_tf32(
// BF16-LABEL: func.func @linear
// BF16: call @qopt_cuda_sgemm_bf16(
// GEMM-LABEL: func.func @linear
// GEMM-NOT: linalg.generic
// GEMM: call @qopt_cuda_sgemm(%c1{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %intptr
// GEMM-NOT: linalg.generic
// GEMM: func.func private @qopt_cuda_sgemm(index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index)
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

// -----

// A product with a quantized weight expanded just for it (int4 in groups of
// 32 along K): one qopt_kernel_qlinear call on the codes and scales (format
// 0, group 32, no flags); the expansion and its buffer go. [batch, seq, k]
// activations: the outer loop is the batch.
// CHECK-LABEL: func.func @quantized_int4
// CUDA-LABEL: func.func @quantized_int4
// TF32-LABEL: func.func @quantized_int4
// TF32: call @qopt_cuda_qlinear(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c128{{[_0-9]*}}, %c1{{[_0-9]*}},
// BF16-LABEL: func.func @quantized_int4
// BF16: call @qopt_cuda_qlinear(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c64{{[_0-9]*}}, %c1{{[_0-9]*}},
// GEMM-LABEL: func.func @quantized_int4
// GEMM-NOT: qopt_cuda_sgemm
// GEMM: call @qopt_cuda_qlinear(
// GEMM-NOT: qopt_cuda_sgemm
// CUDA-NOT: linalg.generic
// CUDA: call @qopt_cuda_qlinear(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c0{{[_0-9]*}}, %c1{{[_0-9]*}},
// CUDA: func.func private @qopt_cuda_qlinear(index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index)
// CHECK-SAME: (%[[X:.*]]: memref<?x?x64xf32>, %[[D:.*]]: memref<8x32xi8>, %[[S:.*]]: memref<8x2xf32>, %[[Y:.*]]: memref<?x?x8xf32>)
// CHECK-NOT: memref.alloc
// CHECK-NOT: linalg.generic
// CHECK: %{{.*}}, %[[DO:.*]], %{{.*}}:2, %[[DS:.*]]:2 = memref.extract_strided_metadata %[[D]]
// CHECK: %[[DP:.*]] = memref.extract_aligned_pointer_as_index %[[D]]
// CHECK: %{{.*}}, %[[SO:.*]], %{{.*}}:2, %[[SS:.*]]:2 = memref.extract_strided_metadata %[[S]]
// CHECK: %[[SP:.*]] = memref.extract_aligned_pointer_as_index %[[S]]
// CHECK: call @qopt_kernel_qlinear(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c0{{[_0-9]*}}, %c1{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[DP]], %[[DO]], %[[DS]]#0, %[[SP]], %[[SO]], %[[SS]]#0, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}})
// CHECK-NOT: memref.dealloc
// CHECK: func.func private @qopt_kernel_qlinear(index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index)
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
func.func @quantized_int4(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>, %y: memref<?x?x8xf32>) {
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%y : memref<?x?x8xf32>)
  memref.dealloc %w : memref<8x64xf32>
  return
}

// -----

// FP8 E4M3 with one scale for the tensor (a rank-0 buffer: row stride 0)
// and E5M2 per channel: formats 5 and 6, group K.
// CHECK-LABEL: func.func @quantized_fp8
// The CUDA library reads FP8 codes too (the per-tensor scale with row
// stride 0).
// CUDA-LABEL: func.func @quantized_fp8
// CUDA-NOT: linalg.generic
// CUDA: %[[SP:.*]] = memref.extract_aligned_pointer_as_index %{{.*}} : memref<f32>
// CUDA: call @qopt_cuda_qlinear(%c5{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}}, {{.*}}, %[[SP]], %{{.*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}},
// CUDA: call @qopt_cuda_qlinear(%c6{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// GEMM-LABEL: func.func @quantized_fp8
// GEMM-NOT: linalg.generic
// GEMM: call @qopt_cuda_qlinear(%c5
// GEMM: call @qopt_cuda_qlinear(%c6
// GEMM-NOT: call
// GEMM: return
// CHECK-NOT: linalg.generic
// CHECK: %[[SP:.*]] = memref.extract_aligned_pointer_as_index %{{.*}} : memref<f32>
// CHECK: call @qopt_kernel_qlinear(%c5{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}}, {{.*}}, %[[SP]], %{{.*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}},
// CHECK: call @qopt_kernel_qlinear(%c6{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// CHECK-NOT: qopt_kernel_sgemm
!e4m3 = !qopt.qtensor<8x64, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>
!e5m2 = !qopt.qtensor<8x64, #qopt.float<f8E5M2>, #qopt.per_channel<0>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#xm = affine_map<(m, n, k) -> (m, k)>
#wm = affine_map<(m, n, k) -> (n, k)>
#ym = affine_map<(m, n, k) -> (m, n)>
func.func @quantized_fp8(%x: memref<3x64xf32>, %d: memref<8x64xi8>, %s: memref<f32>, %sc: memref<8xf32>, %y: memref<3x8xf32>) {
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#ident, affine_map<(n, k) -> ()>, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x64xi8>, memref<f32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !e4m3} {
  ^bb0(%c: i8, %scale: f32, %o: f32):
    linalg.yield %scale : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w : memref<3x64xf32>, memref<8x64xf32>) outs(%y : memref<3x8xf32>)
  memref.dealloc %w : memref<8x64xf32>
  %w2 = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#ident, affine_map<(n, k) -> (n)>, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %sc : memref<8x64xi8>, memref<8xf32>) outs(%w2 : memref<8x64xf32>) attrs = {qopt.dequantized = !e5m2} {
  ^bb0(%c: i8, %scale: f32, %o: f32):
    linalg.yield %scale : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w2 : memref<3x64xf32>, memref<8x64xf32>) outs(%y : memref<3x8xf32>)
  memref.dealloc %w2 : memref<8x64xf32>
  return
}

// -----

// NF4 in blocks of 64 of the flattened weight (whole rows: K = 128, two
// scales per row, flat) with double-quantized scales expanded before it:
// that buffer is freed after the call, which now reads it; format 4,
// group 64, the scales' row stride 2. Another product reads the same
// buffer after an overwrite by the next layer's expansion (bufferization
// reuses it), with int8 activations (flags 2).
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas=int8-activations | FileCheck %s --check-prefix=INT8
// CHECK-LABEL: func.func @quantized_nf4
// CHECK: %[[SCALES:.*]] = memref.alloc() : memref<8xf32>
// CHECK: linalg.generic
// CHECK-SAME: qopt.dequantized = !qopt.qtensor<8, #qopt.int<8>
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}, %[[SS:.*]] = memref.extract_strided_metadata %[[SCALES]]
// CHECK: %[[ROW:.*]] = arith.muli %[[SS]], %{{.*}} : index
// CHECK: call @qopt_kernel_qlinear(%c4{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}}, {{.*}}, %[[ROW]],
// CHECK-NEXT: memref.dealloc %[[SCALES]]
// CHECK: call @qopt_kernel_qlinear
// CHECK-NOT: linalg.generic
// CHECK: return
// INT8-LABEL: func.func @quantized_nf4
// CUDA-LABEL: func.func @quantized_nf4
// CUDA: call @qopt_cuda_qlinear(%c4{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// CUDA: call @qopt_cuda_qlinear(%c4{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// INT8: call @qopt_kernel_qlinear(%c4{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2{{[_0-9]*}},
!nf4 = !qopt.qtensor<4x128, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<8, #qopt.int<8>, #qopt.per_tensor, scales = f32>>
!nested = !qopt.qtensor<8, #qopt.int<8>, #qopt.per_tensor, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#xm = affine_map<(m, n, k) -> (m, k)>
#wm = affine_map<(m, n, k) -> (n, k)>
#ym = affine_map<(m, n, k) -> (m, n)>
func.func @quantized_nf4(%x: memref<3x128xf32>, %d: memref<4x64xi8>, %nd: memref<8xi8>, %d2: memref<4x64xi8>, %y: memref<3x4xf32>, %y2: memref<3x4xf32>) {
  %s = memref.alloc() : memref<8xf32>
  linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]}
      ins(%nd : memref<8xi8>) outs(%s : memref<8xf32>) attrs = {qopt.dequantized = !nested} {
  ^bb0(%c: i8, %o: f32):
    %f = arith.sitofp %c : i8 to f32
    linalg.yield %f : f32
  }
  %w = memref.alloc() : memref<4x128xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n * 2 + k floordiv 64)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<4x64xi8>, memref<8xf32>) outs(%w : memref<4x128xf32>) attrs = {qopt.dequantized = !nf4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  memref.dealloc %s : memref<8xf32>
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w : memref<3x128xf32>, memref<4x128xf32>) outs(%y : memref<3x4xf32>)
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (0)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d2, %s : memref<4x64xi8>, memref<8xf32>) outs(%w : memref<4x128xf32>) attrs = {qopt.dequantized = !nf4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w : memref<3x128xf32>, memref<4x128xf32>) outs(%y2 : memref<3x4xf32>)
  memref.dealloc %w : memref<4x128xf32>
  return
}

// -----

// Left to the expansion and BLAS: the expanded weight read again later
// (training's backward), read transposed (dX = dY·W), blocks that cross
// rows (K = 96, blocks of 64), f16 scales, scales written between the
// expansion and the product (the call would read the new ones).
// CHECK-LABEL: func.func @quantized_not_kernel
// CHECK-NOT: qopt_kernel_qlinear
// CHECK-COUNT-5: call @qopt_kernel_sgemm
// CHECK-NOT: qopt_kernel_qlinear
!q8 = !qopt.qtensor<4x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
!crossing = !qopt.qtensor<4x96, #qopt.nf4, #qopt.per_block<64>, scales = f32>
!half = !qopt.qtensor<4x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f16>
#ident = affine_map<(n, k) -> (n, k)>
#xm = affine_map<(m, n, k) -> (m, k)>
#wm = affine_map<(m, n, k) -> (n, k)>
#ym = affine_map<(m, n, k) -> (m, n)>
#wt = affine_map<(m, n, k) -> (k, n)>
func.func @quantized_not_kernel(%x: memref<3x8xf32>, %d: memref<4x8xi8>, %s: memref<4xf32>, %y: memref<3x4xf32>, %dy: memref<3x4xf32>, %dx: memref<3x8xf32>,
                                %x96: memref<3x96xf32>, %d96: memref<4x48xi8>, %s96: memref<6xf32>, %h: memref<4xf16>) {
  %w = memref.alloc() : memref<4x8xf32>
  linalg.generic {indexing_maps = [#ident, affine_map<(n, k) -> (n)>, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<4x8xi8>, memref<4xf32>) outs(%w : memref<4x8xf32>) attrs = {qopt.dequantized = !q8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w : memref<3x8xf32>, memref<4x8xf32>) outs(%y : memref<3x4xf32>)
  linalg.contract indexing_maps = [affine_map<(m, k, n) -> (m, n)>, affine_map<(m, k, n) -> (n, k)>, affine_map<(m, k, n) -> (m, k)>] ins(%dy, %w : memref<3x4xf32>, memref<4x8xf32>) outs(%dx : memref<3x8xf32>)
  memref.dealloc %w : memref<4x8xf32>
  %w96 = memref.alloc() : memref<4x96xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> ((n * 96 + k) floordiv 64)>, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d96, %s96 : memref<4x48xi8>, memref<6xf32>) outs(%w96 : memref<4x96xf32>) attrs = {qopt.dequantized = !crossing} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x96, %w96 : memref<3x96xf32>, memref<4x96xf32>) outs(%y : memref<3x4xf32>)
  memref.dealloc %w96 : memref<4x96xf32>
  %wh = memref.alloc() : memref<4x8xf32>
  linalg.generic {indexing_maps = [#ident, affine_map<(n, k) -> (n)>, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %h : memref<4x8xi8>, memref<4xf16>) outs(%wh : memref<4x8xf32>) attrs = {qopt.dequantized = !half} {
  ^bb0(%c: i8, %sc: f16, %o: f32):
    %f = arith.extf %sc : f16 to f32
    linalg.yield %f : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %wh : memref<3x8xf32>, memref<4x8xf32>) outs(%y : memref<3x4xf32>)
  memref.dealloc %wh : memref<4x8xf32>
  %ws = memref.alloc() : memref<4x8xf32>
  linalg.generic {indexing_maps = [#ident, affine_map<(n, k) -> (n)>, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<4x8xi8>, memref<4xf32>) outs(%ws : memref<4x8xf32>) attrs = {qopt.dequantized = !q8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%s : memref<4xf32>)
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %ws : memref<3x8xf32>, memref<4x8xf32>) outs(%y : memref<3x4xf32>)
  memref.dealloc %ws : memref<4x8xf32>
  return
}

// -----

// On the CUDA target a product reading a constant (or a view of one) stays
// loops: constants are host memory, of which the generated kernels read
// device copies; the library would get the host pointer.
// GEMM-LABEL: func.func @reads_constant
// GEMM-NOT: call
// GEMM: linalg.generic
// GEMM: call @qopt_cuda_sgemm(
// GEMM-NOT: call
memref.global "private" constant @table : memref<8x5xf32> = dense<1.0>
func.func @reads_constant(%a: memref<4x8xf32>, %b: memref<8x5xf32>, %c: memref<4x5xf32>) {
  %t = memref.get_global @table : memref<8x5xf32>
  %v = memref.subview %t[0, 0] [8, 4] [1, 1] : memref<8x5xf32> to memref<8x4xf32, strided<[5, 1]>>
  %cv = memref.subview %c[0, 0] [4, 4] [1, 1] : memref<4x5xf32> to memref<4x4xf32, strided<[5, 1]>>
  linalg.matmul ins(%a, %v : memref<4x8xf32>, memref<8x4xf32, strided<[5, 1]>>) outs(%cv : memref<4x4xf32, strided<[5, 1]>>)
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x5xf32>) outs(%c : memref<4x5xf32>)
  return
}

// -----

// The backward of a linear layer: dX = dY·W reads the expanded W itself
// (rows along the reduction). The CPU kernel takes only x·Wᵀ (sgemm on the
// expansion); the CUDA library's GEMM reads the codes (flag 8), so no f32
// copy of W is made.
// CHECK-LABEL: func.func @quantized_dx
// CHECK: linalg.generic
// CHECK: call @qopt_kernel_sgemm
// CHECK-NOT: qopt_kernel_qlinear
// BF16-LABEL: func.func @quantized_dx
// BF16: call @qopt_cuda_qlinear(%c4{{[_0-9]*}}, %c32{{[_0-9]*}}, %c72{{[_0-9]*}},
// GEMM-LABEL: func.func @quantized_dx
// GEMM-NOT: linalg.generic
// GEMM-NOT: memref.alloc
// GEMM: %[[M:.*]] = memref.dim %arg0
// GEMM: %[[K:.*]] = memref.dim %arg0
// GEMM: %[[N:.*]] = memref.dim %arg3
// GEMM: call @qopt_cuda_qlinear(%c4{{[_0-9]*}}, %c32{{[_0-9]*}}, %c8{{[_0-9]*}}, %c1{{[_0-9]*}}, %c1{{[_0-9]*}}, %[[M]], %[[N]], %[[K]],
// GEMM-NOT: call
// GEMM: return
!nf4t = !qopt.qtensor<16x64, #qopt.nf4, #qopt.per_group<axis = 1, size = 32>, scales = f32>
func.func @quantized_dx(%dy: memref<3x16xf32>, %d: memref<16x32xi8>, %s: memref<16x2xf32>, %dx: memref<3x64xf32>) {
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, affine_map<(n, k) -> (n, k)>], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x32xi8>, memref<16x2xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !nf4t} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, k, n) -> (m, n)>, affine_map<(m, k, n) -> (n, k)>, affine_map<(m, k, n) -> (m, k)>] ins(%dy, %w : memref<3x16xf32>, memref<16x64xf32>) outs(%dx : memref<3x64xf32>)
  memref.dealloc %w : memref<16x64xf32>
  return
}

// -----

// A quantized product whose activations are a constant stays loops on the
// CUDA target too (the library would get the host pointer).
// (The CPU reads constants in place.)
// CHECK-LABEL: func.func @quantized_constant_input
// CHECK: call @qopt_kernel_qlinear
// GEMM-LABEL: func.func @quantized_constant_input
// GEMM-NOT: call
// GEMM: return
memref.global "private" constant @x : memref<2x64xf32> = dense<1.0>
!nf4c = !qopt.qtensor<16x64, #qopt.nf4, #qopt.per_group<axis = 1, size = 32>, scales = f32>
func.func @quantized_constant_input(%d: memref<16x32xi8>, %s: memref<16x2xf32>, %y: memref<2x16xf32>) {
  %x = memref.get_global @x : memref<2x64xf32>
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, affine_map<(n, k) -> (n, k)>], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x32xi8>, memref<16x2xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !nf4c} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%x, %w : memref<2x64xf32>, memref<16x64xf32>) outs(%y : memref<2x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  return
}

// -----

// Per-token int8 activations before an int8 weight (W8A8): the product
// reads the quantizer's input and quantizes it itself (flag 4, 8 bits:
// 4 | 8 << 8 = 2052), multiplying in integers; the quantizer's loop and
// buffer go. The CUDA library takes it too (W8A8.cu).
// CHECK-LABEL: func.func @per_token_w8a8
// CHECK-SAME: (%[[X:.*]]: memref<2x64xf32>,
// CHECK-NOT: memref.alloc
// CHECK: %[[XP:.*]] = memref.extract_aligned_pointer_as_index %[[X]]
// CHECK: call @qopt_kernel_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2052{{[_0-9]*}}, {{.*}}, %[[XP]],
// CHECK-NOT: linalg.generic
// CHECK: return
// BF16-LABEL: func.func @per_token_w8a8
// BF16: call @qopt_cuda_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2052{{[_0-9]*}},
// CUDA-LABEL: func.func @per_token_w8a8
// CUDA-SAME: (%[[X:.*]]: memref<2x64xf32>,
// CUDA-NOT: memref.alloc
// CUDA: %[[XP:.*]] = memref.extract_aligned_pointer_as_index %[[X]]
// CUDA: call @qopt_cuda_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2052{{[_0-9]*}}, {{.*}}, %[[XP]],
// CUDA-NOT: linalg.generic
// CUDA: return
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
func.func @per_token_w8a8(%x: memref<2x64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %y: memref<2x16xf32>) {
  %a = memref.alloc() : memref<2x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<2x64xf32>) outs(%a : memref<2x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%v: f32, %o: f32):
    linalg.yield %v : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(n, k) -> (n)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%a, %w : memref<2x64xf32>, memref<16x64xf32>) outs(%y : memref<2x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<2x64xf32>
  return
}

// -----

// uint8 codes do not fit the CUDA GEMM's int8 words: there the quantizer
// stays a loop and the library multiplies its output in f32 (flags 0);
// the CPU still multiplies in integers.
// CHECK-LABEL: func.func @per_token_uint8
// CHECK: call @qopt_kernel_qlinear(%c3{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2052{{[_0-9]*}},
// CUDA-LABEL: func.func @per_token_uint8
// CUDA: linalg.generic {{.*}}qopt.per_token_quant = 8
// CUDA: call @qopt_cuda_qlinear(%c3{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
!u8 = !qopt.qtensor<16x64, #qopt.int<8, unsigned>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
func.func @per_token_uint8(%x: memref<2x64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %y: memref<2x16xf32>) {
  %a = memref.alloc() : memref<2x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<2x64xf32>) outs(%a : memref<2x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%v: f32, %o: f32):
    linalg.yield %v : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(n, k) -> (n)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !u8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%a, %w : memref<2x64xf32>, memref<16x64xf32>) outs(%y : memref<2x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<2x64xf32>
  return
}

// -----

// FP8 E4M3 tokens (qopt.per_token_quant = 228) before an FP8 weight: the
// CUDA library multiplies the codes (flag 4 | 228 << 8 = 58372: its FP8
// GEMM on the tensor cores, in every precision); the CPU target keeps the
// quantizer's loop and multiplies its output in f32 (flags 0).
// CHECK-LABEL: func.func @per_token_fp8
// CHECK: linalg.generic {{.*}}qopt.per_token_quant = 228
// CHECK: call @qopt_kernel_qlinear(%c5{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// CUDA-LABEL: func.func @per_token_fp8
// CUDA-SAME: (%[[X:.*]]: memref<2x64xf32>,
// CUDA-NOT: linalg.generic
// CUDA: %[[XP:.*]] = memref.extract_aligned_pointer_as_index %[[X]]
// CUDA: call @qopt_cuda_qlinear(%c5{{[_0-9]*}}, %c64{{[_0-9]*}}, %c58372{{[_0-9]*}}, {{.*}}, %[[XP]],
// CUDA-NOT: linalg.generic
// CUDA: return
// BF16-LABEL: func.func @per_token_fp8
// BF16: call @qopt_cuda_qlinear(%c5{{[_0-9]*}}, %c64{{[_0-9]*}}, %c58372{{[_0-9]*}},
!f8 = !qopt.qtensor<16x64, #qopt.float<f8E4M3FN>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
func.func @per_token_fp8(%x: memref<2x64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %y: memref<2x16xf32>) {
  %a = memref.alloc() : memref<2x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<2x64xf32>) outs(%a : memref<2x64xf32>) attrs = {qopt.per_token_quant = 228 : i64} {
  ^bb0(%v: f32, %o: f32):
    linalg.yield %v : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(n, k) -> (n)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !f8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%a, %w : memref<2x64xf32>, memref<16x64xf32>) outs(%y : memref<2x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<2x64xf32>
  return
}

// -----

// Token and weight formats must pair: FP8 tokens before int8 codes, and
// int8 tokens before FP8 codes, keep the quantizer's loop on both targets.
// CHECK-LABEL: func.func @per_token_mixed
// CHECK: linalg.generic {{.*}}qopt.per_token_quant = 228
// CHECK: call @qopt_kernel_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// CHECK: linalg.generic {{.*}}qopt.per_token_quant = 8
// CHECK: call @qopt_kernel_qlinear(%c5{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// CUDA-LABEL: func.func @per_token_mixed
// CUDA: linalg.generic {{.*}}qopt.per_token_quant = 228
// CUDA: call @qopt_cuda_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
// CUDA: linalg.generic {{.*}}qopt.per_token_quant = 8
// CUDA: call @qopt_cuda_qlinear(%c5{{[_0-9]*}}, %c64{{[_0-9]*}}, %c0{{[_0-9]*}},
!i8w = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
!f8w = !qopt.qtensor<16x64, #qopt.float<f8E4M3FN>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
func.func @per_token_mixed(%x: memref<2x64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %y: memref<2x16xf32>) {
  %a = memref.alloc() : memref<2x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<2x64xf32>) outs(%a : memref<2x64xf32>) attrs = {qopt.per_token_quant = 228 : i64} {
  ^bb0(%v: f32, %o: f32):
    linalg.yield %v : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(n, k) -> (n)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !i8w} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%a, %w : memref<2x64xf32>, memref<16x64xf32>) outs(%y : memref<2x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<2x64xf32>
  %a2 = memref.alloc() : memref<2x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<2x64xf32>) outs(%a2 : memref<2x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%v: f32, %o: f32):
    linalg.yield %v : f32
  }
  %w2 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(n, k) -> (n)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w2 : memref<16x64xf32>) attrs = {qopt.dequantized = !f8w} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>] ins(%a2, %w2 : memref<2x64xf32>, memref<16x64xf32>) outs(%y : memref<2x16xf32>)
  memref.dealloc %w2 : memref<16x64xf32>
  memref.dealloc %a2 : memref<2x64xf32>
  return
}

// -----

// C += A·W through a quantized W (W's rows along K, the backward's form):
// the CUDA library's GEMM takes it (flag 8) but not on integer codes, so a
// per-token quantizer before it stays a loop there.
// CUDA-LABEL: func.func @per_token_transposed
// CUDA: linalg.generic {{.*}}qopt.per_token_quant = 8
// CUDA: call @qopt_cuda_qlinear(%c2{{[_0-9]*}}, %{{[a-z0-9_]+}}, %c8{{[_0-9]*}},
!wt = !qopt.qtensor<64x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
func.func @per_token_transposed(%x: memref<2x64xf32>, %d: memref<64x64xi8>, %s: memref<64xf32>, %y: memref<2x64xf32>) {
  %a = memref.alloc() : memref<2x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<2x64xf32>) outs(%a : memref<2x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%v: f32, %o: f32):
    linalg.yield %v : f32
  }
  %w = memref.alloc() : memref<64x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(n, k) -> (n)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<64x64xi8>, memref<64xf32>) outs(%w : memref<64x64xf32>) attrs = {qopt.dequantized = !wt} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (k, n)>, affine_map<(m, n, k) -> (m, n)>] ins(%a, %w : memref<2x64xf32>, memref<64x64xf32>) outs(%y : memref<2x64xf32>)
  memref.dealloc %w : memref<64x64xf32>
  memref.dealloc %a : memref<2x64xf32>
  return
}
