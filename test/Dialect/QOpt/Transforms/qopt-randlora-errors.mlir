// What qopt-insert-lora refuses with init-lora-weights=randlora, naming it.
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj,embed_tokens init-lora-weights=randlora" 2>&1 | FileCheck %s --check-prefix=EMB
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj init-lora-weights=randlora use-dora=true" 2>&1 | FileCheck %s --check-prefix=DORA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj init-lora-weights=randlora use-rslora=true" 2>&1 | FileCheck %s --check-prefix=RSLORA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj init-lora-weights=randlora slots=true" 2>&1 | FileCheck %s --check-prefix=SLOTS
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj init-lora-weights=randlora rank-pattern=q_proj=2" 2>&1 | FileCheck %s --check-prefix=PATTERN
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2" --qopt-insert-lora="target-modules=q_proj init-lora-weights=randlora" 2>&1 | FileCheck %s --check-prefix=TWICE
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj,o_proj init-lora-weights=randlora" 2>&1 | FileCheck %s --check-prefix=BF16
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj init-lora-weights=randlora" --qopt-insert-lora="target-modules=k_proj init-lora-weights=randlora" 2>&1 | FileCheck %s --check-prefix=SECOND
// A RandLoRA adapter beside a LoRA one cannot be saved as one PEFT adapter:
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj init-lora-weights=randlora" --qopt-insert-lora="target-modules=k_proj r=2" --qopt-save-adapter=adapter=%t 2>&1 | FileCheck %s --check-prefix=MIXED

// EMB: error: qopt-insert-lora: randlora: embedding 'model.embed_tokens' cannot take a RandLoRA adapter (PEFT adapts linear layers only)
// DORA: error: qopt-insert-lora: randlora: use-dora does not apply to RandLoRA
// RSLORA: error: qopt-insert-lora: randlora: use-rslora does not apply to RandLoRA
// SLOTS: error: qopt-insert-lora: randlora: run-time slots does not apply to RandLoRA
// PATTERN: error: qopt-insert-lora: randlora: RandLoRA has no rank or alpha patterns
// TWICE: error: qopt-insert-lora: randlora: module 'model.layers.0.self_attn.q_proj' already has an adapter
// BF16: error: qopt-insert-lora: randlora: module 'model.layers.0.self_attn.o_proj' does not compute in f32
// SECOND: error: qopt-insert-lora: randlora: the model already has a RandLoRA adapter (on 'model.layers.0.self_attn.q_proj'): target all its layers in one pass
// MIXED: error: qopt-save-adapter: module 'model.layers.0.self_attn.k_proj' has a LoRA adapter beside RandLoRA ones, which one PEFT config cannot express

func.func @m(%ids: tensor<?xi64>, %e: tensor<10x4xf32>, %w: tensor<4x4xf32>, %xb: tensor<?x4xbf16>, %wb: tensor<4x4xbf16>) -> (tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xbf16>) {
  %h = qopt.embedding %ids, %e module "model.embed_tokens" : (tensor<?xi64>, tensor<10x4xf32>) -> tensor<?x4xf32>
  %q = qopt.linear %h, %w module "model.layers.0.self_attn.q_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  %k = qopt.linear %h, %w module "model.layers.0.self_attn.k_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  %o = qopt.linear %xb, %wb module "model.layers.0.self_attn.o_proj" : (tensor<?x4xbf16>, tensor<4x4xbf16>) -> tensor<?x4xbf16>
  return %q, %k, %o : tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xbf16>
}
