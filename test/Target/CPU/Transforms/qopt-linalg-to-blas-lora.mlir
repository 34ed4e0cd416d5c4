// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-sgemm=qopt_cuda_sgemm cuda-qlinear-lora=qopt_cuda_qlinear_lora" | FileCheck %s
// Without cuda-qlinear-lora, the branch stays an f32 product and the sum a
// loop nest.
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-sgemm=qopt_cuda_sgemm" | FileCheck %s --check-prefix=NOLORA
// With cuda-matmul-precision=medium the fused calls ask for the tensor
// cores too (16 | 64).
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-sgemm=qopt_cuda_sgemm_bf16 cuda-qlinear-lora=qopt_cuda_qlinear_lora cuda-matmul-precision=medium" | FileCheck %s --check-prefix=BF16

// A LoRA layer as convert-qopt-to-linalg lowers it and bufferization leaves
// it: z = x·Aᵀ, Q = z·Bᵀ and P = x·Wᵀ (W int4, expanded for the product)
// each from a copy of a zero-filled buffer, then y = P + 2·Q. The quantized
// product and the branch become one call that writes y (flag 16), with z
// (pointer, offset, strides along batch, seq, rank), B (pointer, offset,
// strides: none along batch and seq, n, rank), the rank (B's K) and the
// scale's f32 bits (2.0: 0x40000000 = 1073741824); Q's product, the sum,
// P, Q and the zero buffer go; z's deallocation moves after the call.
// z = x·Aᵀ reads the product's own x, from zeros: the call computes z too
// (then A: pointer, offset, strides along batch and seq (none), rank and
// K), so z's product and the zeros' fill and copy go; z stays, written by
// the call.
// CHECK-LABEL: func.func @lora_sum
// CHECK-SAME: (%[[X:.*]]: memref<?x?x64xf32>, %[[D:.*]]: memref<8x32xi8>, %[[S:.*]]: memref<8x2xf32>, %[[A:.*]]: memref<4x64xf32>, %[[B:.*]]: memref<8x4xf32>, %[[Y:.*]]: memref<?x?x8xf32>)
// CHECK: %[[Z:.*]] = memref.alloc
// CHECK-NOT: call @qopt_cuda_sgemm
// CHECK-NOT: linalg.generic
// CHECK-NOT: linalg.fill
// CHECK-NOT: memref.copy
// CHECK: %{{.*}}, %[[AO:.*]], %{{.*}}, %[[AS:.*]]:2 = memref.extract_strided_metadata %[[A]]
// CHECK: %[[AP:.*]] = memref.extract_aligned_pointer_as_index %[[A]]
// CHECK: %[[ZP:.*]] = memref.extract_aligned_pointer_as_index %[[Z]]
// CHECK: %[[BP:.*]] = memref.extract_aligned_pointer_as_index %[[B]]
// CHECK: %[[XP:.*]] = memref.extract_aligned_pointer_as_index %[[X]]
// CHECK: %[[YP:.*]] = memref.extract_aligned_pointer_as_index %[[Y]]
// CHECK: call @qopt_cuda_qlinear_lora(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c16{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[XP]], {{.*}}, %[[YP]], {{.*}}, %[[ZP]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[BP]], %{{.*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}}, %c1073741824{{[_0-9]*}}, %[[AP]], %[[AO]], %[[C0:c0[_0-9]*]], %[[C0]], %[[AS]]#0, %[[AS]]#1)
// CHECK-NEXT: memref.dealloc %[[Z]]
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.alloc
// CHECK: return
// CHECK: func.func private @qopt_cuda_qlinear_lora(index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index, index)
// BF16-LABEL: func.func @lora_sum
// BF16: call @qopt_cuda_qlinear_lora(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c80{{[_0-9]*}},
// NOLORA-LABEL: func.func @lora_sum
// NOLORA-COUNT-2: call @qopt_cuda_sgemm_overwrite(
// NOLORA: call @qopt_cuda_qlinear(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c16{{[_0-9]*}},
// NOLORA: linalg.generic
// NOLORA-NOT: qopt_cuda_qlinear_lora
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
func.func @lora_sum(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                    %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %two = arith.constant 2.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %zr = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%zr : memref<?x?x4xf32>)
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  memref.copy %zr, %z : memref<?x?x4xf32> to memref<?x?x4xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %zeros = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%zeros : memref<?x?x8xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  memref.copy %zeros, %q : memref<?x?x8xf32> to memref<?x?x8xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  memref.dealloc %z : memref<?x?x4xf32>
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  memref.copy %zeros, %p : memref<?x?x8xf32> to memref<?x?x8xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %m = arith.mulf %in2, %two : f32
    %r = arith.addf %in, %m : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %zeros : memref<?x?x8xf32>
  memref.dealloc %w : memref<8x64xf32>
  memref.dealloc %zr : memref<?x?x4xf32>
  return
}

