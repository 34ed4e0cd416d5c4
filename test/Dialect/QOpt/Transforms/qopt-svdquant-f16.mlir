// A 16-bit branch whose factors f16 cannot hold (B = U·S carries the
// singular values; f16 tops out at 65504) is an error naming the layer;
// bf16 holds them.
// RUN: not qopt-opt %s --qopt-svdquant="weights= rank=1 branch-type=f16" 2>&1 | FileCheck %s
// RUN: qopt-opt %s --qopt-svdquant="weights= rank=1 branch-type=bf16" | FileCheck %s --check-prefix=BF16
// CHECK: error: qopt-svdquant: branch-type f16: the low-rank factors of fc overflow it (largest singular value 2{{.*}}); use bf16 or f32
// BF16: qopt.param @fc.svd_B : tensor<2x1xbf16>
qopt.param @fc.weight : tensor<2x2xf32> = dense<[[200000.0, 0.0], [0.0, 1.0]]> : tensor<2x2xf32>
func.func @layer(%x: tensor<?x2xf32>) -> tensor<?x2xf32> {
  %w = qopt.load_param @fc.weight : tensor<2x2xf32>
  %y = qopt.linear %x, %w module "fc" : (tensor<?x2xf32>, tensor<2x2xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
