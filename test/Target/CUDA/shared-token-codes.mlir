// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-quantize-rows=qopt_cuda_quantize_rows cuda-norm=qopt_cuda_norm cuda-norm-quant=qopt_cuda_norm_quant cuda-hadamard=qopt_cuda_hadamard cuda-hadamard-quant=qopt_cuda_hadamard_quant" | FileCheck %s
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear cuda-quantize-rows=qopt_cuda_quantize_rows" | FileCheck %s --check-prefix=ROWS
// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-qlinear=qopt_cuda_qlinear" | FileCheck %s --check-prefix=EACH
// On the CUDA target, the W8A8 products of one per-token quantizer (a
// layer's q, k and v projections) read its input's rows quantized once
// (qopt_cuda_quantize_rows: int8 codes laid out as the quantizer's output,
// one step a row; flag 4 | 8 << 8 | 32 = 2084, the steps in the nested
// scales' first slots), and where that input is a norm's whole output, the
// norm writes the codes itself (qopt_cuda_norm_quant). Without the options
// each product quantizes its input (flag 2052).

!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>

// CHECK-LABEL: func.func @shared_qkv
// CHECK-SAME: (%[[X:[a-z0-9]+]]: memref<4x64xf32>
// CHECK: %[[CODES:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4x64xi8>
// CHECK: %[[STEPS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
// CHECK: %[[XP:.*]] = memref.extract_aligned_pointer_as_index %[[X]]
// CHECK: %[[CP:.*]] = memref.extract_aligned_pointer_as_index %[[CODES]]
// CHECK: %[[SP:.*]] = memref.extract_aligned_pointer_as_index %[[STEPS]]
// CHECK: call @qopt_cuda_quantize_rows(%c8{{[_0-9]*}}, %{{.*}}, %c64{{[_0-9]*}}, %[[XP]], %{{.*}}, %c64{{[_0-9]*}}, %[[CP]], %{{.*}}, %[[SP]], %{{.*}})
// CHECK-NOT: qopt.per_token_quant
// CHECK: %[[A1:.*]] = memref.extract_aligned_pointer_as_index %[[CODES]]
// CHECK: %[[S1:.*]] = memref.extract_aligned_pointer_as_index %[[STEPS]]
// CHECK: call @qopt_cuda_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2084{{[_0-9]*}}, {{.*}}, %[[A1]], {{.*}}, %[[S1]], %offset{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0
// CHECK: call @qopt_cuda_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2084
// CHECK: call @qopt_cuda_qlinear(%c2{{[_0-9]*}}, %c64{{[_0-9]*}}, %c2084
// CHECK-NEXT: memref.dealloc %[[CODES]]
// CHECK-NEXT: memref.dealloc %[[STEPS]]
// CHECK-NOT: memref.alloc
// CHECK: return
// CHECK: func.func private @qopt_cuda_quantize_rows(index, index, index, index, index, index, index, index, index, index, index, index, index, index)
// ROWS-LABEL: func.func @shared_qkv
// ROWS-COUNT-1: call @qopt_cuda_quantize_rows
// ROWS-COUNT-3: call @qopt_cuda_qlinear({{.*}}, %c2084
// EACH-LABEL: func.func @shared_qkv
// EACH-NOT: qopt_cuda_quantize_rows
// EACH-COUNT-3: call @qopt_cuda_qlinear({{.*}}, %c2052
func.func @shared_qkv(%x: memref<4x64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %q: memref<4x16xf32>, %k: memref<4x16xf32>, %v: memref<4x16xf32>) {
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<4x64xf32>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<4x64xf32>, memref<16x64xf32>) outs(%q : memref<4x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  %w2 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w2 : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w2 : memref<4x64xf32>, memref<16x64xf32>) outs(%k : memref<4x16xf32>)
  memref.dealloc %w2 : memref<16x64xf32>
  %w3 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w3 : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w3 : memref<4x64xf32>, memref<16x64xf32>) outs(%v : memref<4x16xf32>)
  memref.dealloc %w3 : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  return
}

// -----

