// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-rotate
// RUN: not qopt-opt %s -split-input-file --qopt-rotate="block-fallback=true online=none" 2>&1 | FileCheck %s --check-prefix=FALLBACK

// What qopt-rotate cannot rotate exactly is an error naming the op and why.

// expected-error @+1 {{qopt-rotate: no residual stream (qopt.residual_add) to rotate}}
module {
  qopt.param @w : tensor<4x4xf32> = dense<1.0> : tensor<4x4xf32>
  func.func @no_stream(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
    %w = qopt.load_param @w : tensor<4x4xf32>
    %y = qopt.linear %x, %w module "fc" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
    return %y : tensor<?x4xf32>
  }
}

// -----

qopt.param @w : tensor<4x4xf32> = dense<1.0> : tensor<4x4xf32>
func.func @from_argument(%h0: tensor<?x4xf32>, %x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %w = qopt.load_param @w : tensor<4x4xf32>
  %o = qopt.linear %x, %w module "o_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  // expected-error @+1 {{qopt-rotate: the residual stream starts at a function argument, not an embedding lookup}}
  %h1 = qopt.residual_add %h0, %o : tensor<?x4xf32>
  return %h1 : tensor<?x4xf32>
}

// -----

qopt.param @e : tensor<8x4xf32> = dense<1.0> : tensor<8x4xf32>
qopt.param @w : tensor<4x4xf32> = dense<1.0> : tensor<4x4xf32>
qopt.param @g : tensor<4xf32> = dense<1.0> : tensor<4xf32>
func.func @layer_norm(%ids: tensor<?xi64>, %x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %e = qopt.load_param @e : tensor<8x4xf32>
  %h0 = qopt.embedding %ids, %e : (tensor<?xi64>, tensor<8x4xf32>) -> tensor<?x4xf32>
  %w = qopt.load_param @w : tensor<4x4xf32>
  %o = qopt.linear %x, %w module "o_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  %h1 = qopt.residual_add %h0, %o : tensor<?x4xf32>
  %g = qopt.load_param @g : tensor<4xf32>
  // expected-error @+1 {{qopt-rotate: a LayerNorm reads the residual stream: its mean subtraction does not commute with rotations (qopt-rotate handles RMSNorm models)}}
  %n = qopt.layer_norm %h1, %g : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  return %n : tensor<?x4xf32>
}

// -----

qopt.param @e : tensor<8x4xf32> = dense<1.0> : tensor<8x4xf32>
qopt.param @w : tensor<4x4xf32> = dense<1.0> : tensor<4x4xf32>
func.func @other_reader(%ids: tensor<?xi64>, %x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %e = qopt.load_param @e : tensor<8x4xf32>
  %h0 = qopt.embedding %ids, %e : (tensor<?xi64>, tensor<8x4xf32>) -> tensor<?x4xf32>
  %w = qopt.load_param @w : tensor<4x4xf32>
  %o = qopt.linear %x, %w module "o_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  %h1 = qopt.residual_add %h0, %o : tensor<?x4xf32>
  // expected-error @+1 {{qopt-rotate: 'qopt.gelu' reads the residual stream (only RMSNorms and residual adds may)}}
  %a = qopt.gelu %h1 : tensor<?x4xf32>
  return %a : tensor<?x4xf32>
}

// -----

qopt.param @e : tensor<8x4xf32> = dense<1.0> : tensor<8x4xf32>
func.func @not_linear_update(%ids: tensor<?xi64>, %x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %e = qopt.load_param @e : tensor<8x4xf32>
  %h0 = qopt.embedding %ids, %e : (tensor<?xi64>, tensor<8x4xf32>) -> tensor<?x4xf32>
  %a = qopt.gelu %x : tensor<?x4xf32>
  // expected-error @+1 {{qopt-rotate: the update of the residual add is not a linear layer's output}}
  %h1 = qopt.residual_add %h0, %a : tensor<?x4xf32>
  return %h1 : tensor<?x4xf32>
}

// -----

// 188 = 4 * 47: no Hadamard matrix; blocks of 4 have one. With
// block-fallback the rotation is block-diagonal (FALLBACK below).
// expected-error @+1 {{qopt-rotate: no Hadamard matrix of order 188 (the hidden size); the nearest block-diagonal rotation is block = 4 (block-fallback=true)}}
module {
  qopt.param @e : tensor<8x188xf32> = dense<1.0> : tensor<8x188xf32>
  qopt.param @w : tensor<188x4xf32> = dense<1.0> : tensor<188x4xf32>
  qopt.param @g : tensor<188xf32> = dense<1.0> : tensor<188xf32>
  qopt.param @h : tensor<8x188xf32> = dense<1.0> : tensor<8x188xf32>
  func.func @order_188(%ids: tensor<?xi64>, %x: tensor<?x4xf32>) -> tensor<?x8xf32> {
    %e = qopt.load_param @e : tensor<8x188xf32>
    %h0 = qopt.embedding %ids, %e : (tensor<?xi64>, tensor<8x188xf32>) -> tensor<?x188xf32>
    %w = qopt.load_param @w : tensor<188x4xf32>
    %o = qopt.linear %x, %w module "o_proj" : (tensor<?x4xf32>, tensor<188x4xf32>) -> tensor<?x188xf32>
    %h1 = qopt.residual_add %h0, %o : tensor<?x188xf32>
    %g = qopt.load_param @g : tensor<188xf32>
    %n = qopt.rms_norm %h1, %g : (tensor<?x188xf32>, tensor<188xf32>) -> tensor<?x188xf32>
    %wh = qopt.load_param @h : tensor<8x188xf32>
    %y = qopt.linear %n, %wh module "lm_head" : (tensor<?x188xf32>, tensor<8x188xf32>) -> tensor<?x8xf32>
    return %y : tensor<?x8xf32>
  }
}
// FALLBACK-LABEL: func.func @order_188
// FALLBACK: qopt.load_param @rotated_embedding.weight : tensor<8x188xf32>
// FALLBACK: qopt.residual_add
