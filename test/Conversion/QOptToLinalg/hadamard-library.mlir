// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="hadamard-library=had" | FileCheck %s
// With hadamard-library, an f32 qopt.hadamard over the last axis with a
// block n = base · 2^k of at most 23040 (base <= 252) becomes one call of
// the fast Walsh-Hadamard transform (the CUDA target's qopt_cuda_hadamard;
// its numerics: unittests/Runtime/CUDAHadamardTest.cpp,
// test/e2e/cuda-target.test): flags (1: signs), n, 1/sqrt(n), then x as
// [rows, D], the signs, H_base (i8, [[1]] for powers of two) and a fresh y.

// Leading dimensions folded into rows, then the result reshaped back
// (tensor.reshape: two dynamic sizes in one group).
// CHECK-LABEL: func.func @rank3_signs
// CHECK-DAG: %[[N:.*]] = arith.constant 64 : i64
// CHECK-DAG: %[[SIGNED:.*]] = arith.constant 1 : i64
// CHECK-DAG: %[[SCALE:.*]] = arith.constant 1.250000e-01 : f64
// CHECK-DAG: %[[ONE:.*]] = arith.constant dense<1> : tensor<1x1xi8>
// CHECK: %[[X:.*]] = tensor.collapse_shape %arg0 {{\[\[}}0, 1], [2]] : tensor<?x?x64xf32> into tensor<?x64xf32>
// CHECK: %[[Y:.*]] = memref.alloc(%{{.*}}) : memref<?x64xf32>
// CHECK: bufferization.to_buffer %[[X]] read_only
// CHECK: bufferization.to_buffer %arg1 read_only
// CHECK: bufferization.to_buffer %[[ONE]] read_only
// CHECK: call @had(%[[SIGNED]], %[[N]], %[[SCALE]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
// CHECK: %[[T:.*]] = bufferization.to_tensor %[[Y]] restrict :
// CHECK: tensor.reshape %[[T]]
func.func @rank3_signs(%x: tensor<?x?x64xf32>, %s: tensor<64xf32>) -> tensor<?x?x64xf32> {
  %y = qopt.hadamard %x signs %s : (tensor<?x?x64xf32>, tensor<64xf32>) -> tensor<?x?x64xf32>
  return %y : tensor<?x?x64xf32>
}

// -----

// Blocks within the row; no signs (flags 0, a one-element stand-in).
// CHECK-LABEL: func.func @blocks
// CHECK-DAG: %[[N:.*]] = arith.constant 32 : i64
// CHECK-DAG: %[[NONE:.*]] = arith.constant 0 : i64
// CHECK: call @had(%[[NONE]], %[[N]],
// CHECK-NOT: tensor.reshape
func.func @blocks(%x: tensor<?x128xf32>) -> tensor<?x128xf32> {
  %y = qopt.hadamard %x block = 32 : (tensor<?x128xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// A vector: one row.
// CHECK-LABEL: func.func @vector
// CHECK: tensor.expand_shape %arg0 {{\[\[}}0, 1]] output_shape [1, 32]
// CHECK: call @had(
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0, 1]] : tensor<1x32xf32> into tensor<32xf32>
func.func @vector(%x: tensor<32xf32>) -> tensor<32xf32> {
  %y = qopt.hadamard %x : (tensor<32xf32>) -> tensor<32xf32>
  return %y : tensor<32xf32>
}

// -----

// Orders base · 2^k: H_base (Paley I's for 12) as an i8 constant; 11008 =
// 172 · 64 (QuaRot's Llama-2-7B intermediate size); 16384, past the
// power-of-two kernel's 8192; 28672 = 28 · 1024 (Llama-3-70B's
// intermediate size), past 23040: the library's two launches.
// CHECK-LABEL: func.func @bases
// CHECK-DAG: %[[N24:.*]] = arith.constant 24 : i64
// CHECK-DAG: %[[H12:.*]] = arith.constant dense<"0x010101010101010101010101FF01FF01{{.*}}"> : tensor<12x12xi8>
// CHECK-DAG: %[[N11008:.*]] = arith.constant 11008 : i64
// CHECK-DAG: %[[H172:.*]] = arith.constant dense<{{.*}}> : tensor<172x172xi8>
// CHECK-DAG: %[[N16384:.*]] = arith.constant 16384 : i64
// CHECK-DAG: %[[N28672:.*]] = arith.constant 28672 : i64
// CHECK-DAG: %[[H28:.*]] = arith.constant dense<{{.*}}> : tensor<28x28xi8>
// CHECK: bufferization.to_buffer %[[H12]] read_only
// CHECK: call @had(%{{.*}}, %[[N24]],
// CHECK: bufferization.to_buffer %[[H172]] read_only
// CHECK: call @had(%{{.*}}, %[[N11008]],
// CHECK: call @had(%{{.*}}, %[[N16384]],
// CHECK: bufferization.to_buffer %[[H28]] read_only
// CHECK: call @had(%{{.*}}, %[[N28672]],
// CHECK-NOT: linalg.generic
// CHECK: return
func.func @bases(%a: tensor<4x48xf32>, %b: tensor<2x11008xf32>, %c: tensor<2x16384xf32>, %e: tensor<1x28672xf32>)
    -> (tensor<4x48xf32>, tensor<2x11008xf32>, tensor<2x16384xf32>, tensor<1x28672xf32>) {
  %0 = qopt.hadamard %a block = 24 : (tensor<4x48xf32>) -> tensor<4x48xf32>
  %1 = qopt.hadamard %b : (tensor<2x11008xf32>) -> tensor<2x11008xf32>
  %2 = qopt.hadamard %c : (tensor<2x16384xf32>) -> tensor<2x16384xf32>
  %3 = qopt.hadamard %e : (tensor<1x28672xf32>) -> tensor<1x28672xf32>
  return %0, %1, %2, %3 : tensor<4x48xf32>, tensor<2x11008xf32>, tensor<2x16384xf32>, tensor<1x28672xf32>
}

// -----

// What the kernel does not take keeps the linalg lowering: a block past
// 23040 whose part past 8192 is more than 252 (2^21 = 256 · 8192), a base
// past 252 (276, Paley II), another axis, f16.
// CHECK-LABEL: func.func @stays
// CHECK-NOT: call @had
// CHECK: return
func.func @stays(%a: tensor<1x2097152xf32>, %d: tensor<2x276xf32>, %b: tensor<16x4xf32>, %c: tensor<2x16xf16>)
    -> (tensor<1x2097152xf32>, tensor<2x276xf32>, tensor<16x4xf32>, tensor<2x16xf16>) {
  %0 = qopt.hadamard %a : (tensor<1x2097152xf32>) -> tensor<1x2097152xf32>
  %3 = qopt.hadamard %d : (tensor<2x276xf32>) -> tensor<2x276xf32>
  %1 = qopt.hadamard %b axis = 0 : (tensor<16x4xf32>) -> tensor<16x4xf32>
  %2 = qopt.hadamard %c : (tensor<2x16xf16>) -> tensor<2x16xf16>
  return %0, %3, %1, %2 : tensor<1x2097152xf32>, tensor<2x276xf32>, tensor<16x4xf32>, tensor<2x16xf16>
}
