// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg --convert-elementwise-to-linalg '--qopt-build-train-step=entry=gradients loss=mse gradient-checkpointing=true activation-report=true activation-sizes=batch=2,seq=3' -mlir-print-op-on-diagnostic=false 2>%t.err | FileCheck %s
// RUN: FileCheck %s --check-prefix=REPORT < %t.err
// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg --convert-elementwise-to-linalg '--qopt-build-train-step=entry=gradients loss=mse activation-report=true activation-sizes=batch=2,seq=3' -mlir-print-op-on-diagnostic=false -o /dev/null 2>&1 | FileCheck %s --check-prefix=PLAIN
// RUN: not qopt-opt %s -split-input-file --convert-qopt-to-linalg --convert-elementwise-to-linalg '--qopt-build-train-step=entry=gradients loss=mse activation-report=true activation-sizes=batch' -o /dev/null 2>&1 | FileCheck %s --check-prefix=SIZES
// RUN: not qopt-opt %s -split-input-file --convert-qopt-to-linalg --convert-elementwise-to-linalg '--qopt-build-train-step=entry=gradients loss=mse activation-report=true activation-sizes=batch=4' -mlir-print-op-on-diagnostic=false -o /dev/null 2>&1 | FileCheck %s --check-prefix=MISSING

// Two sublayers, each tanh(h @ w) added to the residual stream. The lowered
// residual adds are the checkpoints; with gradient checkpointing the
// backward recomputes each segment's product (with its init) from the
// checkpoint before it instead of keeping it from the forward.
// CHECK-LABEL: func.func @gradients
// CHECK: %[[H1:.*]] = linalg.generic {{.*}} attrs = {qopt.checkpoint = "layers.0.mlp"}
// CHECK: linalg.generic {{.*}} attrs = {qopt.checkpoint = "layers.1.mlp"}
// The second segment is recomputed first (the backward runs in reverse),
// from the checkpoint h1 ...
// CHECK: linalg.fill {qopt.recomputed}
// CHECK: linalg.matmul {qopt.recomputed} ins(%[[H1]], %{{.*}} : tensor<4x8xf32>, tensor<8x8xf32>)
// ... then the first, from the input.
// CHECK: linalg.fill {qopt.recomputed}
// CHECK: linalg.matmul {qopt.recomputed} ins(%arg0, %{{.*}} : tensor<4x8xf32>, tensor<8x8xf32>)
// CHECK: return

// The forward keeps the two checkpoints (128 bytes each) and the loss (4);
// without checkpointing also both products (128 each): 516 bytes. The peak
// (during the backward) is the same here.
// REPORT: remark: activation memory of gradients at batch=2,seq=3: peak 0.0 MiB (772 bytes), of which the forward keeps for the backward 0.0 MiB (260 bytes); gradient checkpointing recomputes 6 ops
// PLAIN: remark: activation memory of gradients at batch=2,seq=3: peak 0.0 MiB (772 bytes), of which the forward keeps for the backward 0.0 MiB (516 bytes)

// SIZES: qopt-build-train-step: activation-sizes: 'batch' is not NAME=SIZE (a size of 0 or more)
func.func @main(%x: tensor<4x8xf32> {qopt.name = "x"},
                %w: tensor<8x8xf32> {qopt.param = "w", qopt.trainable, qopt.inline = dense<0.1> : tensor<8x8xf32>})
    -> tensor<4x8xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x8xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
  %m1 = linalg.matmul ins(%x, %w : tensor<4x8xf32>, tensor<8x8xf32>) outs(%f : tensor<4x8xf32>) -> tensor<4x8xf32>
  %t1 = math.tanh %m1 : tensor<4x8xf32>
  %h1 = qopt.residual_add %x, %t1 module "layers.0.mlp" : tensor<4x8xf32>
  %e2 = tensor.empty() : tensor<4x8xf32>
  %f2 = linalg.fill ins(%z : f32) outs(%e2 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %m2 = linalg.matmul ins(%h1, %w : tensor<4x8xf32>, tensor<8x8xf32>) outs(%f2 : tensor<4x8xf32>) -> tensor<4x8xf32>
  %t2 = math.tanh %m2 : tensor<4x8xf32>
  %h2 = qopt.residual_add %h1, %t2 module "layers.1.mlp" : tensor<4x8xf32>
  return %h2 : tensor<4x8xf32>
}

// -----

// Without a residual add there is nothing to cut at: a warning. Dynamic
// sizes come from activation-sizes, by the arguments' dimension names.
// REPORT: warning: qopt-build-train-step: gradient checkpointing found no residual stream (qopt.residual_add) to cut the model at: every activation is kept
// At batch 2, seq 3 the forward keeps y (24 bytes, read by the loss's
// backward) and the loss (4).
// REPORT: remark: activation memory of gradients at batch=2,seq=3: peak 0.0 MiB (56 bytes), of which the forward keeps for the backward 0.0 MiB (28 bytes)
// MISSING: error: activation memory: no size for dimension 1 'seq' of argument 0 (give it as NAME=SIZE)
// CHECK-LABEL: func.func @gradients
// CHECK-NOT: qopt.recomputed
func.func @main(%x: tensor<?x?xf32> {qopt.name = "x", qopt.dim_names = ["batch", "seq"]},
                %s: tensor<f32> {qopt.param = "s", qopt.trainable, qopt.inline = dense<0.5> : tensor<f32>})
    -> tensor<?x?xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %d0 = tensor.dim %x, %c0 : tensor<?x?xf32>
  %d1 = tensor.dim %x, %c1 : tensor<?x?xf32>
  %e = tensor.empty(%d0, %d1) : tensor<?x?xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> ()>, affine_map<(i, j) -> (i, j)>],
      iterator_types = ["parallel", "parallel"]} ins(%x, %s : tensor<?x?xf32>, tensor<f32>) outs(%e : tensor<?x?xf32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    %t = math.tanh %m : f32
    linalg.yield %t : f32
  } -> tensor<?x?xf32>
  return %y : tensor<?x?xf32>
}
