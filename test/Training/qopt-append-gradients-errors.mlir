// RUN: qopt-opt %s --qopt-append-gradients -split-input-file -verify-diagnostics

// A body may read a trainable value from outside only by tensor.extract (a
// gather, whose adjoint is a scatter-add).
func.func @captured_scalar(%w: tensor<4xf32> {qopt.trainable}, %x: tensor<4xf32>) -> tensor<f32> {
  %c0 = arith.constant 0 : index
  %s = tensor.extract %w[%c0] : tensor<4xf32>
  %e = tensor.empty() : tensor<4xf32>
  // expected-error @+1 {{no gradient rule for this op: its body reads a value that depends on a trainable parameter ('arith.mulf' of a captured value)}}
  %g = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]}
      ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%v: f32, %o: f32):
    %m = arith.mulf %v, %s : f32
    linalg.yield %m : f32
  } -> tensor<4xf32>
  %s1 = tensor.extract_slice %g[0] [1] [1] : tensor<4xf32> to tensor<f32>
  return %s1 : tensor<f32>
}

// -----

func.func @loop(%w: tensor<f32> {qopt.trainable}) -> tensor<f32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  // expected-error @+1 {{no gradient rule for 'scf.for' (it depends on a trainable parameter and the loss depends on it)}}
  %r = scf.for %i = %c0 to %c3 step %c1 iter_args(%acc = %w) -> tensor<f32> {
    scf.yield %acc : tensor<f32>
  }
  return %r : tensor<f32>
}

// -----

func.func @scalar_op(%w: tensor<4xf32> {qopt.trainable}) -> tensor<1xf32> {
  %e = tensor.empty() : tensor<4xf32>
  // expected-error @+1 {{no gradient rule for 'math.atan' in the body of this op}}
  %r = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]}
      ins(%w : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %a = math.atan %x : f32
    linalg.yield %a : f32
  } -> tensor<4xf32>
  %s = tensor.extract_slice %r[0] [1] [1] : tensor<4xf32> to tensor<1xf32>
  return %s : tensor<1xf32>
}

// -----

func.func @product_reduction(%w: tensor<4xf32> {qopt.trainable}) -> tensor<f32> {
  %one = arith.constant 1.0 : f32
  %e = tensor.empty() : tensor<f32>
  %f = linalg.fill ins(%one : f32) outs(%e : tensor<f32>) -> tensor<f32>
  // expected-error @+1 {{no gradient rule for this reduction: its body must combine its result #0 with one term by addf, maximumf, maxnumf, minimumf or minnumf}}
  %r = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> ()>], iterator_types = ["reduction"]}
      ins(%w : tensor<4xf32>) outs(%f : tensor<f32>) {
  ^bb0(%x: f32, %o: f32):
    %p = arith.mulf %x, %o : f32
    linalg.yield %p : f32
  } -> tensor<f32>
  return %r : tensor<f32>
}

// -----

func.func @diagonal(%w: tensor<3x3xf32> {qopt.trainable}) -> tensor<f32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<f32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<f32>) -> tensor<f32>
  // expected-error @+1 {{no gradient rule for an operand indexed twice by one loop (a diagonal)}}
  %r = linalg.generic {indexing_maps = [affine_map<(i) -> (i, i)>, affine_map<(i) -> ()>], iterator_types = ["reduction"]}
      ins(%w : tensor<3x3xf32>) outs(%f : tensor<f32>) {
  ^bb0(%x: f32, %o: f32):
    %p = arith.addf %x, %o : f32
    linalg.yield %p : f32
  } -> tensor<f32>
  return %r : tensor<f32>
}

// -----

// expected-error @+1 {{the loss to differentiate must be a float tensor of one element, not 'tensor<4xf32>'}}
func.func @not_scalar(%w: tensor<4xf32> {qopt.trainable}) -> tensor<4xf32> {
  return %w : tensor<4xf32>
}

// -----

// expected-error @+1 {{a function with trainable arguments must return the loss as its first result}}
func.func @no_result(%w: tensor<4xf32> {qopt.trainable}) {
  return
}
