// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="attention-library=attn" | FileCheck %s
// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="attention-library=attn" --cse | FileCheck %s --check-prefix=CSE
// With attention-library, qopt.attention becomes one call of the fused
// kernel (the CUDA target's qopt_cuda_attention; its numerics:
// unittests/Runtime/CUDAAttentionTest.cpp, test/e2e/cuda-target.test):
// Q, K, V, the mask and a fresh Y as strided memrefs; flags float mask 1,
// bool mask 2, causal 4, soft cap 8; the size checks stay.

// CHECK-LABEL: func.func @gqa_causal_softcap
// CHECK: cf.assert {{.*}}K and V have different sequence lengths
// CHECK: %[[Q:.*]] = bufferization.to_buffer %arg0 read_only
// CHECK: %[[QC:.*]] = memref.cast %[[Q]]
// CHECK: bufferization.to_buffer %arg1 read_only
// CHECK: bufferization.to_buffer %arg2 read_only
// CHECK: %[[Y:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x4x?x6xf32>
// CHECK: %[[YC:.*]] = memref.cast %[[Y]]
// CHECK: call @attn(%c12_i64, %{{.*}}, %{{.*}}, %[[QC]], %{{.*}}, %{{.*}}, %[[QC]], %[[YC]])
// CHECK: %[[R:.*]] = bufferization.to_tensor %[[Y]] restrict :
// CHECK: return %[[R]]
// CHECK-NOT: linalg.generic
// CHECK: func.func private @attn(i64, f64, f64, memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
func.func @gqa_causal_softcap(%q: tensor<?x4x?x8xf32>, %k: tensor<?x2x?x8xf32>, %v: tensor<?x2x?x6xf32>) -> tensor<?x4x?x6xf32> {
  %y = qopt.attention %q, %k, %v causal softcap = 5.0 : (tensor<?x4x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x6xf32>) -> tensor<?x4x?x6xf32>
  return %y : tensor<?x4x?x6xf32>
}

// -----

// A bool mask of rank 2: leading unit dimensions, the _i1 entry.
// CHECK-LABEL: func.func @bool_mask
// CHECK-DAG: %[[SCALE:.*]] = arith.constant 5.000000e-01 : f64
// CHECK-DAG: %[[M:.*]] = tensor.expand_shape %arg3 {{\[\[}}0, 1, 2], [3]] output_shape [1, 1, 5, 7] : tensor<5x7xi1> into tensor<1x1x5x7xi1>
// CHECK: bufferization.to_buffer %[[M]] read_only {{.*}}: tensor<1x1x5x7xi1>
// CHECK: call @attn_i1(%c2_i64, %[[SCALE]], %{{.*}}
// CHECK: func.func private @attn_i1({{.*}}memref<?x?x?x?xi1, strided<[?, ?, ?, ?], offset: ?>>
func.func @bool_mask(%q: tensor<1x4x5x8xf32>, %k: tensor<1x4x7x8xf32>, %v: tensor<1x4x7x8xf32>, %m: tensor<5x7xi1>) -> tensor<1x4x5x8xf32> {
  %y = qopt.attention %q, %k, %v mask(%m) scale = 0.5 : (tensor<1x4x5x8xf32>, tensor<1x4x7x8xf32>, tensor<1x4x7x8xf32>, tensor<5x7xi1>) -> tensor<1x4x5x8xf32>
  return %y : tensor<1x4x5x8xf32>
}

// -----

// A float mask as the exports make it ([B, 1, S, L]); its sizes checked.
// CHECK-LABEL: func.func @float_mask
// CHECK: cf.assert {{.*}}attn_mask does not broadcast to the scores
// CHECK: call @attn(%c1_i64,
func.func @float_mask(%q: tensor<?x4x?x8xf32>, %k: tensor<?x4x?x8xf32>, %v: tensor<?x4x?x8xf32>, %m: tensor<?x1x?x?xf32>) -> tensor<?x4x?x8xf32> {
  %y = qopt.attention %q, %k, %v mask(%m) : (tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>, tensor<?x1x?x?xf32>) -> tensor<?x4x?x8xf32>
  return %y : tensor<?x4x?x8xf32>
}

// -----

