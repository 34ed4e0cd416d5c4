// RUN: qopt-opt %s --qopt-build-train-step -split-input-file -verify-diagnostics
// RUN: not qopt-opt %s --qopt-build-train-step=warmup-steps=-1 -split-input-file 2>&1 | FileCheck %s --check-prefix=WARMUP
// WARMUP: qopt-build-train-step: warmup-steps and max-grad-norm must not be negative

// A causal LM needs logits [batch, seq, vocab].
// expected-error @+1 {{qopt-build-train-step: loss causal-lm needs logits [batch, seq, vocab], not 'tensor<2x8xf32>'}}
func.func @rank(%x: tensor<2x8xf32> {qopt.name = "x"}) -> tensor<2x8xf32> {
  return %x : tensor<2x8xf32>
}

// -----

// expected-error @+1 {{qopt-build-train-step: the model's first output must be float logits, not 'tensor<2x3x8xi64>'}}
func.func @integers(%x: tensor<2x3x8xi64> {qopt.name = "x"}) -> tensor<2x3x8xi64> {
  return %x : tensor<2x3x8xi64>
}

// -----

// The optimizer updates f32 parameters only.
// expected-error @+1 {{qopt-build-train-step: trainable parameter 'w' is 'tensor<2x3x8xbf16>'; the optimizer updates f32 parameters (bf16 / f16 master copies are not built yet)}}
func.func @bf16(%w: tensor<2x3x8xbf16> {qopt.param = "w", qopt.trainable, qopt.inline = dense<1.0> : tensor<2x3x8xbf16>}) -> tensor<2x3x8xf32> {
  %e = tensor.empty() : tensor<2x3x8xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(a, b, c) -> (a, b, c)>, affine_map<(a, b, c) -> (a, b, c)>],
      iterator_types = ["parallel", "parallel", "parallel"]} ins(%w : tensor<2x3x8xbf16>) outs(%e : tensor<2x3x8xf32>) {
  ^bb0(%v: bf16, %o: f32):
    %f = arith.extf %v : bf16 to f32
    linalg.yield %f : f32
  } -> tensor<2x3x8xf32>
  return %y : tensor<2x3x8xf32>
}

// -----

func.func @first(%x: tensor<2x3x8xf32>) -> tensor<2x3x8xf32> {
  return %x : tensor<2x3x8xf32>
}
// expected-error @+1 {{qopt-build-train-step: the module has more than one entry function}}
func.func @second(%x: tensor<2x3x8xf32>) -> tensor<2x3x8xf32> {
  return %x : tensor<2x3x8xf32>
}
