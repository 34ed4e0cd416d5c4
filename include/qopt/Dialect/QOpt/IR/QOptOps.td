//===- QOptOps.td - QOpt operations ------------------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_QOPT_IR_QOPTOPS_TD
#define QOPT_DIALECT_QOPT_IR_QOPTOPS_TD

include "qopt/Dialect/QOpt/IR/QOptDialect.td"
include "qopt/Dialect/QOpt/IR/QOptAttrs.td"
include "qopt/Dialect/QOpt/IR/QOptTypes.td"
include "qopt/Dialect/QOpt/IR/QOptInterfaces.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class QOpt_Op<string mnemonic, list<Trait> traits = []>
    : Op<QOpt_Dialect, mnemonic, traits>;

def QOpt_FloatTensor : RankedTensorOf<[AnyFloat]>;
def QOpt_QuantFormatAttr : Attr<
    CPred<"::llvm::isa<::mlir::qopt::QuantFormatAttrInterface>($_self)">,
    "quantization format (#qopt.int, #qopt.nf4, #qopt.bnb_fp4, #qopt.dynamic8, #qopt.float)"> {
  let storageType = "::mlir::qopt::QuantFormatAttrInterface";
  let returnType = "::mlir::qopt::QuantFormatAttrInterface";
  let convertFromStorage = "$_self";
}
def QOpt_GranularityAttr : Attr<
    CPred<"::llvm::isa<::mlir::qopt::GranularityAttrInterface>($_self)">,
    "quantization granularity (#qopt.per_tensor, #qopt.per_channel, "
    "#qopt.per_group, #qopt.per_block, #qopt.per_token)"> {
  let storageType = "::mlir::qopt::GranularityAttrInterface";
  let returnType = "::mlir::qopt::GranularityAttrInterface";
  let convertFromStorage = "$_self";
}
def QOpt_WeightType : AnyTypeOf<[QOpt_FloatTensor, QOpt_QTensorType],
    "float tensor or !qopt.qtensor">;

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

/// What reads and writes of parameters act on (qopt.load_param,
/// qopt.store_param).
def QOpt_ParameterResource : Resource<"::mlir::qopt::ParameterResource">;

