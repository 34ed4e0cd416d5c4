// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-params-to-arguments | FileCheck %s

// Parameters in files become trailing entry arguments (declaration order),
// read-only; inline ones and their reads are left alone.
// CHECK-NOT: qopt.param @w
// CHECK: qopt.param @small
// CHECK-LABEL: func.func @main
// CHECK-SAME: (%[[X:.*]]: tensor<2x4xf32>, %[[W:.*]]: tensor<4x3xf32> {bufferization.writable = false, qopt.external = #qopt.external<"m.onnx", offset = 0, length = 48>, qopt.param = "w"}, %[[V:.*]]: tensor<3xf32> {bufferization.writable = false, qopt.param = "v", qopt.trainable})
// CHECK: qopt.load_param @small
// CHECK: return %[[X]], %[[W]], %[[V]]
qopt.param @w : tensor<4x3xf32> = #qopt.external<"m.onnx", offset = 0, length = 48>
qopt.param @small : tensor<2xf32> = dense<[1.0, 2.0]> : tensor<2xf32>
qopt.param trainable @v : tensor<3xf32>
func.func @main(%x: tensor<2x4xf32>) -> (tensor<2x4xf32>, tensor<4x3xf32>, tensor<3xf32>, tensor<2xf32>) {
  %v = qopt.load_param @v : tensor<3xf32>
  %w = qopt.load_param @w : tensor<4x3xf32>
  %s = qopt.load_param @small : tensor<2xf32>
  return %x, %w, %v, %s : tensor<2x4xf32>, tensor<4x3xf32>, tensor<3xf32>, tensor<2xf32>
}

// -----

qopt.param @w : tensor<4xf32> = #qopt.external<"m.onnx", offset = 0, length = 16>
func.func @main() -> tensor<4xf32> {
  %w = qopt.load_param @w : tensor<4xf32>
  return %w : tensor<4xf32>
}
func.func @other() -> tensor<4xf32> {
  // expected-error @+1 {{parameter @w is read outside the entry function @main: run-time parameters and keys must all be used by one public function}}
  %w = qopt.load_param @w : tensor<4xf32>
  return %w : tensor<4xf32>
}

// -----

// Mutable parameters are passed even with inline data, marked with their
// role; stores become results after the outputs, marked with the
// parameter's name (the last store wins); a read after a store reads the
// stored value; the random key becomes the last argument.
// CHECK-LABEL: func.func @step
// CHECK-SAME: (%[[X:.*]]: tensor<3xf32>, %[[B:.*]]: tensor<3xf32> {bufferization.writable = false, qopt.inline = dense<5.000000e-01> : tensor<3xf32>, qopt.param = "bias", qopt.trainable}, %[[S:.*]]: tensor<f32> {bufferization.writable = false, qopt.inline = dense<0.000000e+00> : tensor<f32>, qopt.param = "steps", qopt.state}, %[[K:.*]]: tensor<2xi64> {bufferization.writable = false, qopt.rng_key})
// CHECK-SAME: -> (tensor<3xf32>, tensor<2xi64>, tensor<f32> {qopt.param = "steps"}, tensor<3xf32> {qopt.param = "bias"})
// CHECK: %[[S1:.*]] = arith.addf %[[S]], %{{.*}}
// CHECK: %[[S2:.*]] = arith.addf %[[S1]], %{{.*}}
// CHECK: %[[B1:.*]] = arith.addf %[[B]], %[[X]]
// CHECK-NOT: qopt.store_param
// CHECK-NOT: qopt.random_key
// CHECK: return %[[B1]], %[[K]], %[[S2]], %[[B1]]
// CHECK-NOT: qopt.param
qopt.param trainable @bias : tensor<3xf32> = dense<0.5> : tensor<3xf32>
qopt.param state @steps : tensor<f32> = dense<0.0> : tensor<f32>
func.func @step(%x: tensor<3xf32>) -> (tensor<3xf32>, tensor<2xi64>) {
  %one = arith.constant dense<1.0> : tensor<f32>
  %s = qopt.load_param @steps : tensor<f32>
  %s1 = arith.addf %s, %one : tensor<f32>
  qopt.store_param @steps, %s1 : tensor<f32>
  %s2 = qopt.load_param @steps : tensor<f32>
  %s3 = arith.addf %s2, %one : tensor<f32>
  qopt.store_param @steps, %s3 : tensor<f32>
  %b = qopt.load_param @bias : tensor<3xf32>
  %b1 = arith.addf %b, %x : tensor<3xf32>
  qopt.store_param @bias, %b1 : tensor<3xf32>
  %k = qopt.random_key : tensor<2xi64>
  return %b1, %k : tensor<3xf32>, tensor<2xi64>
}

// -----

qopt.param state @steps : tensor<f32> = dense<0.0> : tensor<f32>
func.func @nested(%c: i1, %v: tensor<f32>) {
  scf.if %c {
    // expected-error @+1 {{qopt.store_param must be in the body of a single-block entry function, not in a nested region}}
    qopt.store_param @steps, %v : tensor<f32>
  }
  return
}

// -----

func.func @main() -> tensor<2xi64> {
  %k = qopt.random_key : tensor<2xi64>
  return %k : tensor<2xi64>
}
func.func private @helper() -> tensor<2xi64> {
  // expected-error @+1 {{qopt.random_key outside the entry function @main: run-time parameters and keys must all be used by one public function}}
  %k = qopt.random_key : tensor<2xi64>
  return %k : tensor<2xi64>
}

// -----

// A read nested in a region after a store reads the stored value too.
// CHECK-LABEL: func.func @nested_read
// CHECK-SAME: (%[[C:.*]]: i1, %[[V:.*]]: tensor<f32>, %[[S:.*]]: tensor<f32> {{{.*}}qopt.state}
// CHECK: scf.if %[[C]]
// CHECK-NEXT: scf.yield %[[V]]
// CHECK: else
// CHECK-NEXT: scf.yield %[[V]]
qopt.param state @steps : tensor<f32> = dense<0.0> : tensor<f32>
func.func @nested_read(%c: i1, %v: tensor<f32>) -> tensor<f32> {
  %s = qopt.load_param @steps : tensor<f32>
  qopt.store_param @steps, %v : tensor<f32>
  %r = scf.if %c -> tensor<f32> {
    %n = qopt.load_param @steps : tensor<f32>
    scf.yield %n : tensor<f32>
  } else {
    scf.yield %v : tensor<f32>
  }
  return %r : tensor<f32>
}
