// A PiSSA / OLoRA adapter is saved twice: as PEFT's plain save_pretrained
// writes it (init_lora_weights names the init: PEFT, and qoptc --adapter,
// recompute the residual from the original weights on loading) and, in
// converted/, as save_pretrained(path_initial_model_for_weight_conversion=…)
// writes it: rank 2r, alpha·2 (rsLoRA: ·√2), A' = [A; A0], B' = [B, -B0],
// a plain LoRA for the original weights. Against PEFT: test/e2e/peft-adapters.test.
// RUN: rm -rf %t && qopt-opt %s --qopt-save-adapter=adapter=%t -o /dev/null
// RUN: %python -c "import json; c = json.load(open('%t/adapter_config.json')); print(c['r'], c['lora_alpha'], c['rank_pattern'], c['alpha_pattern'], c['use_rslora'], c['init_lora_weights'])" | FileCheck %s --check-prefix=DIRECT
// DIRECT: 2 4 {'fc2': 1} {} True pissa
// RUN: %python -c "import json; c = json.load(open('%t/converted/adapter_config.json')); print(c['r'], round(c['lora_alpha'], 6), c['rank_pattern'], c['alpha_pattern'], c['use_rslora'], c['init_lora_weights'])" | FileCheck %s --check-prefix=CONVERTED
// CONVERTED: 4 5.656854 {'fc2': 2} {} True True
// RUN: %python -c "import json, struct; d = open('%t/converted/adapter_model.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n]); [print(k, v['dtype'], v['shape'], d[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]].hex()) for k, v in sorted(h.items()) if k != '__metadata__']" | FileCheck %s --check-prefix=TENSORS
// A = [[1,2,3],[4,5,6]] -> [A; A]; B = [[1,0],[0,2]] -> [[1,0,-1,-0],[0,2,-0,-2]].
// TENSORS: base_model.model.fc.lora_A.weight F32 [4, 3] 0000803f0000004000004040000080400000a0400000c0400000803f0000004000004040000080400000a0400000c040
// TENSORS-NEXT: base_model.model.fc.lora_B.weight F32 [2, 4] 0000803f00000000000080bf00000080000000000000004000000080000000c0
// TENSORS-NEXT: base_model.model.fc2.lora_A.weight F32 [2, 3]
// TENSORS-NEXT: base_model.model.fc2.lora_B.weight F32 [2, 2]
qopt.param @a : tensor<2x3xf32> = dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
qopt.param @b : tensor<2x2xf32> = dense<[[1.0, 0.0], [0.0, 2.0]]> : tensor<2x2xf32>
qopt.param @a1 : tensor<1x3xf32> = dense<1.0> : tensor<1x3xf32>
qopt.param @b1 : tensor<2x1xf32> = dense<1.0> : tensor<2x1xf32>
func.func @model(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>) -> (tensor<?x2xf32>, tensor<?x2xf32>) {
  %a = qopt.load_param @a : tensor<2x3xf32>
  %b = qopt.load_param @b : tensor<2x2xf32>
  %a1 = qopt.load_param @a1 : tensor<1x3xf32>
  %b1 = qopt.load_param @b1 : tensor<2x1xf32>
  %0 = qopt.lora %x, %w, %a, %b alpha = 4.0 scaling = rslora module "fc" {qopt.initial_factors, qopt.residual_init = "pissa"} : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2xf32>) -> tensor<?x2xf32>
  %1 = qopt.lora %x, %w, %a1, %b1 alpha = 4.0 scaling = rslora module "fc2" {qopt.initial_factors, qopt.residual_init = "pissa"} : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>) -> tensor<?x2xf32>
  return %0, %1 : tensor<?x2xf32>, tensor<?x2xf32>
}
