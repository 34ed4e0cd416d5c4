// RUN: qopt-opt %s -split-input-file --qopt-merge-lora=keep-adapter=true | FileCheck %s --check-prefix=KEEP
// RUN: qopt-opt %s -split-input-file --qopt-merge-lora=keep-adapter=true | qopt-opt -split-input-file --qopt-unmerge-lora | FileCheck %s --check-prefix=BACK
// A kept branch is not merged a second time:
// RUN: qopt-opt %s -split-input-file --qopt-merge-lora=keep-adapter=true | qopt-opt -split-input-file --qopt-merge-lora=keep-adapter=true | qopt-opt -split-input-file --qopt-unmerge-lora | FileCheck %s --check-prefix=BACK
// RUN: qopt-opt %s -split-input-file --qopt-merge-lora=keep-adapter=true | qopt-opt -split-input-file --qopt-merge-lora | FileCheck %s --check-prefix=UNLOAD
// Numerics of every variant: qopt-merge-lora-numerics.test.

// keep-adapter: W' = [[1,2],[3,4],[5,6]] + 2·[[.5,-.5],[1,-1],[2,-2]]
// = [[2,1],[5,2],[9,2]] replaces W; the branch stays, marked merged.
// KEEP-LABEL: func.func @round_trip
// KEEP: %[[A:.*]] = qopt.load_param @lora_A
// KEEP: %[[B:.*]] = qopt.load_param @lora_B
// KEEP: %[[W:.*]] = qopt.load_param @layers.0.fc.weight : tensor<3x2xf32>
// KEEP: qopt.lora %{{.*}}, %[[W]], %[[A]], %[[B]] alpha = 2.000000e+00 module "layers.0.fc" merged
// KEEP: "0x40000000000000400000803F0000A040000000400000104100000040"
// Unmerged: W comes back exactly (these values are exact in binary) and
// the mark goes.
// BACK-LABEL: func.func @round_trip
// BACK: %[[W:.*]] = qopt.load_param @layers.0.fc.weight : tensor<3x2xf32>
// BACK: qopt.lora %{{.*}}, %[[W]], %{{.*}}, %{{.*}} alpha = 2.000000e+00 module "layers.0.fc" :
// BACK: "0x400000000000803F0000004000004040000080400000A0400000C040"
// Merging a merged branch without keep-adapter drops the branch and its
// factors; the weight is W' as it stands.
// UNLOAD-NOT: @lora_A
// UNLOAD-LABEL: func.func @round_trip
// UNLOAD: %[[W:.*]] = qopt.load_param @layers.0.fc.weight : tensor<3x2xf32>
// UNLOAD: qopt.linear %{{.*}}, %[[W]] module "layers.0.fc" :
// UNLOAD-NOT: qopt.lora
// UNLOAD: "0x40000000000000400000803F0000A040000000400000104100000040"
qopt.param @layers.0.fc.weight : tensor<3x2xf32> = dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]> : tensor<3x2xf32>
qopt.param trainable @lora_A : tensor<1x2xf32> = dense<[[1.0, -1.0]]> : tensor<1x2xf32>
qopt.param trainable @lora_B : tensor<3x1xf32> = dense<[[0.5], [1.0], [2.0]]> : tensor<3x1xf32>
func.func @round_trip(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @layers.0.fc.weight : tensor<3x2xf32>
  %a = qopt.load_param @lora_A : tensor<1x2xf32>
  %b = qopt.load_param @lora_B : tensor<3x1xf32>
  %y = qopt.lora %x, %w, %a, %b alpha = 2.0 module "layers.0.fc" : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}
