// RUN: qopt-opt %s --qopt-svdquant="weights= rank=1" | FileCheck %s
// RUN: qopt-opt %s --qopt-svdquant="weights=int4:group=4 rank=1" | FileCheck %s --check-prefix=INT4
// RUN: qopt-opt %s --qopt-svdquant="weights= rank=1 branch-type=bf16" | FileCheck %s --check-prefix=BF16
// RUN: not qopt-opt %s --qopt-svdquant="rank=0" 2>&1 | FileCheck %s --check-prefix=RANK
// RUN: not qopt-opt %s --qopt-svdquant="branch-type=f8" 2>&1 | FileCheck %s --check-prefix=BTYPE
// RUN: not qopt-opt %s --qopt-svdquant="svd=fast" 2>&1 | FileCheck %s --check-prefix=SVD
// RUN: not qopt-opt %s --qopt-svdquant="weights=int9" 2>&1 | FileCheck %s --check-prefix=SPEC
// RUN: not qopt-opt %s --qopt-svdquant="target-modules=nothing_like_this" 2>&1 | FileCheck %s --check-prefix=NONE
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int4 group=4" --qopt-svdquant 2>&1 | FileCheck %s --check-prefix=QUANTIZED
// Numerics (the split leaves real exports' logits unchanged, the branch is
// numpy's truncated SVD): test/e2e/outliers.test; accuracy: rotate.test.

// W = diag(4, 1, 0.5, 0.25) + 0.1: the rank-1 branch takes the top singular
// part; the base keeps the module path (activation quantizers select it),
// the branch's two products of the same input have none; their sum
// replaces the layer's result.
// CHECK-LABEL: func.func @layer
// CHECK-SAME: (%[[X:.*]]: tensor<?x4xf32>)
// CHECK: %[[Y:.*]] = qopt.linear %[[X]], %{{.*}}, %{{.*}} module "fc"
// CHECK: %[[A:.*]] = qopt.load_param @fc.svd_A : tensor<1x4xf32>
// CHECK: %[[B:.*]] = qopt.load_param @fc.svd_B : tensor<4x1xf32>
// CHECK: %[[D:.*]] = qopt.linear %[[X]], %[[A]] : (tensor<?x4xf32>, tensor<1x4xf32>) -> tensor<?x1xf32>
// CHECK: %[[U:.*]] = qopt.linear %[[D]], %[[B]] : (tensor<?x1xf32>, tensor<4x1xf32>) -> tensor<?x4xf32>
// CHECK: %[[S:.*]] = linalg.generic {{.*}} ins(%[[Y]], %[[U]] : tensor<?x4xf32>, tensor<?x4xf32>)
// CHECK: arith.addf
// CHECK: return %[[S]]
// INT4-LABEL: func.func @layer
// INT4: qopt.assemble
// INT4: qopt.linear %{{.*}}, %{{.*}}, %{{.*}} module "fc" : (tensor<?x4xf32>, !qopt.qtensor<4x4, #qopt.int<4>, #qopt.per_group<axis = 1, size = 4>, scales = f32>, tensor<4xf32>)
// The 16-bit branch: bf16 factors widened to the input's f32 before each
// product.
// BF16-LABEL: func.func @layer
// BF16: %[[A:.*]] = qopt.load_param @fc.svd_A : tensor<1x4xbf16>
// BF16: %[[B:.*]] = qopt.load_param @fc.svd_B : tensor<4x1xbf16>
// BF16: %[[AW:.*]] = linalg.generic {{.*}} ins(%[[A]] : tensor<1x4xbf16>)
// BF16: arith.extf %{{.*}} : bf16 to f32
// BF16: %[[BW:.*]] = linalg.generic {{.*}} ins(%[[B]] : tensor<4x1xbf16>)
// BF16: qopt.linear %{{.*}}, %[[AW]] : (tensor<?x4xf32>, tensor<1x4xf32>)
// BF16: qopt.linear %{{.*}}, %[[BW]] : (tensor<?x1xf32>, tensor<4x1xf32>)
// RANK: error: qopt-svdquant: rank must be at least 1, got 0
// BTYPE: error: qopt-svdquant: branch-type 'f8' is not auto, bf16, f16 or f32
// SVD: error: qopt-svdquant: svd 'fast' is not exact, randomized or auto
// SPEC: error: qopt-svdquant: weights 'int9': format 'int9' is not supported
// NONE: error: qopt-svdquant: no linear layer is selected
// QUANTIZED: error: qopt-svdquant: the weight of 'fc' is quantized already: decompose before quantizing
qopt.param @fc.weight : tensor<4x4xf32> = dense<[[4.1, 0.1, 0.1, 0.1], [0.1, 1.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1], [0.1, 0.1, 0.1, 0.35]]> : tensor<4x4xf32>
qopt.param @fc.bias : tensor<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
func.func @layer(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %w = qopt.load_param @fc.weight : tensor<4x4xf32>
  %b = qopt.load_param @fc.bias : tensor<4xf32>
  %y = qopt.linear %x, %w, %b module "fc" : (tensor<?x4xf32>, tensor<4x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}