// -----

// The sum fused with a residual (y = r + (P + 0.5·Q), as elementwise
// fusion leaves a LoRA layer before a residual connection): the call adds
// the branch to P, whose zeros need no copy either (flag 16: C = …), and
// the nest reads P where it read the sum, and no longer Q. z = xd·Aᵀ reads
// another x (dropout's, in training): it stays its own product, and the
// call's down projection arguments are zeros (z given).
// CHECK-LABEL: func.func @lora_residual
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK-NOT: memref.copy
// CHECK: call @qopt_cuda_qlinear_lora(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c16{{[_0-9]*}}, {{.*}}, %c1056964608{{[_0-9]*}}, %[[C0:c0[_0-9]*]], %[[C0]], %[[C0]], %[[C0]], %[[C0]], %[[C0]])
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}, #{{.*}}], iterator_types = ["parallel", "parallel", "parallel"]} ins(%{{.*}}, %[[P:.*]] : memref<?x?x8xf32>, memref<?x?x8xf32>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f32, %[[IN2:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[R:.*]] = arith.addf %[[IN]], %[[IN2]] : f32
// CHECK-NEXT: linalg.yield %[[R]] : f32
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
func.func @lora_residual(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                         %a: memref<4x64xf32>, %b: memref<8x4xf32>, %res: memref<?x?x8xf32>, %y: memref<?x?x8xf32>,
                         %xd: memref<?x?x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %half = arith.constant 0.5 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%xd, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %zeros = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%zeros : memref<?x?x8xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  memref.copy %zeros, %q : memref<?x?x8xf32> to memref<?x?x8xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  memref.copy %zeros, %p : memref<?x?x8xf32> to memref<?x?x8xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%res, %p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in0: f32, %in: f32, %in2: f32, %out: f32):
    %m = arith.mulf %in2, %half : f32
    %r = arith.addf %in, %m : f32
    %t = arith.addf %in0, %r : f32
    linalg.yield %t : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %zeros : memref<?x?x8xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}

// -----

// Left alone: B written between the branch and the quantized product (the
// call would read the new B); the branch's output read twice (Q is needed
// elsewhere); a sum that is not P + s·Q (P·Q).
// CHECK-LABEL: func.func @not_lora
// CHECK-NOT: qopt_cuda_qlinear_lora
// CHECK: return
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
func.func @not_lora(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                    %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>, %y2: memref<?x?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %two = arith.constant 2.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  linalg.fill ins(%zero : f32) outs(%b : memref<8x4xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %m = arith.mulf %in2, %two : f32
    %r = arith.addf %in, %m : f32
    linalg.yield %r : f32
  }
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y2 : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.mulf %in, %in2 : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}

// -----

