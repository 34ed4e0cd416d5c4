// Errors at a layer:
// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-insert-lora="target-modules=q_proj,fc r=8"
// Errors of the selection and the options (the module is named):
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=o_proj,gate" 2>&1 | FileCheck %s --check-prefix=NOMATCH
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=0" 2>&1 | FileCheck %s --check-prefix=RANK0
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj lora-dropout=1.5" 2>&1 | FileCheck %s --check-prefix=DROPOUT
// RUN: not qopt-opt %s --qopt-insert-lora="r=2" 2>&1 | FileCheck %s --check-prefix=NOTARGET
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=corda" 2>&1 | FileCheck %s --check-prefix=LATER
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=eva" 2>&1 | FileCheck %s --check-prefix=EVA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=lora_ga" 2>&1 | FileCheck %s --check-prefix=LORAGA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=lora_ga loraga-state=x loraga-scale=huge" 2>&1 | FileCheck %s --check-prefix=LORAGASCALE
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=lora-sb lorasb-lr=0.001" 2>&1 | FileCheck %s --check-prefix=LORASB
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=lora-sb lorasb-state=x" 2>&1 | FileCheck %s --check-prefix=LORASBLR
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=lora-sb lorasb-state=x lorasb-lr=0.001 slots=true" 2>&1 | FileCheck %s --check-prefix=SLOTSB
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=loftq loftq-bits=8" 2>&1 | FileCheck %s --check-prefix=LOFTQBITS
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=loftq loftq-iter=0" 2>&1 | FileCheck %s --check-prefix=LOFTQITER
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=loftq" 2>&1 | FileCheck %s --check-prefix=LOFTQ
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=kaiming" 2>&1 | FileCheck %s --check-prefix=INIT
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 rank-pattern=q_proj" 2>&1 | FileCheck %s --check-prefix=PATTERN
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 rank-pattern=q_proj=-1" 2>&1 | FileCheck %s --check-prefix=NEGRANK
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=(?:q|k)_proj r=2" 2>&1 | FileCheck %s --check-prefix=REGEX
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=.*_proj r=2 exclude-modules=[q" 2>&1 | FileCheck %s --check-prefix=BRACKET
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 use-dora=true" 2>&1 | FileCheck %s --check-prefix=DORA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=pissa" 2>&1 | FileCheck %s --check-prefix=PISSA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 rank-pattern=q_proj=2,self_attn.q_proj=1" 2>&1 | FileCheck %s --check-prefix=AMBIGUOUS
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 use-dora=true slots=true" 2>&1 | FileCheck %s --check-prefix=SLOTDORA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 use-sora=true slots=true" 2>&1 | FileCheck %s --check-prefix=SLOTSORA
// RUN: not qopt-opt %s --qopt-insert-lora="target-modules=q_proj r=2 init-lora-weights=lora-xs" 2>&1 | FileCheck %s --check-prefix=XS

// NOMATCH: error: qopt-insert-lora: target-modules matched no linear layer; the layers are: model.layers.0.self_attn.q_proj, model.layers.0.fc
// RANK0: error: qopt-insert-lora: r must be positive, got 0
// DROPOUT: error: qopt-insert-lora: lora-dropout must be in [0, 1), got 1.5
// NOTARGET: error: qopt-insert-lora: target-modules is required (module names or suffixes, one regular expression, or all-linear)
// LATER: error: qopt-insert-lora: init-lora-weights 'corda' is not implemented yet
// EVA: error: qopt-insert-lora: init-lora-weights=eva needs each layer's input components: give eva-state=FILE (qoptc --calibration-data computes them)
// LORAGA: qopt-insert-lora: init-lora-weights=lora_ga needs each layer's gradient: give loraga-state=FILE (qoptc --calibration-data computes it)
// LORAGASCALE: qopt-insert-lora: unknown loraga-scale 'huge' (stable, weight_svd, gd_scale, unit)
// LORASB: error: qopt-insert-lora: init-lora-weights=lora-sb needs each layer's gradient: give lorasb-state=FILE (qoptc --calibration-data computes it)
// LORASBLR: error: qopt-insert-lora: init-lora-weights=lora-sb needs lorasb-lr, the learning rate of the update it approximates (a positive number; lora_sb_config.lr in an adapter config), got 0
// SLOTSB: error: qopt-insert-lora: init-lora-weights=lora-sb: run-time slots hold plain LoRA factors only
// LOFTQBITS: error: qopt-insert-lora: loftq-bits 8 is not supported (4: NF4, as bitsandbytes quantizes)
// LOFTQITER: error: qopt-insert-lora: loftq-iter must be at least 1, got 0
// LOFTQ: error: qopt-insert-lora: init-lora-weights needs the weight of module 'model.layers.0.self_attn.q_proj' at compile time; it is not a parameter with data or a constant
// INIT: error: qopt-insert-lora: unknown init-lora-weights 'kaiming' (expected true, false, gaussian, pissa, pissa_niter_N, olora, loftq, lora-xs, lora-sb, eva, lora_ga or randlora)
// PATTERN: error: qopt-insert-lora: rank-pattern entry 'q_proj' is not key=value with a number
// NEGRANK: error: qopt-insert-lora: rank_pattern 'q_proj': the rank must be positive, got -1
// REGEX: error: qopt-insert-lora: regular expression '(?:q|k)_proj': (?...) groups are not supported
// BRACKET: error: qopt-insert-lora: regular expression '[q': unterminated '['
// SLOTDORA: error: qopt-insert-lora: use-dora: DoRA layers cannot be run-time slots
// SLOTSORA: error: qopt-insert-lora: use-sora: run-time slots hold plain LoRA factors only
// XS: error: qopt-insert-lora: init-lora-weights needs the weight of module 'model.layers.0.self_attn.q_proj' at compile time; it is not a parameter with data or a constant
// PISSA: error: qopt-insert-lora: init-lora-weights needs the weight of module 'model.layers.0.self_attn.q_proj' at compile time; it is not a parameter with data or a constant
// AMBIGUOUS: error: qopt-insert-lora: rank_pattern keys 'q_proj' and 'self_attn.q_proj' both match module 'model.layers.0.self_attn.q_proj' with different values
// DORA: error: qopt-insert-lora: use-dora needs the weight of module 'model.layers.0.self_attn.q_proj' at compile time; it is not a parameter with data or a constant

func.func @layers(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>, %w2: tensor<2x8xf32>, %a: tensor<1x8xf32>, %b: tensor<2x1xf32>) -> (tensor<?x4xf32>, tensor<?x2xf32>) {
  // expected-error @+1 {{qopt-insert-lora: rank 8 of module 'model.layers.0.self_attn.q_proj' exceeds min(out, in) = 4}}
  %q = qopt.linear %x, %w module "model.layers.0.self_attn.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %f = qopt.lora %x, %w2, %a, %b alpha = 1.0 module "model.layers.0.fc" : (tensor<?x8xf32>, tensor<2x8xf32>, tensor<1x8xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %q, %f : tensor<?x4xf32>, tensor<?x2xf32>
}

// -----

func.func @adapted(%x: tensor<?x8xf32>, %w2: tensor<2x8xf32>, %a: tensor<1x8xf32>, %b: tensor<2x1xf32>) -> tensor<?x2xf32> {
  // expected-error @+1 {{qopt-insert-lora: module 'model.layers.0.fc' already has an adapter}}
  %f = qopt.lora %x, %w2, %a, %b alpha = 1.0 module "model.layers.0.fc" : (tensor<?x8xf32>, tensor<2x8xf32>, tensor<1x8xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %f : tensor<?x2xf32>
}
