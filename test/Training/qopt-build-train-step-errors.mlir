// RUN: not qopt-opt %s '--qopt-build-train-step=optimizer=adam:lr=1' 2>&1 | FileCheck %s --check-prefix=KIND
// KIND: qopt-build-train-step: optimizer 'adam:lr=1': unknown optimizer 'adam' (adamw, sgd)
// RUN: not qopt-opt %s '--qopt-build-train-step=optimizer=adamw:lr=fast' 2>&1 | FileCheck %s --check-prefix=LR
// LR: optimizer 'adamw:lr=fast': 'lr' must be a number, not 'fast'
// RUN: not qopt-opt %s '--qopt-build-train-step=optimizer=adamw:betas=0.9' 2>&1 | FileCheck %s --check-prefix=BETAS
// BETAS: 'betas' must be two numbers in [0, 1) as B1/B2, not '0.9'
// RUN: not qopt-opt %s '--qopt-build-train-step=optimizer=adamw:betas=nan/0.9' 2>&1 | FileCheck %s --check-prefix=NAN
// NAN: 'betas' must be two numbers in [0, 1) as B1/B2, not 'nan/0.9'
// RUN: not qopt-opt %s '--qopt-build-train-step=optimizer=adamw:weight_decay=-1' 2>&1 | FileCheck %s --check-prefix=DECAY
// DECAY: optimizer 'adamw:weight_decay=-1': 'weight_decay' must not be negative
// RUN: not qopt-opt %s '--qopt-build-train-step=optimizer=adamw:momentum=0.9' 2>&1 | FileCheck %s --check-prefix=KEY
// KEY: unknown key 'momentum' for adamw (lr, betas, eps, weight_decay)
// RUN: not qopt-opt %s '--qopt-build-train-step=optimizer=sgd:lr=0.1,nesterov=true' 2>&1 | FileCheck %s --check-prefix=NESTEROV
// NESTEROV: nesterov needs a momentum and zero dampening (as torch)
// RUN: not qopt-opt %s --qopt-build-train-step=loss=focal 2>&1 | FileCheck %s --check-prefix=LOSS
// LOSS: qopt-build-train-step: unknown loss 'focal' (causal-lm, seq-cls, mse, kl-distill)
// RUN: not qopt-opt %s '--qopt-build-train-step=loss=kl-distill temperature=0' 2>&1 | FileCheck %s --check-prefix=TEMP
// TEMP: qopt-build-train-step: temperature must be positive, not 0
// RUN: not qopt-opt %s --qopt-build-train-step=entry=predict 2>&1 | FileCheck %s --check-prefix=ENTRY
// ENTRY: qopt-build-train-step: entry 'predict' is not one of train, eval, gradients, accumulate
// RUN: not qopt-opt %s '--qopt-build-train-step=entry=eval,accumulate' 2>&1 | FileCheck %s --check-prefix=ACCUM
// ACCUM: qopt-build-train-step: entry 'accumulate' needs 'train' (the step that applies the accumulated gradients)
// RUN: not qopt-opt %s '--qopt-build-train-step=entry=eval,eval' 2>&1 | FileCheck %s --check-prefix=TWICE
// TWICE: qopt-build-train-step: entry 'eval' is named twice
// RUN: not qopt-opt %s --qopt-build-train-step=schedule=cosine 2>&1 | FileCheck %s --check-prefix=SCHEDULE
// SCHEDULE: qopt-build-train-step: schedule 'cosine' needs total-steps greater than warmup-steps
// RUN: not qopt-opt %s --qopt-build-train-step=loss=seq-cls 2>&1 | FileCheck %s --check-prefix=RANK
// RANK: qopt-build-train-step: loss seq-cls needs logits [batch, classes], not 'tensor<2x3x8xf32>'
// RUN: not qopt-opt %s -split-input-file --qopt-build-train-step 2>&1 | FileCheck %s --check-prefix=FROZEN
// FROZEN: qopt-build-train-step: the model has no trainable parameter

func.func @main(%x: tensor<2x3x8xf32> {qopt.name = "x"}) -> tensor<2x3x8xf32> {
  return %x : tensor<2x3x8xf32>
}
