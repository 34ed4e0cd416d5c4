// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="norm-library=norm" | FileCheck %s
// With norm-library, RMSNorm and LayerNorm of f32 data over the last axis
// become one call of the row kernel (the CUDA target's qopt_cuda_norm, a
// warp per row; its numerics: unittests/Runtime/CUDANormTest.cpp and the
// whole models in test/e2e/cuda-target.test): flags (LayerNorm 1, beta 2),
// epsilon, then x as [rows, D], gamma, beta and a fresh y. The size checks
// stay.

// CHECK-LABEL: func.func @rms
// CHECK-DAG: %[[FLAGS:.*]] = arith.constant 0 : i64
// CHECK-DAG: %[[EPS:.*]] = arith.constant 9.9999999999999995E-7 : f64
// CHECK: cf.assert {{.*}}scale
// CHECK: %[[X:.*]] = tensor.collapse_shape %arg0 {{\[\[}}0, 1], [2]] : tensor<?x?x?xf32> into tensor<?x?xf32>
// CHECK: %[[Y:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xf32>
// CHECK: %[[XB:.*]] = bufferization.to_buffer %[[X]] read_only
// CHECK: %[[G:.*]] = bufferization.to_buffer %arg1 read_only
// CHECK: %[[B:.*]] = bufferization.to_buffer %arg1 read_only
// CHECK: %[[YC:.*]] = memref.cast %[[Y]]
// CHECK: call @norm(%[[FLAGS]], %[[EPS]], %[[XB]], %[[G]], %[[B]], %[[YC]]) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
// CHECK: tensor.reshape
func.func @rms(%x: tensor<?x?x?xf32>, %g: tensor<?xf32>) -> tensor<?x?x?xf32> {
  %y = qopt.rms_norm %x, %g : (tensor<?x?x?xf32>, tensor<?xf32>) -> tensor<?x?x?xf32>
  return %y : tensor<?x?x?xf32>
}

// -----

// CHECK-LABEL: func.func @layer_beta
// CHECK-DAG: %[[FLAGS:.*]] = arith.constant 3 : i64
// CHECK: call @norm(%[[FLAGS]],
// CHECK-NOT: tensor.reshape
func.func @layer_beta(%x: tensor<?x768xf32>, %g: tensor<768xf32>, %b: tensor<768xf32>) -> tensor<?x768xf32> {
  %y = qopt.layer_norm %x, %g, %b : (tensor<?x768xf32>, tensor<768xf32>, tensor<768xf32>) -> tensor<?x768xf32>
  return %y : tensor<?x768xf32>
}

// -----

// CHECK-LABEL: func.func @layer
// CHECK-DAG: %[[FLAGS:.*]] = arith.constant 1 : i64
// CHECK: call @norm(%[[FLAGS]],
func.func @layer(%x: tensor<2x5x8xf32>, %g: tensor<8xf32>) -> tensor<2x5x8xf32> {
  %y = qopt.layer_norm %x, %g : (tensor<2x5x8xf32>, tensor<8xf32>) -> tensor<2x5x8xf32>
  return %y : tensor<2x5x8xf32>
}

// -----

// Over two trailing axes, or of bf16 data: the linalg lowering.
// CHECK-LABEL: func.func @stays
// CHECK-NOT: call @norm
// CHECK: return
func.func @stays(%x: tensor<2x4x8xf32>, %g: tensor<4x8xf32>, %h: tensor<2x8xbf16>, %gh: tensor<8xbf16>)
    -> (tensor<2x4x8xf32>, tensor<2x8xbf16>) {
  %0 = qopt.layer_norm %x, %g axis = 1 : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4x8xf32>
  %1 = qopt.rms_norm %h, %gh : (tensor<2x8xbf16>, tensor<8xbf16>) -> tensor<2x8xbf16>
  return %0, %1 : tensor<2x4x8xf32>, tensor<2x8xbf16>
}

// -----

// qopt.norm_grad: one call of `<norm-library>_backward`: flags (LayerNorm
// 1, gamma's gradient wanted 4, beta's 8: here only gamma's is used),
// epsilon, then x and dy as [rows, D], gamma, and fresh dx, gamma's and
// beta's gradients; dx back in x's shape.
// CHECK-LABEL: func.func @backward
// CHECK-DAG: %[[FLAGS:.*]] = arith.constant 5 : i64
// CHECK: %[[X:.*]] = tensor.collapse_shape %arg0
// CHECK: %[[DY:.*]] = tensor.collapse_shape %arg2
// CHECK: %[[DX:.*]] = memref.alloc(%{{.*}}) : memref<?x64xf32>
// CHECK: %[[DG:.*]] = memref.alloc() : memref<64xf32>
// CHECK: %[[DB:.*]] = memref.alloc() : memref<64xf32>
// CHECK: bufferization.to_buffer %[[X]] read_only
// CHECK: bufferization.to_buffer %arg1 read_only
// CHECK: bufferization.to_buffer %[[DY]] read_only
// CHECK: call @norm_backward(%[[FLAGS]], %{{.*}}) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>) -> ()
// CHECK: tensor.reshape
func.func @backward(%x: tensor<2x?x64xf32>, %g: tensor<64xf32>, %dy: tensor<2x?x64xf32>) -> (tensor<2x?x64xf32>, tensor<64xf32>) {
  %dx, %dg, %db = qopt.norm_grad %x, %g, %dy layer epsilon = 1.0e-05 : (tensor<2x?x64xf32>, tensor<64xf32>, tensor<2x?x64xf32>) -> (tensor<2x?x64xf32>, tensor<64xf32>, tensor<64xf32>)
  return %dx, %dg : tensor<2x?x64xf32>, tensor<64xf32>
}
