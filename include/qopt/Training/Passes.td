//===- Passes.td - Training passes -----------------------*- tablegen -*-===//

#ifndef QOPT_TRAINING_PASSES_TD
#define QOPT_TRAINING_PASSES_TD

include "mlir/Pass/PassBase.td"

def QOptAppendGradientsPass
    : Pass<"qopt-append-gradients", "::mlir::ModuleOp"> {
  let summary = "Returns the gradients of a function's first result with "
                "respect to its trainable arguments";
  let description = [{
    For each function with arguments marked `qopt.trainable`, whose first
    result is a float tensor of one element (a loss), appends one result per
    trainable argument: the gradient of the loss with respect to it, of the
    argument's type, named `qopt.name = "grad.<name>"` (the argument's
    `qopt.param` or `qopt.name`, else `argN`): the manifest lists it as an
    output of that name.

    Runs on tensors after `convert-qopt-to-linalg` and
    `convert-elementwise-to-linalg` (as the CPU pipeline places it); it is
    reverse-mode differentiation:

    - Every `linalg` op (generic or named, e.g. `linalg.contract`,
      `linalg.transpose`) has one rule, derived from its indexing maps and
      scalar body: the adjoint of an input is a `linalg.generic` over the
      same loops that recomputes the body, propagates the adjoint of each
      yielded value back to that input's block argument, and sums over the
      loops the input's map does not use. Sum reductions pass the result's
      adjoint to every term; max / min reductions to the terms equal to the
      result, split evenly among ties (torch's `amax`; a count of the ties
      per result, computed by one more pass over the reduction). A
      reduction marked `qopt.no_gradient` — the row maximum that
      stabilises a softmax or log-sum-exp, whose result does not depend on
      it — passes nothing. A contraction's adjoints are thus contractions again (dA =
      dC·Bᵀ as a multiply-add generic), which the BLAS lowering calls.
    - Operands read per group (`d floordiv C`, a scale per group of
      weights) get the sum over each group.
    - Scalar bodies: `arith` add / sub / mul / div / neg / max / min /
      select / extf / truncf, `math` exp, exp2, expm1, log, log1p, log2,
      sqrt, rsqrt, tanh, erf, sin, cos, powf, fpowi, absf, fma; rounding
      (`roundeven`, `floor` …) has derivative zero, and ops of integers
      alone (sitofp, bitcasts) pass nothing back.
    - Data movement: `tensor.cast`, `reshape`, `expand_shape`,
      `collapse_shape`, `extract_slice`, `insert_slice`, `concat`, `pad`;
      `scf.if` (a run-time choice such as a broadcast): an `scf.if` on the
      same condition whose branches differentiate the original ones.
    - Gathers: a body that reads a trainable tensor by `tensor.extract`
      (an embedding lookup, PEFT's embedding adapter's columns of A, an
      ONNX Gather of an activation) gives that tensor's adjoint by a
      scatter-add: a loop nest over the op's iteration space that adds
      each point's contribution at the element it read (ids repeat).

    The QOpt lowering marks what the math alone would get wrong or
    wasteful, and the rules honour it:

    - `qopt.straight_through` on a quantizer's rounding (or on a whole
      bitsandbytes codebook quantizer): the straight-through estimator —
      the adjoint passes unchanged, so clamps around the rounding make
      the clipping mask; with `qopt.gradient_scale` (per operand) on
      `qopt.lsq`'s loop this gives LSQ's step and offset gradients times
      its gradient scale (the formulas in `qopt.lsq`'s description);
    - `qopt.no_gradient`: a constant to training (torch's `detach()`):
      DoRA's weight norm, as PEFT and the DoRA paper;
    - `qopt.recompute` (a dequantized weight): computed again where the
      backward pass needs it, instead of keeping the forward's float copy
      of a frozen quantized weight alive.

    Only ops that depend on a trainable argument and on which the loss
    depends are differentiated: frozen weights get no gradient and integer
    computations (masks, indices) are left alone. An op in that set without
    a rule — control flow, a body reading a trainable value other than by
    `tensor.extract`, a reduction
    whose body is not a sum, max or min — is an error naming the op and
    its location (the ONNX node), never a wrong gradient.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QOptBuildTrainStepPass
    : Pass<"qopt-build-train-step", "::mlir::ModuleOp"> {
  let summary = "Turns the model's entry into a training entry: loss, "
                "gradients and the optimizer's update";
  let description = [{
    Runs where `qopt-append-gradients` does (on tensors, after the QOpt
    lowering), on the module's one entry function, whose first result is
    the model's output (logits). It adds the target as a new input after
    the model's — `labels` (int64: [batch, seq] for `loss=causal-lm`,
    [batch] for `seq-cls`) or `targets` (the output's shape, for `mse`) —
    and builds the loss on the output:

    - `causal-lm`: transformers' causal-LM loss: logits at positions
      0 … S-2 against labels at 1 … S-1, cross-entropy in f32 with a
      max-shifted log-sum-exp, labels `-100` left out, the mean over the
      positions counted (NaN when none is, as torch);
    - `seq-cls`: the same cross-entropy on [batch, classes] logits;
    - `mse`: the mean of the squared differences;
    - `kl-distill`: knowledge distillation to `teacher_logits` (the
      output's shape, a new input): T² · KL(softmax(teacher / T) ‖
      softmax(output / T)) over the last dimension, averaged over the
      positions (torch's `kl_div(log_softmax(s / T), softmax(t / T),
      reduction="batchmean")` on logits flattened to [positions, V], times
      T²), with T the `temperature`.

    Then one function per entry `entry` lists (comma-separated, in that
    order; the module's entry function is replaced), named as the runtime
    and Python know them:

    - `eval` (`@eval_step`): returns the loss only;
    - `gradients` (`@gradients`): returns the loss and the gradient of
      every trainable
      parameter, each named `grad.<parameter>` (see
      `qopt-append-gradients` for how they are derived);
    - `train` (`@train_step`): returns the loss and, as updates of mutable
      parameters, each trainable parameter after one optimizer step and the
      optimizer's state: `optimizer.step` (int64, the steps taken), and per
      parameter `<name>.exp_avg` / `<name>.exp_avg_sq` (AdamW) or
      `<name>.momentum_buffer` (SGD with momentum), new state parameters
      that start at zero. The runtime commits them after a successful run,
      so each call is one training step.
    - `accumulate` (`@accumulate_step`, gradient accumulation; needs
      `train`): returns the loss and adds the gradients to a running sum,
      the state parameters `<name>.grad_accum` (the gradient's type) and
      `optimizer.accumulated` (int64, the micro-batches summed). With it,
      the train step steps with the mean of the sum and its own batch's
      gradients (over `optimizer.accumulated` + 1 micro-batches; clipping
      applies to that mean) and empties the sum: N - 1 accumulate calls
      and one train step are one step of N micro-batches, as
      `(loss / N).backward()` per micro-batch in PyTorch.

    All of them take the same arguments (those of the train step: the
    model's inputs, the target, the parameters and the optimizer state), so
    that one compiled library offers them side by side on one set of
    parameters.

    The optimizer is torch.optim's arithmetic in f32 (`optimizer` as
    `qoptc --optimizer` spells it, e.g.
    `adamw:lr=1e-3,betas=0.9/0.999,eps=1e-8,weight_decay=0.01` — decoupled
    weight decay, bias correction — or
    `sgd:lr=0.1,momentum=0.9,dampening=0,nesterov=false,weight_decay=0`),
    with the learning rate of transformers' schedulers (`schedule`
    constant / linear / cosine after `warmup-steps` of linear warm-up; the
    first step uses the factor at 0, as a scheduler stepped after the
    optimizer) and torch's `clip_grad_norm_` (`max-grad-norm`: every
    gradient scaled by min(1, max / (‖g‖ + 1e-6)), ‖g‖ over all of them).

    Activation memory. With `gradient-checkpointing`, the entries that
    differentiate recompute in the backward pass what the forward computed
    between two checkpoints — the residual stream after each sublayer,
    where the QOpt lowering of `qopt.residual_add` marks its loop
    `qopt.checkpoint` — instead of keeping it alive from the forward:
    transformers' per-layer gradient checkpointing, per sublayer. Each
    segment is computed again once, whole, just before the backward first
    reads one of its values; the checkpoints, values other segments read
    too (masks, position tables) and the last segment (head and loss) are
    kept. Gradients are unchanged (the same ops on the same values); the
    cost is about one more forward pass. Without a residual add in the
    model there is nothing to cut: a warning says so.

    With `activation-report`, each entry reports, as a remark, the bytes
    of tensors its program holds at once at the sizes `activation-sizes`
    gives the named dynamic dimensions (`batch=4,seq=128`; a missing one
    is an error naming it), and how much of it the forward keeps for the
    backward. It is an estimate on the tensor program before elementwise
    fusion and bufferization: every `tensor.empty`, `concat`, `pad` or
    `scf.if` result is a buffer (views and destination-passing results
    share their source's), alive from its definition to the last use of any
    view of it; arguments (inputs, parameters) and constants are not
    counted.
  }];
  let options = [
    Option<"loss", "loss", "std::string", "\"causal-lm\"",
           "The loss: causal-lm, seq-cls, mse or kl-distill">,
    Option<"temperature", "temperature", "double", "1.0",
           "kl-distill's temperature T">,
    Option<"optimizer", "optimizer", "std::string",
           "\"adamw:lr=1e-3,betas=0.9/0.999,eps=1e-8,weight_decay=0.01\"",
           "The optimizer and its hyperparameters (adamw:… or sgd:…)">,
    Option<"entry", "entry", "std::string", "\"train,eval,gradients\"",
           "The entries to build, comma-separated: train (one optimizer "
           "step), eval (the loss), gradients (the loss and every "
           "trainable parameter's gradient) and accumulate (gradient "
           "accumulation)">,
    Option<"schedule", "schedule", "std::string", "\"constant\"",
           "Learning-rate schedule after warm-up: constant, linear or "
           "cosine (to zero at total-steps)">,
    Option<"warmupSteps", "warmup-steps", "int64_t", "0",
           "Steps of linear warm-up from 0 to the learning rate">,
    Option<"totalSteps", "total-steps", "int64_t", "0",
           "The schedule's last step (linear and cosine)">,
    Option<"maxGradNorm", "max-grad-norm", "double", "0.0",
           "Clip the global gradient norm to this (0: no clipping)">,
    Option<"gradientCheckpointing", "gradient-checkpointing", "bool",
           "false",
           "Recompute each segment between residual adds in the backward "
           "pass instead of keeping its activations">,
    Option<"activationReport", "activation-report", "bool", "false",
           "Report (as a remark per entry) the peak bytes of tensors alive "
           "at once and the forward's bytes kept for the backward">,
    Option<"activationSizes", "activation-sizes", "std::string", "\"\"",
           "The sizes of the named dynamic dimensions for the report, as "
           "NAME=SIZE,… (e.g. batch=4,seq=128)">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect"];
}

#endif // QOPT_TRAINING_PASSES_TD