// Q's zeros copied from P's (P filled with zeros first, as the train step's
// bufferization leaves some layers): both go, once each.
// CHECK-LABEL: func.func @lora_zeros_from_p
// CHECK-NOT: call @qopt_cuda_sgemm
// CHECK-NOT: linalg.fill
// CHECK-NOT: memref.copy
// CHECK: call @qopt_cuda_qlinear_lora(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c16{{[_0-9]*}},
// CHECK-NOT: memref.alloc
// CHECK-NOT: linalg.generic
// CHECK: return
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
func.func @lora_zeros_from_p(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                             %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  memref.copy %p, %q : memref<?x?x8xf32> to memref<?x?x8xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in2, %in : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}

// -----

// Any library product whose C starts as zeros that only it reads writes C
// instead (C = A·B): the zeros' copy or fill goes, a kernel launch fewer.
// Not when C is read between the zeros and the product, when C is a view
// (not every element its own), or when of two loops outside the product
// one indexes C and the other sums into it. A loop outside the product
// that sums into all of C (a weight gradient's batch) writes C too: the
// GEMM's launches fold it into K, or the first product writes C and the
// rest add.
// CHECK-LABEL: func.func @from_zeros
// CHECK-SAME: (%[[A:.*]]: memref<4x8xf32>, %[[B:.*]]: memref<8x5xf32>, %[[O:.*]]: memref<4x5xf32>, %[[A3:.*]]: memref<3x4x8xf32>, %[[B3:.*]]: memref<3x8x5xf32>,
// CHECK: %[[C1:.*]] = memref.alloc() : memref<4x5xf32>
// CHECK-NOT: memref.copy
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK: %[[C2:.*]] = memref.alloc() : memref<4x5xf32>
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[C2]]
// CHECK: linalg.generic {{.*}} ins(%[[C2]]
// CHECK: call @qopt_cuda_sgemm(
// CHECK: %[[C3:.*]] = memref.alloc() : memref<8x5xf32>
// CHECK: %[[V:.*]] = memref.subview %[[C3]]
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[V]]
// CHECK: call @qopt_cuda_sgemm(
// CHECK: %[[C4:.*]] = memref.alloc() : memref<4x5xf32>
// CHECK-NOT: linalg.fill
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK: %[[C5:.*]] = memref.alloc() : memref<2x4x5xf32>
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[C5]]
// CHECK: call @qopt_cuda_sgemm(
#mk = affine_map<(m, n, k) -> (m, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>
#bmk = affine_map<(b, m, n, k) -> (b, m, k)>
#bkn = affine_map<(b, m, n, k) -> (b, k, n)>
#bmn = affine_map<(b, m, n, k) -> (m, n)>
func.func @from_zeros(%a: memref<4x8xf32>, %b: memref<8x5xf32>, %o: memref<4x5xf32>,
                      %a3: memref<3x4x8xf32>, %b3: memref<3x8x5xf32>,
                      %a4: memref<2x3x4x8xf32>, %b4: memref<2x3x8x5xf32>, %o5: memref<2x4x5xf32>) {
  %zero = arith.constant 0.0 : f32
  %zeros = memref.alloc() : memref<4x5xf32>
  linalg.fill ins(%zero : f32) outs(%zeros : memref<4x5xf32>)
  %c1 = memref.alloc() : memref<4x5xf32>
  memref.copy %zeros, %c1 : memref<4x5xf32> to memref<4x5xf32>
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x5xf32>) outs(%c1 : memref<4x5xf32>)
  memref.copy %c1, %o : memref<4x5xf32> to memref<4x5xf32>
  // C read between its zeros and the product.
  %c2 = memref.alloc() : memref<4x5xf32>
  linalg.fill ins(%zero : f32) outs(%c2 : memref<4x5xf32>)
  linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}
      ins(%c2 : memref<4x5xf32>) outs(%o : memref<4x5xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  }
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x5xf32>) outs(%c2 : memref<4x5xf32>)
  memref.copy %c2, %o : memref<4x5xf32> to memref<4x5xf32>
  // C a view of a larger buffer.
  %c3 = memref.alloc() : memref<8x5xf32>
  %v = memref.subview %c3[0, 0] [4, 5] [1, 1] : memref<8x5xf32> to memref<4x5xf32, strided<[5, 1]>>
  linalg.fill ins(%zero : f32) outs(%v : memref<4x5xf32, strided<[5, 1]>>)
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x5xf32>) outs(%v : memref<4x5xf32, strided<[5, 1]>>)
  // A batch loop summing into one C.
  %c4 = memref.alloc() : memref<4x5xf32>
  linalg.fill ins(%zero : f32) outs(%c4 : memref<4x5xf32>)
  linalg.generic {indexing_maps = [#bmk, #bkn, #bmn], iterator_types = ["reduction", "parallel", "parallel", "reduction"]}
      ins(%a3, %b3 : memref<3x4x8xf32>, memref<3x8x5xf32>) outs(%c4 : memref<4x5xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  memref.copy %c4, %o : memref<4x5xf32> to memref<4x5xf32>
  // Two loops outside: one indexes C, one sums into it.
  %c5 = memref.alloc() : memref<2x4x5xf32>
  linalg.fill ins(%zero : f32) outs(%c5 : memref<2x4x5xf32>)
  linalg.generic {indexing_maps = [affine_map<(e, b, m, n, k) -> (e, b, m, k)>,
                                   affine_map<(e, b, m, n, k) -> (e, b, k, n)>,
                                   affine_map<(e, b, m, n, k) -> (e, m, n)>],
                  iterator_types = ["parallel", "reduction", "parallel", "parallel", "reduction"]}
      ins(%a4, %b4 : memref<2x3x4x8xf32>, memref<2x3x8x5xf32>) outs(%c5 : memref<2x4x5xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  memref.copy %c5, %o5 : memref<2x4x5xf32> to memref<2x4x5xf32>
  return
}

// -----

// Left alone (review findings): z a view of a buffer freed between the
// branch and the quantized product (the call would read freed memory);
// P an argument (the caller reads it).
// CHECK-LABEL: func.func @not_lora_views
// CHECK-NOT: qopt_cuda_qlinear_lora
// CHECK: return
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
func.func @not_lora_views(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                          %b: memref<8x4xf32>, %y: memref<?x?x8xf32>, %p2: memref<?x?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %two = arith.constant 2.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %rows = arith.muli %d0, %d1 : index
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %za = memref.alloc(%rows) : memref<?x4xf32>
  linalg.fill ins(%two : f32) outs(%za : memref<?x4xf32>)
  %z = memref.expand_shape %za [[0, 1], [2]] output_shape [%d0, %d1, 4] : memref<?x4xf32> into memref<?x?x4xf32>
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  memref.dealloc %za : memref<?x4xf32>
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %m = arith.mulf %in2, %two : f32
    %r = arith.addf %in, %m : f32
    linalg.yield %r : f32
  }
  // P an argument.
  %w2 = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w2 : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %q2 = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q2 : memref<?x?x8xf32>)
  %z2 = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%two : f32) outs(%z2 : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z2, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q2 : memref<?x?x8xf32>)
  linalg.fill ins(%zero : f32) outs(%p2 : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w2 : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p2 : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p2, %q2 : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %m = arith.mulf %in2, %two : f32
    %r = arith.addf %in, %m : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %q2 : memref<?x?x8xf32>
  memref.dealloc %z2 : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  memref.dealloc %w2 : memref<8x64xf32>
  return
}

// -----

// QLoRA's double-quantized scales (NF4 in blocks of 64; their scales 8-bit
// codes of a 256-value table times an absmax per 256 scales, plus an
// offset) as the CUDA library reads them: the call passes the scales'
// codes (in the f32 scales' place too), the absmax, the block (256), the
// offset's f32 bits (0.5: 1056964608) and the table (a constant); the
// nest that expanded the f32 scales goes with them. A second weight whose
// f32 scales something else reads keeps them (zeros for the nested
// arguments).
// CHECK-LABEL: func.func @nested_scales
// CHECK-SAME: (%[[X:.*]]: memref<3x128xf32>, %[[D:.*]]: memref<4x64xi8>, %[[SC:.*]]: memref<8xi8>, %[[AB:.*]]: memref<1xf32>,
// CHECK: %[[T:.*]] = memref.get_global @table
// CHECK-NOT: linalg.generic
// CHECK: %[[SCP:.*]] = memref.extract_aligned_pointer_as_index %[[SC]]
// CHECK: %[[ABP:.*]] = memref.extract_aligned_pointer_as_index %[[AB]]
// CHECK: %[[TP:.*]] = memref.extract_aligned_pointer_as_index %[[T]]
// CHECK: call @qopt_cuda_qlinear(%c4{{[_0-9]*}}, %c64{{[_0-9]*}}, {{.*}}, %[[SCP]], %{{.*}}, %[[ABP]], %{{.*}}, %c256{{[_0-9]*}}, %c1056964608{{[_0-9]*}}, %[[TP]], %{{.*}})
// CHECK: linalg.generic
// CHECK-NOT: qopt.dequantized
// CHECK: call @qopt_cuda_qlinear({{.*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}})
// CHECK: memref.copy
// CHECK: return
memref.global "private" constant @table : memref<256xf32> = dense<0.25>
!nf4 = !qopt.qtensor<4x128, #qopt.nf4, #qopt.per_block<64>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#xm = affine_map<(m, n, k) -> (m, k)>
#wm = affine_map<(m, n, k) -> (n, k)>
#ym = affine_map<(m, n, k) -> (m, n)>
func.func @nested_scales(%x: memref<3x128xf32>, %d: memref<4x64xi8>, %sc: memref<8xi8>, %ab: memref<1xf32>,
                         %y: memref<3x4xf32>, %other: memref<8xf32>) {
  %table = memref.get_global @table : memref<256xf32>
  %half = arith.constant 0.5 : f32
  %s = memref.alloc() : memref<8xf32>
  linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i floordiv 256)>, affine_map<(i) -> (i)>],
                  iterator_types = ["parallel"]}
      ins(%sc, %ab : memref<8xi8>, memref<1xf32>) outs(%s : memref<8xf32>) {
  ^bb0(%c: i8, %a: f32, %o: f32):
    %i = arith.index_castui %c : i8 to index
    %v = memref.load %table[%i] : memref<256xf32>
    %m = arith.mulf %v, %a : f32
    %r = arith.addf %m, %half : f32
    linalg.yield %r : f32
  }
  %w = memref.alloc() : memref<4x128xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n * 2 + k floordiv 64)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<4x64xi8>, memref<8xf32>) outs(%w : memref<4x128xf32>) attrs = {qopt.dequantized = !nf4} {
  ^bb0(%c: i8, %scale: f32, %o: f32):
    linalg.yield %scale : f32
  }
  memref.dealloc %s : memref<8xf32>
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w : memref<3x128xf32>, memref<4x128xf32>) outs(%y : memref<3x4xf32>)
  // Scales another loop reads after the expansion.
  %s2 = memref.alloc() : memref<8xf32>
  linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i floordiv 256)>, affine_map<(i) -> (i)>],
                  iterator_types = ["parallel"]}
      ins(%sc, %ab : memref<8xi8>, memref<1xf32>) outs(%s2 : memref<8xf32>) {
  ^bb0(%c: i8, %a: f32, %o: f32):
    %i = arith.index_castui %c : i8 to index
    %v = memref.load %table[%i] : memref<256xf32>
    %m = arith.mulf %v, %a : f32
    linalg.yield %m : f32
  }
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n * 2 + k floordiv 64)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s2 : memref<4x64xi8>, memref<8xf32>) outs(%w : memref<4x128xf32>) attrs = {qopt.dequantized = !nf4} {
  ^bb0(%c: i8, %scale: f32, %o: f32):
    linalg.yield %scale : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w : memref<3x128xf32>, memref<4x128xf32>) outs(%y : memref<3x4xf32>)
  memref.copy %s2, %other : memref<8xf32> to memref<8xf32>
  memref.dealloc %w : memref<4x128xf32>
  memref.dealloc %s2 : memref<8xf32>
  return
}

