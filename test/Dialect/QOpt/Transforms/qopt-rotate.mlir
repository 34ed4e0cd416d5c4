// RUN: qopt-opt %s -split-input-file --qopt-rotate | FileCheck %s
// RUN: qopt-opt %s -split-input-file --qopt-rotate="random=false online=none" | FileCheck %s --check-prefix=PLAIN
// Numerics (the float function is unchanged on real exports of hidden
// sizes 32, 48 and 80): test/e2e/rotate.test.

// One pre-norm block: the norm's scale becomes ones (folded into q), the
// embedding, q (reader), o (writer) and the head get new weights; o's input
// gets an online Hadamard with random signs (a new parameter).
// CHECK: qopt.param @norm.weight : tensor<8xf32> = dense_resource<[[ONES:[^>]*]]>
// CHECK-LABEL: func.func @block
// CHECK: %[[E:.*]] = qopt.load_param @embed.weight : tensor<2x8xf32>
// CHECK: %[[H0:.*]] = qopt.embedding %{{.*}}, %[[E]]
// CHECK: %[[G:.*]] = qopt.load_param @norm.weight : tensor<8xf32>
// CHECK: %[[N:.*]] = qopt.rms_norm %[[H0]], %[[G]]
// CHECK: %[[WQ:.*]] = qopt.load_param @layers.0.self_attn.q_proj.weight
// CHECK: %[[Q:.*]] = qopt.linear %[[N]], %[[WQ]] module "layers.0.self_attn.q_proj"
// CHECK: %[[S:.*]] = qopt.load_param @layers.0.self_attn.o_proj.hadamard_signs : tensor<8xf32>
// CHECK: %[[R:.*]] = qopt.hadamard %[[Q]] signs %[[S]] : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
// CHECK: %[[O:.*]] = qopt.linear %[[R]], %{{.*}} module "layers.0.self_attn.o_proj"
// CHECK: %[[H1:.*]] = qopt.residual_add %[[H0]], %[[O]]
// CHECK: %[[NF:.*]] = qopt.rms_norm %[[H1]]
// CHECK: qopt.linear %[[NF]], %{{.*}} module "lm_head"
// CHECK: [[ONES]]: "0x400000000000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F"
// The plain Hadamard (signs +1) of order 8 on the embedding's rows: e_0
// becomes [1, ..., 1] / sqrt(8), e_1 [1, -1, 1, -1, ...] / sqrt(8).
// PLAIN: qopt.param @embed.weight : tensor<2x8xf32> = dense_resource<[[T:[^>]*]]>
// PLAIN-LABEL: func.func @block
// PLAIN-NOT: qopt.hadamard
// PLAIN: [[T]]: "0x40000000F304B53EF304B53EF304B53EF304B53EF304B53EF304B53EF304B53EF304B53EF304B53EF304B5BEF304B53EF304B5BEF304B53EF304B5BEF304B53EF304B5BE"
qopt.param @embed.weight : tensor<2x8xf32> = dense<[[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]> : tensor<2x8xf32>
qopt.param @norm.weight : tensor<8xf32> = dense<[1.0, 2.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0]> : tensor<8xf32>
qopt.param @layers.0.self_attn.q_proj.weight : tensor<8x8xf32> = dense<0.25> : tensor<8x8xf32>
qopt.param @layers.0.self_attn.o_proj.weight : tensor<8x8xf32> = dense<0.5> : tensor<8x8xf32>
qopt.param @final_norm.weight : tensor<8xf32> = dense<1.0> : tensor<8xf32>
qopt.param @lm_head.weight : tensor<2x8xf32> = dense<1.0> : tensor<2x8xf32>
func.func @block(%ids: tensor<?xi64>) -> tensor<?x2xf32> {
  %e = qopt.load_param @embed.weight : tensor<2x8xf32>
  %h0 = qopt.embedding %ids, %e module "embed" : (tensor<?xi64>, tensor<2x8xf32>) -> tensor<?x8xf32>
  %g = qopt.load_param @norm.weight : tensor<8xf32>
  %n = qopt.rms_norm %h0, %g : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %wq = qopt.load_param @layers.0.self_attn.q_proj.weight : tensor<8x8xf32>
  %q = qopt.linear %n, %wq module "layers.0.self_attn.q_proj" : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %wo = qopt.load_param @layers.0.self_attn.o_proj.weight : tensor<8x8xf32>
  %o = qopt.linear %q, %wo module "layers.0.self_attn.o_proj" : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %h1 = qopt.residual_add %h0, %o module "layers.0.self_attn.o_proj" : tensor<?x8xf32>
  %gf = qopt.load_param @final_norm.weight : tensor<8xf32>
  %nf = qopt.rms_norm %h1, %gf : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %wh = qopt.load_param @lm_head.weight : tensor<2x8xf32>
  %y = qopt.linear %nf, %wh module "lm_head" : (tensor<?x8xf32>, tensor<2x8xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
