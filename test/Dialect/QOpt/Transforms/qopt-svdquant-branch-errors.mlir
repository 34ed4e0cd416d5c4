// branch-type must be narrower than the layer's input (or its own type):
// f16 factors for a bf16 model, f32 ones for a bf16 model are errors naming
// the layer.
// RUN: not qopt-opt %s --qopt-svdquant="weights= rank=1 branch-type=f16" 2>&1 | FileCheck %s --check-prefix=F16
// RUN: not qopt-opt %s --qopt-svdquant="weights= rank=1 branch-type=f32" 2>&1 | FileCheck %s --check-prefix=F32
// F16: error: qopt-svdquant: branch-type f16 is not narrower than the input of fc (bf16)
// F32: error: qopt-svdquant: branch-type f32 is not narrower than the input of fc (bf16)
qopt.param @fc.weight : tensor<2x2xbf16> = dense<[[2.0, 0.0], [0.0, 1.0]]> : tensor<2x2xbf16>
func.func @layer(%x: tensor<?x2xbf16>) -> tensor<?x2xbf16> {
  %w = qopt.load_param @fc.weight : tensor<2x2xbf16>
  %y = qopt.linear %x, %w module "fc" : (tensor<?x2xbf16>, tensor<2x2xbf16>) -> tensor<?x2xbf16>
  return %y : tensor<?x2xbf16>
}
