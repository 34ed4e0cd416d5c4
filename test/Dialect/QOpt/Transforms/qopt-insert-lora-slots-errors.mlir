// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-insert-lora="target-modules=q_proj r=2 slots=true"
// Run-time slots are f32 (the runtime fills them from any adapter's
// dtype).
func.func @f16(%x: tensor<?x8xf16>, %w: tensor<4x8xf16>) -> tensor<?x4xf16> {
  // expected-error @+1 {{qopt-insert-lora: run-time slots need an f32 layer; module 'model.layers.0.q_proj' computes in 'f16'}}
  %q = qopt.linear %x, %w module "model.layers.0.q_proj" : (tensor<?x8xf16>, tensor<4x8xf16>) -> tensor<?x4xf16>
  return %q : tensor<?x4xf16>
}