def QOpt_ParamOp : QOpt_Op<"param", [Symbol, HasParent<"::mlir::ModuleOp">]> {
  let summary = "named parameter (weight) declaration";
  let description = [{
    Declares a parameter of the model: a statically shaped tensor with a
    symbol name (the name the model gives it, e.g.
    `model.layers.0.self_attn.q_proj.weight`), its role, and optional data:
    inline elements for small parameters, a `dense_resource` blob for
    weights a pass computed, or `#qopt.external<…>` for a byte range of a
    file beside the model so that large weights never pass through IR text.
    Without data the parameter is an input the runtime must be given (or a
    freshly initialised one).

    Roles: a plain parameter is *frozen* — constant for the model's life,
    memory-mapped read-only by the runtime. `trainable` ones are what
    training differentiates with respect to (LoRA factors, learned step
    sizes …); `state` ones are updated but not differentiated (optimizer
    moments, step counters, running statistics). Both are *mutable*: the
    runtime keeps a private, writable copy, `qopt.store_param` writes them,
    and the compiled model's manifest lists them with their role.

    Quantized weights are stored as several parameters (packed codes,
    scales, zero points) and put together with `qopt.assemble`.

    ```mlir
    qopt.param @model.embed_tokens.weight : tensor<32000x4096xbf16>
        = #qopt.external<"model.safetensors", offset = 0, length = 262144000>
    qopt.param trainable @lora_A : tensor<16x4096xf32> = dense<0.0> : tensor<16x4096xf32>
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<AnyStaticShapeTensor>:$type,
                       UnitAttr:$trainable,
                       UnitAttr:$state,
                       OptionalAttr<AnyAttrOf<[ElementsAttr,
                                               QOpt_ExternalDataAttr]>>:$initial_value);
  let assemblyFormat = [{
    (`trainable` $trainable^)? (`state` $state^)? $sym_name `:` $type (`=` $initial_value^)? attr-dict
  }];
  let builders = [
    OpBuilder<(ins "::llvm::StringRef":$sym_name, "::mlir::Type":$type,
                   "bool":$trainable, "::mlir::Attribute":$initial_value), [{
      build($_builder, $_state, $_builder.getStringAttr(sym_name),
            ::mlir::TypeAttr::get(type),
            trainable ? $_builder.getUnitAttr() : ::mlir::UnitAttr(),
            /*state=*/::mlir::UnitAttr(), initial_value);
    }]>
  ];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
    /// Trainable or state: the runtime keeps a writable copy.
    bool isMutable() { return getTrainable() || getState(); }
  }];
}

def QOpt_LoadParamOp : QOpt_Op<"load_param", [
    MemoryEffects<[MemRead<QOpt_ParameterResource>]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "reads a parameter's current value";
  let description = [{
    The value of the parameter `@name` as a tensor of the declared type.
    It reads the parameters (a `qopt.store_param` in between gives a later
    read the new value), so reads are merged and removed like loads, never
    moved across a store.

    ```mlir
    %w = qopt.load_param @model.layers.0.mlp.up_proj.weight : tensor<11008x4096xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$name);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let extraClassDeclaration = [{
    /// The parameter's inline data, or null when it lives in a file or is
    /// given at run time. Pass `symbols` to cache lookups over many reads.
    ::mlir::ElementsAttr getInlineData(
        ::mlir::SymbolTableCollection *symbols = nullptr);
  }];
}

def QOpt_StoreParamOp : QOpt_Op<"store_param", [
    MemoryEffects<[MemWrite<QOpt_ParameterResource>]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "writes a mutable parameter";
  let description = [{
    Replaces the value of the `trainable` or `state` parameter `@name` by
    `value` (an optimizer step, a step counter, running statistics): later
    reads, in this call and in the next ones, see it. Frozen parameters
    cannot be written. Compiled, the write goes into the runtime's copy of
    the parameter, which `qopt_model_get_parameter` reads back.

    ```mlir
    qopt.store_param @adam.step, %next : tensor<f32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$name, AnyStaticShapeTensor:$value);
  let assemblyFormat = "$name `,` $value attr-dict `:` type($value)";
}

def QOpt_RandomKeyOp : QOpt_Op<"random_key", [Pure]> {
  let summary = "the random key of the current run";
  let description = [{
    `[seed, counter]`: the key of a counter-based generator (Philox) that
    dropout and other stochastic ops derive their random numbers from, each
    from its own stream. The runtime passes it to every run and advances the
    counter after each successful one, so a step can be replayed bit for
    bit — for the backward pass, or to resume from a checkpoint — by setting
    the same key again (`qopt_model_set_rng`). Constant within one run.

    ```mlir
    %key = qopt.random_key : tensor<2xi64>
    ```
  }];
  let results = (outs 1DTensorOf<[I64]>:$key);
  let assemblyFormat = "attr-dict `:` type($key)";
  let hasVerifier = 1;
}

def QOpt_RandomUniformOp : QOpt_Op<"random_uniform", [Pure]> {
  let summary = "uniform random numbers in [0, 1) from the run's key";
  let description = [{
    A tensor of independent uniform samples in `[0, 1)`, a pure function of
    the key `[seed, counter]` (`qopt.random_key`), the op's `stream` (a
    number distinct per stochastic op of the model) and the element's
    row-major index: element `i` is the first 32-bit word `x` of
    Philox4x32-10 (Salmon et al., SC'11; the Random123 definition) with key
    `(seed mod 2^32, seed div 2^32)` and counter `(i mod 2^32, stream,
    counter mod 2^32, counter div 2^32)`, as `(x >> 8) · 2^-24`. Dropout
    masks and stochastic rounding draw from it; the same key replays the
    same numbers, which the backward pass and resuming training rely on.
    Element indices are taken modulo 2^32 (tensors of more elements repeat
    their pattern). Dynamic sizes are operands, as for `tensor.empty`.

    ```mlir
    %u = qopt.random_uniform %key[%n] stream 3 : tensor<2xi64> -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins 1DTensorOf<[I64]>:$key, Variadic<Index>:$dynamic_sizes,
                       I64Attr:$stream);
  let results = (outs RankedTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $key (`[` $dynamic_sizes^ `]`)? `stream` $stream attr-dict `:`
    type($key) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Quantized tensors
//===----------------------------------------------------------------------===//

def QOpt_AssembleOp : QOpt_Op<"assemble", [Pure, AttrSizedOperandSegments]> {
  let summary = "builds a quantized tensor from its storage";
  let description = [{
    Makes a `!qopt.qtensor` from packed codes, scales and, as its type asks,
    zero points and an offset. No value changes; the storage types are those
    the result type lists (see `!qopt.qtensor`).

    ```mlir
    %q = qopt.assemble %codes, %absmax
        : (tensor<128x32xi8>, tensor<64xf32>)
        -> !qopt.qtensor<128x64, #qopt.nf4, #qopt.per_block<128>, scales = f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[I8]>:$data,
                       AnyType:$scales,
                       Optional<RankedTensorOf<[I8]>>:$zero_points,
                       Optional<0DTensorOf<[F32]>>:$offset);
  let results = (outs QOpt_QTensorType:$result);
  let assemblyFormat = [{
    $data `,` $scales (`zero_points` $zero_points^)? (`offset` $offset^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def QOpt_DisassembleOp : QOpt_Op<"disassemble", [Pure,
    AttrSizedResultSegments]> {
  let summary = "the storage of a quantized tensor";
  let description = [{
    The inverse of `qopt.assemble`: packed codes, scales and, as the type
    has them, zero points and offset.

    ```mlir
    %codes, %scales = qopt.disassemble %q
        : !qopt.qtensor<128x64, #qopt.nf4, #qopt.per_block<128>, scales = f32>
        -> tensor<128x32xi8>, tensor<64xf32>
    %c, %s, %zp = qopt.disassemble %g
        : !qopt.qtensor<64x32, #qopt.int<4, unsigned, zero_point>,
                        #qopt.per_channel<0>, scales = f16>
        -> tensor<64x16xi8>, tensor<64xf16> zero_points tensor<64xi8>
    ```
  }];
  let arguments = (ins QOpt_QTensorType:$input);
  let results = (outs RankedTensorOf<[I8]>:$data, AnyType:$scales,
                      Optional<RankedTensorOf<[I8]>>:$zero_points,
                      Optional<0DTensorOf<[F32]>>:$offset);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` type($data) `,` type($scales)
    (`zero_points` type($zero_points)^)? (`offset` type($offset)^)?
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def QOpt_QuantizeOp : QOpt_Op<"quantize", [Pure]> {
  let summary = "quantizes a float tensor, computing its scales";
  let description = [{
    Quantizes `input` to the format and granularity of the result type,
    computing scales (and zero points) from the data of each group `g`:

    * symmetric formats: `s_g = absmax_g / M` with `M` the format's largest
      magnitude (`2^(k-1)-1` for signed `#qopt.int<k>`, 1 for NF4, 448 for
      FP8 E4M3 …); `q = encode(x / s_g)`;
    * formats with zero points (unsigned codes, qmin = 0): over the range
      widened to include 0, `lo_g = min(min_g, 0)`, `hi_g = max(max_g, 0)`,
      `s_g = (hi_g - lo_g) / qmax`, `zp_g = clamp(round(-lo_g / s_g), 0,
      qmax)`, `q = clamp(round(x / s_g) + zp_g, 0, qmax)` (what PyTorch's
      min–max observers and `qopt-quantize-weights` compute);

    where `encode` rounds to the nearest code (ties to even for integers and
    floats). A group whose values are all zero gets `s_g = 1`.

    bitsandbytes' codebooks (`#qopt.nf4`, `#qopt.bnb_fp4`, `#qopt.dynamic8`)
    are encoded exactly as bitsandbytes' CUDA kernels write them: `s_g` is
    the absmax (0 for a zero group), `v = x · (1 / s_g)` in f32 with
    subnormals flushed to zero, then NF4's and FP4's decision trees over
    their f32 thresholds (FP4's sign from `v < 0`) or the 8-bit dynamic
    code's bisection search; a zero group's NaN gives code 0, as there.

    With double quantization (scales of a nested `!qopt.qtensor` type) the
    scales are quantized in turn to the nested type, after subtracting their
    mean when it has an `offset` (QLoRA: the sum, accumulated in f64,
    times the f32 reciprocal of the count). The element type of `input` may
    be any float type; its shape must match the result's (dynamic
    dimensions match anything).

    On the CPU path it lowers for integer formats (signed, or unsigned with
    zero points), FP8 E4M3 / E5M2 and FP4 E2M1 codes (their bits computed
    from the value on the grid, the sign from `x / s`), NF4, bitsandbytes'
    FP4 and 8-bit dynamic codes, with f32 scales per tensor, channel, token,
    group or block (groups and blocks must divide the tensor) or nested
    scales quantized with f32 scales and no zero points; and MXFP4 (E2M1
    codes, E8M0 scales 2^(floor(log2 absmax) − 2) per group) and NVFP4
    (E2M1 codes, E4M3 scales of absmax / 6 over one f32 global scale
    absmax / (448 · 6), a nested per-tensor qtensor), whose codes use the
    rounded scales. The codes are packed per row as `qopt.assemble` takes
    them. Other scale types are an error naming them.

    `dequantize(quantize(x))` is not `x`, and `quantize(dequantize(q))` is
    not `q` either (a group whose largest code is not the format's maximum
    gets a new scale), so neither folds.

    ```mlir
    %q = qopt.quantize %w : tensor<4096x4096xf32>
        -> !qopt.qtensor<4096x4096, #qopt.nf4, #qopt.per_block<64>, scales = f32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input);
  let results = (outs QOpt_QTensorType:$result);
  let assemblyFormat = [{
    $input attr-dict `:` type($input) `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

def QOpt_DequantizeOp : QOpt_Op<"dequantize", [Pure]> {
  let summary = "expands a quantized tensor to floats";
  let description = [{
    `y_i = (code(q_i) - zp_g) · s_g + offset`, computed in f32 and rounded
    to the result's element type; nested scales are dequantized first.

    ```mlir
    %w = qopt.dequantize %q
        : !qopt.qtensor<4096x4096, #qopt.nf4, #qopt.per_block<64>, scales = f32>
        -> tensor<4096x4096xbf16>
    ```
  }];
  let arguments = (ins QOpt_QTensorType:$input);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Graph ops
//===----------------------------------------------------------------------===//

def QOpt_LinearOp : QOpt_Op<"linear", [Pure,
    QOpt_LinearLikeOpInterface]> {
  let summary = "fully connected layer `y = x · Wᵀ + b`";
  let description = [{
    `y[…, n] = Σ_k x[…, k] · W[n, k] + b[n]` for an input `x` of shape
    `[…, K]` (any leading dimensions), a weight `W` of shape `N×K` (a float
    tensor or a `!qopt.qtensor`, dequantized on the fly) and an optional
    bias of shape `[N]`. This is `torch.nn.Linear`; the importer raises
    `MatMul`/`Gemm` with a parameter weight into it so that adapter and
    quantization passes find every linear layer.

    `module` is the path of the layer in the model it came from, as PEFT
    and `torch.nn.Module.named_modules` name it
    (`model.layers.0.mlp.up_proj`): adapter and quantization passes select
    layers by it, and every rewrite of the layer keeps it. The importer takes
    it from the exporter's name scopes (torch's dynamo exporter), the
    weight's name (`….weight`) or the node's name path (TorchScript's
    `/model/layers.0/mlp/up_proj/MatMul`), in that order.

    A float weight that is a `qopt.dequantize` of a `!qopt.qtensor` folds
    into the op (`linear(x, dequantize(q))` → `linear(x, q)`): the layer
    dequantizes on the fly, and code generation sees the quantized weight
    (fused dequantize-GEMM kernels, memory-bound decode).

    ```mlir
    %y = qopt.linear %x, %w, %b module "model.layers.0.mlp.up_proj"
        : (tensor<?x?x4096xf32>, tensor<11008x4096xf32>, tensor<11008xf32>)
        -> tensor<?x?x11008xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_WeightType:$weight,
                       Optional<QOpt_FloatTensor>:$bias,
                       OptionalAttr<StrAttr>:$module);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? (`module` $module^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasFolder = 1;
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input,
                   "::mlir::Value":$weight, "::mlir::Value":$bias), [{
      build($_builder, $_state, result, input, weight, bias,
            ::mlir::StringAttr());
    }]>
  ];
  let hasVerifier = 1;
}

def QOpt_AttentionOp : QOpt_Op<"attention", [Pure]> {
  let summary = "scaled dot-product attention with mask, causal masking and "
                "grouped-query heads";
  let description = [{
    For `query` `[B, Hq, S, D]`, `key` `[B, Hkv, L, D]` and `value`
    `[B, Hkv, L, Dv]` (`Hq` a multiple of `Hkv`: query head `h` reads
    key/value head `h / (Hq / Hkv)`, grouped-query attention; when either
    head count is dynamic they must be equal, checked at run time):

    ```
    s[b,h,i,j] = scale · Σ_d query[b,h,i,d] · key[b,h/g,j,d]
    s = softcap · tanh(s / softcap)                  (when softcap is set)
    s = mask ? s : -inf   (bool mask)   or   s + mask   (float mask)
    s[b,h,i,j] = -inf where j > i                    (causal)
    p = softmax_j(s)      (a row whose scores are all -inf gives 0)
    y[b,h,i,e] = Σ_j p[b,h,i,j] · value[b,h/g,j,e]
    ```

    `scale` defaults to `1/√D`. The mask has rank 4 or less and broadcasts
    to `[B, Hq, S, L]` numpy-style (aligned right; a size-1 dimension
    broadcasts). Scores, softmax and products are computed in f32. This is
    ONNX `Attention` (opset 23) on 4-D inputs and torch's
    `scaled_dot_product_attention`, except that torch gives NaN for a fully
    masked row. Sizes the types leave open are checked at run time.

    ```mlir
    %y = qopt.attention %q, %k, %v mask(%m) causal
        : (tensor<1x32x?x128xf32>, tensor<1x8x?x128xf32>,
           tensor<1x8x?x128xf32>, tensor<1x1x?x?xi1>) -> tensor<1x32x?x128xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$query, QOpt_FloatTensor:$key,
                       QOpt_FloatTensor:$value,
                       Optional<AnyRankedTensor>:$mask,
                       UnitAttr:$causal,
                       OptionalAttr<F64Attr>:$scale,
                       OptionalAttr<F64Attr>:$softcap);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`mask` `(` $mask^ `)`)? (`causal` $causal^)?
    (`scale` `=` $scale^)? (`softcap` `=` $softcap^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// `scale`, or `1/√D` (D static).
    double getScaleValue();
  }];
}

def QOpt_AttentionGradOp : QOpt_Op<"attention_grad", [Pure]> {
  let summary = "the gradients of qopt.attention with respect to its query, "
                "key and value";
  let description = [{
    Given a `qopt.attention`'s operands and attributes (`scale` always
    given), its result `output` and the gradient `output_grad` of a loss
    with respect to it, returns the loss's gradients with respect to the
    query, key and value (shaped like them):

    ```
    p   = the attention's probabilities (recomputed from query and key)
    dv[b,g,j,e] = Σ_{h→g, i} p[b,h,i,j] · output_grad[b,h,i,e]
    dp[b,h,i,j] = Σ_e output_grad[b,h,i,e] · value[b,h/G,j,e]
    ds = p · (dp − Σ_e output_grad[b,h,i,e] · output[b,h,i,e])
    ds = ds · (1 − tanh²(s₀ / softcap))               (when softcap is set)
    dq[b,h,i,d] = scale · Σ_j ds[b,h,i,j] · key[b,h/G,j,d]
    dk[b,g,j,d] = scale · Σ_{h→g, i} ds[b,h,i,j] · query[b,h,i,d]
    ```

    (`h→g`: the query heads that read key/value head g; masked and causal
    scores have p = 0, so they pass no gradient; the mask gets none.)
    `qopt-build-train-step` makes it for an attention it keeps whole (the
    CUDA target with its kernel library: `convert-qopt-to-linalg{
    keep-attention}`), and `convert-qopt-to-linalg{attention-library}`
    lowers it to one call of the library's fused backward, which
    recomputes the scores a tile at a time instead of storing them. It has
    no linalg lowering: elsewhere the attention is differentiated in its
    linalg form.

    ```mlir
    %dq, %dk, %dv = qopt.attention_grad %q, %k, %v mask(%m)
        output(%y, %dy) causal scale = 0.125
        : (tensor<1x32x?x128xf32>, tensor<1x8x?x128xf32>,
           tensor<1x8x?x128xf32>, tensor<1x1x?x?xf32>,
           tensor<1x32x?x128xf32>, tensor<1x32x?x128xf32>)
        -> (tensor<1x32x?x128xf32>, tensor<1x8x?x128xf32>,
            tensor<1x8x?x128xf32>)
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$query, QOpt_FloatTensor:$key,
                       QOpt_FloatTensor:$value,
                       Optional<AnyRankedTensor>:$mask,
                       QOpt_FloatTensor:$output, QOpt_FloatTensor:$output_grad,
                       UnitAttr:$causal, F64Attr:$scale,
                       OptionalAttr<F64Attr>:$softcap);
  let results = (outs QOpt_FloatTensor:$query_grad,
                      QOpt_FloatTensor:$key_grad,
                      QOpt_FloatTensor:$value_grad);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`mask` `(` $mask^ `)`)?
    `output` `(` $output `,` $output_grad `)` (`causal` $causal^)?
    `scale` `=` $scale (`softcap` `=` $softcap^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def QOpt_EmbeddingOp : QOpt_Op<"embedding", [Pure]> {
  let summary = "embedding lookup `y[…, :] = W[ids[…], :]`";
  let description = [{
    The rows of the table `W` (`V×D`, a float tensor or a
    `!qopt.qtensor`) that the integer `ids` select: `y[i…, d] =
    W[ids[i…], d]`, shape `ids.shape + [D]`. This is `torch.nn.Embedding`;
    the importer raises `Gather(W, ids, axis = 0)` of a 2-D parameter into
    it, so that adapter passes (PEFT's LoRA on embeddings) and training
    (the gradient is a scatter-add into the used rows) find it.

    `ids` lie in `[-V, V)`, a negative id counting from the end (ONNX
    Gather's rule; torch refuses them); any other id stops the run with an
    error naming the node. `module` is the layer's module path, as for
    `qopt.linear`.

    ```mlir
    %h = qopt.embedding %input_ids, %wte module "transformer.wte"
        : (tensor<?x?xi64>, tensor<50257x768xf32>) -> tensor<?x?x768xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnySignlessInteger]>:$ids,
                       QOpt_WeightType:$weight,
                       OptionalAttr<StrAttr>:$module);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $ids `,` $weight (`module` $module^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def QOpt_LoRAOp : QOpt_Op<"lora", [Pure, AttrSizedOperandSegments,
    QOpt_LinearLikeOpInterface]> {
  let summary = "linear layer with a low-rank adapter (LoRA and variants)";
  let description = [{
    A linear layer `x · Wᵀ + b` plus a trainable low-rank branch:

    ```
    z = dropout(x) · Aᵀ                  A: r×K  (lora_a)
    z = z ⊙ g                            g: [r]  (gate, SoRA; optional)
    z = z · Mᵀ                           M: r×r  (middle, LoRA-XS / LoRA-SB; optional)
    y = x · Wᵀ + scale · z · Bᵀ + b      B: N×r  (lora_b)
    ```

    with `scale = alpha / r` (`standard`) or `alpha / √r` (`rslora`).
    `dropout` is the probability of zeroing an input element in training
    (survivors scaled by `1/(1-p)`); inference ignores it.

    With a DoRA `magnitude` `m` of shape `[N]` the output is instead

    ```
    W' = W + scale · B · M · diag(g) · A
    y  = (m / ‖W'‖_row) ⊙ (x · Wᵀ + scale · z · Bᵀ) + b
    ```

    where `‖W'‖_row` is the L2 norm of each output row of `W'`, treated as a
    constant in the backward pass (as in DoRA and PEFT).

    `W` may be a `!qopt.qtensor` (QLoRA). A branch with `B = 0` does not
    change the output, but B starts at zero in training, so it is only folded
    away when a pass is asked to (never by canonicalization).

    `module` is the adapted layer's module path, as on `qopt.linear`.

    `merged` says that `W` already holds the branch (PEFT's
    `merge_adapter()`): the op then computes `x · Wᵀ + b` alone, and keeps
    the factors so that `qopt-unmerge-lora` can take the branch back out of
    `W`. A merged DoRA layer is not representable (PEFT caches row norms
    for it) and is rejected by the verifier.

    ```mlir
    %y = qopt.lora %x, %w, %a, %b alpha = 32.0 scaling = rslora dropout = 5.0e-02
        : (tensor<?x4096xf32>, tensor<4096x4096xf32>, tensor<16x4096xf32>,
           tensor<4096x16xf32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_WeightType:$weight,
                       QOpt_FloatTensor:$lora_a, QOpt_FloatTensor:$lora_b,
                       Optional<QOpt_FloatTensor>:$bias,
                       Optional<QOpt_FloatTensor>:$magnitude,
                       Optional<QOpt_FloatTensor>:$middle,
                       Optional<QOpt_FloatTensor>:$gate,
                       F64Attr:$alpha,
                       DefaultValuedAttr<QOpt_LoRAScalingAttr,
                                         "::mlir::qopt::LoRAScaling::Standard">:$scaling,
                       DefaultValuedAttr<F64Attr, "0.0">:$dropout,
                       OptionalAttr<StrAttr>:$module,
                       UnitAttr:$merged);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `,` $lora_a `,` $lora_b
    (`bias` `(` $bias^ `)`)? (`magnitude` `(` $magnitude^ `)`)?
    (`middle` `(` $middle^ `)`)? (`gate` `(` $gate^ `)`)?
    `alpha` `=` $alpha (`scaling` `=` `` $scaling^)? (`dropout` `=` $dropout^)?
    (`module` $module^)? (`merged` $merged^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The adapter rank r (rows of A).
    int64_t getRank();
    /// alpha / r or alpha / sqrt(r), as `scaling` says.
    double getScale();
  }];
}

def QOpt_LoRAEmbeddingOp : QOpt_Op<"lora_embedding", [Pure]> {
  let summary = "embedding lookup with a low-rank adapter (PEFT's LoRA Embedding)";
  let description = [{
    An embedding lookup (`qopt.embedding`) plus a trainable low-rank branch,
    as PEFT's `lora.Embedding` computes it:

    ```
    z[i…, :] = A[:, ids[i…]]             A: r×V  (lora_a, PEFT's lora_embedding_A)
    y[i…, :] = W[ids[i…], :] + scale · z[i…, :] · Bᵀ
                                         B: D×r  (lora_b, PEFT's lora_embedding_B)
    ```

    with `scale = alpha / r` (`standard`) or `alpha / √r` (`rslora`). PEFT
    applies no dropout to embeddings, and neither does this op. A scale the
    model applies after the lookup (Gemma's √D) multiplies the branch too,
    as PEFT's `embed_scale` does.

    `ids` follow `qopt.embedding`'s rule: they lie in `[-V, V)`, a negative
    id counting from the end; any other id stops the run with an error.
    `module` is the layer's module path.

    `merged` says that `W` already holds the branch, `W + scale · Aᵀ · Bᵀ`
    (PEFT's `merge_adapter()`): the op then is the plain lookup and keeps the
    factors for `qopt-unmerge-lora`.

    ```mlir
    %h = qopt.lora_embedding %ids, %wte, %a, %b alpha = 16.0
        module "model.embed_tokens"
        : (tensor<?x?xi64>, tensor<32000x4096xf32>, tensor<8x32000xf32>,
           tensor<4096x8xf32>) -> tensor<?x?x4096xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnySignlessInteger]>:$ids,
                       QOpt_WeightType:$weight,
                       QOpt_FloatTensor:$lora_a, QOpt_FloatTensor:$lora_b,
                       F64Attr:$alpha,
                       DefaultValuedAttr<QOpt_LoRAScalingAttr,
                                         "::mlir::qopt::LoRAScaling::Standard">:$scaling,
                       OptionalAttr<StrAttr>:$module,
                       UnitAttr:$merged);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $ids `,` $weight `,` $lora_a `,` $lora_b
    `alpha` `=` $alpha (`scaling` `=` `` $scaling^)?
    (`module` $module^)? (`merged` $merged^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The adapter rank r (rows of A).
    int64_t getRank();
    /// alpha / r or alpha / sqrt(r), as `scaling` says.
    double getScale();
  }];
}

def QOpt_RandLoRAScaleOp : QOpt_Op<"randlora_scale", [Pure]> {
  let summary = "RandLoRA's trainable factor: a shared random basis scaled by λ and γ";
  let description = [{
    RandLoRA (PEFT's `randlora` tuner) adapts a layer with shared, frozen
    random bases and trains only two scalings per layer. This op is the
    scaled side, PEFT's `UniqueBaseGrad` flattened over its first two
    dimensions:

    ```
    y[i·nb + b, j] = λ[i, b] · A[i, 0, j] · γ[b, j]      i < r, b < nb, j < m
    ```

    `basis` (`r×1×M`, the shared `randlora_A`, `M ≥ m`: a layer reads its
    first `m` columns), `lambda` (`r×nb`) and `gamma` (`nb×m`); the result is
    `(r·nb)×m`. With `qopt.randlora_flatten` (the other basis) it gives a
    `qopt.lora` its two factors: the gradient reaches λ and γ through this op.

    ```mlir
    %f = qopt.randlora_scale %basis, %lambda, %gamma
        : (tensor<8x1x32xf32>, tensor<8x4xf32>, tensor<4x32xf32>) -> tensor<32x32xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$basis, QOpt_FloatTensor:$lambda,
                       QOpt_FloatTensor:$gamma);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $basis `,` $lambda `,` $gamma attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def QOpt_RandLoRAFlattenOp : QOpt_Op<"randlora_flatten", [Pure]> {
  let summary = "RandLoRA's frozen factor: a slice of the shared basis, flattened";
  let description = [{
    The other side of a RandLoRA adapter: the first `n` rows and `nb`
    bases of the shared `randlora_B` (`N×NB×r`), flattened over the last two
    dimensions as PEFT does:

    ```
    y[p, b·r + i] = B[p, b, i]      p < n, b < nb, i < r
    ```

    The result (`n×(nb·r)`) says `n` and `nb`. The basis is a view: nothing
    is copied per layer in the graph's semantics.

    ```mlir
    %f = qopt.randlora_flatten %basis : (tensor<64x4x8xf32>) -> tensor<64x32xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$basis);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $basis attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Quantizers
//===----------------------------------------------------------------------===//

class QOpt_QuantizerOp<string mnemonic, list<Trait> traits = []>
    : QOpt_Op<mnemonic, !listconcat(traits, [Pure,
        AllTypesMatch<["input", "result"]>])> {
  let results = (outs QOpt_FloatTensor:$result);
  let hasVerifier = 1;
  code commonArgsDesc = [{
    `scale` has the shape that `granularity` gives for `input`
    (`per_token` scales are usually computed from the activation at run
    time). `zero_point` is present exactly when the format has zero points.
  }];
}

def QOpt_FakeQuantOp : QOpt_QuantizerOp<"fake_quant"> {
  let summary = "quantize-dequantize with a fixed scale (straight-through)";
  let description = [{
    Simulates quantization in float, for weights or activations:

    ```
    q = clamp(encode(x / s) + zp, qmin, qmax)
    y = (decode(q) - zp) · s
    ```

    with `encode`/`decode` of `format` (round-half-to-even for integer and
    float formats; bitsandbytes' codebooks, NF4, FP4 and the 8-bit dynamic
    code, as its CUDA kernels encode: `x · (1 / s)` with subnormals
    flushed, then their f32 decision thresholds or search, `s` the block
    absmax). The gradient is the clipped
    straight-through estimator: `∂y/∂x = 1` where `x / s + zp` lies in
    `[qmin, qmax]`, else 0; `s` and `zp` are not trained.

    Folds: fake-quantizing twice with the same scale, zero point, format and
    granularity is fake-quantizing once (the first result is already on the
    grid).
  }] # commonArgsDesc # [{

    ```mlir
    %y = qopt.fake_quant %x scale %s format(#qopt.int<8>) granularity(#qopt.per_token)
        : (tensor<2x128x4096xf32>, tensor<2x128xf32>) -> tensor<2x128x4096xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_FloatTensor:$scale,
                       Optional<QOpt_FloatTensor>:$zero_point,
                       QOpt_QuantFormatAttr:$format,
                       QOpt_GranularityAttr:$granularity);
  let hasFolder = 1;
  let assemblyFormat = [{
    $input `scale` $scale (`zero_point` $zero_point^)?
    `format` `(` $format `)` `granularity` `(` $granularity `)`
    attr-dict `:` functional-type(operands, results)
  }];
}

def QOpt_LSQOp : QOpt_QuantizerOp<"lsq"> {
  let summary = "learned step size quantizer (LSQ / LSQ+)";
  let description = [{
    The forward pass is `qopt.fake_quant`'s; the step size `s` (and, for
    formats with zero points, the offset `zp`, as in LSQ+) are trainable.
    Gradients (Esser et al., 2020), with `v = x / s` and `g` the gradient
    scale:

    ```
    ∂y/∂x = 1 if qmin ≤ v + zp ≤ qmax else 0
    ∂y/∂s = g · (round(v) - v)   inside the range
          = g · (qmin - zp)       below,   g · (qmax - zp) above
    ```

    `grad_scale` defaults to `1 / √(n · qmax)` with `n` the number of
    elements sharing one scale, as the paper recommends.
  }] # commonArgsDesc # [{

    ```mlir
    %y = qopt.lsq %w scale %s format(#qopt.int<4>) granularity(#qopt.per_channel<0>)
        grad_scale = 1.0e-02 : (tensor<64x128xf32>, tensor<64xf32>) -> tensor<64x128xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_FloatTensor:$scale,
                       Optional<QOpt_FloatTensor>:$zero_point,
                       QOpt_QuantFormatAttr:$format,
                       QOpt_GranularityAttr:$granularity,
                       OptionalAttr<F64Attr>:$grad_scale);
  let assemblyFormat = [{
    $input `scale` $scale (`zero_point` $zero_point^)?
    `format` `(` $format `)` `granularity` `(` $granularity `)`
    (`grad_scale` `=` $grad_scale^)?
    attr-dict `:` functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// Outlier handling
//===----------------------------------------------------------------------===//

def QOpt_SmoothOp : QOpt_Op<"smooth", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "per-channel activation smoothing (SmoothQuant)";
  let description = [{
    `y[…, c, …] = x[…, c, …] / s[c]` along `axis` (default: the last).
    SmoothQuant migrates activation outliers into the weights: the following
    linear's weight columns are multiplied by the same `s`, so the product
    is unchanged while the activation becomes easier to quantize.

    Folds to its input when `scale` is a constant of ones.

    ```mlir
    %y = qopt.smooth %x, %s : (tensor<?x4096xf32>, tensor<4096xf32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_FloatTensor:$scale,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $scale (`axis` `=` $axis^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def QOpt_HadamardOp : QOpt_Op<"hadamard", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "normalised Walsh–Hadamard transform over one axis (QuaRot)";
  let description = [{
    Applies `y = (1/√n) · H_n · diag(signs) · x` to each vector of `n`
    consecutive elements along `axis` (default: the last), where `n` is
    `block` if given (a block-diagonal rotation, e.g. per attention head)
    else the whole dimension. `H_n` is orthogonal after normalisation, so a
    rotation applied to activations and, transposed, to the next weight
    leaves a product unchanged while spreading outliers.

    `n` must be `2^k` (Sylvester construction) or `m · 2^k` with `m = 4·t`
    (t odd, m ≤ 1020) built by Paley's first construction (m = q + 1, q ≡ 3
    mod 4 a prime power), his second (m = 2(q + 1), q ≡ 1 mod 4) or
    Williamson's array over tabulated circulants (92, 116, 156, 172); then
    `H_n = H_m ⊗ H_{2^k}` (element `a·2^k + b` is row `a` of `H_m`, row `b`
    of `H_{2^k}`). This covers every order QuaRot ships and hidden sizes
    such as 3072 (12 · 256), 5120 (20 · 256), 11008 (172 · 64) and 14336
    (28 · 512). Other sizes are an error naming the largest `block` that
    works. The optional `signs` vector (±1, length `n`) makes the rotation
    randomized.

    The CPU lowering of an f32 transform over the last axis views the data
    as `[runs, m, p1, p2]` (`2^k = p1 · p2`, Sylvester's `H_{2^k} = H_p1 ⊗
    H_p2`) and applies `H_m`, `H_p1` and `H_p2` as three small products
    (`m + p1 + p2` multiply-adds per element, BLAS calls), `1/√n` folded
    into the first; other axes and element types run `log2(2^k)` butterfly
    stages within each run of `2^k` elements, then `H_m` across the runs
    (in f32), then scale by `1/√n`.

    Folds: two identical transforms without `signs` over a power-of-two
    size cancel (`H_n` is then symmetric and orthogonal, `H_n · H_n = I`).

    ```mlir
    %y = qopt.hadamard %x signs %d axis = 1
        : (tensor<?x4096xf32>, tensor<4096xf32>) -> tensor<?x4096xf32>
    %h = qopt.hadamard %q block = 128 : (tensor<?x4096xf32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input,
                       Optional<QOpt_FloatTensor>:$signs,
                       DefaultValuedAttr<I64Attr, "-1">:$axis,
                       OptionalAttr<I64Attr>:$block);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`signs` $signs^)? (`axis` `=` $axis^)? (`block` `=` $block^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
  let extraClassDeclaration = [{
    /// Whether `n` is a supported Hadamard order.
    static bool isSupportedSize(int64_t n);
  }];
}

//===----------------------------------------------------------------------===//
// Normalisation
//===----------------------------------------------------------------------===//

def QOpt_RMSNormOp : QOpt_Op<"rms_norm", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "root-mean-square normalisation (LLaMA, T5)";
  let description = [{
    Over the trailing dimensions from `axis` (default: the last),

    ```
    y = x / sqrt(mean(x²) + epsilon) · gamma
    ```

    with `gamma` of the normalised shape `x.shape[axis:]`. Statistics are
    computed in f32 whatever the element type (as HF's `LlamaRMSNorm` and
    ONNX `RMSNormalization` with `stash_type = 1` do).

    ```mlir
    %y = qopt.rms_norm %x, %g epsilon = 1.0e-06
        : (tensor<?x?x4096xf32>, tensor<4096xf32>) -> tensor<?x?x4096xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_FloatTensor:$gamma,
                       DefaultValuedAttr<F64Attr, "1.0e-06">:$epsilon,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gamma (`epsilon` `=` $epsilon^)? (`axis` `=` $axis^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def QOpt_LayerNormOp : QOpt_Op<"layer_norm", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "layer normalisation (GPT-2, BERT, ViT)";
  let description = [{
    Over the trailing dimensions from `axis` (default: the last),

    ```
    y = (x - mean(x)) / sqrt(var(x) + epsilon) · gamma + beta
    ```

    with the biased variance, and `gamma`, `beta` of shape `x.shape[axis:]`
    (`beta` optional), as `torch.nn.LayerNorm` and ONNX
    `LayerNormalization`. Statistics are computed in f32.

    ```mlir
    %y = qopt.layer_norm %x, %g, %b epsilon = 1.0e-05
        : (tensor<?x768xf32>, tensor<768xf32>, tensor<768xf32>) -> tensor<?x768xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_FloatTensor:$gamma,
                       Optional<QOpt_FloatTensor>:$beta,
                       DefaultValuedAttr<F64Attr, "1.0e-05">:$epsilon,
                       DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gamma (`,` $beta^)? (`epsilon` `=` $epsilon^)? (`axis` `=` $axis^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def QOpt_NormGradOp : QOpt_Op<"norm_grad", [Pure,
    AllTypesMatch<["input", "output_grad", "input_grad"]>,
    AllTypesMatch<["gamma", "gamma_grad", "beta_grad"]>]> {
  let summary = "the gradients of qopt.rms_norm / qopt.layer_norm over the "
                "last axis";
  let description = [{
    Given a norm's input `x` (rows over the leading dimensions, D elements
    each), its `gamma` ([D]) and the gradient `dy` of a loss with respect
    to its output, returns the loss's gradients with respect to x, gamma
    and beta (what `layer` and `epsilon` say: LayerNorm or RMSNorm, as the
    forward op; beta does not enter them):

    ```
    RMSNorm:   r = 1 / sqrt(mean(x²) + epsilon),          x̂ = x · r
               dx = r · (dy·gamma − x̂ · mean(dy·gamma·x̂))
    LayerNorm: r = 1 / sqrt(mean((x − μ)²) + epsilon),  x̂ = (x − μ) · r
               dx = r · (dy·gamma − mean(dy·gamma) − x̂ · mean(dy·gamma·x̂))
    gamma_grad = Σ_rows dy · x̂,   beta_grad = Σ_rows dy
    ```

    `qopt-build-train-step` makes it for a norm it keeps whole (the CUDA
    target with its kernel library: `convert-qopt-to-linalg{keep-norms}`),
    and `convert-qopt-to-linalg{norm-library}` lowers it to one call of
    the library's backward (a warp per row for dx; gamma_grad and
    beta_grad, where used, as column sums over blocks of rows). It has no
    linalg lowering: elsewhere the norm is differentiated in its linalg
    form.

    ```mlir
    %dx, %dg, %db = qopt.norm_grad %x, %g, %dy epsilon = 1.0e-06
        : (tensor<?x?x4096xf32>, tensor<4096xf32>, tensor<?x?x4096xf32>)
        -> (tensor<?x?x4096xf32>, tensor<4096xf32>, tensor<4096xf32>)
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_FloatTensor:$gamma,
                       QOpt_FloatTensor:$output_grad, UnitAttr:$layer,
                       F64Attr:$epsilon);
  let results = (outs QOpt_FloatTensor:$input_grad,
                      QOpt_FloatTensor:$gamma_grad,
                      QOpt_FloatTensor:$beta_grad);
  let assemblyFormat = [{
    $input `,` $gamma `,` $output_grad (`layer` $layer^)?
    `epsilon` `=` $epsilon attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def QOpt_GeluOp : QOpt_Op<"gelu", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Gaussian error linear unit (GPT-2, BERT, ViT)";
  let description = [{
    Elementwise `x · Φ(x)`:

    ```
    approximate = "none":  y = 0.5 · x · (1 + erf(x / √2))
    approximate = "tanh":  y = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
    ```

    as `torch.nn.GELU(approximate=…)` and ONNX `Gelu`. Computed in f32 for
    narrower float types. Exporters that decompose it (Erf or Tanh chains)
    are raised to this op by `qopt-raise-onnx`.

    ```mlir
    %y = qopt.gelu %x approximate = "tanh" : tensor<?x?x3072xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input,
                       DefaultValuedStrAttr<StrAttr, "none">:$approximate);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`approximate` `=` $approximate^)? attr-dict `:` type($input)
  }];
  let hasVerifier = 1;
}

def QOpt_SiLUOp : QOpt_Op<"silu", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "sigmoid linear unit / swish (LLaMA, Mistral, Qwen MLPs)";
  let description = [{
    Elementwise `y = x · sigmoid(x) = x / (1 + exp(-x))`, as
    `torch.nn.SiLU`. Computed in f32 for narrower float types. The
    `Mul(x, Sigmoid(x))` that exporters write is raised to this op by
    `qopt-raise-onnx`.

    ```mlir
    %y = qopt.silu %gate : tensor<?x?x11008xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def QOpt_LogSoftmaxOp : QOpt_Op<"log_softmax", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "log-softmax along one axis";
  let description = [{
    `y = x - max - log(Σ exp(x - max))` along `axis`, the stable form of
    `log(softmax(x))`, as `torch.nn.functional.log_softmax` and ONNX
    `LogSoftmax`. Each step is rounded to the element type as the ONNX
    reference computes it; the sum is accumulated in f32. Upstream has
    `linalg.softmax` (which the converter uses for Softmax) but no
    log-softmax; training needs this one as an op of its own, since its
    gradient `dy - softmax(x) · Σ dy` is not the composition's.

    ```mlir
    %lp = qopt.log_softmax %logits axis = 1 : tensor<?x50257xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, I64Attr:$axis);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = "$input `axis` `=` $axis attr-dict `:` type($input)";
  let hasVerifier = 1;
}

def QOpt_CrossEntropyOp : QOpt_Op<"cross_entropy", [Pure]> {
  let summary = "cross-entropy (or negative log-likelihood) loss against "
                "class indices";
  let description = [{
    For `input` `[N, C, d1…dk]` (classes along axis 1) and integer
    `labels` `[N, d1…dk]`:

    ```
    lp = log_softmax(input, axis = 1)      (input itself with log_probs)
    w  = labels[i] == ignore_index ? 0 : (weight ? weight[labels[i]] : 1)
    loss[i] = -w · lp[n, labels[i], d…]     (i = (n, d…))
    reduction = "none": loss          [N, d1…dk]
                "sum":  Σ loss        (rank 0)
                "mean": Σ loss / Σ w  (rank 0; NaN when every label is ignored)
    ```

    This is `torch.nn.functional.cross_entropy` with class indices (and,
    with `log_probs`, `nll_loss`), ONNX `SoftmaxCrossEntropyLoss` and
    `NegativeLogLikelihoodLoss`. Label smoothing and probability targets
    are not supported. A label outside `[0, C)` that is not `ignore_index`
    stops the run with an error naming the op. Log-probabilities and
    per-element losses are computed in the element type, the sums in f32.

    ```mlir
    %loss = qopt.cross_entropy %logits, %labels ignore_index = -100
        : (tensor<?x32000xf32>, tensor<?xi64>) -> tensor<f32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input,
                       RankedTensorOf<[AnySignlessInteger]>:$labels,
                       Optional<QOpt_FloatTensor>:$weight,
                       OptionalAttr<I64Attr>:$ignore_index,
                       DefaultValuedStrAttr<StrAttr, "mean">:$reduction,
                       UnitAttr:$log_probs);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $labels (`weight` `(` $weight^ `)`)?
    (`ignore_index` `=` $ignore_index^)? (`reduction` `=` $reduction^)?
    (`log_probs` $log_probs^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def QOpt_RotaryOp : QOpt_Op<"rotary", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "rotary position embedding (RoPE)";
  let description = [{
    Rotates pairs of features of `input` `[…, D]` by the angles whose
    cosines and sines `cos` and `sin` hold (`[…, R]`, `R` even and at most
    `D`): on the first `R` features

    ```
    y = x · cos + rotate(x) · sin
    rotate(x)[d] = -x[d + R/2] (d < R/2),  x[d - R/2] (d ≥ R/2)   (halves: Llama, NeoX)
    rotate(x)[2i] = -x[2i + 1],  rotate(x)[2i + 1] = x[2i]        (interleaved: GPT-J)
    ```

    and `y = x` on the features from `R` on (partial rotary). `cos` and
    `sin` have the input's rank; each of their other dimensions is the
    input's or 1 (broadcast). This is Hugging Face's `apply_rotary_pos_emb`
    (`q * cos + rotate_half(q) * sin`, with `cos`/`sin` of the full width)
    and ONNX `RotaryEmbedding` (opset 23, whose half-width caches the
    converter expands); `qopt-raise-onnx` raises the decomposed form.
    Rotations (QuaRot) and attention fusion find the positions here.

    ```mlir
    %q2 = qopt.rotary %q, %cos, %sin
        : tensor<?x32x?x128xf32>, tensor<?x1x?x128xf32>, tensor<?x1x?x128xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$input, QOpt_FloatTensor:$cos,
                       QOpt_FloatTensor:$sin, UnitAttr:$interleaved);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $cos `,` $sin (`interleaved` $interleaved^)? attr-dict `:`
    type($input) `,` type($cos) `,` type($sin)
  }];
  let hasVerifier = 1;
}

def QOpt_ResidualAddOp : QOpt_Op<"residual_add", [Pure,
    AllTypesMatch<["stream", "update", "result"]>]> {
  let summary = "a sublayer's output added to the residual stream";
  let description = [{
    `y = stream + update`, elementwise, where `stream` is the transformer's
    residual stream and `update` the output of a sublayer (attention,
    MLP). An add like any other, marked so that passes find the residual
    stream: rotations (QuaRot, HALO) rotate it and fold the rotation into
    the layers that read and write it, smoothing and outlier methods
    follow it. `module` is the path of the layer that produced `update`
    (its output projection). `qopt-raise-onnx` raises an `Add` of a linear
    layer's output to a value a norm reads or produced, or to another
    residual add.

    ```mlir
    %h1 = qopt.residual_add %h0, %o module "model.layers.0.self_attn.o_proj"
        : tensor<?x?x4096xf32>
    ```
  }];
  let arguments = (ins QOpt_FloatTensor:$stream, QOpt_FloatTensor:$update,
                       OptionalAttr<StrAttr>:$module);
  let results = (outs QOpt_FloatTensor:$result);
  let assemblyFormat = [{
    $stream `,` $update (`module` $module^)? attr-dict `:` type($result)
  }];
}

#endif // QOPT_DIALECT_QOPT_IR_QOPTOPS_TD