// -----

// Kept f32 (review): the next loop nest writing the f32 scales after the
// expansion accumulates into them (it reads what the erased nest wrote).
// CHECK-LABEL: func.func @nested_scales_accumulated
// CHECK: linalg.generic
// CHECK: call @qopt_cuda_qlinear({{.*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}})
// CHECK: linalg.generic
// CHECK: return
memref.global "private" constant @table : memref<256xf32> = dense<0.25>
!nf4 = !qopt.qtensor<4x128, #qopt.nf4, #qopt.per_block<64>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#xm = affine_map<(m, n, k) -> (m, k)>
#wm = affine_map<(m, n, k) -> (n, k)>
#ym = affine_map<(m, n, k) -> (m, n)>
func.func @nested_scales_accumulated(%x: memref<3x128xf32>, %d: memref<4x64xi8>, %sc: memref<8xi8>,
                                     %ab: memref<1xf32>, %y: memref<3x4xf32>, %other: memref<8xf32>) {
  %table = memref.get_global @table : memref<256xf32>
  %s = memref.alloc() : memref<8xf32>
  linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i floordiv 256)>, affine_map<(i) -> (i)>],
                  iterator_types = ["parallel"]}
      ins(%sc, %ab : memref<8xi8>, memref<1xf32>) outs(%s : memref<8xf32>) {
  ^bb0(%c: i8, %a: f32, %o: f32):
    %i = arith.index_castui %c : i8 to index
    %v = memref.load %table[%i] : memref<256xf32>
    %m = arith.mulf %v, %a : f32
    linalg.yield %m : f32
  }
  %w = memref.alloc() : memref<4x128xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n * 2 + k floordiv 64)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<4x64xi8>, memref<8xf32>) outs(%w : memref<4x128xf32>) attrs = {qopt.dequantized = !nf4} {
  ^bb0(%c: i8, %scale: f32, %o: f32):
    linalg.yield %scale : f32
  }
  linalg.contract indexing_maps = [#xm, #wm, #ym] ins(%x, %w : memref<3x128xf32>, memref<4x128xf32>) outs(%y : memref<3x4xf32>)
  linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]}
      ins(%other : memref<8xf32>) outs(%s : memref<8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %r = arith.addf %a, %o : f32
    linalg.yield %r : f32
  }
  memref.copy %s, %other : memref<8xf32> to memref<8xf32>
  memref.dealloc %w : memref<4x128xf32>
  memref.dealloc %s : memref<8xf32>
  return
}

