// What qopt-insert-lora refuses on an embedding target, naming it.
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 slots=true" 2>&1 | FileCheck %s --check-prefix=SLOTS
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 use-dora=true" 2>&1 | FileCheck %s --check-prefix=DORA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 use-sora=true" 2>&1 | FileCheck %s --check-prefix=SORA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2 init-lora-weights=pissa" 2>&1 | FileCheck %s --check-prefix=PISSA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=embed_tokens r=2" --qopt-insert-lora="target-modules=embed_tokens r=2" 2>&1 | FileCheck %s --check-prefix=TWICE
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=lm_head r=2" 2>&1 | FileCheck %s --check-prefix=NOMATCH

// SLOTS: error: qopt-insert-lora: embedding 'model.embed_tokens': run-time slots hold linear layers' factors only
// DORA: error: qopt-insert-lora: embedding 'model.embed_tokens': use-dora on an embedding is not supported
// SORA: error: qopt-insert-lora: embedding 'model.embed_tokens': use-sora on an embedding is not supported
// PISSA: error: qopt-insert-lora: embedding 'model.embed_tokens': init-lora-weights=pissa is not supported with an embedding target
// TWICE: error: qopt-insert-lora: embedding 'model.embed_tokens': already has an adapter
// NOMATCH: error: qopt-insert-lora: target-modules matched no linear layer; the layers are: model.layers.0.self_attn.q_proj, model.embed_tokens

func.func @m(%ids: tensor<?xi64>, %e: tensor<10x4xf32>, %w: tensor<4x4xf32>) -> tensor<?x4xf32> {
  %h = qopt.embedding %ids, %e module "model.embed_tokens" : (tensor<?xi64>, tensor<10x4xf32>) -> tensor<?x4xf32>
  %q = qopt.linear %h, %w module "model.layers.0.self_attn.q_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  return %q : tensor<?x4xf32>
}
