// RUN: qopt-opt %s -split-input-file --qopt-fold-zero-lora | FileCheck %s
// RUN: qopt-opt %s -split-input-file --qopt-fold-zero-lora="include-trainable=true" | FileCheck %s --check-prefix=TRAIN
// A bad option value is an error naming the option.
// RUN: not qopt-opt %s --qopt-fold-zero-lora="include-trainable=maybe" 2>&1 | FileCheck %s --check-prefix=BADOPT
// BADOPT: include-trainable
// BADOPT-SAME: maybe
// RUN: not qopt-opt %s --qopt-fold-zero-lora="rank=4" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN: no such option rank

// CHECK-LABEL: func.func @constant_zero_b
// CHECK-SAME: (%[[X:.*]]: tensor<2x4xf32>, %[[W:.*]]: tensor<8x4xf32>, %[[A:.*]]: tensor<2x4xf32>, %[[BIAS:.*]]: tensor<8xf32>)
// CHECK: %[[Y:.*]] = qopt.linear %[[X]], %[[W]], %[[BIAS]] module "layers.0.fc" : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> tensor<2x8xf32>
// CHECK-NOT: qopt.lora
// CHECK: return %[[Y]]
func.func @constant_zero_b(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>, %a: tensor<2x4xf32>, %bias: tensor<8xf32>) -> tensor<2x8xf32> {
  %b = arith.constant dense<0.0> : tensor<8x2xf32>
  %y = qopt.lora %x, %w, %a, %b bias(%bias) alpha = 4.0 module "layers.0.fc" : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

// A zero SoRA gate closes the branch too; a quantized base stays quantized.
// CHECK-LABEL: func.func @zero_gate_quantized_base
// CHECK: qopt.linear %{{.*}}, %{{.*}} : (tensor<2x64xf32>, !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<2x8xf32>
// CHECK-NOT: qopt.lora
func.func @zero_gate_quantized_base(%x: tensor<2x64xf32>, %w: !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>,
                                    %a: tensor<2x64xf32>, %b: tensor<8x2xf32>) -> tensor<2x8xf32> {
  %g = arith.constant dense<[0.0, -0.0]> : tensor<2xf32>
  %y = qopt.lora %x, %w, %a, %b gate(%g) alpha = 4.0
      : (tensor<2x64xf32>, !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>, tensor<2x64xf32>, tensor<8x2xf32>, tensor<2xf32>) -> tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

// Non-zero or unknown B: kept.
// CHECK-LABEL: func.func @nonzero_b
// CHECK: qopt.lora
// CHECK: qopt.lora
func.func @nonzero_b(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>, %a: tensor<2x4xf32>, %unknown: tensor<8x2xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>) {
  %b = arith.constant dense<[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0e-30]]> : tensor<8x2xf32>
  %y = qopt.lora %x, %w, %a, %b alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  %z = qopt.lora %x, %w, %a, %unknown alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  return %y, %z : tensor<2x8xf32>, tensor<2x8xf32>
}

// -----

// DoRA with B = 0 still rescales rows by m / ||W||: kept.
// CHECK-LABEL: func.func @dora_kept
// CHECK: qopt.lora {{.*}} magnitude
func.func @dora_kept(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>, %a: tensor<2x4xf32>, %m: tensor<8xf32>) -> tensor<2x8xf32> {
  %b = arith.constant dense<0.0> : tensor<8x2xf32>
  %y = qopt.lora %x, %w, %a, %b magnitude(%m) alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

// Parameters: a frozen zero B folds; a trainable one only when asked.
qopt.param @frozen_b : tensor<8x2xf32> = dense<0.0> : tensor<8x2xf32>
qopt.param trainable @lora_b : tensor<8x2xf32> = dense<0.0> : tensor<8x2xf32>
qopt.param state @state_b : tensor<8x2xf32> = dense<0.0> : tensor<8x2xf32>
qopt.param @external_b : tensor<8x2xf32> = #qopt.external<"b.bin", offset = 0, length = 64>
// CHECK-LABEL: func.func @params
// CHECK: %[[F:.*]] = qopt.linear
// CHECK: %[[T:.*]] = qopt.lora
// CHECK: %[[E:.*]] = qopt.lora
// CHECK: %[[S:.*]] = qopt.lora
// CHECK: return %[[F]], %[[T]], %[[E]], %[[S]]
// A state parameter changes at run time: never folded.
// TRAIN-LABEL: func.func @params
// TRAIN: %[[F:.*]] = qopt.linear
// TRAIN: %[[T:.*]] = qopt.linear
// TRAIN: %[[E:.*]] = qopt.lora
// TRAIN: %[[S:.*]] = qopt.lora
// TRAIN: return %[[F]], %[[T]], %[[E]], %[[S]]
func.func @params(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>, %a: tensor<2x4xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) {
  %b0 = qopt.load_param @frozen_b : tensor<8x2xf32>
  %b1 = qopt.load_param @lora_b : tensor<8x2xf32>
  %b2 = qopt.load_param @external_b : tensor<8x2xf32>
  %y0 = qopt.lora %x, %w, %a, %b0 alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  %y1 = qopt.lora %x, %w, %a, %b1 alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  %y2 = qopt.lora %x, %w, %a, %b2 alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  %b3 = qopt.load_param @state_b : tensor<8x2xf32>
  %y3 = qopt.lora %x, %w, %a, %b3 alpha = 4.0 : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<2x4xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  return %y0, %y1, %y2, %y3 : tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>
}
