// RUN: qopt-opt %s --qopt-append-gradients -split-input-file -verify-diagnostics

// A gather from a trainable table would need a scatter.
func.func @gather(%t: tensor<8x4xf32> {qopt.trainable}, %ids: tensor<3xindex>) -> tensor<f32> {
  %e = tensor.empty() : tensor<3x4xf32>
  // expected-error @+1 {{no gradient rule for this op: its body reads a tensor that depends on a trainable parameter ('tensor.extract', a gather)}}
  %g = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}
      ins(%ids : tensor<3xindex>) outs(%e : tensor<3x4xf32>) {
  ^bb0(%id: index, %o: f32):
    %j = linalg.index 1 : index
    %v = tensor.extract %t[%id, %j] : tensor<8x4xf32>
    linalg.yield %v : f32
  } -> tensor<3x4xf32>
  %c = arith.constant 0 : index
  %s = tensor.extract_slice %g[0, 0] [1, 1] [1, 1] : tensor<3x4xf32> to tensor<f32>
  return %s : tensor<f32>
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
