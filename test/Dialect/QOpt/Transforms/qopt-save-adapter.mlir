// RUN: rm -rf %t && mkdir -p %t && qopt-opt %s -split-input-file -verify-diagnostics --qopt-save-adapter=adapter=%t/a
// The first module's adapter, as PEFT lays it out:
// RUN: %python -c "import json; c = json.load(open('%t/a/adapter_config.json')); print(c['peft_type'], c['r'], c['lora_alpha'], c['target_modules'], c['rank_pattern'], c['alpha_pattern'], c['use_rslora'], c['use_dora'], c['lora_dropout'])" | FileCheck %s --check-prefix=CONFIG
// CONFIG: LORA 2 4 ['model.layers.0.q_proj', 'model.layers.0.v_proj', 'model.layers.1.q_proj'] {'model\\.layers\\.1\\.q_proj': 1} {'model\\.layers\\.0\\.v_proj': 6} True False 0.1
// RUN: %python -c "import json, struct; d = open('%t/a/adapter_model.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n]); [print(k, v['dtype'], v['shape'], d[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]].hex()) for k, v in sorted(h.items()) if k != '__metadata__']" | FileCheck %s --check-prefix=TENSORS
// TENSORS: base_model.model.model.layers.0.q_proj.lora_A.weight F32 [2, 3] 0000803f0000004000004040000080400000a0400000c040
// TENSORS-NEXT: base_model.model.model.layers.0.q_proj.lora_B.weight F32 [2, 2] 0000803f000000000000000000000040
// TENSORS-NEXT: base_model.model.model.layers.0.v_proj.lora_A.weight F32 [2, 3]
// TENSORS-NEXT: base_model.model.model.layers.0.v_proj.lora_B.weight F32 [2, 2]
// TENSORS-NEXT: base_model.model.model.layers.1.q_proj.lora_A.weight F32 [1, 3]
// TENSORS-NEXT: base_model.model.model.layers.1.q_proj.lora_B.weight F32 [2, 1]
// RUN: not qopt-opt %s --qopt-save-adapter -o /dev/null 2>&1 | FileCheck %s --check-prefix=NODIR
// NODIR: error: qopt-save-adapter: no output folder given (adapter=DIR)
qopt.param @a : tensor<2x3xf32> = dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
qopt.param @b : tensor<2x2xf32> = dense<[[1.0, 0.0], [0.0, 2.0]]> : tensor<2x2xf32>
qopt.param @a1 : tensor<1x3xf32> = dense<1.0> : tensor<1x3xf32>
qopt.param @b1 : tensor<2x1xf32> = dense<1.0> : tensor<2x1xf32>
func.func @model(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>) {
  %a = qopt.load_param @a : tensor<2x3xf32>
  %b = qopt.load_param @b : tensor<2x2xf32>
  %a1 = qopt.load_param @a1 : tensor<1x3xf32>
  %b1 = qopt.load_param @b1 : tensor<2x1xf32>
  %0 = qopt.lora %x, %w, %a, %b alpha = 4.0 scaling = rslora dropout = 0.1 module "model.layers.0.q_proj" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2xf32>) -> tensor<?x2xf32>
  %1 = qopt.lora %x, %w, %a, %b alpha = 6.0 scaling = rslora dropout = 0.1 module "model.layers.0.v_proj" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2xf32>) -> tensor<?x2xf32>
  %2 = qopt.lora %x, %w, %a1, %b1 alpha = 4.0 scaling = rslora dropout = 0.1 module "model.layers.1.q_proj" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %0, %1, %2 : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

func.func @no_path(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>, %a: tensor<1x3xf32>, %b: tensor<2x1xf32>) -> tensor<?x2xf32> {
  // expected-error @+1 {{qopt-save-adapter: a LoRA layer without a module path cannot be named in PEFT's format}}
  %0 = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}

// -----

func.func @gate(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>, %a: tensor<1x3xf32>, %b: tensor<2x1xf32>, %g: tensor<1xf32>) -> tensor<?x2xf32> {
  // expected-error @+1 {{qopt-save-adapter: module 'fc': SoRA gates and LoRA-XS middles have no place in a PEFT LoRA adapter}}
  %0 = qopt.lora %x, %w, %a, %b gate(%g) alpha = 1.0 module "fc" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>, tensor<1xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}

// -----

func.func @mixed(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>, %a: tensor<1x3xf32>, %b: tensor<2x1xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %0 = qopt.lora %x, %w, %a, %b alpha = 1.0 module "fc1" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  // expected-error @+1 {{qopt-save-adapter: module 'fc2' differs from module 'fc1' in scaling, DoRA or dropout, which one PEFT config cannot express}}
  %1 = qopt.lora %x, %w, %a, %b alpha = 1.0 scaling = rslora module "fc2" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %0, %1 : tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

qopt.param @pa : tensor<1x3xf32> = dense<1.0> : tensor<1x3xf32>
qopt.param @pb : tensor<2x1xf32> = dense<1.0> : tensor<2x1xf32>
func.func @mixed_inits(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %a = qopt.load_param @pa : tensor<1x3xf32>
  %b = qopt.load_param @pb : tensor<2x1xf32>
  %0 = qopt.lora %x, %w, %a, %b alpha = 1.0 module "fc" {qopt.residual_init = "pissa"} : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  // expected-error @+1 {{qopt-save-adapter: module 'fc2' was initialised differently from module 'fc', which one PEFT config cannot express}}
  %1 = qopt.lora %x, %w, %a, %b alpha = 1.0 module "fc2" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %0, %1 : tensor<?x2xf32>, tensor<?x2xf32>
}

// -----

qopt.param @qa : tensor<1x3xf32> = dense<1.0> : tensor<1x3xf32>
qopt.param @qb : tensor<2x1xf32> = dense<1.0> : tensor<2x1xf32>
qopt.param @qm : tensor<2xf32> = dense<1.0> : tensor<2xf32>
func.func @pissa_dora(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>) -> tensor<?x2xf32> {
  %a = qopt.load_param @qa : tensor<1x3xf32>
  %b = qopt.load_param @qb : tensor<2x1xf32>
  %m = qopt.load_param @qm : tensor<2xf32>
  // expected-error @+1 {{qopt-save-adapter: module 'fc': a DoRA adapter with a olora initialisation has no converted form for the original weights (PEFT's conversion drops the magnitudes)}}
  %0 = qopt.lora %x, %w, %a, %b magnitude(%m) alpha = 1.0 module "fc" {qopt.residual_init = "olora"} : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>, tensor<2xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}

// -----

func.func @runtime_factors(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>, %a: tensor<1x3xf32>, %b: tensor<2x1xf32>) -> tensor<?x2xf32> {
  // expected-error @+1 {{qopt-save-adapter: module 'fc': its lora_A.weight is not a parameter with data or a constant}}
  %0 = qopt.lora %x, %w, %a, %b alpha = 1.0 module "fc" : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}

// -----

// expected-error @below {{qopt-save-adapter: the model has no LoRA adapter to save}}
module {
  func.func @none(%x: tensor<2xf32>) -> tensor<2xf32> {
    return %x : tensor<2xf32>
  }
}
