// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="hadamard-library=had" | FileCheck %s
// With hadamard-library, an f32 qopt.hadamard over the last axis with a
// power-of-two block becomes one call of the fast Walsh-Hadamard
// transform (the CUDA target's qopt_cuda_hadamard; its numerics:
// unittests/Runtime/CUDAHadamardTest.cpp, test/e2e/cuda-target.test):
// flags (1: signs), n, 1/sqrt(n), then x as [rows, D], the signs and a
// fresh y.

// Leading dimensions folded into rows, then the result reshaped back
// (tensor.reshape: two dynamic sizes in one group).
// CHECK-LABEL: func.func @rank3_signs
// CHECK-DAG: %[[N:.*]] = arith.constant 64 : i64
// CHECK-DAG: %[[SIGNED:.*]] = arith.constant 1 : i64
// CHECK-DAG: %[[SCALE:.*]] = arith.constant 1.250000e-01 : f64
// CHECK: %[[X:.*]] = tensor.collapse_shape %arg0 {{\[\[}}0, 1], [2]] : tensor<?x?x64xf32> into tensor<?x64xf32>
// CHECK: %[[Y:.*]] = memref.alloc(%{{.*}}) : memref<?x64xf32>
// CHECK: bufferization.to_buffer %[[X]] read_only
// CHECK: bufferization.to_buffer %arg1 read_only
// CHECK: call @had(%[[SIGNED]], %[[N]], %[[SCALE]], %{{.*}}, %{{.*}}, %{{.*}}) : (i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
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

// What the kernel does not take keeps the linalg lowering: an order m·2^k
// (12), another axis, f16.
// CHECK-LABEL: func.func @stays
// CHECK-NOT: call @had
// CHECK: return
func.func @stays(%a: tensor<4x12xf32>, %b: tensor<16x4xf32>, %c: tensor<2x16xf16>)
    -> (tensor<4x12xf32>, tensor<16x4xf32>, tensor<2x16xf16>) {
  %0 = qopt.hadamard %a : (tensor<4x12xf32>) -> tensor<4x12xf32>
  %1 = qopt.hadamard %b axis = 0 : (tensor<16x4xf32>) -> tensor<16x4xf32>
  %2 = qopt.hadamard %c : (tensor<2x16xf16>) -> tensor<2x16xf16>
  return %0, %1, %2 : tensor<4x12xf32>, tensor<16x4xf32>, tensor<2x16xf16>
}