// What the kernel does not take stays linalg: f16 data (and so an f16
// mask), a head size above 128, a dynamic one.
// CHECK-LABEL: func.func @stays
// CHECK-NOT: call @attn
// CHECK-COUNT-4: math.exp
// CHECK-NOT: call @attn
// CHECK: return
func.func @stays(%h: tensor<1x2x3x8xf16>, %big: tensor<1x2x3x256xf32>, %dyn: tensor<1x2x3x?xf32>,
                 %m16: tensor<3x3xf16>)
    -> (tensor<1x2x3x8xf16>, tensor<1x2x3x256xf32>, tensor<1x2x3x?xf32>, tensor<1x2x3x8xf16>) {
  %a = qopt.attention %h, %h, %h : (tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>) -> tensor<1x2x3x8xf16>
  %b = qopt.attention %big, %big, %big : (tensor<1x2x3x256xf32>, tensor<1x2x3x256xf32>, tensor<1x2x3x256xf32>) -> tensor<1x2x3x256xf32>
  %c = qopt.attention %dyn, %dyn, %dyn scale = 0.3 : (tensor<1x2x3x?xf32>, tensor<1x2x3x?xf32>, tensor<1x2x3x?xf32>) -> tensor<1x2x3x?xf32>
  %d = qopt.attention %h, %h, %h mask(%m16) : (tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<3x3xf16>) -> tensor<1x2x3x8xf16>
  return %a, %b, %c, %d : tensor<1x2x3x8xf16>, tensor<1x2x3x256xf32>, tensor<1x2x3x?xf32>, tensor<1x2x3x8xf16>
}

// -----

// Two layers reading one mask: each call reads it through its own
// to_buffer (numbered, so CSE keeps them apart: a merged read would sit
// before ops that bufferization might let write the mask in place).
// CSE-LABEL: func.func @shared_mask
// CSE: bufferization.to_buffer %arg1 read_only {qopt.read =
// CSE: call @attn(
// CSE: bufferization.to_buffer %arg1 read_only {qopt.read =
// CSE: call @attn(
func.func @shared_mask(%q: tensor<1x2x3x8xf32>, %m: tensor<1x1x3x3xf32>) -> tensor<1x2x3x8xf32> {
  %a = qopt.attention %q, %q, %q mask(%m) : (tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x1x3x3xf32>) -> tensor<1x2x3x8xf32>
  %b = qopt.attention %a, %a, %a mask(%m) : (tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x1x3x3xf32>) -> tensor<1x2x3x8xf32>
  return %b : tensor<1x2x3x8xf32>
}

// -----

// qopt.attention_grad: one call of <name>_backward (_i1: a bool mask)
// with Q, K, V, the mask, O, dO, then fresh dQ, dK, dV and the [B, Hq, S,
// 2] scratch buffer of the rows' statistics (freed by bufferization's
// deallocation, not returned).
// CHECK-LABEL: func.func @grad
// CHECK: %[[DQ:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x4x?x8xf32>
// CHECK: %[[DK:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x2x?x8xf32>
// CHECK: %[[DV:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x2x?x8xf32>
// CHECK: %[[ST:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x4x?x2xf32>
// CHECK: call @attn_backward_i1(%c6_i64,
// CHECK-DAG: bufferization.to_tensor %[[DQ]] restrict :
// CHECK-DAG: bufferization.to_tensor %[[DK]] restrict :
// CHECK-DAG: bufferization.to_tensor %[[DV]] restrict :
// CHECK-NOT: bufferization.to_tensor %[[ST]]
// CHECK: func.func private @attn_backward_i1(i64, f64, f64
func.func @grad(%q: tensor<?x4x?x8xf32>, %k: tensor<?x2x?x8xf32>, %v: tensor<?x2x?x8xf32>, %m: tensor<?x?xi1>, %y: tensor<?x4x?x8xf32>, %dy: tensor<?x4x?x8xf32>) -> (tensor<?x4x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>) {
  %dq, %dk, %dv = qopt.attention_grad %q, %k, %v mask(%m) output(%y, %dy) causal scale = 0.25 : (tensor<?x4x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x?xi1>, tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>) -> (tensor<?x4x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>)
  return %dq, %dk, %dv : tensor<?x4x?x8xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?x8xf32>
}
