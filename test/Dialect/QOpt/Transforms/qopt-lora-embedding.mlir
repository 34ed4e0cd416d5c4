// PEFT's LoRA on embeddings (lora.Embedding): qopt-insert-lora turns a targeted
// qopt.embedding into a qopt.lora_embedding with lora_embedding_A (r x V, zero)
// and lora_embedding_B (D x r, N(0, 1)); "all-linear" leaves it alone;
// qopt-save-adapter writes PEFT's keys, qopt-load-adapter reads them back;
// qopt-merge-lora / qopt-unmerge-lora add the branch to the table and take it
// out. Against PEFT's own adapters and outputs: test/e2e/peft-adapters.test.
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens,q_proj r=2 lora-alpha=4 rank-pattern=embed_tokens=1 lora-dropout=0.1" | FileCheck %s
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=all-linear r=2" | FileCheck %s --check-prefix=ALL
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 init-lora-weights=false use-rslora=true" | FileCheck %s --check-prefix=NOINIT
// RUN: qopt-opt %s --qopt-list-modules="target-modules=embed_tokens" -o /dev/null | FileCheck %s --check-prefix=LIST --strict-whitespace
// Saved in PEFT's format, and read back:
// RUN: rm -rf %t && qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens,q_proj r=2 lora-alpha=4 rank-pattern=embed_tokens=1 init-lora-weights=false" --qopt-save-adapter=adapter=%t -o /dev/null
// RUN: %python -c "import json; c = json.load(open('%t/adapter_config.json')); print(c['r'], c['lora_alpha'], sorted(c['target_modules']), c['rank_pattern'], c['lora_dropout'])" | FileCheck %s --check-prefix=CONFIG
// RUN: %python -c "import json, struct; d = open('%t/adapter_model.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n]); [print(k, v['shape']) for k, v in sorted(h.items()) if k != '__metadata__']" | FileCheck %s --check-prefix=KEYS
// RUN: qopt-opt %s --qopt-load-adapter=adapter=%t | FileCheck %s --check-prefix=LOAD
// Merged into the table (a new parameter), the branch gone or kept and taken out again:
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 init-lora-weights=false" --qopt-merge-lora | FileCheck %s --check-prefix=MERGE
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 init-lora-weights=false" --qopt-merge-lora=keep-adapter=true | FileCheck %s --check-prefix=KEEP
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 init-lora-weights=false" --qopt-merge-lora=keep-adapter=true --qopt-unmerge-lora | FileCheck %s --check-prefix=UNMERGE
// A plain embedding adapter beside DoRA layers has no PEFT config (use_dora applies to both):
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 use-dora=true" --qopt-insert-lora="target-modules=embed_tokens r=2" --qopt-save-adapter=adapter=%t-dora -o /dev/null 2>&1 | FileCheck %s --check-prefix=DORASAVE
// RUN: test ! -e %t-dora/adapter_config.json
// Lowered: the lookup, A's columns gathered, times B, scaled and added.
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2" --convert-qopt-to-linalg | FileCheck %s --check-prefix=LOWER

// CHECK: qopt.param trainable @model.embed_tokens.lora_embedding_A : tensor<1x10xf32> = dense_resource<[[ZA:[^>]*]]>
// CHECK: qopt.param trainable @model.embed_tokens.lora_embedding_B : tensor<4x1xf32>
// CHECK-LABEL: func.func @m
// CHECK: %[[A:.*]] = qopt.load_param @model.embed_tokens.lora_embedding_A : tensor<1x10xf32>
// CHECK: %[[B:.*]] = qopt.load_param @model.embed_tokens.lora_embedding_B : tensor<4x1xf32>
// PEFT applies no dropout to embeddings: the op has none.
// CHECK: %[[H:.*]] = qopt.lora_embedding %arg0, %{{.*}}, %[[A]], %[[B]] alpha = 4.000000e+00 module "model.embed_tokens" : (tensor<?xi64>, tensor<10x4xf32>, tensor<1x10xf32>, tensor<4x1xf32>) -> tensor<?x4xf32>
// CHECK: qopt.lora %[[H]], {{.*}} dropout = 1.000000e-01 module "model.layers.0.self_attn.q_proj"
// A starts at zero: 16-byte alignment word, then 10 zero floats.
// CHECK: [[ZA]]: "0x{{[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]}}00000000000000000000000000000000000000000000000000000000000000000000000000000000"

