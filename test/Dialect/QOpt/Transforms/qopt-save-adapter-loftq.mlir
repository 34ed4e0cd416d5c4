// A LoftQ adapter is saved as PEFT's save_pretrained writes it: the init
// with its loftq_config (PEFT, and qoptc --adapter, recompute the
// NF4-quantized base weights from the original ones on loading); LoftQ has
// no converted form. Against PEFT: test/e2e/peft-adapters.test.
// RUN: rm -rf %t && qopt-opt %s --qopt-save-adapter=adapter=%t -o /dev/null
// RUN: test ! -e %t/converted
// RUN: %python -c "import json; c = json.load(open('%t/adapter_config.json')); print(c['r'], c['init_lora_weights'], c['loftq_config'], c['use_dora'])" | FileCheck %s
// CHECK: 1 loftq {'loftq_bits': 4, 'loftq_iter': 3} True
qopt.param @a : tensor<1x3xf32> = dense<1.0> : tensor<1x3xf32>
qopt.param @b : tensor<2x1xf32> = dense<1.0> : tensor<2x1xf32>
qopt.param @m : tensor<2xf32> = dense<1.0> : tensor<2xf32>
func.func @model(%x: tensor<?x3xf32>, %w: tensor<2x3xf32>) -> tensor<?x2xf32> {
  %a = qopt.load_param @a : tensor<1x3xf32>
  %b = qopt.load_param @b : tensor<2x1xf32>
  %m = qopt.load_param @m : tensor<2xf32>
  %0 = qopt.lora %x, %w, %a, %b magnitude(%m) alpha = 1.0 module "fc" {qopt.residual_init = "loftq", qopt.loftq_iter = 3 : i64} : (tensor<?x3xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<2x1xf32>, tensor<2xf32>) -> tensor<?x2xf32>
  return %0 : tensor<?x2xf32>
}