// The quantized rows are a norm's whole output y, which nothing else
// reads: one call computes the norm and the codes (y not written: x in its
// place, flag 0), and y's buffer goes. Dynamic rows: the codes' sizes are
// the quantizer output's.
// CHECK-LABEL: func.func @norm_fused
// CHECK-SAME: (%[[X:[a-z0-9]+]]: memref<?x64xf32>, %[[G:[a-z0-9]+]]: memref<64xf32>
// CHECK: %[[XC:.*]] = memref.cast %[[X]]
// CHECK: %[[GC:.*]] = memref.cast %[[G]]
// CHECK: %[[CODES:.*]] = memref.alloc(%[[NROW:.*]]) {alignment = 64 : i64} : memref<?x64xi8>
// CHECK: %[[STEPS:.*]] = memref.alloc(%[[NROW]]) {alignment = 64 : i64} : memref<?xf32>
// CHECK: call @qopt_cuda_norm_quant(%c0_i64, %{{.*}}, %[[XC]], %[[GC]], %[[GC]], %[[XC]], %c8{{[_0-9]*}}, %c0{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}})
// CHECK-NOT: qopt_cuda_quantize_rows(
// CHECK-NOT: call @qopt_cuda_norm(
// CHECK: call @qopt_cuda_qlinear({{.*}}, %c2084
// CHECK-NOT: memref.alloc({{.*}}) : memref<?x64xf32>
// CHECK: return
// CHECK: func.func private @qopt_cuda_norm_quant(i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, index, index, index, index, index, index)
// ROWS-LABEL: func.func @norm_fused
// ROWS: call @qopt_cuda_norm(
// ROWS: call @qopt_cuda_quantize_rows
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func private @qopt_cuda_norm(i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func @norm_fused(%x: memref<?x64xf32>, %g: memref<64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %out: memref<?x16xf32>) {
  %c0 = arith.constant 0 : index
  %flags = arith.constant 0 : i64
  %eps = arith.constant 1.0e-6 : f64
  %n = memref.dim %x, %c0 : memref<?x64xf32>
  %y = memref.alloc(%n) : memref<?x64xf32>
  %xc = memref.cast %x : memref<?x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %gc = memref.cast %g : memref<64xf32> to memref<?xf32, strided<[?], offset: ?>>
  %yc = memref.cast %y : memref<?x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  call @qopt_cuda_norm(%flags, %eps, %xc, %gc, %gc, %yc) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  %a = memref.alloc(%n) : memref<?x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<?x64xf32>) outs(%a : memref<?x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  memref.dealloc %y : memref<?x64xf32>
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<?x64xf32>, memref<16x64xf32>) outs(%out : memref<?x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<?x64xf32>
  return
}

// -----

// y is also read after the quantization (a residual): the fused call
// writes it too (flag 1) and the buffer stays.
// CHECK-LABEL: func.func @norm_y_read_later
// CHECK-SAME: (%[[X:[a-z0-9]+]]: memref<4x64xf32>
// CHECK: %[[Y:.*]] = memref.alloc() : memref<4x64xf32>
// CHECK: %[[YC:.*]] = memref.cast %[[Y]]
// CHECK-NOT: call @qopt_cuda_norm(
// CHECK: call @qopt_cuda_norm_quant(%c0_i64, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[YC]], %c8{{[_0-9]*}}, %c1{{[_0-9]*}},
// CHECK: call @qopt_cuda_qlinear({{.*}}, %c2084
// CHECK: linalg.generic {{.*}} ins(%[[Y]]
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func private @qopt_cuda_norm(i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func @norm_y_read_later(%x: memref<4x64xf32>, %g: memref<64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %out: memref<4x16xf32>, %copy: memref<4x64xf32>) {
  %flags = arith.constant 0 : i64
  %eps = arith.constant 1.0e-6 : f64
  %y = memref.alloc() : memref<4x64xf32>
  %xc = memref.cast %x : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %gc = memref.cast %g : memref<64xf32> to memref<?xf32, strided<[?], offset: ?>>
  %yc = memref.cast %y : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  call @qopt_cuda_norm(%flags, %eps, %xc, %gc, %gc, %yc) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%copy : memref<4x64xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  memref.dealloc %y : memref<4x64xf32>
  return
}

// -----

// Not fused: y is read between the norm and the quantization, or the
// norm's input is written there (the norm would then read the new values).
// The rows are still quantized once.
// CHECK-LABEL: func.func @norm_not_fused
// CHECK: call @qopt_cuda_norm(
// CHECK: call @qopt_cuda_quantize_rows(
// CHECK: call @qopt_cuda_norm(
// CHECK: call @qopt_cuda_quantize_rows(
// CHECK-NOT: qopt_cuda_norm_quant
// CHECK: return
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func private @qopt_cuda_norm(i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func @norm_not_fused(%x: memref<4x64xf32>, %g: memref<64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %out: memref<4x16xf32>, %copy: memref<4x64xf32>) {
  %flags = arith.constant 0 : i64
  %eps = arith.constant 1.0e-6 : f64
  %cst = arith.constant 0.0 : f32
  %y = memref.alloc() : memref<4x64xf32>
  %xc = memref.cast %x : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %gc = memref.cast %g : memref<64xf32> to memref<?xf32, strided<[?], offset: ?>>
  %yc = memref.cast %y : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  call @qopt_cuda_norm(%flags, %eps, %xc, %gc, %gc, %yc) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%copy : memref<4x64xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  // The norm's input written before the quantization.
  call @qopt_cuda_norm(%flags, %eps, %xc, %gc, %gc, %yc) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  linalg.fill ins(%cst : f32) outs(%x : memref<4x64xf32>)
  %a2 = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%a2 : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w2 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w2 : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a2, %w2 : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w2 : memref<16x64xf32>
  memref.dealloc %a2 : memref<4x64xf32>
  memref.dealloc %y : memref<4x64xf32>
  return
}

// -----

// An input that is not of the identity layout (a strided view): each
// product quantizes it itself, as without the option.
// CHECK-LABEL: func.func @strided_input
// CHECK-NOT: qopt_cuda_quantize_rows
// CHECK: call @qopt_cuda_qlinear({{.*}}, %c2052
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @strided_input(%x: memref<4x64xf32, strided<[128, 1]>>, %d: memref<16x64xi8>, %s: memref<16xf32>, %q: memref<4x16xf32>) {
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x : memref<4x64xf32, strided<[128, 1]>>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %sc: f32, %o: f32):
    linalg.yield %sc : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<4x64xf32>, memref<16x64xf32>) outs(%q : memref<4x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  return
}

// -----

// SmoothQuant's smoothing where no norm takes it in gamma (before o_proj):
// a loop nest y = x / s that only the quantization reads. The call reads x
// and divides by s itself (smoothing 2, s's pointer, offset and stride);
// the nest and y's buffer go, and x's free moves after the call.
// CHECK-LABEL: func.func @smoothing_fused
// CHECK-SAME: (%[[X:[a-z0-9]+]]: memref<4x64xf32>, %[[S:[a-z0-9]+]]: memref<64xf32>
// CHECK-NOT: linalg.generic
// CHECK: %[[XP:.*]] = memref.extract_aligned_pointer_as_index %[[X]]
// CHECK: %[[SP:.*]] = memref.extract_aligned_pointer_as_index %[[S]]
// CHECK: call @qopt_cuda_quantize_rows(%c8{{[_0-9]*}}, %{{.*}}, %c64{{[_0-9]*}}, %[[XP]], %{{.*}}, %c64{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %c2{{[_0-9]*}}, %[[SP]], %{{.*}}, %{{.*}})
// CHECK-NOT: memref.alloc() : memref<4x64xf32>
// CHECK: call @qopt_cuda_qlinear({{.*}}, %c2084
// ROWS-LABEL: func.func @smoothing_fused
// ROWS: call @qopt_cuda_quantize_rows({{.*}}, %c2{{[_0-9]*}}, %{{.*}}, %{{.*}}, %{{.*}})
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @smoothing_fused(%x: memref<4x64xf32>, %s: memref<64xf32>, %d: memref<16x64xi8>, %sc: memref<16xf32>, %out: memref<4x16xf32>) {
  %y = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(m, k) -> (k)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x, %s : memref<4x64xf32>, memref<64xf32>) outs(%y : memref<4x64xf32>) {
  ^bb0(%in: f32, %f: f32, %o: f32):
    %q = arith.divf %in, %f : f32
    linalg.yield %q : f32
  }
  memref.dealloc %x : memref<4x64xf32>
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  memref.dealloc %y : memref<4x64xf32>
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %sc : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  return
}

// -----

// Not fused: y is also read after the quantization, the nest does more
// than scale (x / s + 1), or s is indexed by rows.
// CHECK-LABEL: func.func @smoothing_not_fused
// CHECK-COUNT-3: call @qopt_cuda_quantize_rows({{.*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}}, %c0{{[_0-9]*}})
// CHECK-NOT: call @qopt_cuda_quantize_rows
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @smoothing_not_fused(%x: memref<4x64xf32>, %s: memref<64xf32>, %r: memref<4xf32>, %d: memref<16x64xi8>, %sc: memref<16xf32>, %out: memref<4x16xf32>, %copy: memref<4x64xf32>) {
  %one = arith.constant 1.0 : f32
  // y read later.
  %y = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(m, k) -> (k)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x, %s : memref<4x64xf32>, memref<64xf32>) outs(%y : memref<4x64xf32>) {
  ^bb0(%in: f32, %f: f32, %o: f32):
    %q = arith.divf %in, %f : f32
    linalg.yield %q : f32
  }
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w1 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %sc : memref<16x64xi8>, memref<16xf32>) outs(%w1 : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w1 : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w1 : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  memref.copy %y, %copy : memref<4x64xf32> to memref<4x64xf32>
  memref.dealloc %y : memref<4x64xf32>
  // More than a scale.
  %y2 = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(m, k) -> (k)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x, %s : memref<4x64xf32>, memref<64xf32>) outs(%y2 : memref<4x64xf32>) {
  ^bb0(%in: f32, %f: f32, %o: f32):
    %q = arith.divf %in, %f : f32
    %p = arith.addf %q, %one : f32
    linalg.yield %p : f32
  }
  %a2 = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y2 : memref<4x64xf32>) outs(%a2 : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w2 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %sc : memref<16x64xi8>, memref<16xf32>) outs(%w2 : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a2, %w2 : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w2 : memref<16x64xf32>
  memref.dealloc %a2 : memref<4x64xf32>
  memref.dealloc %y2 : memref<4x64xf32>
  // A scale per row, not along K.
  %y3 = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, affine_map<(m, k) -> (m)>, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%x, %r : memref<4x64xf32>, memref<4xf32>) outs(%y3 : memref<4x64xf32>) {
  ^bb0(%in: f32, %f: f32, %o: f32):
    %q = arith.mulf %in, %f : f32
    linalg.yield %q : f32
  }
  %a3 = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y3 : memref<4x64xf32>) outs(%a3 : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w3 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %sc : memref<16x64xi8>, memref<16xf32>) outs(%w3 : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a3, %w3 : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w3 : memref<16x64xf32>
  memref.dealloc %a3 : memref<4x64xf32>
  memref.dealloc %y3 : memref<4x64xf32>
  return
}

