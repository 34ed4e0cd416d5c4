// Training-mode dropout of an adapter's input (PEFT's lora_dropout).
// RUN: qopt-opt %s --convert-qopt-to-linalg | FileCheck %s --check-prefix=INFER
// RUN: qopt-opt %s --convert-qopt-to-linalg=training-dropout=true | FileCheck %s --check-prefix=LOWER
// RUN: qopt-opt %s --convert-qopt-to-linalg=training-dropout=true '--qopt-build-train-step=entry=train,eval optimizer=sgd:lr=0.1' | FileCheck %s

// Inference: dropout is the identity, nothing random.
// INFER-LABEL: func.func @main
// INFER-NOT: qopt.random_key
// INFER-NOT: qopt.dropout

// Training: the uniforms of the run's key in the stream of the FNV-1a hash
// of "layer" (128336118), recomputed by the backward pass; x dropped where
// u < 0.25, survivors times 1 / 0.75 (rounded to f32); the branch's
// product reads the dropped x, the base product x itself.
// LOWER-LABEL: func.func @main
// LOWER-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// LOWER-DAG: %[[FACTOR:.*]] = arith.constant 1.33333337 : f32
// LOWER-DAG: %[[P:.*]] = arith.constant 2.500000e-01 : f32
// LOWER-DAG: %[[STREAM:.*]] = arith.constant 128336118 : i32
// LOWER: %[[KEY:.*]] = qopt.random_key : tensor<2xi64>
// LOWER: %[[U:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<2x3x4xf32>) attrs = {qopt.recompute}
// LOWER: arith.xori %{{.*}}, %[[STREAM]] : i32
// LOWER: %[[XD:.*]] = linalg.generic {{.*}} ins(%arg0, %[[U]] : tensor<2x3x4xf32>, tensor<2x3x4xf32>) {{.*}} attrs = {qopt.dropout}
// LOWER-NEXT: ^bb0(%[[X:.*]]: f32, %[[V:.*]]: f32, %{{.*}}: f32):
// LOWER-NEXT: %[[DROP:.*]] = arith.cmpf olt, %[[V]], %[[P]] : f32
// LOWER-NEXT: %[[SCALED:.*]] = arith.mulf %[[X]], %[[FACTOR]] : f32
// LOWER-NEXT: arith.select %[[DROP]], %[[ZERO]], %[[SCALED]] : f32
// LOWER: linalg.contract {{.*}} ins(%[[XD]], %arg2 :
// LOWER: linalg.contract {{.*}} ins(%arg0, %arg1 :

// The train step reads the run's key, its last argument; the evaluation
// entry has it too (entries share their arguments) but drops nothing.
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %{{[a-z0-9]+}}: tensor<2xi64> {bufferization.writable = false, qopt.rng_key})
// CHECK: arith.cmpf olt
// CHECK-LABEL: func.func @eval_step
// CHECK-SAME: %{{[a-z0-9]+}}: tensor<2xi64> {bufferization.writable = false, qopt.rng_key})
// CHECK-NOT: arith.cmpf olt
// CHECK-NOT: qopt.dropout
// CHECK: return

func.func @main(%x: tensor<2x3x4xf32> {qopt.name = "x", qopt.dim_names = ["batch", "seq", ""]},
                %w: tensor<5x4xf32> {qopt.param = "layer.weight", qopt.inline = dense<0.5> : tensor<5x4xf32>},
                %a: tensor<2x4xf32> {qopt.param = "layer.lora_A.weight", qopt.trainable, qopt.inline = dense<0.25> : tensor<2x4xf32>},
                %b: tensor<5x2xf32> {qopt.param = "layer.lora_B.weight", qopt.trainable, qopt.inline = dense<0.125> : tensor<5x2xf32>})
    -> tensor<2x3x5xf32> {
  %y = qopt.lora %x, %w, %a, %b alpha = 4.0 dropout = 2.5e-01 module "layer" : (tensor<2x3x4xf32>, tensor<5x4xf32>, tensor<2x4xf32>, tensor<5x2xf32>) -> tensor<2x3x5xf32>
  return %y : tensor<2x3x5xf32>
}
