// RandLoRA (PEFT's randlora tuner): qopt-insert-lora with init-lora-weights=randlora
// gives the targeted layers one shared pair of frozen random bases, sized for the
// largest layer (randlora_A: r x 1 x min, randlora_B: max x NB x r, NB =
// ceil(min / r)), and per layer trainable randlora_lambda (r x nb, zero) and
// randlora_gamma (nb x m, 1 / max(nb, m)), feeding a qopt.lora whose scale is
// alpha / r. The scaled basis goes on the layer's smaller side (transposed when
// in > out). Saved in PEFT's format and read back; merged; lowered. Against PEFT's
// own adapter and outputs: test/e2e/peft-adapters.test (llama-randlora).
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=q_proj,k_proj,up_proj init-lora-weights=randlora r=4 lora-alpha=16 lora-dropout=0.1" | FileCheck %s
// RUN: rm -rf %t && qopt-opt %s --qopt-insert-lora="target-modules=q_proj,k_proj,up_proj init-lora-weights=randlora r=4 lora-alpha=16" --qopt-save-adapter=adapter=%t -o /dev/null
// RUN: %python -c "import json; c = json.load(open('%t/adapter_config.json')); print(c['peft_type'], c['r'], c['randlora_alpha'], sorted(c['target_modules']), c['save_projection'])" | FileCheck %s --check-prefix=CONFIG
// RUN: %python -c "import json, struct; d = open('%t/adapter_model.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n]); [print(k, v['shape']) for k, v in sorted(h.items()) if k != '__metadata__']" | FileCheck %s --check-prefix=KEYS
// RUN: qopt-opt %s --qopt-load-adapter=adapter=%t | FileCheck %s --check-prefix=LOAD
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=q_proj,k_proj,up_proj init-lora-weights=randlora r=4" --qopt-merge-lora | FileCheck %s --check-prefix=MERGE
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=q_proj,k_proj,up_proj init-lora-weights=randlora r=4" --convert-qopt-to-linalg | FileCheck %s --check-prefix=LOWER

// The shared bases: the largest layer is up_proj (12 x 8): min 8, max 12, NB 2.
// CHECK-DAG: qopt.param @randlora_A : tensor<4x1x8xf32>
// CHECK-DAG: qopt.param @randlora_B : tensor<12x2x4xf32>
// q_proj (8 x 8): nb = 2, m = 8; lambda starts at zero, gamma at 1/8.
// CHECK-DAG: qopt.param trainable @model.layers.0.self_attn.q_proj.randlora_lambda : tensor<4x2xf32> = dense_resource<[[L:[^>]*]]>
// CHECK-DAG: qopt.param trainable @model.layers.0.self_attn.q_proj.randlora_gamma : tensor<2x8xf32> = dense_resource<[[G:[^>]*]]>
// k_proj (4 x 8): m = 4, nb = 1.
// CHECK-DAG: qopt.param trainable @model.layers.0.self_attn.k_proj.randlora_lambda : tensor<4x1xf32>
// CHECK-DAG: qopt.param trainable @model.layers.0.self_attn.k_proj.randlora_gamma : tensor<1x4xf32> = dense_resource<[[GK:[^>]*]]>
// CHECK-LABEL: func.func @block
// in <= out (q_proj): A = the scaled basis, B = the flattened one; alpha 16 · nb 2.
// CHECK: %[[SQ:.*]] = qopt.randlora_scale %{{.*}}, %{{.*}}, %{{.*}} : (tensor<4x1x8xf32>, tensor<4x2xf32>, tensor<2x8xf32>) -> tensor<8x8xf32>
// CHECK: %[[FQ:.*]] = qopt.randlora_flatten %{{.*}} : (tensor<12x2x4xf32>) -> tensor<8x8xf32>
// CHECK: qopt.lora %arg0, %{{.*}}, %[[SQ]], %[[FQ]] alpha = 3.200000e+01 dropout = 1.000000e-01 module "model.layers.0.self_attn.q_proj" {qopt.randlora_alpha = 1.600000e+01 : f64}
// in > out (k_proj): A = the flattened basis transposed, B = the scaled one transposed.
// CHECK: %[[SK:.*]] = qopt.randlora_scale %{{.*}}, %{{.*}}, %{{.*}} : (tensor<4x1x8xf32>, tensor<4x1xf32>, tensor<1x4xf32>) -> tensor<4x4xf32>
// CHECK: %[[FK:.*]] = qopt.randlora_flatten %{{.*}} : (tensor<12x2x4xf32>) -> tensor<8x4xf32>
// CHECK: %[[AK:.*]] = linalg.transpose ins(%[[FK]] : tensor<8x4xf32>)
// CHECK: %[[BK:.*]] = linalg.transpose ins(%[[SK]] : tensor<4x4xf32>)
// CHECK: qopt.lora %arg0, %{{.*}}, %[[AK]], %[[BK]] alpha = 1.600000e+01 {{.*}}module "model.layers.0.self_attn.k_proj"
// CHECK: qopt.lora {{.*}} module "model.layers.0.mlp.up_proj"
// CHECK: qopt.linear {{.*}} module "lm_head"
// CHECK: [[L]]: "0x{{[0-9A-F]+}}0000000000000000000000000000000000000000000000000000000000000000"
// 1/8 = 0x3E000000
// CHECK: [[G]]: "0x{{[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]}}0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E0000003E"