// ALL: qopt.embedding %arg0, %{{.*}} module "model.embed_tokens"
// ALL: qopt.lora

// NOINIT: qopt.param trainable @model.embed_tokens.lora_embedding_A : tensor<2x10xf32> = dense_resource<[[NA:[^>]*]]>
// NOINIT: qopt.lora_embedding {{.*}} alpha = 8.000000e+00 scaling = rslora module "model.embed_tokens"
// NOINIT-NOT: [[NA]]: "0x{{[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]}}0000000000000000

// LIST: model.embed_tokens	embedding	10x4	f32	table: num_embeddings x dim, targeted
// LIST: model.layers.0.self_attn.q_proj	linear	4x4	f32	{{$}}

// The most common rank is r, the tie going to the first layer (the table).
// CONFIG: 1 4 ['model.embed_tokens', 'model.layers.0.self_attn.q_proj'] {'model\\.layers\\.0\\.self_attn\\.q_proj': 2} 0
// KEYS: base_model.model.model.embed_tokens.lora_embedding_A [1, 10]
// KEYS-NEXT: base_model.model.model.embed_tokens.lora_embedding_B [4, 1]
// KEYS-NEXT: base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [2, 4]
// KEYS-NEXT: base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight [4, 2]

// LOAD: qopt.param @model.embed_tokens.lora_embedding_A : tensor<1x10xf32>
// LOAD: qopt.param @model.embed_tokens.lora_embedding_B : tensor<4x1xf32>
// LOAD: qopt.lora_embedding %arg0, %{{.*}}, %{{.*}}, %{{.*}} alpha = 4.000000e+00 module "model.embed_tokens"
// LOAD: qopt.lora {{.*}} alpha = 4.000000e+00 module "model.layers.0.self_attn.q_proj"

// MERGE-NOT: lora_embedding
// MERGE: qopt.param @model.embed_tokens.weight : tensor<10x4xf32>
// MERGE-NOT: lora_embedding
// MERGE: %[[W:.*]] = qopt.load_param @model.embed_tokens.weight
// MERGE: qopt.embedding %arg0, %[[W]] module "model.embed_tokens"

// KEEP: qopt.lora_embedding {{.*}} module "model.embed_tokens" merged
// UNMERGE: qopt.lora_embedding {{.*}} module "model.embed_tokens" :

// DORASAVE: error: qopt-save-adapter: embedding 'model.embed_tokens' has a plain LoRA adapter beside DoRA layers: PEFT's use_dora would apply DoRA to it too

// LOWER-NOT: qopt.lora_embedding
// LOWER: cf.assert {{.*}} "qopt.embedding{{.*}}: an id is out of range (valid: -10 to 9)"
// LOWER: tensor.extract %{{.*}}[%{{.*}}, %{{.*}}] : tensor<10x4xf32>
// LOWER: %[[Z:.*]] = linalg.generic
// LOWER: tensor.extract %{{.*}}[%[[R:.*]], %[[ID:.*]]] : tensor<2x10xf32>
// LOWER: %[[BR:.*]] = linalg.contract {{.*}} ins(%[[Z]], %{{.*}} : tensor<?x2xf32>, tensor<4x2xf32>)
// LOWER: linalg.generic {{.*}} ins(%{{.*}}, %[[BR]] :
// LOWER: arith.mulf
// LOWER: arith.addf

qopt.param @emb : tensor<10x4xf32> = dense<0.5> : tensor<10x4xf32>
qopt.param @wq : tensor<4x4xf32> = dense<0.25> : tensor<4x4xf32>

func.func @m(%ids: tensor<?xi64>) -> tensor<?x4xf32> {
  %e = qopt.load_param @emb : tensor<10x4xf32>
  %w = qopt.load_param @wq : tensor<4x4xf32>
  %h = qopt.embedding %ids, %e module "model.embed_tokens" : (tensor<?xi64>, tensor<10x4xf32>) -> tensor<?x4xf32>
  %q = qopt.linear %h, %w module "model.layers.0.self_attn.q_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  return %q : tensor<?x4xf32>
}
