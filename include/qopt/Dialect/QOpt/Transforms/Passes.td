//===- Passes.td - QOpt transformation passes --------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD
#define QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def QOptFoldZeroLoRAPass : Pass<"qopt-fold-zero-lora", "::mlir::ModuleOp"> {
  let summary = "Replaces LoRA branches that are exactly zero by the base linear";
  let description = [{
    A `qopt.lora` whose up-projection `B` (or SoRA gate) is all zeros adds
    nothing to its base layer: `x · Wᵀ + scale · z · 0 + b = x · Wᵀ + b`.
    This pass rewrites such ops into `qopt.linear`, e.g. to export a model
    whose adapters were never trained or were pruned to zero.

    Canonicalization never does this, because `B = 0` is how LoRA *starts*
    training. Zeros are recognised in constants and in non-trainable
    parameters with inline data; a `trainable` parameter is only taken at
    its initial value with `include-trainable=true`. DoRA branches (with a
    `magnitude`) are kept: with `B = 0` they still rescale each output row
    by `m / ‖W‖`.

    ```mlir
    // Before
    %y = qopt.lora %x, %w, %a, %zero bias(%b) alpha = 16.0 : ...
    // After
    %y = qopt.linear %x, %w, %b : ...
    ```
  }];
  let options = [
    Option<"includeTrainable", "include-trainable", "bool", "false",
           "Also fold branches whose B or gate is a trainable parameter "
           "whose initial value is zero">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptExposeLayerInputsPass
    : Pass<"qopt-expose-layer-inputs", "::mlir::ModuleOp"> {
  let summary = "Makes the inputs of the named linear layers the model's "
                "outputs (a calibration probe)";
  let description = [{
    Replaces the results of the model's entry function by the activation
    inputs of the linear layers named in `modules` (module paths, as
    `qopt-list-modules` prints them), in that order, each result named
    after its module. What only fed the old results becomes dead. `qoptc
    --calibration-data` compiles such a probe of the model to collect the
    layer inputs that EVA's principal components come from. A name that is
    no linear layer's, or names none, is an error.

    ```mlir
    // qopt-expose-layer-inputs{modules=model.layers.0.self_attn.q_proj}
    func.func @main(%x: tensor<1x4x64xf32>) -> tensor<1x4x128xf32> {
      ...
      %q = qopt.linear %h, %w module "model.layers.0.self_attn.q_proj" : ...
      ...
      return %logits : tensor<1x4x128xf32>
    }
    // becomes
    func.func @main(%x: tensor<1x4x64xf32>)
        -> (tensor<1x4x64xf32> {qopt.name = "model.layers.0.self_attn.q_proj"}) {
      ...
      return %h : tensor<1x4x64xf32>
    }
    ```
  }];
  let options = [
    ListOption<"modules", "modules", "std::string",
               "Module paths of the linear layers whose inputs to return">,
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptListModulesPass : Pass<"qopt-list-modules", "::mlir::ModuleOp"> {
  let summary = "Prints every linear layer with its module path (to write "
                "an adapter's target list)";
  let description = [{
    Prints one line per linear layer (`qopt.linear`, `qopt.lora`) to the
    standard output, in program order, tab-separated:

    ```
    # module	op	shape (out x in)	weight	note
    model.layers.0.self_attn.q_proj	linear	32x32	f32
    model.layers.0.mlp.up_proj	lora r=8	64x32	quantized #qopt.nf4 per_group<axis = 1, size = 64>
    lm_head	linear	128x32	f32	output head
    ```

    Embedding tables (`qopt.embedding`, `qopt.lora_embedding`) come first,
    as `embedding` (or `lora_embedding r=N`) with their `num_embeddings x
    dim` shape: PEFT adapts them too when named in `target-modules`.

    The module path is the one PEFT uses for the layer (from the exporter's
    name scopes, `<path>.weight` initializer names or TorchScript node
    names); `<unnamed>` where the model does not give one (such a layer
    cannot be targeted by name). The output head (a linear layer whose
    output the model returns and whose out-features equal an embedding
    table's rows: PEFT's `get_output_embeddings()`) is marked: PEFT's
    `"all-linear"` leaves it out. With `target-modules` (and the other
    selection options of `qopt-insert-lora`) a last column says which
    layers an adapter would target. The IR is left unchanged.
  }];
  let options = [
    ListOption<"targetModules", "target-modules", "std::string",
               "Show which layers these targets select (as in "
               "qopt-insert-lora)">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers left out of the selection (as in qopt-insert-lora)">,
    ListOption<"layersToTransform", "layers-to-transform", "int64_t",
               "Layer indices the selection is limited to">,
    ListOption<"layersPattern", "layers-pattern", "std::string",
               "Names of the layer lists whose indices layers-to-transform "
               "counts">
  ];
}

def QOptInsertLoRAPass : Pass<"qopt-insert-lora", "::mlir::ModuleOp"> {
  let summary = "Inserts LoRA adapters into the linear layers a PEFT "
                "LoraConfig selects";
  let description = [{
    Every `qopt.linear` whose module path the selection matches becomes a
    `qopt.lora` with new trainable parameters `<module>.lora_A.weight`
    (`r×in`) and `<module>.lora_B.weight` (`out×r`) — and with `use-dora`
    `<module>.lora_magnitude_vector` (`out`) — computed at compile time
    and stored as `dense_resource` blobs. A `qopt.embedding` whose module
    path a target names becomes a `qopt.lora_embedding` (PEFT's
    `lora.Embedding`) with `<module>.lora_embedding_A` (`r×V`, zero) and
    `<module>.lora_embedding_B` (`D×r`, N(0, 1); with `init-lora-weights=false`
    both N(0, 1)), as PEFT initialises embeddings whatever the init names; no
    dropout (PEFT applies none to embeddings). `all-linear` never selects an
    embedding; DoRA, SoRA, run-time slots and the inits that rewrite the
    base weight (PiSSA, OLoRA, LoftQ, LoRA-XS) are refused on one. Options
    are named after PEFT's `LoraConfig` and select as it does:

    * `target-modules`: names or suffixes (`q_proj,v_proj` matches
      `model.layers.0.self_attn.q_proj`); a single entry with regular
      expression characters is a full-match regular expression (PEFT's
      string form; Python syntax, translated); `all-linear` is every linear
      layer but the output head;
    * `exclude-modules`: likewise, layers left out;
    * `layers-to-transform` / `layers-pattern`: only layers whose index (the
      number after `layers.`, or after a `layers-pattern` name) is listed;
    * `rank-pattern` / `alpha-pattern`: `regex=value` entries giving some
      layers another r / alpha (first matching key, as PEFT).

    Initialisations (`init-lora-weights`): `true` (PEFT's default:
    `A ~ U(-1/√in, 1/√in)`, Kaiming-uniform with a = √5, and `B = 0`),
    `gaussian` (`A ~ N(0, 1/r)`, `B = 0`) and `false` (both as
    `nn.Linear` initialises them: `B ~ U(-1/√r, 1/√r)`, so the output
    changes). The random factors come from a generator seeded with `seed`
    (SplitMix64 per layer, in layer order): deterministic across machines,
    but not torch's numbers. With `B = 0` the model's output is unchanged.
    `pissa` (PiSSA: the top-r singular triplets of `W`, `A = √(S/scale)·Vᵀ`,
    `B = U·√(S/scale)`) and `olora` (OLoRA: `A = Rᵣ`, `B = Qᵣ` of W's QR)
    move W's principal part into the adapter: the base weight becomes a
    new parameter `<module>.weight` holding `W - scale·B·A`, so the output
    is unchanged too; `pissa_niter_N` (PEFT's randomized SVD) gets the
    exact SVD. These read `W` at compile time (from `model-dir` for
    external weights), as does DoRA's magnitude (the row norms of
    `W + scale·B·A`). `loftq` (LoftQ, as PEFT's `loftq_init`) alternates
    `loftq-iter` times between quantizing `W - B·A` to NF4 exactly as
    bitsandbytes does (`loftq-bits` = 4; blocks of 64, f32 absmax) and the
    top-r SVD of `W - Q` (`B = U·√S`, `A = √S·Vᵀ`, with no `scale`, as in
    PEFT); the base weight becomes a new parameter holding the dequantized
    `Q` (in float: quantizing it later gives the same codes), so the output
    changes unless scale is 1. `lora-xs` (LoRA-XS) gives frozen
    `B = Uᵣ·Sᵣ`, `A = Vᵣᵀ` from W's top-r SVD and a trainable r×r middle
    `<module>.lora_middle` from zero (so the output is unchanged; only the
    middle trains). `use-sora` adds SoRA's trainable gate
    `<module>.lora_gate`, one per rank component, from one (its sparsifying
    update belongs to training). `eva` (EVA, as PEFT's
    `initialize_lora_eva_weights`) takes A from the principal components of
    each layer's inputs over calibration data and B = 0 (the output is
    unchanged): `eva-state` names a safetensors file holding, per module
    (its path, optionally prefixed `base_model.model.` as PEFT's
    `get_eva_state_dict` names it), the rank × in-features components after
    EVA's rank redistribution; `qoptc --calibration-data` computes it. A
    layer's rank is its tensor's rows (0: the layer gets no adapter) and,
    with `eva-adjust-scaling-factors`, its alpha is scaled by new rank / r
    so that alpha / r stays; a targeted layer missing from the file gets
    the default init (with a warning), as in PEFT. `lora_ga` (LoRA-GA, as
    PEFT's `preprocess_loraga` + `init_lora_weights="lora_ga"`) takes the
    top 2r singular components U·S·Vᵀ of each layer's estimated gradient G
    (`loraga-state`: per module the out × in mean gradient of the loss over
    calibration batches; `qoptc --calibration-data` computes it): by
    `loraga-direction` A gets r rows of Vᵀ and B the other r columns of
    U·S (`ArB2r`: A = Vᵀ[:r], B = (U·S)[:, r:2r]; `A2rBr` the other way;
    `ArBr` alternating), B is scaled by `loraga-scale` (`stable`:
    out^¼ / √gamma; `weight_svd`: W's top singular value over B's first;
    `gd_scale`: A and B divided by the adapter's scale; `unit`), and W
    becomes W − scale·B·A, so the output is unchanged. PEFT's `random`
    direction draws from torch's generator and is refused. `lora-sb`
    (LoRA-SB, Ponkshe et al. 2024; PEFT has no peer) has LoRA-XS's form
    and initialises it with an approximation of full fine-tuning's first
    update: ΔW = −η·sign(G), G each layer's estimated gradient
    (`lorasb-state`, the same file as `loraga-state`) and η `lorasb-lr`;
    with ΔW's top-r SVD U·S·Vᵀ, the frozen B = Uᵣ and A = Vᵣᵀ, and the
    trainable middle `<module>.lora_middle` = Sᵣ / scale, so that the
    initial update scale·B·R·A is the best rank-r approximation of ΔW (the
    authors' code has R = Sᵣ and runs with lora_alpha = r, scale 1); W is
    not changed. `randlora` (PEFT's
    RandLoRA tuner, `peft_type: RANDLORA` in a config) gives the targeted
    layers one shared pair of frozen random bases `@randlora_A`
    (`r×1×min`) and `@randlora_B` (`max×NB×r`), sized for the largest
    targeted layer (`NB = ⌈min / r⌉`), and per layer trainable
    `<module>.randlora_lambda` (`r×nb`, zero) and `<module>.randlora_gamma`
    (`nb×m`, `1/max(nb, m)` as PEFT resets it): the `qopt.lora`'s factors are a
    `qopt.randlora_scale` and a `qopt.randlora_flatten` (transposed when
    in > out, as PEFT puts the scaled basis on the smaller side), its
    alpha `lora-alpha · nb` (PEFT's scale `randlora_alpha / r`); the bases
    come from SplitMix64, scaled to unit standard deviation (PEFT draws
    them from torch's generator). Sparse bases, `init_weights=false`,
    DoRA, rsLoRA, patterns, embeddings and slots are refused with it.
    CorDA, LoRA-GA and LoRA-SB are not implemented yet: asking for one is
    an error naming it. PEFT has no LoRA-XS or SoRA:
    qopt-save-adapter refuses middles and gates.

    With `slots` the factors are *run-time adapter slots* instead: zeros
    (the base model's outputs) with scale 1, which the runtime's
    `qopt_model_load_adapter` / `Model.load_adapter` / `qopt-run --adapter`
    fill with any PEFT adapter that fits (ranks up to the slot's, padded
    with zeros; its scale folded into B); the module attribute
    `qopt.lora_slots` lists them for the manifest. DoRA slots are refused.

    A selection that matches no layer is an error listing the layers' module
    paths; so are a rank above `min(out, in)`, a layer that already has an
    adapter, and bad option values.

    ```mlir
    // qopt-insert-lora{r=8 lora-alpha=16 target-modules=q_proj}
    %y = qopt.linear %x, %w module "model.layers.0.self_attn.q_proj" : ...
    // becomes
    %a = qopt.load_param @model.layers.0.self_attn.q_proj.lora_A.weight : tensor<8x64xf32>
    %b = qopt.load_param @model.layers.0.self_attn.q_proj.lora_B.weight : tensor<64x8xf32>
    %y = qopt.lora %x, %w, %a, %b alpha = 1.600000e+01 module "model.layers.0.self_attn.q_proj" : ...
    ```
  }];
  let options = [
    Option<"r", "r", "int64_t", "8", "Adapter rank">,
    Option<"loraAlpha", "lora-alpha", "double", "8.0",
           "Scaling numerator: scale = lora-alpha / r (or / √r with "
           "use-rslora)">,
    ListOption<"targetModules", "target-modules", "std::string",
               "Layers to adapt: names or suffixes, one regular expression, "
               "or all-linear">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers not to adapt (names, suffixes or one regular "
               "expression)">,
    ListOption<"layersToTransform", "layers-to-transform", "int64_t",
               "Only layers with these indices">,
    ListOption<"layersPattern", "layers-pattern", "std::string",
               "Names of the layer lists (default: any)">,
    Option<"loraDropout", "lora-dropout", "double", "0.0",
           "Dropout probability on the adapter's input in training">,
    Option<"useRslora", "use-rslora", "bool", "false",
           "rsLoRA scaling lora-alpha / √r">,
    Option<"useDora", "use-dora", "bool", "false",
           "DoRA: a trainable magnitude per output row">,
    Option<"initLoraWeights", "init-lora-weights", "std::string", "\"true\"",
           "true (Kaiming-uniform A, zero B), gaussian, false, pissa, "
           "pissa_niter_N, olora, loftq, lora-xs, eva, lora_ga">,
    Option<"evaState", "eva-state", "std::string", "\"\"",
           "EVA: safetensors file of each module's components (rank x "
           "in-features), from qoptc --calibration-data or PEFT's "
           "get_eva_state_dict">,
    Option<"evaAdjustScalingFactors", "eva-adjust-scaling-factors", "bool",
           "true",
           "EVA: scale a layer's alpha by its new rank / r">,
    Option<"loragaState", "loraga-state", "std::string", "\"\"",
           "LoRA-GA: safetensors file of each module's estimated gradient "
           "of the loss (out x in), from qoptc --calibration-data">,
    Option<"loragaDirection", "loraga-direction", "std::string",
           "\"ArB2r\"",
           "LoRA-GA: which of the gradient's top 2r singular components go "
           "to A and B: ArB2r, A2rBr or ArBr (LoraGAConfig.direction)">,
    Option<"loragaScale", "loraga-scale", "std::string", "\"stable\"",
           "LoRA-GA: stable, weight_svd, gd_scale or unit "
           "(LoraGAConfig.scale)">,
    Option<"loragaStableGamma", "loraga-stable-gamma", "double", "16.0",
           "LoRA-GA: gamma of the stable scale">,
    Option<"lorasbState", "lorasb-state", "std::string", "\"\"",
           "LoRA-SB: safetensors file of each module's estimated gradient "
           "of the loss (out x in), from qoptc --calibration-data">,
    Option<"lorasbLr", "lorasb-lr", "double", "0.0",
           "LoRA-SB: the learning rate of the full fine-tuning step the "
           "init approximates (the authors: peak lr / warm-up steps)">,
    Option<"useSora", "use-sora", "bool", "false",
           "SoRA: a trainable gate per rank component, from one">,
    Option<"loftqBits", "loftq-bits", "int64_t", "4",
           "LoftQ: bits of the base weight's quantization (4: NF4)">,
    Option<"loftqIter", "loftq-iter", "int64_t", "1",
           "LoftQ: alternating quantization / SVD steps (at least 1)">,
    ListOption<"rankPattern", "rank-pattern", "std::string",
               "regex=r entries: another rank for the layers a key matches">,
    ListOption<"alphaPattern", "alpha-pattern", "std::string",
               "regex=alpha entries: another alpha for the layers a key "
               "matches">,
    Option<"seed", "seed", "uint64_t", "0",
           "Seed of the random initialisation">,
    Option<"slots", "slots", "bool", "false",
           "Run-time adapter slots: zero factors of each layer's rank with "
           "scale 1 (alpha = r), listed in the module's qopt.lora_slots for "
           "the runtime's load_adapter to fill">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from (DoRA "
           "reads the base weights)">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QOptLoadWeightsPass : Pass<"qopt-load-weights", "::mlir::ModuleOp"> {
  let summary = "Replaces the model's weights by those of a safetensors "
                "checkpoint, bitsandbytes 4-bit layers included";
  let description = [{
    Reads the safetensors file `weights` (what transformers'
    `save_pretrained` writes) and gives its tensors to the model:

    * bitsandbytes' 4-bit layers (a QLoRA checkpoint: `<module>.weight`,
      `.weight.absmax`, `.weight.quant_map`, with double quantization
      `.weight.nested_absmax` and `.weight.nested_quant_map`, and the JSON
      `.weight.quant_state.bitsandbytes__nf4` / `__fp4`) become the
      quantized weight of the linear layer with that module path (as
      `qopt-list-modules` prints it): `qopt.assemble` of the codes, repacked
      from bitsandbytes' flat high-nibble-first order into qopt's rows (no
      re-quantization), with the absmax per `#qopt.per_block<blocksize>`
      as scales, or, double-quantized, a nested
      `!qopt.qtensor<…, #qopt.dynamic8, #qopt.per_block<256>, scales = f32,
      offset>` of them. NF4 is `#qopt.nf4`, FP4 `#qopt.bnb_fp4`.
    * bitsandbytes' LLM.int8 layers (`Linear8bitLt`: `<module>.weight` I8
      N×K, `<module>.SCB` the row absmaxes, `<module>.weight_format` 0)
      become `#qopt.int<8>` `#qopt.per_channel<0>` weights with scales
      SCB / 127: bitsandbytes' dequantization (it also rounds activations
      to int8 when it runs; the compiled model computes with the weight).
    * A float `<module>.weight` / `.bias` of a linear layer replaces that
      operand; another float tensor replaces the parameter of its name.
      All keep the model's element type.

    Errors name the tensor: a quantized layer whose module is not a linear
    layer of the model or whose shape differs, a malformed quant_state,
    missing parts, sizes that do not fit, a code map other than
    bitsandbytes' own, LLM.int8 layers in a tiled GPU layout
    (`weight_format` ≠ 0), float tensors whose shape
    differs from the parameter's. Tensors that match nothing are listed in
    a warning.
  }];
  let options = [
    Option<"weights", "weights", "std::string", "\"\"",
           "The safetensors checkpoint">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::arith::ArithDialect"];
}

def QOptQuantizeWeightsPass
    : Pass<"qopt-quantize-weights", "::mlir::ModuleOp"> {
  let summary = "Quantizes the selected linear layers' weights at compile "
                "time";
  let description = [{
    Reads the float weight of each selected `qopt.linear` at compile time
    (inline, a resource blob or `#qopt.external` data in `model-dir`, also
    behind a 2-D transpose) and gives the layer a quantized N×K weight held
    in new parameters: `qopt.assemble` of the packed codes (`<module>.weight`)
    and their scales. The float weight is dropped when nothing else reads
    it, so the library stores the packed bytes only.

    * `nf4` / `fp4`: bitsandbytes' blockwise formats (`#qopt.nf4`,
      `#qopt.bnb_fp4`), one absmax per `block` elements of the flattened
      weight (`#qopt.per_block`), codes exactly as bitsandbytes' CUDA kernels
      write them; `double-quant` stores the absmax as QLoRA does (8-bit
      dynamic codes per 256, minus their mean: a nested
      `!qopt.qtensor<…, #qopt.dynamic8, …, offset>`).
    * `int2` / `int4` / `int8`: per output channel (`#qopt.per_channel<0>`)
      or per `group` input features (`#qopt.per_group<axis = 1>`);
      symmetric signed codes, or `asym`: unsigned codes with a zero point per
      scale (GPTQ / AWQ's layout). `clip=mse` shrinks each group's range to
      the ratio (1 down to 0.5) with the least squared error.
    * `fp8-e4m3` / `fp8-e5m2`: `#qopt.float<f8E4M3FN | f8E5M2>` codes, one
      f32 scale per tensor (`#qopt.per_tensor`) or `per-channel`: absmax
      over the format's largest value (448, 57344), codes rounded to
      nearest even.
    * `mxfp4`: OCP MXFP4, E2M1 codes (`#qopt.float<f4E2M1FN>`) with one
      power-of-two scale per 32 input features (`#qopt.per_group<axis = 1,
      size = 32>`, scales `f8E8M0FNU`): 2^(floor(log2 absmax) - 2), the
      codes rounded to nearest even, saturating at ±6.
    * `nvfp4`: E2M1 codes per 16 input features, their scales E4M3 codes of
      (absmax / 6) over one f32 global scale (absmax of the tensor /
      (448 · 6)): a nested `!qopt.qtensor<…, #qopt.float<f8E4M3FN>,
      #qopt.per_tensor>`, as torchao's two-level NVFP4.

    **Mixed precision under a memory budget** (`budget-bits`, with an
    integer format): every selected layer is quantized at each width (2, 3,
    4, 5, 6, 8 bits, with the format's group / asym / clip) and its squared
    error ‖Q(W) − W‖² measured against the bits it would store (codes,
    scales and zero points). Starting from 2 bits everywhere, the width
    upgrade that saves the most error per stored bit is taken while the
    total stays within the budget (a greedy multiple-choice knapsack over
    each layer's lower convex hull). The choice is printed on stderr as a
    table (module, shape, bits, bits per weight, relative error, and the
    total). A budget below the 2-bit choice is an error. With `fisher` (a
    safetensors file of Fisher diagonals, `<module>.weight` of the weight's
    shape, e.g. mean squared gradients on calibration data; a wrapper's
    path prefix may differ) the error is Σ Fᵢⱼ · (Q(W) − W)ᵢⱼ², the
    sensitivity HAWQ-style methods use: layers whose errors move the loss
    get the bits. A missing, misshapen or negative entry is an error naming
    it.

    The selection is PEFT's (`target-modules`, `exclude-modules`, module
    paths as `qopt-list-modules` prints them); by default every linear
    layer but the output head (embeddings are never quantized). Layers
    whose weight is already quantized are left alone, and so, by default,
    are those whose weight is given at run time or trainable (an error for a
    layer `target-modules` names); a selection that quantizes nothing is an
    error (a warning when every selected layer was quantized already), as
    are weights with NaN or infinite values and every bad option.
  }];
  let options = [
    Option<"format", "format", "std::string", "\"nf4\"",
           "nf4, fp4, int2, int4, int8, fp8-e4m3, fp8-e5m2, mxfp4 or nvfp4">,
    Option<"perChannel", "per-channel", "bool", "false",
           "fp8: one scale per output channel (default: per tensor); "
           "intK: the default when 'group' is 0">,
    Option<"block", "block", "int64_t", "0",
           "nf4 / fp4: elements per absmax (0: bitsandbytes' 64)">,
    Option<"doubleQuant", "double-quant", "bool", "false",
           "nf4 / fp4: QLoRA's double quantization of the absmax">,
    Option<"group", "group", "int64_t", "0",
           "intK: input features per scale (0: one scale per output "
           "channel)">,
    Option<"asym", "asym", "bool", "false",
           "intK: unsigned codes with a zero point">,
    Option<"clip", "clip", "std::string", "\"minmax\"",
           "intK: minmax, or mse (the clipping ratio with the least "
           "squared error)">,
    Option<"budgetBits", "budget-bits", "double", "0.0",
           "intK: choose each layer's width (2, 3, 4, 5, 6 or 8 bits, the "
           "format's other options kept) for the least squared error "
           "within this many stored bits per weight, scales included "
           "(0: every layer at the format's width)">,
    Option<"fisher", "fisher", "std::string", "\"\"",
           "With budget-bits: safetensors of Fisher diagonals "
           "(<module>.weight) weighting each element's squared error">,
    ListOption<"targetModules", "target-modules", "std::string",
               "Layers to quantize, as PEFT's target_modules (default: "
               "all-linear, the output head excluded)">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers to leave in float">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::arith::ArithDialect"];
}

def QOptSmoothPass : Pass<"qopt-smooth", "::mlir::ModuleOp"> {
  let summary = "SmoothQuant: migrates activation outliers into the weights";
  let description = [{
    For each selected `qopt.linear` (all of them that read the same input
    together, as q/k/v or gate/up do), with `max|X|` the per-channel absmax
    of the input from calibration statistics and `max|W|` the absmax of each
    input channel over the layers' weights, computes SmoothQuant's factors

    ```
    s[c] = max(max|X|[c], 1e-5)^alpha / max(max|W|[c], 1e-5)^(1 - alpha)
    ```

    (at least 1e-5), multiplies the weights' columns by `s` and divides
    the input by `s`, so the float model computes the same function while
    the input becomes easier to quantize (outlier channels shrink, the
    weights absorb them). The division is folded wherever that is exact:

    * into the scale (and bias) of an RMSNorm / LayerNorm that produces the
      input (LLaMA's input / post-attention norms, GPT-2's ln_1 / ln_2);
    * into the rows (and bias) of a linear layer that produces it;
    * into the rows of a linear layer whose result is one factor of an
      elementwise product that produces it (LLaMA's up_proj before
      down_proj: `silu(gate) · up`);

    and otherwise (attention outputs, GELU outputs, inputs other ops read
    too) becomes an explicit `qopt.smooth` before the layers.

    `stats` is a statistics file as `qopt-calibrate` writes it (a
    safetensors file of `<module>.input_absmax`; a layer without an entry,
    or with one of another length, is an error naming it); without it the
    module's `qopt.calibration_stats` attribute names one (`qoptc
    --calibration-data`). Weights must be float (run it before
    quantization and adapters: qoptc does so for passes at the front of
    `--graph-passes`). New parameters are named after the layers
    (`<module>.weight`, the norm's scale `<norm scale>` or
    `<module>.smooth_scale` for an explicit `qopt.smooth`).
  }];
  let options = [
    Option<"alpha", "alpha", "double", "0.5",
           "Migration strength: 0 leaves the input, 1 moves all of its "
           "range into the weights">,
    Option<"stats", "stats", "std::string", "\"\"",
           "Calibration statistics (qopt-calibrate's .qstats; default: the "
           "module's qopt.calibration_stats)">,
    ListOption<"targetModules", "target-modules", "std::string",
               "The layers to smooth, as PEFT's target_modules (default: "
               "all-linear, the output head left out)">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers left out (PEFT's exclude_modules)">,
    Option<"fold", "fold", "bool", "true",
           "Fold the division into the producer where exact (false: always "
           "an explicit qopt.smooth)">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder of the model's external data (default: the module's "
           "qopt.model_dir)">,
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::linalg::LinalgDialect"];
}

def QOptRotatePass : Pass<"qopt-rotate", "::mlir::ModuleOp"> {
  let summary = "QuaRot / HALO: Hadamard rotations of the residual stream "
                "folded into the weights, online ones where they cannot be";
  let description = [{
    Rotates a pre-norm transformer (RMSNorm; LLaMA, Mistral, Qwen2) so
    that its activations lose their outlier channels while the float model
    computes the same function:

    1. Every RMSNorm's scale is folded into the linear layers that read it
       (`W ← W·diag(γ)`, `γ ← 1`), which makes the norm commute with
       rotations.
    2. The residual stream `h` (the embedding's output and every
       `qopt.residual_add`) becomes `Q·h` for the randomized Hadamard
       rotation `Q = (1/√n)·H_n·diag(signs)` of the hidden size `n`: the
       embedding table's rows and the writers' outputs (the `update` of each
       residual add: o_proj, down_proj, their biases) are rotated by `Q`,
       the readers (the linear layers after each norm, the output head) get
       `W ← W·Qᵀ`. Everything is folded offline.
    3. The inputs of the layers named in `online` (default o_proj and
       down_proj: the attention output, the MLP's product) get an online
       `qopt.hadamard` with random signs, and those layers `W ← W·Qᵀ` for
       it, so their inputs are rotated too (QuaRot's online Hadamards).

    Hadamard matrices exist for `2^k` and `m·2^k` (see `qopt.hadamard`); a
    size without one is an error naming the largest block that works,
    unless `block-fallback` makes it a block-diagonal rotation of that
    block. The signs come from `seed` (SplitMix64), or are all +1 with
    `random=false`. Anything else reading the residual stream (an op other
    than a norm or residual add, a writer that is not a float linear
    layer, a LayerNorm, whose mean is not rotation-invariant) is an error
    naming it.
  }];
  let options = [
    Option<"seed", "seed", "uint64_t", "0", "Seed of the random signs">,
    Option<"random", "random", "bool", "true",
           "Random signs (false: the plain Hadamard matrix)">,
    ListOption<"online", "online", "std::string",
               "Layers whose input gets an online Hadamard (names or "
               "suffixes; default: o_proj, down_proj; 'none' for none)">,
    Option<"blockFallback", "block-fallback", "bool", "false",
           "Rotate a size without a Hadamard matrix block-diagonally, by the "
           "largest block that has one">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder of the model's external data (default: the module's "
           "qopt.model_dir)">,
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptSVDQuantPass : Pass<"qopt-svdquant", "::mlir::ModuleOp"> {
  let summary = "SVDQuant: a low-rank branch absorbs the weight's outliers, "
                "the residual is quantized";
  let description = [{
    For each selected float `qopt.linear` `y = x·Wᵀ + b`, splits
    `W = B·A + R` with `B·A` the top-`rank` singular part of `W` (exact or
    randomized SVD; `rank` at most min(N, K)), quantizes the residual `R`
    as `weights` says (a `--quantize` spec; empty keeps it float, which
    leaves the function unchanged and checks the split) and rewrites the
    layer as

    ```
    y = linear(x, Q(R), b) + linear(linear(x, A), B)
    ```

    The base keeps the layer's module path, so later passes that select
    layers by name (`qopt-insert-fake-quant{activations=int4:per-token}`
    for W4A4) quantize its input only; the branch layers have none and
    keep 16-bit-or-wider activations, as SVDQuant's low-rank branch does.
    Both read the same `x`. Run `qopt-smooth` first to move activation
    outliers into the weights (SVDQuant's smoothing); the `svdquant-w4a4`
    recipe does. The branch factors `<module>.svd_A` (r×K) and
    `<module>.svd_B` (N×r) are frozen parameters of `branch-type`: the
    input's element type (`auto`), or `bf16` / `f16` for SVDQuant's 16-bit
    branch in an f32 model (factors rounded to that type, stored so, and
    widened to the input's type before each product). The residual is
    taken against the rounded factors, `R = W − B̃·Ã`, so a float residual
    still makes the split exact and the quantizer sees the rounding error.
  }];
  let options = [
    Option<"weights", "weights", "std::string", "\"int4:group=64\"",
           "How to quantize the residual (a qoptc --quantize spec; empty: "
           "keep it float)">,
    Option<"rank", "rank", "int64_t", "32", "Rank of the low-rank branch">,
    Option<"svd", "svd", "std::string", "\"auto\"",
           "exact, randomized or auto (randomized above 512)">,
    Option<"branchType", "branch-type", "std::string", "\"auto\"",
           "Element type of the branch factors: auto (the input's), bf16, "
           "f16 or f32">,
    ListOption<"targetModules", "target-modules", "std::string",
               "The layers, as PEFT's target_modules (default: all-linear, "
               "the output head left out)">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers left out">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder of the model's external data (default: the module's "
           "qopt.model_dir)">,
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::arith::ArithDialect"];
}

def QOptLQLoRAPass : Pass<"qopt-lq-lora", "::mlir::ModuleOp"> {
  let summary = "Decomposes weights as quantized + low-rank, W ≈ Q + B·A "
                "(LQ-LoRA), for fine-tuning the low-rank part";
  let description = [{
    Each selected `qopt.linear` whose float weight is known at compile time
    becomes a `qopt.lora` on a quantized base (LQ-LoRA, Guo et al. 2023):
    starting from B·A = 0, it alternates

    ```
    Q      = quantize(W − B·A)         (the `weights` spec, as --quantize)
    B, A   = top-r SVD of W − deq(Q)   (B = U·√S, A = √S·Vᵀ)
    ```

    for at most `iterations` rounds, keeping the round with the least
    error ‖W − deq(Q) − B·A‖ and stopping once a round does not lower it.
    The layer then holds Q packed (`<module>.weight`, as
    `qopt-quantize-weights` stores it) and trainable factors
    `<module>.lora_A.weight` (r×K) and `<module>.lora_B.weight` (N×r), with
    alpha = r (scale 1): its output starts as x · (deq(Q) + B·A)ᵀ.

    **Fisher weighting** (`fisher`): a safetensors file with one tensor
    `<module>.weight` per selected layer (N×K, e.g. the mean squared
    gradients over calibration data; a wrapper's path prefix may differ)
    makes the error weighted, Σ F̂ᵢⱼ · Eᵢⱼ², with F̂ the rank-1 fit
    F̂ᵢⱼ = rᵢ·cⱼ / ΣF of row sums r and column sums c (LQ-LoRA's
    approximation); the SVD becomes the weighted one, B·A =
    D_r⁻¹ · svd_r(D_r (W − deq(Q)) D_c) · D_c⁻¹, D_r = diag(√r),
    D_c = diag(√(c / ΣF)). Missing, extra or misshapen tensors are errors
    naming them.

    **Budget** (`budget-bits`, with an integer spec): each layer's width
    (2, 3, 4, 5, 6, 8 bits, the spec's group / asym kept) and rank (one of
    `ranks`, default `rank`; 0 means no adapter) are chosen for the least
    total (weighted) error within this many stored bits per weight: the
    packed codes with their scales and zero points, plus the f32 factors
    (32·r·(N + K) bits). Every combination is decomposed, then a greedy
    multiple-choice knapsack over each layer's lower convex hull picks.

    A table on stderr gives per layer the width, rank, rounds run, and the
    relative error of Q alone and of Q + B·A. The selection is PEFT's
    (`target-modules`, `exclude-modules`; default every linear layer but
    the output head); weights given at run time or trainable are skipped by
    default (an error for a layer named).

    `svd`: `exact` (Jacobi on the smaller Gram matrix, O(min(N, K)² ·
    max(N, K)) per round), `randomized` (subspace iteration with r + 16
    Gaussian columns and 4 power iterations, O(N·K·(r + 16)) per round,
    reproducible), or `auto` (the default: randomized when min(N, K) >
    512).
  }];
  let options = [
    Option<"weights", "weights", "std::string", "\"nf4:block=64\"",
           "How Q is quantized, as qoptc --quantize's SPEC (nf4:block=64, "
           "int4:group=64,asym, …)">,
    Option<"rank", "rank", "int64_t", "16", "Rank r of B·A">,
    Option<"iterations", "iterations", "int64_t", "10",
           "Most rounds of quantization and SVD">,
    Option<"fisher", "fisher", "std::string", "\"\"",
           "safetensors of Fisher diagonals, one <module>.weight per layer">,
    Option<"budgetBits", "budget-bits", "double", "0.0",
           "Choose each layer's width and rank within this many stored bits "
           "per weight, factors included (integer specs)">,
    ListOption<"ranks", "ranks", "int64_t",
               "Ranks budget-bits chooses from (default: rank)">,
    Option<"svd", "svd", "std::string", "\"auto\"",
           "exact, randomized, or auto (randomized when min(N, K) > 512)">,
    ListOption<"targetModules", "target-modules", "std::string",
               "Layers to decompose, as PEFT's target_modules (default: "
               "all-linear, the output head excluded)">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers to leave in float">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::arith::ArithDialect"];
}

def QOptInsertFakeQuantPass
    : Pass<"qopt-insert-fake-quant", "::mlir::ModuleOp"> {
  let summary = "Simulates quantized weights and layer inputs in float for "
                "quantization-aware training (QAT's prepare)";
  let description = [{
    Each selected `qopt.linear` (PEFT's module targeting; default every
    linear layer but the output head) gets `qopt.fake_quant` on its weight
    (`weights`) and/or its input (`activations`). The scales are computed
    from the tensor itself at every forward pass, by reductions in the IR,
    exactly as `qopt-quantize-weights` computes them at compile time:
    absmax over the format's largest value (1 for all zeros), or with
    `asym` over the range widened to 0, with zero point round(−min / s).
    Training therefore sees the deployed rounding, and `qopt.fake_quant`'s
    straight-through estimator (clipped) gives its gradient; the scales get
    none.

    * `weights`: `intK[:group=N | per-channel][,sym | asym]` (default per
      output channel; `group` must divide the input features),
      `fp8-e4m3 | fp8-e5m2[:per-channel]` (default per tensor), or
      bitsandbytes' `nf4 | fp4[:block=N]` (one absmax per block of the
      flattened weight, default 64, which must divide it; rounded as its
      kernels round: QLoRA-aware training of the deployed NF4 / FP4; no
      double quantization). The weight fake-quant carries the spec in
      `qopt.qat_spec`, for `qopt-convert-qat`.
    * `activations`: `intK | fp8-…` with `per-token` (one scale per row of
      the input, over its last dimension) or `per-tensor` scales, dynamic;
      or `per-tensor,static`: one scale fixed at compile time, a frozen
      parameter `<module>.input_scale` = absmax / the format's largest
      value, the absmax the largest value of the layer's
      `<module>.input_absmax` (per tensor or per input channel) in the
      safetensors file `activation-stats` (calibration statistics: a
      wrapper's path prefix may differ; a missing or negative entry is an
      error naming it).

    Quantized weights, a weight with a dynamic shape, a group that does not
    divide the input features, bad specs and a selection with no layer are
    errors.

    ```mlir
    // After --qopt-insert-fake-quant="weights=int4:group=32,asym"
    %e = tensor.expand_shape %w [[0], [1, 2]] : tensor<64x128xf32> into tensor<64x4x32xf32>
    // … min / max over the last dimension, scale and zero point …
    %q = qopt.fake_quant %w scale %s zero_point %zp
        format(#qopt.int<4, unsigned, zero_point>)
        granularity(#qopt.per_group<axis = 1, size = 32>) {qopt.qat_spec = "int4:group=32,asym"}
        : (tensor<64x128xf32>, tensor<64x4xf32>, tensor<64x4xf32>) -> tensor<64x128xf32>
    %y = qopt.linear %x, %q module "q_proj" : …
    ```
  }];
  let options = [
    Option<"weights", "weights", "std::string", "\"\"",
           "Weight fake-quant spec (int4:group=32,asym, int8, fp8-e4m3, "
           "nf4:block=64, …)">,
    Option<"activations", "activations", "std::string", "\"\"",
           "Input fake-quant spec (int8:per-token, fp8-e4m3:per-tensor, "
           "int8:per-tensor,static …)">,
    Option<"activationStats", "activation-stats", "std::string", "\"\"",
           "safetensors of each layer's <module>.input_absmax, for static "
           "activation scales (qopt-calibrate's .qstats; default: the "
           "module's qopt.calibration_stats, from qoptc "
           "--calibration-data)">,
    ListOption<"targetModules", "target-modules", "std::string",
               "Layers to fake-quantize, as PEFT's target_modules "
               "(default: all-linear, the output head excluded)">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers to leave in float">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QOptInsertLSQPass : Pass<"qopt-insert-lsq", "::mlir::ModuleOp"> {
  let summary = "Learned step-size quantizers on the selected weights (LSQ, "
                "LSQ+, L4Q), or PEQA's trainable scales";
  let description = [{
    Each selected `qopt.linear`'s weight (known at compile time) passes
    through `qopt.lsq` with a new trainable step-size parameter
    `<module>.weight_step`, one per output channel or per `group` input
    features, initialised as LSQ does: s = 2·mean|w| / √Qp over the
    elements it covers (Qp the format's largest code); its gradient scale
    is 1 / √(N·Qp), N those elements. With `asym` (LSQ+) the step and a
    trainable offset `<module>.weight_offset` start from the min–max scale
    and zero point `qopt-quantize-weights` computes. The op carries the
    spec in `qopt.qat_spec`: `qopt-convert-qat` packs the weight on the
    learned steps (codes clamp(round(w / s) + zp)), bit for bit the LSQ
    forward.

    With `peqa` (PEQA) the weight is instead quantized at compile time as
    `qopt-quantize-weights` would (codes and zero points frozen) and only
    its f32 scales, `<module>.weight.scales`, are a trainable parameter:
    the deployed layout, fine-tuned by its scales alone.

    With `l4q` (L4Q, Jeon et al. 2024) the selected layers must carry a
    LoRA branch (`--adapter`, `--lora-config`, `qopt-insert-lora`): the
    layer becomes a `qopt.linear` on `qopt.lsq(W + scale·B·A)`, the merged
    weight built in the IR (`linalg.matmul`, `linalg.mul`, `linalg.add`),
    so the adapter's A and B (made trainable, however the adapter was
    loaded) and the steps train jointly through the quantizer while W stays
    frozen, and `qopt-convert-qat` packs the trained
    `W + scale·B·A` into one quantized matrix (the factors are gone). The
    steps start from the merged weight as above. The branch's dropout does
    not apply (the branch is inside the quantizer); DoRA, LoRA-XS middles,
    SoRA gates and merged branches are errors, and layers without a branch
    are skipped unless named in `target-modules`.

    `weights`: `intK[:group=N | per-channel][,sym | asym]`. Quantized
    weights, weights not known at compile time, groups that do not divide
    the input features, other formats and an empty selection are errors.
  }];
  let options = [
    Option<"weights", "weights", "std::string", "\"int4\"",
           "Integer weight spec (int4, int4:group=128, int3:group=64,asym …)">,
    Option<"peqa", "peqa", "bool", "false",
           "PEQA: freeze the quantized weight's codes, train its scales">,
    Option<"l4q", "l4q", "bool", "false",
           "L4Q: quantize W + scale·B·A of each LoRA layer jointly">,
    ListOption<"targetModules", "target-modules", "std::string",
               "Layers to quantize, as PEFT's target_modules (default: "
               "all-linear, the output head excluded)">,
    ListOption<"excludeModules", "exclude-modules", "std::string",
               "Layers to leave in float">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QOptConvertQATPass : Pass<"qopt-convert-qat", "::mlir::ModuleOp"> {
  let summary = "Packs fake-quantized weights into their deployed format "
                "(QAT's convert)";
  let description = [{
    Every weight fake-quant `qopt-insert-fake-quant` made, and every
    `qopt.lsq` of `qopt-insert-lsq` (marked `qopt.qat_spec`), whose weight
    (and learned steps) are known at compile time (parameters' data: the
    trained values) is replaced by the packed quantized weight of the same
    spec: as `qopt-quantize-weights` stores it, or on the learned steps and
    offsets. Its dequantized
    values are bit for bit what the fake-quant forward computes, so the
    converted model gives the QAT model's outputs. Activation fake-quants
    stay (the model keeps simulating them). A marked fake-quant that is not
    one linear layer's weight, or a weight not known at compile time, is an
    error naming the layer.
  }];
  let options = [
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::arith::ArithDialect"];
}

def QOptLoadAdapterPass : Pass<"qopt-load-adapter", "::mlir::ModuleOp"> {
  let summary = "Loads a PEFT LoRA adapter (save_pretrained's folder) onto "
                "the model's linear layers";
  let description = [{
    Reads `adapter_config.json` and `adapter_model.safetensors` from the
    folder `adapter` (what PEFT's `save_pretrained` writes) and turns each
    adapted layer into a `qopt.lora` whose factors are new parameters
    holding the file's tensors (converted to the layer's element type):
    `base_model.model.<module>.lora_A.weight` → `@<module>.lora_A.weight`,
    likewise `lora_B` and DoRA's `lora_magnitude_vector`; an embedding's
    `lora_embedding_A` / `lora_embedding_B` make a `qopt.lora_embedding`
    (its factors apply to the original table whatever the init). A RandLoRA
    adapter (`peft_type: RANDLORA`, saved with `save_projection`) gives
    `randlora_A` / `randlora_B` (one shared pair: every layer's copy must be
    the same) and each layer's `randlora_lambda` / `randlora_gamma`, built
    as `qopt-insert-lora`'s `randlora` builds them. The module paths
    are those `qopt-list-modules` prints. `lora_alpha` / `alpha_pattern`,
    `use_rslora`, `use_dora` and `lora_dropout` are taken from the config,
    the rank from the tensors (it must be the config's `r` /
    `rank_pattern`).

    Everything the config says must hold for the model: the layers its
    selection takes are exactly those the file has weights for; shapes fit
    the layers. A key qopt cannot honour (another `peft_type`, `bias`,
    `lora_bias`, `modules_to_save`, `target_parameters`, …) is an error
    naming it, as are tensors for a module that is not a linear layer of the
    model, and embedding adapters. The loaded parameters are frozen unless
    `trainable` is set (to continue training the adapter).

    An adapter whose `init_lora_weights` is `pissa` or `olora` applies to
    the residual its initialisation left in the base weights: as PEFT's
    `from_pretrained` does, the pass recomputes that residual (exact SVD or
    QR of `W`, read at compile time from `model-dir` where external) and
    gives each adapted layer a new base parameter `<module>.weight`.
    `pissa_niter_N` (a randomized SVD that cannot be reproduced) and other
    data-dependent inits are errors that point to PEFT's converted form.
  }];
  let options = [
    Option<"adapter", "adapter", "std::string", "\"\"",
           "The adapter's folder (adapter_config.json, "
           "adapter_model.safetensors)">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from (for "
           "PiSSA / OLoRA adapters, which need the base weights)">,
    Option<"trainable", "trainable", "bool", "false",
           "Mark the loaded factors trainable">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect",
                           "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def QOptSaveAdapterPass : Pass<"qopt-save-adapter", "::mlir::ModuleOp"> {
  let summary = "Writes the model's LoRA adapters in PEFT's format";
  let description = [{
    Writes the folder `adapter` as PEFT's `save_pretrained` does, so that
    `PeftModel.from_pretrained(model, adapter)` (and `qoptc --adapter`)
    load it: `adapter_model.safetensors` with
    `base_model.model.<module>.lora_A.weight`, `lora_B.weight` and DoRA's
    `lora_magnitude_vector` (f32) for every `qopt.lora`,
    `lora_embedding_A` / `lora_embedding_B` for every `qopt.lora_embedding`
    (a RandLoRA model: PEFT's RANDLORA format, the shared bases repeated
    per layer as PEFT's `save_projection` writes them), and
    `adapter_config.json` describing them: the modules by their full paths,
    the most common rank and alpha as `r` / `lora_alpha` and the others as
    `rank_pattern` / `alpha_pattern` entries, `use_rslora`, `use_dora`,
    `lora_dropout`. The values are the factors' data in the IR (their
    initial or loaded values; a trained model's come from the runtime).
    Adapters PEFT cannot represent in one config (a mix of scalings, DoRA
    and plain LoRA, or dropouts; SoRA gates, LoRA-XS middles, layers
    without a module path) and factors without data are errors. The IR is
    left unchanged.

    Adapters whose layers carry `qopt.residual_init` (PiSSA / OLoRA, whose
    base weight is the residual) are written with that `init_lora_weights`
    (PEFT recomputes the residual on loading), and also, in
    `adapter/converted/`, in PEFT's converted form for the original weights
    (`save_pretrained(path_initial_model_for_weight_conversion=…)`): rank
    2r, alpha doubled (rsLoRA: ×√2), `A' = [A; A₀]`, `B' = [B, -B₀]`, with
    the IR's factors as the initial ones — only where `qopt-insert-lora`
    marked them so (`qopt.initial_factors`); for a loaded adapter a warning
    says the converted form is not written. A mix of inits, or DoRA with
    such an init (PEFT's conversion drops the magnitudes), is an error. A
    `converted/` folder an earlier save left is removed when none is
    written.
  }];
  let options = [
    Option<"adapter", "adapter", "std::string", "\"\"",
           "The folder to write (created if missing)">,
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from">,
    Option<"ifExpressible", "if-expressible", "bool", "false",
           "Where the adapter has LoRA-XS / LoRA-SB middles or SoRA gates "
           "(no PEFT form), write nothing and warn instead of failing "
           "(qoptc --train)">
  ];
}

def QOptMergeLoRAPass : Pass<"qopt-merge-lora", "::mlir::ModuleOp"> {
  let summary = "Merges LoRA branches into their base weights (PEFT's merge_and_unload)";
  let description = [{
    Every `qopt.lora_embedding` becomes a `qopt.embedding` on a new table
    `T + scale · Aᵀ · Bᵀ`. (A head tied to the table keeps reading the old
    parameter, unlike PEFT's in-place merge of tied weights.) Every
    `qopt.lora` becomes a `qopt.linear` whose weight is a new
    parameter holding

    ```
    W' = W + scale · B · M · diag(g) · A
    ```

    (`M` the LoRA-XS/SB middle and `g` the SoRA gate, where present;
    `scale` = alpha / r, or alpha / √r with rsLoRA), and for DoRA
    `W'' = (m / ‖W'‖_row) ⊙ W'` row by row — the result PEFT's
    `merge_and_unload()` computes. Dropout does not enter (inference). The
    new weight keeps `W`'s element type, is computed at compile time from
    the parameters' data (inline, resource or `#qopt.external` in
    `model-dir`; for trainable factors, the values the IR holds: their
    initial or loaded ones) and is stored as a `dense_resource` blob; it is named
    `<module>.weight` (the layer's module path) and is not trainable. The
    base weight may be read through the transpose that raising puts on
    MatMul weights. Parameters nothing reads afterwards are removed.

    With `keep-adapter` the branch stays on the layer, marked `merged`
    (PEFT's `merge_adapter()`): the layer computes `x · W'ᵀ + b` alone and
    `qopt-unmerge-lora` can restore `W`. DoRA cannot be kept this way (an
    error naming the layer: unmerging would need the row norms). Without
    it, a branch already marked `merged` is simply dropped.

    A quantized base weight (`!qopt.qtensor`, e.g. from `qoptc --quantize`
    or a QLoRA checkpoint) cannot hold `W'` exactly: merging into it is an
    error naming the layer unless `requantize` asks for it. Then `W` is
    dequantized at compile time, the branch (and DoRA's rescaling) applied,
    and the sum quantized again in the weight's own layout (format,
    granularity, double quantization; integer ranges min–max), stored as
    new parameters. A table on stderr reports per layer the update's size
    ‖ΔW‖ / ‖W‖, the re-quantization error ‖Q(W') − W'‖ / ‖W'‖ and the share
    of the update the quantized weight keeps, 1 − ‖Q(W') − W − ΔW‖ / ‖ΔW‖:
    an adapter smaller than the quantization step is mostly lost. Layouts
    without a quantizer and `keep-adapter` are errors.

    A branch whose factors are not parameters with data (e.g. run-time
    adapter slots) is an error naming the layer.

    ```mlir
    // Before
    %y = qopt.lora %x, %w, %a, %b alpha = 16.0 module "q_proj" : ...
    // After: @q_proj.weight = dense_resource<…> holds W + 16/r · B·A
    %w2 = qopt.load_param @q_proj.weight : tensor<64x64xf32>
    %y = qopt.linear %x, %w2 module "q_proj" : ...
    ```
  }];
  let options = [
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from (the "
           "model's folder; default: the working directory)">,
    Option<"keepAdapter", "keep-adapter", "bool", "false",
           "Keep each branch, marked merged, so that qopt-unmerge-lora can "
           "take it out again (PEFT's merge_adapter)">,
    Option<"requantize", "requantize", "bool", "false",
           "Merge into quantized base weights by quantizing the sum again "
           "(lossy; reports the error per layer)">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptUnmergeLoRAPass : Pass<"qopt-unmerge-lora", "::mlir::ModuleOp"> {
  let summary = "Takes merged LoRA branches back out of their weights (PEFT's unmerge_adapter)";
  let description = [{
    Every `qopt.lora` marked `merged` (by `qopt-merge-lora keep-adapter=true`)
    gets a new, non-trainable weight parameter `<module>.weight` holding

    ```
    W = W' - scale · B · M · diag(g) · A
    ```

    computed at compile time in single precision from the data of `W'` and
    the factors (inline, resource or `#qopt.external` in `model-dir`), and
    loses the mark: the branch is active again. Unmarked branches are left
    alone; merging and unmerging round-trips `W` to float rounding.
    Parameters nothing reads afterwards are removed. Factors or weights
    without data at compile time are an error naming the layer.

    ```mlir
    // Before: @q_proj.weight holds W + 16/r · B·A
    %y = qopt.lora %x, %w, %a, %b alpha = 16.0 module "q_proj" merged : ...
    // After: @q_proj.weight holds W
    %y = qopt.lora %x, %w2, %a, %b alpha = 16.0 module "q_proj" : ...
    ```
  }];
  let options = [
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from (the "
           "model's folder; default: the working directory)">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptRelayoutQuantizedWeightsPass
    : Pass<"qopt-relayout-quantized-weights", "::mlir::ModuleOp"> {
  let summary = "Stores QDQ-quantized MatMul weights as the layer's N×K "
                "quantized weight";
  let description = [{
    A QDQ export quantizes a `MatMul` weight as stored, K×N with one scale
    per output column (`DequantizeLinear(W_int8, scales, axis = 1)`), so
    raising gives `qopt.linear(x, transpose(dequantize(q)))`: a linear
    layer with a float weight dequantized and transposed on every run. This
    pass writes the codes transposed, N×K, into a new parameter (a
    `dense_resource` blob computed at compile time from the parameter's
    data: inline, resource or `#qopt.external` in `model-dir`) and gives
    the layer the quantized weight itself,
    `qopt.linear(x, assemble(codesᵀ, scales) : !qopt.qtensor<N×K, …,
    #qopt.per_channel<0>>)` — what a quantized layer looks like to the
    passes and kernels that follow. The scales and zero points are shared
    unchanged. The new parameter is named `<module>.weight` after the
    layer's module path (else `<codes>.nk`); the K×N codes are removed when
    nothing else reads them.

    Rewritten: `qopt.linear` and `qopt.lora` whose weight is a 2-D transpose
    of `qopt.dequantize` of a `qopt.assemble` of a parameter's 8-bit codes,
    per tensor or per channel along N. Codes given at run time (a
    parameter without data) keep the transpose. Data that cannot be read is
    an error naming the parameter.

    ```mlir
    // Before
    %q = qopt.assemble %w, %s : (tensor<16x8xi8>, tensor<8xf32>)
        -> !qopt.qtensor<16x8, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
    %d = qopt.dequantize %q : ... -> tensor<16x8xf32>
    %t = linalg.transpose ins(%d : tensor<16x8xf32>) outs(...) permutation = [1, 0]
    %y = qopt.linear %x, %t module "fc" : ...
    // After: @fc.weight = dense_resource<…> holds the codes transposed
    %c = qopt.load_param @fc.weight : tensor<8x16xi8>
    %q2 = qopt.assemble %c, %s : (tensor<8x16xi8>, tensor<8xf32>)
        -> !qopt.qtensor<8x16, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
    %y = qopt.linear %x, %q2 module "fc" : ...
    ```
  }];
  let options = [
    Option<"modelDir", "model-dir", "std::string", "\"\"",
           "Folder that relative #qopt.external locations start from (the "
           "model's folder; default: the working directory)">
  ];
  let dependentDialects = ["::mlir::qopt::QOptDialect"];
}

def QOptMaterializeParamsPass : Pass<"qopt-materialize-params",
                                     "::mlir::ModuleOp"> {
  let summary = "Replaces reads of inline parameters by constants";
  let description = [{
    Every `qopt.load_param` of a frozen parameter whose data is inline
    `dense<…>` becomes an `arith.constant` of that data (signless integers
    and floats; unsigned ones stay parameters, which
    `qopt-params-to-arguments` passes in), so upstream folding and
    execution without a runtime (mlir-runner) see the values; inline
    parameters left without readers are removed. Parameters stored in
    files or resource blobs, and mutable (`trainable` / `state`) ones, are
    left to the runtime.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def QOptParamsToArgumentsPass : Pass<"qopt-params-to-arguments",
                                     "::mlir::ModuleOp"> {
  let summary = "Makes parameters the runtime provides into entry arguments";
  let description = [{
    Compiled models take the parameters that are not inline (weights kept
    in files, parameters without data) — and inline ones of unsigned integer
    type, which no constant op holds — as arguments of the entry function
    (the public `func.func` that reads them), after the model's own inputs and in
    declaration order, so that the runtime can hand over memory-mapped
    weights without a copy. Each new argument carries the parameter's name
    (`qopt.param`), its data when it has some (`qopt.external` or
    `qopt.inline`) and
    `bufferization.writable = false`: the weights are read-only, and
    bufferization copies before any write. The parameters' declarations are
    removed. Reads of such parameters from more than one function, or from a
    private one, are an error.

    Mutable (`trainable` / `state`) parameters are always passed, whatever
    their data, marked `qopt.trainable` or `qopt.state`. A
    `qopt.store_param` becomes a result of the entry, after the model's
    outputs, marked with the parameter's name (`qopt.param`): the runtime
    takes that buffer as the parameter's new value after a successful run
    (no copy). A read after a store in the same call reads the stored value.
    Stores must be in the entry's body (not in nested regions); a
    parameter stored twice keeps the last value.

    `qopt.random_key` becomes one more argument, marked `qopt.rng_key`,
    after the parameters: the runtime passes `[seed, counter]` and advances
    the counter after every successful run.
  }];
}

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_TD
