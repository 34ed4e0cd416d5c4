// RUN: qopt-opt %s --qopt-build-train-step -split-input-file | FileCheck %s
// RUN: qopt-opt %s --qopt-build-train-step=entry=gradients -split-input-file | FileCheck %s --check-prefix=GRAD
// RUN: qopt-opt %s --qopt-build-train-step=entry=eval -split-input-file | FileCheck %s --check-prefix=EVAL
// RUN: qopt-opt %s '--qopt-build-train-step=entry=train optimizer=sgd:lr=0.1,momentum=0.9' -split-input-file | FileCheck %s --check-prefix=SGD
// RUN: qopt-opt %s '--qopt-build-train-step=entry=train,accumulate optimizer=sgd:lr=0.1' -split-input-file | FileCheck %s --check-prefix=ACCUM

// A causal LM's logits [batch, seq, vocab]: by default three entries,
// train_step, eval_step and gradients, taking the same arguments: labels
// after the model's inputs, AdamW's state after its parameters. The train
// step returns the loss, then the updated trainable parameter and the state.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %{{.*}}: tensor<2x3x4xf32> {qopt.dim_names = ["batch", "seq", ""], qopt.name = "x"}
// CHECK-SAME: %{{.*}}: tensor<2x3xi64> {qopt.dim_names = ["batch", "seq"], qopt.name = "labels"}
// CHECK-SAME: %{{.*}}: tensor<4x8xf32> {{{.*}}qopt.param = "w", qopt.trainable}
// CHECK-SAME: %{{.*}}: tensor<i64> {{{.*}}qopt.inline = dense<0> : tensor<i64>, qopt.param = "optimizer.step", qopt.state}
// CHECK-SAME: %{{.*}}: tensor<4x8xf32> {{{.*}}qopt.inline = dense<0.000000e+00> : tensor<4x8xf32>, qopt.param = "w.exp_avg", qopt.state}
// CHECK-SAME: %{{.*}}: tensor<4x8xf32> {{{.*}}qopt.inline = dense<0.000000e+00> : tensor<4x8xf32>, qopt.param = "w.exp_avg_sq", qopt.state}
// CHECK-SAME: -> (tensor<f32> {qopt.name = "loss"}, tensor<i64> {qopt.param = "optimizer.step"}, tensor<4x8xf32> {qopt.param = "w"}, tensor<4x8xf32> {qopt.param = "w.exp_avg"}, tensor<4x8xf32> {qopt.param = "w.exp_avg_sq"})
// The labels are shifted: positions 1 … S-1 against logits 0 … S-2.
// CHECK: tensor.extract_slice %{{.*}}[0, 0, 0] [2, 2, 8] [1, 1, 1] : tensor<2x3x8xf32> to tensor<2x2x8xf32>
// CHECK: tensor.extract_slice %{{.*}}[0, 1] [2, 2] [1, 1] : tensor<2x3xi64> to tensor<2x2xi64>
// -100 is left out.
// CHECK: arith.cmpi ne, %{{.*}}, %c-100_i64 : i64
// One AdamW generic updates w and both moments, marked for the CUDA
// target's multi-tensor AdamW (test/Target/CUDA/adamw-multi.mlir).
// CHECK: linalg.generic {{.*}} ins(%arg2, %{{.*}}, %arg4, %arg5 : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>)
// CHECK-SAME: attrs = {qopt.adamw}
// CHECK: } -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>)
// The others take the optimizer state too (unused) and return their own.
// CHECK-LABEL: func.func @eval_step
// CHECK-SAME: qopt.param = "w.exp_avg_sq", qopt.state}
// CHECK-SAME: -> (tensor<f32> {qopt.name = "loss"})
// CHECK-LABEL: func.func @gradients
// CHECK-SAME: qopt.param = "w.exp_avg_sq", qopt.state}
// CHECK-SAME: -> (tensor<f32> {qopt.name = "loss"}, tensor<4x8xf32> {qopt.name = "grad.w"})