// k_proj's gamma starts at 1/max(nb, m) = 1/4 (PEFT's reset_randlora_parameters), not 1/max(out, in):
// CHECK-DAG: [[GK]]: "0x{{[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]}}0000803E0000803E0000803E0000803E"

// CONFIG: RANDLORA 4 16 ['model.layers.0.mlp.up_proj', 'model.layers.0.self_attn.k_proj', 'model.layers.0.self_attn.q_proj'] True
// KEYS: base_model.model.model.layers.0.mlp.up_proj.randlora_A [4, 1, 8]
// KEYS-NEXT: base_model.model.model.layers.0.mlp.up_proj.randlora_B [12, 2, 4]
// KEYS-NEXT: base_model.model.model.layers.0.mlp.up_proj.randlora_gamma [2, 8]
// KEYS-NEXT: base_model.model.model.layers.0.mlp.up_proj.randlora_lambda [4, 2]
// KEYS-NEXT: base_model.model.model.layers.0.self_attn.k_proj.randlora_A [4, 1, 8]
// KEYS: base_model.model.model.layers.0.self_attn.q_proj.randlora_lambda [4, 2]
// PEFT also writes the shared bases once, at the tuner level:
// KEYS-NEXT: base_model.randlora_A [4, 1, 8]
// KEYS-NEXT: base_model.randlora_B [12, 2, 4]

// LOAD-DAG: qopt.param @randlora_A : tensor<4x1x8xf32>
// LOAD-DAG: qopt.param @randlora_B : tensor<12x2x4xf32>
// LOAD-DAG: qopt.param @model.layers.0.self_attn.q_proj.randlora_lambda : tensor<4x2xf32>
// LOAD-NOT: qopt.param @randlora_A_
// LOAD: qopt.lora %arg0, %{{.*}}, %{{.*}}, %{{.*}} alpha = 3.200000e+01 module "model.layers.0.self_attn.q_proj" {qopt.randlora_alpha = 1.600000e+01 : f64}
// LOAD: qopt.lora {{.*}} module "model.layers.0.self_attn.k_proj"

// Merged: linear layers on new weights; the bases and scalings are gone.
// MERGE-NOT: randlora
// MERGE: qopt.linear {{.*}} module "model.layers.0.self_attn.q_proj"
// MERGE-NOT: randlora

// LOWER-NOT: qopt.randlora
// k_proj reads the first 4 columns of randlora_A, q_proj the first 8 rows of randlora_B:
// LOWER-DAG: tensor.extract_slice %{{.*}}[0, 0, 0] [4, 1, 4] [1, 1, 1] : tensor<4x1x8xf32> to tensor<4x1x4xf32>
// LOWER-DAG: tensor.extract_slice %{{.*}}[0, 0, 0] [8, 2, 4] [1, 1, 1] : tensor<12x2x4xf32> to tensor<8x2x4xf32>
// LOWER-DAG: tensor.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : tensor<4x2x8xf32> into tensor<8x8xf32>
// LOWER-DAG: tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2]] : tensor<8x2x4xf32> into tensor<8x8xf32>

qopt.param @w8 : tensor<8x8xf32> = dense<0.125> : tensor<8x8xf32>
qopt.param @w4 : tensor<4x8xf32> = dense<0.25> : tensor<4x8xf32>
qopt.param @w12 : tensor<12x8xf32> = dense<0.5> : tensor<12x8xf32>
qopt.param @emb : tensor<16x8xf32> = dense<0.5> : tensor<16x8xf32>

func.func @block(%x: tensor<?x8xf32>, %ids: tensor<?xi64>) -> (tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x12xf32>, tensor<?x16xf32>) {
  %wq = qopt.load_param @w8 : tensor<8x8xf32>
  %wk = qopt.load_param @w4 : tensor<4x8xf32>
  %wu = qopt.load_param @w12 : tensor<12x8xf32>
  %e = qopt.load_param @emb : tensor<16x8xf32>
  %q = qopt.linear %x, %wq module "model.layers.0.self_attn.q_proj" : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %k = qopt.linear %x, %wk module "model.layers.0.self_attn.k_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %u = qopt.linear %x, %wu module "model.layers.0.mlp.up_proj" : (tensor<?x8xf32>, tensor<12x8xf32>) -> tensor<?x12xf32>
  %h = qopt.embedding %ids, %e : (tensor<?xi64>, tensor<16x8xf32>) -> tensor<?x8xf32>
  %l = qopt.linear %h, %e module "lm_head" : (tensor<?x8xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
  return %q, %k, %u, %l : tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x12xf32>, tensor<?x16xf32>
}