// -----

// Where the call cannot compute z itself, z = x·Aᵀ stays its own product
// and the call's down-projection arguments are zeros: z read between the
// branch and the call (@z_read), x written between z's product and the
// call (@x_written), z not from zeros (@z_accumulates: z += x·Aᵀ), A
// moving with the batch (@a_batched).
// CHECK-LABEL: func.func @z_read
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK: call @qopt_cuda_qlinear_lora({{.*}}, %[[C0:c0[_0-9]*]], %[[C0]], %[[C0]], %[[C0]], %[[C0]], %[[C0]])
// CHECK-LABEL: func.func @x_written
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK: call @qopt_cuda_qlinear_lora({{.*}}, %[[C0:c0[_0-9]*]], %[[C0]], %[[C0]], %[[C0]], %[[C0]], %[[C0]])
// CHECK-LABEL: func.func @z_accumulates
// CHECK: call @qopt_cuda_sgemm(
// CHECK: call @qopt_cuda_qlinear_lora({{.*}}, %[[C0:c0[_0-9]*]], %[[C0]], %[[C0]], %[[C0]], %[[C0]], %[[C0]])
// CHECK-LABEL: func.func @a_batched
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK: call @qopt_cuda_qlinear_lora({{.*}}, %[[C0:c0[_0-9]*]], %[[C0]], %[[C0]], %[[C0]], %[[C0]], %[[C0]])
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#a3 = affine_map<(b, s, n, k) -> (b, n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
#dq = affine_map<(n, k) -> (n, k floordiv 2)>
#sq = affine_map<(n, k) -> (n, k floordiv 32)>
func.func @z_read(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                  %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>, %zc: memref<?x?x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#dq, #sq, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  memref.copy %z, %zc : memref<?x?x4xf32> to memref<?x?x4xf32>
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in, %in2 : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}
func.func @x_written(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                     %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#dq, #sq, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  linalg.fill ins(%zero : f32) outs(%x : memref<?x?x64xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in, %in2 : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}
func.func @z_accumulates(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                         %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>, %zi: memref<?x?x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#dq, #sq, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  memref.copy %zi, %z : memref<?x?x4xf32> to memref<?x?x4xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in, %in2 : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}
func.func @a_batched(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                     %a: memref<?x4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#dq, #sq, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #a3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<?x4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in, %in2 : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}

// -----

// z's product writes the zeros buffer itself (bufferization's last reader
// of it, as in the train step), which an earlier product's zeros are
// copied from: z's fill goes too, once that copy is gone (z's product and
// its initialization are erased after every other product is rewritten).
// CHECK-LABEL: func.func @z_in_shared_zeros
// CHECK-NOT: linalg.fill
// CHECK-NOT: memref.copy
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK-NEXT: memref.copy %{{.*}}, %arg7
// CHECK-NOT: linalg.fill
// CHECK-NOT: memref.copy
// CHECK-NOT: call @qopt_cuda_sgemm
// CHECK: call @qopt_cuda_qlinear_lora({{.*}}, %c1073741824{{[_0-9]*}}, %{{.*}}, %{{.*}}, %[[C0:c0[_0-9]*]], %[[C0]], %{{.*}}, %{{.*}})
// CHECK-NOT: linalg.fill
// CHECK: return
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
func.func @z_in_shared_zeros(%x: memref<?x?x64xf32>, %d: memref<8x32xi8>, %s: memref<8x2xf32>,
                             %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>,
                             %a2: memref<4x64xf32>, %o: memref<?x?x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %two = arith.constant 2.0 : f32
  %d0 = memref.dim %x, %c0 : memref<?x?x64xf32>
  %d1 = memref.dim %x, %c1 : memref<?x?x64xf32>
  %zr = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%zr : memref<?x?x4xf32>)
  // An earlier f32 product from a copy of the zeros.
  %e = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  memref.copy %zr, %e : memref<?x?x4xf32> to memref<?x?x4xf32>
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a2 : memref<?x?x64xf32>, memref<4x64xf32>) outs(%e : memref<?x?x4xf32>)
  memref.copy %e, %o : memref<?x?x4xf32> to memref<?x?x4xf32>
  memref.dealloc %e : memref<?x?x4xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, affine_map<(n, k) -> (n, k floordiv 32)>, #ident],
                  iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o2: f32):
    linalg.yield %sc : f32
  }
  // z = x·Aᵀ into the zeros buffer itself.
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%zr : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%zr, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %m = arith.mulf %in2, %two : f32
    %r = arith.addf %in, %m : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %zr : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}

