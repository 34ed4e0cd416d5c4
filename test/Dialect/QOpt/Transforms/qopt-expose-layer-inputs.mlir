// RUN: qopt-opt %s --qopt-expose-layer-inputs="modules=model.layers.0.mlp.down_proj,model.layers.0.self_attn.q_proj" | FileCheck %s
// RUN: not qopt-opt %s --qopt-expose-layer-inputs="modules=model.layers.0.mlp.up_proj" 2>&1 | FileCheck %s --check-prefix=NOLAYER
// RUN: not qopt-opt %s --qopt-expose-layer-inputs 2>&1 | FileCheck %s --check-prefix=EMPTY

// The entry function returns the layers' inputs in the order asked, named
// after their modules; what fed only the old result is left dead.
// CHECK-LABEL: func.func @m(
// CHECK-SAME: %[[X:.*]]: tensor<2x8xf32>, %[[WQ:.*]]: tensor<4x8xf32>, %[[WD:.*]]: tensor<3x4xf32>)
// CHECK-SAME: -> (tensor<2x4xf32> {qopt.name = "model.layers.0.mlp.down_proj"}, tensor<2x8xf32> {qopt.name = "model.layers.0.self_attn.q_proj"})
// CHECK: %[[Q:.*]] = qopt.linear %[[X]], %[[WQ]] module "model.layers.0.self_attn.q_proj"
// CHECK: %[[H:.*]] = math.tanh %[[Q]]
// CHECK: qopt.linear %[[H]], %[[WD]] module "model.layers.0.mlp.down_proj"
// CHECK: return %[[H]], %[[X]] : tensor<2x4xf32>, tensor<2x8xf32>
func.func @m(%x: tensor<2x8xf32>, %wq: tensor<4x8xf32>, %wd: tensor<3x4xf32>) -> tensor<2x3xf32> {
  %q = qopt.linear %x, %wq module "model.layers.0.self_attn.q_proj" : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  %h = math.tanh %q : tensor<2x4xf32>
  %d = qopt.linear %h, %wd module "model.layers.0.mlp.down_proj" : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  return %d : tensor<2x3xf32>
}

// NOLAYER: error: qopt-expose-layer-inputs: no linear layer of the entry function is module 'model.layers.0.mlp.up_proj'
// EMPTY: error: qopt-expose-layer-inputs: modules names no layer
