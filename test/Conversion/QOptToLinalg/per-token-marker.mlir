// RUN: qopt-opt %s --qopt-insert-fake-quant="activations=int8:per-token" --convert-qopt-to-linalg | FileCheck %s --check-prefix=INT8
// RUN: qopt-opt %s --qopt-insert-fake-quant="activations=fp8-e4m3:per-token" --convert-qopt-to-linalg | FileCheck %s --check-prefix=E4M3
// RUN: qopt-opt %s --qopt-insert-fake-quant="activations=fp8-e5m2:per-token" --convert-qopt-to-linalg | FileCheck %s --check-prefix=NONE
// RUN: qopt-opt %s --qopt-insert-fake-quant="activations=int8:per-token,asym" --convert-qopt-to-linalg | FileCheck %s --check-prefix=NONE
// RUN: qopt-opt %s --qopt-insert-fake-quant="activations=fp8-e4m3:per-tensor" --convert-qopt-to-linalg | FileCheck %s --check-prefix=NONE

// The loop of a dynamic per-token quantizer of activations (max|x| / qmax
// over the last axis, no zero point) carries what the targets need to run
// the product on codes instead: the bits of a signed integer format, 228
// (0xE4) for FP8 E4M3FN (the CUDA library's FP8 tokens). E5M2 tokens,
// asymmetric ones and per-tensor scales are not marked.
// INT8: linalg.generic {{.*}}qopt.per_token_quant = 8 : i64
// E4M3: linalg.generic {{.*}}qopt.per_token_quant = 228 : i64
// NONE-NOT: qopt.per_token_quant

qopt.param @wq : tensor<4x8xf32> = dense<0.5> : tensor<4x8xf32>
func.func @m(%x: tensor<3x8xf32>) -> tensor<3x4xf32> {
  %wq = qopt.load_param @wq : tensor<4x8xf32>
  %q = qopt.linear %x, %wq module "model.q_proj" : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<3x4xf32>
  return %q : tensor<3x4xf32>
}
