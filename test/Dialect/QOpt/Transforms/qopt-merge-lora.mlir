// RUN: qopt-opt %s -split-input-file --qopt-merge-lora | FileCheck %s
// Printed resources parse back:
// RUN: qopt-opt %s -split-input-file --qopt-merge-lora | qopt-opt -split-input-file | FileCheck %s
// Large blobs need not be printed:
// RUN: qopt-opt %s -split-input-file --qopt-merge-lora --mlir-elide-resource-strings-if-larger=8 | FileCheck %s --check-prefix=ELIDED
// Numerics of every variant: qopt-merge-lora-numerics.test.

// W + alpha / r · B·A = [[1,2],[3,4],[5,6]] + 2·[[.5,-.5],[1,-1],[2,-2]]
//                     = [[2,1],[5,2],[9,2]], under the base weight's name.
// A parameter nothing read before the pass is not the pass's to remove.
// CHECK: qopt.param @unread : tensor<2xf32>
// CHECK: qopt.param @layers.0.fc.weight : tensor<3x2xf32> = dense_resource<[[BLOB:.*]]> : tensor<3x2xf32>
// CHECK-NOT: qopt.param
// CHECK-LABEL: func.func @merge
// CHECK: %[[W:.*]] = qopt.load_param @layers.0.fc.weight : tensor<3x2xf32>
// CHECK: %[[Y:.*]] = qopt.linear %{{.*}}, %[[W]] module "layers.0.fc" : (tensor<?x2xf32>, tensor<3x2xf32>) -> tensor<?x3xf32>
// CHECK-NOT: qopt.lora
// CHECK: return %[[Y]]
// CHECK: [[BLOB]]: "0x40000000000000400000803F0000A040000000400000104100000040"
// ELIDED: dense_resource<layers.0.fc.weight>
// ELIDED-NOT: 0x40000000
qopt.param @unread : tensor<2xf32> = dense<1.0> : tensor<2xf32>
qopt.param @layers.0.fc.weight : tensor<3x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]> : tensor<3x2xf32>
qopt.param trainable @lora_A : tensor<1x2xf32> = dense<[[1.0, -1.0]]> : tensor<1x2xf32>
qopt.param trainable @lora_B : tensor<3x1xf32> = dense<[[0.5], [1.0], [2.0]]> : tensor<3x1xf32>
func.func @merge(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @layers.0.fc.weight : tensor<3x2xf32>
  %a = qopt.load_param @lora_A : tensor<1x2xf32>
  %b = qopt.load_param @lora_B : tensor<3x1xf32>
  %y = qopt.lora %x, %w, %a, %b alpha = 2.0 module "layers.0.fc" : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

// -----

// A base weight something else still reads stays; the merged one takes a
// suffix. The transpose raising put on the K x N weight is read through
// and goes with the lora op; constants serve as factors.
// CHECK: qopt.param @h.0.fc.weight : tensor<2x3xf32> = dense<
// CHECK: qopt.param @h.0.fc.weight_0 : tensor<3x2xf32> = dense_resource<
// CHECK-LABEL: func.func @shared
// CHECK-NOT: linalg.transpose
// CHECK: %[[W:.*]] = qopt.load_param @h.0.fc.weight_0
// CHECK: qopt.linear %{{.*}}, %[[W]] module "h.0.fc"
// CHECK: %[[T:.*]] = qopt.load_param @h.0.fc.weight : tensor<2x3xf32>
// CHECK: return %{{.*}}, %[[T]]
qopt.param @h.0.fc.weight : tensor<2x3xf32> = dense<1.0> : tensor<2x3xf32>
func.func @shared(%x: tensor<?x2xf32>) -> (tensor<?x3xf32>, tensor<2x3xf32>) {
  %ws = qopt.load_param @h.0.fc.weight : tensor<2x3xf32>
  %e = tensor.empty() : tensor<3x2xf32>
  %w = linalg.transpose ins(%ws : tensor<2x3xf32>) outs(%e : tensor<3x2xf32>) permutation = [1, 0]
  %a = arith.constant dense<1.0> : tensor<1x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 module "h.0.fc" : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  %t = qopt.load_param @h.0.fc.weight : tensor<2x3xf32>
  return %y, %t : tensor<?x3xf32>, tensor<2x3xf32>
}