// -----

// Not fused: a call takes y's pointer between the norm and the quantization
// (it may read y), or the quantized rows are only part of y (the first 2
// of its 4 rows: the fused norm would write codes for all 4).
// CHECK-LABEL: func.func @norm_partly_or_by_pointer
// CHECK-COUNT-2: call @qopt_cuda_norm(
// CHECK-NOT: qopt_cuda_norm_quant
// CHECK: return
!w8 = !qopt.qtensor<16x64, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#row = affine_map<(n, k) -> (n)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func private @qopt_cuda_norm(i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func private @reader(index)
func.func @norm_partly_or_by_pointer(%x: memref<4x64xf32>, %g: memref<64xf32>, %d: memref<16x64xi8>, %s: memref<16xf32>, %out: memref<4x16xf32>, %out2: memref<2x16xf32>) {
  %flags = arith.constant 0 : i64
  %eps = arith.constant 1.0e-6 : f64
  %xc = memref.cast %x : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %gc = memref.cast %g : memref<64xf32> to memref<?xf32, strided<[?], offset: ?>>
  %y = memref.alloc() : memref<4x64xf32>
  %yc = memref.cast %y : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  call @qopt_cuda_norm(%flags, %eps, %xc, %gc, %gc, %yc) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  %p = memref.extract_aligned_pointer_as_index %y : memref<4x64xf32> -> index
  call @reader(%p) : (index) -> ()
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  memref.dealloc %y : memref<4x64xf32>
  %y2 = memref.alloc() : memref<4x64xf32>
  %y2c = memref.cast %y2 : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  call @qopt_cuda_norm(%flags, %eps, %xc, %gc, %gc, %y2c) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  %top = memref.subview %y2[0, 0] [2, 64] [1, 1] : memref<4x64xf32> to memref<2x64xf32>
  %a2 = memref.alloc() : memref<2x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%top : memref<2x64xf32>) outs(%a2 : memref<2x64xf32>) attrs = {qopt.per_token_quant = 8 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  %w2 = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [#pt, #row, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x64xi8>, memref<16xf32>) outs(%w2 : memref<16x64xf32>) attrs = {qopt.dequantized = !w8} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a2, %w2 : memref<2x64xf32>, memref<16x64xf32>) outs(%out2 : memref<2x16xf32>)
  memref.dealloc %w2 : memref<16x64xf32>
  memref.dealloc %a2 : memref<2x64xf32>
  memref.dealloc %y2 : memref<4x64xf32>
  return
}

// -----

// QuaRot's online Hadamard transform before a W4A4 product (4-bit tokens:
// flag 4 | 4 << 8 | 32 = 1060): one call transforms the rows and writes
// their codes (a block a row); y's buffer goes. Rows longer than 23040 (a
// block's tile) keep the transform and the rows' quantization apart.
// CHECK-LABEL: func.func @hadamard_fused
// CHECK-NOT: call @qopt_cuda_hadamard(
// CHECK: call @qopt_cuda_hadamard_quant(%c1_i64, %c64_i64, %{{.*}}, %[[XC:.*]], %{{.*}}, %arg9, %[[XC]], %c4{{[_0-9]*}}, %c0{{[_0-9]*}},
// CHECK: call @qopt_cuda_qlinear(%c0{{[_0-9]*}}, %c32{{[_0-9]*}}, %c1060
// CHECK: call @qopt_cuda_hadamard(%c0_i64, %c8192_i64
// CHECK: call @qopt_cuda_quantize_rows(%c4
// CHECK: return
// ROWS-LABEL: func.func @hadamard_fused
// ROWS: call @qopt_cuda_hadamard(
// ROWS: call @qopt_cuda_quantize_rows(
!w4 = !qopt.qtensor<16x64, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
!w4l = !qopt.qtensor<16x24576, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#pt = affine_map<(m, k) -> (m, k)>
#grp = affine_map<(n, k) -> (n, k floordiv 32)>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func private @qopt_cuda_hadamard(i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func @hadamard_fused(%x: memref<4x64xf32>, %signs: memref<64xf32>, %d: memref<16x32xi8>, %s: memref<16x2xf32>, %out: memref<4x16xf32>,
                          %xl: memref<2x24576xf32>, %dl: memref<16x12288xi8>, %sl: memref<16x768xf32>, %outl: memref<2x16xf32>,
                          %h: memref<?x?xi8, strided<[?, ?], offset: ?>>) {
  %flags = arith.constant 1 : i64
  %n = arith.constant 64 : i64
  %scale = arith.constant 0.125 : f64
  %xc = memref.cast %x : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %sc = memref.cast %signs : memref<64xf32> to memref<?xf32, strided<[?], offset: ?>>
  %y = memref.alloc() : memref<4x64xf32>
  %yc = memref.cast %y : memref<4x64xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  call @qopt_cuda_hadamard(%flags, %n, %scale, %xc, %sc, %h, %yc) : (i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  %a = memref.alloc() : memref<4x64xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<4x64xf32>) outs(%a : memref<4x64xf32>) attrs = {qopt.per_token_quant = 4 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  memref.dealloc %y : memref<4x64xf32>
  %w = memref.alloc() : memref<16x64xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, #grp, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x32xi8>, memref<16x2xf32>) outs(%w : memref<16x64xf32>) attrs = {qopt.dequantized = !w4} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%a, %w : memref<4x64xf32>, memref<16x64xf32>) outs(%out : memref<4x16xf32>)
  memref.dealloc %w : memref<16x64xf32>
  memref.dealloc %a : memref<4x64xf32>
  // Rows of 24576.
  %f0 = arith.constant 0 : i64
  %nl = arith.constant 8192 : i64
  %xlc = memref.cast %xl : memref<2x24576xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %yl = memref.alloc() : memref<2x24576xf32>
  %ylc = memref.cast %yl : memref<2x24576xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %xl1 = memref.subview %xl[0, 0] [1, 24576] [1, 1] : memref<2x24576xf32> to memref<24576xf32, strided<[1]>>
  %xl1c = memref.cast %xl1 : memref<24576xf32, strided<[1]>> to memref<?xf32, strided<[?], offset: ?>>
  call @qopt_cuda_hadamard(%f0, %nl, %scale, %xlc, %xl1c, %h, %ylc) : (i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  %al = memref.alloc() : memref<2x24576xf32>
  linalg.generic {indexing_maps = [#pt, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%yl : memref<2x24576xf32>) outs(%al : memref<2x24576xf32>) attrs = {qopt.per_token_quant = 4 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  memref.dealloc %yl : memref<2x24576xf32>
  %wl = memref.alloc() : memref<16x24576xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, #grp, #pt], iterator_types = ["parallel", "parallel"]}
      ins(%dl, %sl : memref<16x12288xi8>, memref<16x768xf32>) outs(%wl : memref<16x24576xf32>) attrs = {qopt.dequantized = !w4l} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mk, #nk, #mn] ins(%al, %wl : memref<2x24576xf32>, memref<16x24576xf32>) outs(%outl : memref<2x16xf32>)
  memref.dealloc %wl : memref<16x24576xf32>
  memref.dealloc %al : memref<2x24576xf32>
  return
}

// -----

// An order base · 2^k (11008 = 172 · 64, past the power-of-two kernel's
// 8192 but within a block's 23040): fused too, H_base passed on.
// CHECK-LABEL: func.func @hadamard_base_fused
// CHECK-NOT: call @qopt_cuda_hadamard(
// CHECK: call @qopt_cuda_hadamard_quant(%c0_i64, %c11008_i64, %{{.*}}, %[[XC:.*]], %{{.*}}, %arg5, %[[XC]], %c4{{[_0-9]*}}, %c0{{[_0-9]*}},
// CHECK: call @qopt_cuda_qlinear(
// CHECK-NOT: call @qopt_cuda_quantize_rows
// CHECK: return
!w4b = !qopt.qtensor<16x11008, #qopt.int<4>, #qopt.per_group<axis = 1, size = 32>, scales = f32>
#ptb = affine_map<(m, k) -> (m, k)>
#grpb = affine_map<(n, k) -> (n, k floordiv 32)>
#mkb = affine_map<(m, n, k) -> (m, k)>
#nkb = affine_map<(m, n, k) -> (n, k)>
#mnb = affine_map<(m, n, k) -> (m, n)>
func.func private @qopt_cuda_hadamard(i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func @hadamard_base_fused(%x: memref<2x11008xf32>, %d: memref<16x5504xi8>, %s: memref<16x344xf32>, %out: memref<2x16xf32>,
                               %signs: memref<?xf32, strided<[?], offset: ?>>, %h: memref<?x?xi8, strided<[?, ?], offset: ?>>) {
  %f0 = arith.constant 0 : i64
  %n = arith.constant 11008 : i64
  %scale = arith.constant 0.125 : f64
  %xc = memref.cast %x : memref<2x11008xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  %y = memref.alloc() : memref<2x11008xf32>
  %yc = memref.cast %y : memref<2x11008xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
  call @qopt_cuda_hadamard(%f0, %n, %scale, %xc, %signs, %h, %yc) : (i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  %a = memref.alloc() : memref<2x11008xf32>
  linalg.generic {indexing_maps = [#ptb, #ptb], iterator_types = ["parallel", "parallel"]}
      ins(%y : memref<2x11008xf32>) outs(%a : memref<2x11008xf32>) attrs = {qopt.per_token_quant = 4 : i64} {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  }
  memref.dealloc %y : memref<2x11008xf32>
  %w = memref.alloc() : memref<16x11008xf32>
  linalg.generic {indexing_maps = [affine_map<(n, k) -> (n, k floordiv 2)>, #grpb, #ptb], iterator_types = ["parallel", "parallel"]}
      ins(%d, %s : memref<16x5504xi8>, memref<16x344xf32>) outs(%w : memref<16x11008xf32>) attrs = {qopt.dequantized = !w4b} {
  ^bb0(%c: i8, %v: f32, %o: f32):
    linalg.yield %v : f32
  }
  linalg.contract indexing_maps = [#mkb, #nkb, #mnb] ins(%a, %w : memref<2x11008xf32>, memref<16x11008xf32>) outs(%out : memref<2x16xf32>)
  memref.dealloc %w : memref<16x11008xf32>
  memref.dealloc %a : memref<2x11008xf32>
  return
}