// GRAD-LABEL: func.func @gradients
// GRAD-SAME: -> (tensor<f32> {qopt.name = "loss"}, tensor<4x8xf32> {qopt.name = "grad.w"})
// GRAD-NOT: optimizer.step

// EVAL-LABEL: func.func @eval_step
// EVAL-SAME: -> (tensor<f32> {qopt.name = "loss"})
// EVAL-NOT: linalg.generic {{.*}} -> (tensor<4x8xf32>

// SGD-LABEL: func.func @train_step
// SGD-SAME: qopt.param = "w.momentum_buffer", qopt.state
// SGD-SAME: -> (tensor<f32> {qopt.name = "loss"}, tensor<i64> {qopt.param = "optimizer.step"}, tensor<4x8xf32> {qopt.param = "w"}, tensor<4x8xf32> {qopt.param = "w.momentum_buffer"})

// Gradient accumulation: both entries hold the running sum and its count;
// accumulate_step adds to them, train_step divides the sum plus its own
// gradient by count + 1 and empties them before the optimizer reads it.
// ACCUM-LABEL: func.func @train_step
// ACCUM-SAME: %[[COUNT:[a-z0-9_]+]]: tensor<i64> {{{.*}}qopt.param = "optimizer.accumulated", qopt.state}
// ACCUM-SAME: %[[SUM:[a-z0-9_]+]]: tensor<4x8xf32> {{{.*}}qopt.param = "w.grad_accum", qopt.state}
// ACCUM-SAME: -> (tensor<f32> {qopt.name = "loss"}, tensor<i64> {qopt.param = "optimizer.accumulated"}, tensor<4x8xf32> {qopt.param = "w.grad_accum"}, tensor<i64> {qopt.param = "optimizer.step"}, tensor<4x8xf32> {qopt.param = "w"})
// ACCUM: %[[N:.*]] = tensor.extract %[[COUNT]][] : tensor<i64>
// ACCUM: %[[N1:.*]] = arith.addi %[[N]], %c1_i64
// ACCUM: %[[NF:.*]] = arith.sitofp %[[N1]] : i64 to f32
// ACCUM: linalg.generic {{.*}} ins(%[[SUM]], %{{.*}} : tensor<4x8xf32>, tensor<4x8xf32>)
// ACCUM: arith.addf
// ACCUM: arith.divf %{{.*}}, %[[NF]] : f32
// ACCUM: linalg.fill
// ACCUM-LABEL: func.func @accumulate_step
// ACCUM-SAME: -> (tensor<f32> {qopt.name = "loss"}, tensor<i64> {qopt.param = "optimizer.accumulated"}, tensor<4x8xf32> {qopt.param = "w.grad_accum"})
// ACCUM: %[[M:.*]] = tensor.extract %{{.*}}[] : tensor<i64>
// ACCUM: %[[M1:.*]] = arith.addi %[[M]], %c1_i64
// ACCUM: tensor.from_elements %[[M1]] : tensor<i64>
// ACCUM: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<4x8xf32>, tensor<4x8xf32>)
// ACCUM-NEXT: ^bb0
// ACCUM-NEXT: arith.addf
// ACCUM-NEXT: linalg.yield
func.func @main(%x: tensor<2x3x4xf32> {qopt.name = "x", qopt.dim_names = ["batch", "seq", ""]},
                %w: tensor<4x8xf32> {qopt.param = "w", qopt.trainable, qopt.inline = dense<0.5> : tensor<4x8xf32>})
    -> tensor<2x3x8xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x3x8xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<2x3x8xf32>) -> tensor<2x3x8xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(b, s, v, k) -> (b, s, k)>, affine_map<(b, s, v, k) -> (k, v)>,
      affine_map<(b, s, v, k) -> (b, s, v)>], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%x, %w : tensor<2x3x4xf32>, tensor<4x8xf32>) outs(%f : tensor<2x3x8xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  } -> tensor<2x3x8xf32>
  return %y : tensor<2x3x8xf32>
}
