// The init a saved adapter names is the canonical one qopt computed:
// pissa_niter_N (in any case) got the exact SVD, so the config says pissa,
// and PEFT's converted form is written from the initial factors.
// RUN: rm -rf %t && mkdir -p %t
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=fc r=1 init-lora-weights=PiSSA_niter_4" --qopt-save-adapter=adapter=%t/pissa -o /dev/null
// RUN: %python -c "import json; print(json.load(open('%t/pissa/adapter_config.json'))['init_lora_weights'], json.load(open('%t/pissa/converted/adapter_config.json'))['r'])" | FileCheck %s --check-prefix=PISSA
// PISSA: pissa 2
// A loaded PiSSA adapter's initial factors are not known: its plain form is
// written, the converted one is not (a warning says so).
// RUN: qopt-opt %s --qopt-load-adapter=adapter=%t/pissa --qopt-save-adapter=adapter=%t/again -o /dev/null 2>&1 | FileCheck %s --check-prefix=LOADED
// LOADED: warning: qopt-save-adapter: PEFT's converted form of the pissa adapter is not written: its initial factors are not known (it was loaded, not initialised here)
// RUN: test -f %t/again/adapter_config.json && test ! -e %t/again/converted
// Saving another adapter into a folder drops the stale converted form.
// RUN: qopt-opt %s --qopt-insert-lora="target-modules=fc r=1 init-lora-weights=LoftQ" --qopt-save-adapter=adapter=%t/pissa -o /dev/null
// RUN: test ! -e %t/pissa/converted
// RUN: %python -c "import json; c = json.load(open('%t/pissa/adapter_config.json')); print(c['init_lora_weights'], c['loftq_config'])" | FileCheck %s --check-prefix=LOFTQ
// LOFTQ: loftq {'loftq_bits': 4, 'loftq_iter': 1}
qopt.param @fc.weight : tensor<3x4xf32> = dense<[[1.0, 2.0, 0.5, -1.0], [0.0, 1.0, 3.0, 2.0], [-2.0, 1.0, 0.0, 4.0]]> : tensor<3x4xf32>
func.func @model(%x: tensor<?x4xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @fc.weight : tensor<3x4xf32>
  %y = qopt.linear %x, %w module "fc" : (tensor<?x4xf32>, tensor<3x4xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}
