// RUN: qopt-opt %s --qopt-append-gradients -split-input-file -verify-diagnostics

// A reduction whose initial value depends on a trainable parameter by max.
func.func @max_init(%w: tensor<4xf32> {qopt.trainable}, %i: tensor<f32> {qopt.trainable}) -> tensor<f32> {
  // expected-error @+1 {{no gradient rule for a max / min reduction whose initial value depends on a trainable parameter}}
  %r = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> ()>], iterator_types = ["reduction"]}
      ins(%w : tensor<4xf32>) outs(%i : tensor<f32>) {
  ^bb0(%x: f32, %o: f32):
    %m = arith.maximumf %x, %o : f32
    linalg.yield %m : f32
  } -> tensor<f32>
  return %r : tensor<f32>
}

// -----

// An operand indexed by an expression other than a loop, d floordiv C or 0.
func.func @shifted(%w: tensor<3xf32> {qopt.trainable}, %x: tensor<2x2xf32>) -> tensor<f32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<f32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<f32>) -> tensor<f32>
  // expected-error @+1 {{no gradient rule for an operand indexed by d0 + d1 (only loop indices, d floordiv C and 0)}}
  %r = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i + j)>, affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> ()>], iterator_types = ["reduction", "reduction"]}
      ins(%w, %x : tensor<3xf32>, tensor<2x2xf32>) outs(%f : tensor<f32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %m, %o : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %r : tensor<f32>
}

// -----

// A per-group read along a loop whose size the groups do not divide.
func.func @groups(%w: tensor<3xf32> {qopt.trainable}, %x: tensor<6xf32>) -> tensor<f32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<f32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<f32>) -> tensor<f32>
  // expected-error @+1 {{no gradient rule for an operand read per group of 4 along a loop of dynamic or indivisible size}}
  %r = linalg.generic {indexing_maps = [affine_map<(i) -> (i floordiv 4)>, affine_map<(i) -> (i)>, affine_map<(i) -> ()>], iterator_types = ["reduction"]}
      ins(%w, %x : tensor<3xf32>, tensor<6xf32>) outs(%f : tensor<f32>) {
  ^bb0(%a: f32, %b: f32, %o: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %m, %o : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %r : tensor<f32>
}

// -----

// A trainable scalar read by a linalg.fill.
func.func @scalar(%w: tensor<f32> {qopt.trainable}) -> tensor<f32> {
  %v = tensor.extract %w[] : tensor<f32>
  %e = tensor.empty() : tensor<f32>
  // expected-error @+1 {{no gradient rule for a scalar operand that depends on a trainable parameter}}
  %f = linalg.fill ins(%v : f32) outs(%e : tensor<f32>) -> tensor<f32>
  return %f : tensor<f32>
}

// -----

// A padding value that depends on a trainable parameter.
func.func @pad(%w: tensor<2xf32> {qopt.trainable}) -> tensor<1xf32> {
  %c0 = arith.constant 0 : index
  %v = tensor.extract %w[%c0] : tensor<2xf32>
  // expected-error @+1 {{no gradient rule for a 'tensor.pad' whose padding value depends on a trainable parameter}}
  %p = tensor.pad %w low[1] high[0] {
  ^bb0(%i: index):
    tensor.yield %v : f32
  } : tensor<2xf32> to tensor<3xf32>
  %s = tensor.extract_slice %p[0] [1] [1] : tensor<3xf32> to tensor<1xf32>
  return %s : tensor<1xf32>
}

// -----

// An attention mask that depends on a trainable parameter (a learned
// bias): the fused backward gives the mask no gradient.
func.func @attention_mask(%q: tensor<1x2x3x8xf32>, %m: tensor<1x1x3x3xf32> {qopt.trainable}) -> tensor<f32> {
  // expected-error @+1 {{no gradient rule for an attention mask that depends on a trainable parameter}}
  %y = qopt.attention %q, %q, %q mask(%m) : (tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x1x3x3xf32>) -> tensor<1x2x3x8xf32>
  %z = arith.constant 0.0 : f32
  %e0 = tensor.empty() : tensor<f32>
  %f0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<f32>) -> tensor<f32>
  %l = linalg.generic {indexing_maps = [affine_map<(a, b, c, d) -> (a, b, c, d)>, affine_map<(a, b, c, d) -> ()>],
      iterator_types = ["reduction", "reduction", "reduction", "reduction"]} ins(%y : tensor<1x2x3x8xf32>) outs(%f0 : tensor<f32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %o, %a : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %l : tensor<f32>
}

// -----

// A norm kept whole is differentiated over the last axis only (what the
// CUDA library takes); over two axes it is an error naming the op.
func.func @norm_two_axes(%x: tensor<2x4x8xf32> {qopt.trainable}, %g: tensor<4x8xf32>) -> tensor<f32> {
  // expected-error @+1 {{no gradient rule for 'qopt.rms_norm' over several axes (a norm kept whole is differentiated over the last axis only; lower it to linalg first)}}
  %y = qopt.rms_norm %x, %g axis = 1 : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4x8xf32>
  %z = arith.constant 0.0 : f32
  %e0 = tensor.empty() : tensor<f32>
  %f0 = linalg.fill ins(%z : f32) outs(%e0 : tensor<f32>) -> tensor<f32>
  %l = linalg.generic {indexing_maps = [affine_map<(a, b, c) -> (a, b, c)>, affine_map<(a, b, c) -> ()>],
      iterator_types = ["reduction", "reduction", "reduction"]} ins(%y : tensor<2x4x8xf32>) outs(%f0 : tensor<f32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %o, %a : f32
    linalg.yield %s : f32
  } -> tensor<f32>
  return %l : tensor<f32>
}
