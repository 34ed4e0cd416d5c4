// RUN: qopt-opt %s -split-input-file --qopt-insert-lora="target-modules=q_proj,v_proj r=2 lora-alpha=16 lora-dropout=0.1" | FileCheck %s
// RUN: qopt-opt %s -split-input-file --qopt-insert-lora="target-modules=all-linear r=2 use-rslora=true" | FileCheck %s --check-prefix=ALL
// RUN: qopt-opt %s -split-input-file --qopt-insert-lora="target-modules=q_proj,v_proj,up_proj layers-to-transform=1 rank-pattern=up_proj=4 alpha-pattern=mlp\..*=3" | FileCheck %s --check-prefix=PAT
// RUN: qopt-opt %s -split-input-file --qopt-insert-lora="target-modules=.*\.0\..*_proj exclude-modules=k_proj use-dora=true r=2" | FileCheck %s --check-prefix=DORA
// Printed resources parse back:
// RUN: qopt-opt %s -split-input-file --qopt-insert-lora="target-modules=q_proj r=4" | qopt-opt -split-input-file | FileCheck %s --check-prefix=ROUND
// RUN: qopt-opt %s -split-input-file --qopt-insert-lora="target-modules=q_proj r=2 lora-alpha=16 slots=true" | FileCheck %s --check-prefix=SLOTS
// Which layers PEFT itself selects: test/e2e/peft-selection.test.

// New trainable factors per selected layer, A r x in, B out x r (zero).
// CHECK: qopt.param trainable @model.layers.0.self_attn.q_proj.lora_A.weight : tensor<2x8xf32> = dense_resource<
// CHECK: qopt.param trainable @model.layers.0.self_attn.q_proj.lora_B.weight : tensor<4x2xf32> = dense_resource<[[ZB:[^>]*]]>
// CHECK: qopt.param trainable @model.layers.0.self_attn.v_proj.lora_A.weight : tensor<2x8xf32>
// CHECK: qopt.param trainable @model.layers.0.self_attn.v_proj.lora_B.weight : tensor<4x2xf32>
// CHECK: qopt.param trainable @model.layers.1.self_attn.q_proj.lora_A.weight
// CHECK-NOT: k_proj.lora
// CHECK-LABEL: func.func @block
// CHECK: %[[A:.*]] = qopt.load_param @model.layers.0.self_attn.q_proj.lora_A.weight : tensor<2x8xf32>
// CHECK: %[[B:.*]] = qopt.load_param @model.layers.0.self_attn.q_proj.lora_B.weight : tensor<4x2xf32>
// CHECK: qopt.lora %arg0, %{{.*}}, %[[A]], %[[B]] bias(%{{.*}}) alpha = 1.600000e+01 dropout = 1.000000e-01 module "model.layers.0.self_attn.q_proj"
// CHECK: qopt.linear {{.*}} module "model.layers.0.self_attn.k_proj"
// CHECK: qopt.lora {{.*}} module "model.layers.0.self_attn.v_proj"
// CHECK: qopt.lora {{.*}} module "model.layers.1.self_attn.q_proj"
// CHECK: qopt.linear {{.*}} module "model.layers.1.mlp.up_proj"
// CHECK: qopt.linear {{.*}} module "lm_head"
// B starts at zero: 16-byte alignment word, then 8 zero floats.
// CHECK: [[ZB]]: "0x{{[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]}}0000000000000000000000000000000000000000000000000000000000000000"

// all-linear: every layer but the output head (returned, as many outputs
// as the embedding table has rows).
// ALL-COUNT-5: qopt.lora {{.*}}scaling = rslora
// ALL: qopt.linear {{.*}} module "lm_head"

// Layer 1 only; up_proj with r = 4 and alpha 3 (the mlp pattern).
// PAT-LABEL: func.func @block
// PAT: qopt.linear {{.*}} module "model.layers.0.self_attn.q_proj"
// PAT: qopt.linear {{.*}} module "model.layers.0.self_attn.k_proj"
// PAT: qopt.linear {{.*}} module "model.layers.0.self_attn.v_proj"
// PAT: qopt.lora {{.*}} alpha = 8.000000e+00 module "model.layers.1.self_attn.q_proj" : (tensor<?x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>)
// PAT: qopt.lora {{.*}} alpha = 3.000000e+00 module "model.layers.1.mlp.up_proj" : (tensor<?x8xf32>, tensor<12x8xf32>, tensor<4x8xf32>, tensor<12x4xf32>)

