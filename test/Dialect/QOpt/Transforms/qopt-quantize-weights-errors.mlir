// Weights qopt-quantize-weights leaves alone by default and refuses when
// named: a trainable one (a frozen quantized copy would go stale); and
// weights with NaN or infinite values, always refused. Then a selection
// whose layers are all quantized already: a warning, nothing to do.
// RUN: qopt-opt %s --qopt-quantize-weights="format=int8 exclude-modules=n_proj" 2>&1 | FileCheck %s --check-prefix=DEFAULT
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int8 target-modules=o_proj" 2>&1 | FileCheck %s --check-prefix=TRAINABLE
// RUN: not qopt-opt %s --qopt-quantize-weights="format=int8 target-modules=n_proj" 2>&1 | FileCheck %s --check-prefix=NAN
// RUN: qopt-opt %s --qopt-quantize-weights="format=int8 exclude-modules=n_proj" | qopt-opt --qopt-quantize-weights="format=int4 exclude-modules=n_proj" 2>&1 | FileCheck %s --check-prefix=AGAIN

// DEFAULT: qopt.param trainable @wo : tensor<2x4xf32>
// DEFAULT: qopt.linear %arg0, %{{.*}} module "model.o_proj" : (tensor<3x4xf32>, tensor<2x4xf32>)
// DEFAULT: qopt.linear %arg0, %{{.*}} module "model.k_proj" : (tensor<3x4xf32>, !qopt.qtensor<2x4, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>)
// TRAINABLE: error: qopt-quantize-weights: the weight of 'model.o_proj' is trainable or state: only frozen weights known at compile time are quantized
// NAN: error: qopt-quantize-weights: the weight of 'model.n_proj' holds NaN or infinite values
// AGAIN: warning: qopt-quantize-weights: every selected layer is already quantized (a quantized export or checkpoint): nothing to do

qopt.param trainable @wo : tensor<2x4xf32> = dense<1.0> : tensor<2x4xf32>
qopt.param @wk : tensor<2x4xf32> = dense<[[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.25, 0.0]]> : tensor<2x4xf32>
qopt.param @wn : tensor<2x4xf32> = dense<[[1.0, 0x7FC00000, 3.0, 4.0], [0x7F800000, 0.5, 0.25, 0.0]]> : tensor<2x4xf32>
func.func @m(%x: tensor<3x4xf32>) -> (tensor<3x2xf32>, tensor<3x2xf32>, tensor<3x2xf32>) {
  %wo = qopt.load_param @wo : tensor<2x4xf32>
  %o = qopt.linear %x, %wo module "model.o_proj" : (tensor<3x4xf32>, tensor<2x4xf32>) -> tensor<3x2xf32>
  %wk = qopt.load_param @wk : tensor<2x4xf32>
  %k = qopt.linear %x, %wk module "model.k_proj" : (tensor<3x4xf32>, tensor<2x4xf32>) -> tensor<3x2xf32>
  %wn = qopt.load_param @wn : tensor<2x4xf32>
  %n = qopt.linear %x, %wn module "model.n_proj" : (tensor<3x4xf32>, tensor<2x4xf32>) -> tensor<3x2xf32>
  return %o, %k, %n : tensor<3x2xf32>, tensor<3x2xf32>, tensor<3x2xf32>
}