// -----

// x a view of a buffer (a norm's [rows, D] output reshaped back, as the
// CUDA target's row kernels leave it): z = x·Aᵀ still runs in the call,
// and the buffer's deallocation between the down projection and the call
// moves after the call (@x_view). Written in between (@x_view_written):
// z stays its own product.
// CHECK-LABEL: func.func @x_view
// CHECK: %[[XR:.*]] = memref.alloc
// CHECK-NOT: call @qopt_cuda_sgemm
// CHECK: call @qopt_cuda_qlinear_lora({{.*}}, %c1065353216{{[_0-9]*}}, %{{.*}}, %{{.*}}, %[[C0:c0[_0-9]*]], %[[C0]], %{{.*}}, %{{.*}})
// CHECK: memref.dealloc %[[XR]]
// CHECK: return
// CHECK-LABEL: func.func @x_view_written
// CHECK: call @qopt_cuda_sgemm_overwrite(
// CHECK: call @qopt_cuda_qlinear_lora({{.*}}, %[[C0:c0[_0-9]*]], %[[C0]], %[[C0]], %[[C0]], %[[C0]], %[[C0]])
!int4 = !qopt.qtensor<8x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ident = affine_map<(n, k) -> (n, k)>
#x3 = affine_map<(b, s, n, k) -> (b, s, k)>
#w3 = affine_map<(b, s, n, k) -> (n, k)>
#y3 = affine_map<(b, s, n, k) -> (b, s, n)>
#e3 = affine_map<(b, s, n) -> (b, s, n)>
#dq = affine_map<(n, k) -> (n, k floordiv 2)>
#sq = affine_map<(n, k) -> (n, k floordiv 32)>
func.func @x_view(%rows: index, %shape: memref<3xindex>, %d0: index, %d1: index, %d: memref<8x32xi8>,
                  %s: memref<8x2xf32>, %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %xr = memref.alloc(%rows) : memref<?x64xf32>
  linalg.fill ins(%one : f32) outs(%xr : memref<?x64xf32>)
  %x = memref.reshape %xr(%shape) : (memref<?x64xf32>, memref<3xindex>) -> memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#dq, #sq, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  memref.dealloc %xr : memref<?x64xf32>
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in, %in2 : f32
    linalg.yield %r : f32
  }
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}
func.func @x_view_written(%rows: index, %shape: memref<3xindex>, %d0: index, %d1: index, %d: memref<8x32xi8>,
                          %s: memref<8x2xf32>, %a: memref<4x64xf32>, %b: memref<8x4xf32>, %y: memref<?x?x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %xr = memref.alloc(%rows) : memref<?x64xf32>
  linalg.fill ins(%one : f32) outs(%xr : memref<?x64xf32>)
  %x = memref.reshape %xr(%shape) : (memref<?x64xf32>, memref<3xindex>) -> memref<?x?x64xf32>
  %w = memref.alloc() : memref<8x64xf32>
  linalg.generic {indexing_maps = [#dq, #sq, #ident], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<8x32xi8>, memref<8x2xf32>) outs(%w : memref<8x64xf32>) attrs = {qopt.dequantized = !int4} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  %z = memref.alloc(%d0, %d1) : memref<?x?x4xf32>
  linalg.fill ins(%zero : f32) outs(%z : memref<?x?x4xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %a : memref<?x?x64xf32>, memref<4x64xf32>) outs(%z : memref<?x?x4xf32>)
  %q = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%q : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%z, %b : memref<?x?x4xf32>, memref<8x4xf32>) outs(%q : memref<?x?x8xf32>)
  linalg.fill ins(%zero : f32) outs(%xr : memref<?x64xf32>)
  %p = memref.alloc(%d0, %d1) : memref<?x?x8xf32>
  linalg.fill ins(%zero : f32) outs(%p : memref<?x?x8xf32>)
  linalg.contract indexing_maps = [#x3, #w3, #y3] ins(%x, %w : memref<?x?x64xf32>, memref<8x64xf32>) outs(%p : memref<?x?x8xf32>)
  linalg.generic {indexing_maps = [#e3, #e3, #e3], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%p, %q : memref<?x?x8xf32>, memref<?x?x8xf32>) outs(%y : memref<?x?x8xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %r = arith.addf %in, %in2 : f32
    linalg.yield %r : f32
  }
  memref.dealloc %xr : memref<?x64xf32>
  memref.dealloc %p : memref<?x?x8xf32>
  memref.dealloc %q : memref<?x?x8xf32>
  memref.dealloc %z : memref<?x?x4xf32>
  memref.dealloc %w : memref<8x64xf32>
  return
}