// A regular expression for layer 0's projections, k_proj excluded; DoRA
// magnitudes start at the row norms of W: rows of ones of length 8 give √8.
// DORA: qopt.param trainable @model.layers.0.self_attn.q_proj.lora_magnitude_vector : tensor<4xf32> = dense_resource<[[M:[^>]*]]>
// DORA-LABEL: func.func @block
// DORA: qopt.lora {{.*}} magnitude(%{{.*}}) alpha = 8.000000e+00 module "model.layers.0.self_attn.q_proj"
// DORA: qopt.linear {{.*}} module "model.layers.0.self_attn.k_proj"
// DORA: qopt.lora {{.*}} module "model.layers.0.self_attn.v_proj"
// DORA: qopt.linear {{.*}} module "model.layers.1.self_attn.q_proj"
// DORA: [[M]]: "0x{{[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]}}F3043540F3043540F3043540F3043540"

// ROUND: qopt.lora {{.*}} module "model.layers.0.self_attn.q_proj"

// Run-time slots: zero factors, scale 1 (alpha = r), listed on the module.
// SLOTS: module attributes {qopt.lora_slots = [{lora_a = "model.layers.0.self_attn.q_proj.lora_A.weight", lora_b = "model.layers.0.self_attn.q_proj.lora_B.weight", module = "model.layers.0.self_attn.q_proj", rank = 2 : i64}, {lora_a = "model.layers.1.self_attn.q_proj.lora_A.weight", {{.*}}rank = 2 : i64}]}
// SLOTS: qopt.param trainable @model.layers.0.self_attn.q_proj.lora_A.weight : tensor<2x8xf32> = dense_resource<[[SA:[^>]*]]>
// SLOTS: qopt.lora {{.*}} alpha = 2.000000e+00 module "model.layers.0.self_attn.q_proj"
// SLOTS: [[SA]]: "0x{{[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]}}00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"

qopt.param @emb : tensor<16x8xf32> = dense<0.5> : tensor<16x8xf32>
qopt.param @q0 : tensor<4x8xf32> = dense<1.0> : tensor<4x8xf32>
qopt.param @b0 : tensor<4xf32> = dense<0.1> : tensor<4xf32>
qopt.param @w88 : tensor<8x8xf32> = dense<0.25> : tensor<8x8xf32>
qopt.param @up : tensor<12x8xf32> = dense<0.125> : tensor<12x8xf32>
qopt.param @head : tensor<16x8xf32> = dense<0.5> : tensor<16x8xf32>
func.func @block(%x: tensor<?x8xf32>, %ids: tensor<?xi64>) -> (tensor<?x12xf32>, tensor<?x16xf32>) {
  %e = qopt.load_param @emb : tensor<16x8xf32>
  %h = qopt.embedding %ids, %e : (tensor<?xi64>, tensor<16x8xf32>) -> tensor<?x8xf32>
  %w = qopt.load_param @q0 : tensor<4x8xf32>
  %b = qopt.load_param @b0 : tensor<4xf32>
  %q = qopt.linear %x, %w, %b module "model.layers.0.self_attn.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  %k = qopt.linear %x, %w module "model.layers.0.self_attn.k_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %v = qopt.linear %x, %w module "model.layers.0.self_attn.v_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %w8 = qopt.load_param @w88 : tensor<8x8xf32>
  %q1 = qopt.linear %h, %w8 module "model.layers.1.self_attn.q_proj" : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %wu = qopt.load_param @up : tensor<12x8xf32>
  %u = qopt.linear %q1, %wu module "model.layers.1.mlp.up_proj" : (tensor<?x8xf32>, tensor<12x8xf32>) -> tensor<?x12xf32>
  %wh = qopt.load_param @head : tensor<16x8xf32>
  %logits = qopt.linear %q1, %wh module "lm_head" : (tensor<?x8xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
  return %u, %logits : tensor<?x12xf32>, tensor<?x16xf32>
}
