//===- QOptAttrs.td - QOpt attributes ----------------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_QOPT_IR_QOPTATTRS_TD
#define QOPT_DIALECT_QOPT_IR_QOPTATTRS_TD

include "qopt/Dialect/QOpt/IR/QOptDialect.td"
include "qopt/Dialect/QOpt/IR/QOptInterfaces.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"

class QOpt_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<QOpt_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def QOpt_LoRAScaling : I32EnumAttr<"LoRAScaling",
    "how the adapter output is scaled from alpha and the rank r", [
      I32EnumAttrCase<"Standard", 0, "standard">,
      I32EnumAttrCase<"RsLoRA", 1, "rslora">
    ]> {
  let cppNamespace = "::mlir::qopt";
  let genSpecializedAttr = 0;
}
def QOpt_LoRAScalingAttr : EnumAttr<QOpt_Dialect, QOpt_LoRAScaling,
                                    "lora_scaling"> {
  let assemblyFormat = "$value";
}

//===----------------------------------------------------------------------===//
// Quantization formats
//===----------------------------------------------------------------------===//

def QOpt_IntFormatAttr : QOpt_Attr<"IntFormat", "int",
    [DeclareAttrInterfaceMethods<QOpt_QuantFormatAttrInterface,
                                 ["hasZeroPoint"]>]> {
  let summary = "k-bit integer format (k = 2…8), signed or unsigned, with or "
                "without zero point";
  let description = [{
    Codes are integers `q` in `[qmin, qmax]`: `[-2^(k-1), 2^(k-1)-1]` when
    signed, `[0, 2^k-1]` when unsigned. A value is `x = (q - zp) · s`.

    * Symmetric (no `zero_point`): `zp = 0`; quantizing picks
      `s = absmax / (2^(k-1) - 1)` (signed) or `s = max / (2^k - 1)`
      (unsigned, for non-negative data), and `q = clamp(round(x / s))` with
      round-half-to-even. The most negative signed code is representable but
      never produced by symmetric quantization, as in PyTorch and GPTQ.
    * With `zero_point`: `s = (max - min) / (qmax - qmin)`,
      `zp = clamp(round(qmin - min / s))`; every group carries an integer zero
      point stored one per byte.

    Storage packs `k` bits per element, little-endian within each row of the
    innermost dimension (for `k = 4`, the first element is the low nibble, as
    in ONNX `int4` and `MatMulNBits`).

    ```mlir
    #qopt.int<8>                       // signed, symmetric (int8)
    #qopt.int<4, unsigned, zero_point> // uint4 with zero points (GPTQ/AWQ)
    #qopt.int<2>                       // ternary-like signed 2-bit
    ```
  }];
  let parameters = (ins "unsigned":$bits, "bool":$isSigned, "bool":$zeroPoint);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Smallest and largest code.
    int64_t getQMin() const;
    int64_t getQMax() const;
  }];
}

def QOpt_NF4FormatAttr : QOpt_Attr<"NF4Format", "nf4",
    [DeclareAttrInterfaceMethods<QOpt_QuantFormatAttrInterface>]> {
  let summary = "4-bit NormalFloat (QLoRA) codebook";
  let description = [{
    The 16 code values of QLoRA's NormalFloat4, quantiles of a standard
    normal distribution normalised to `[-1, 1]` with an exact zero
    (Dettmers et al., 2023, appendix E; identical to bitsandbytes'
    `nf4` table):

    ```
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
    0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0
    ```

    A value is `x = code[q] · s` with `s` the absolute maximum of its block;
    quantizing picks the nearest code (ties to the lower index). The block
    size is given by the granularity, usually `#qopt.per_block<64>`.

    ```mlir
    !qopt.qtensor<4096x4096, #qopt.nf4, #qopt.per_block<64>, scales = f32>
    ```
  }];
}

def QOpt_BnbFP4FormatAttr : QOpt_Attr<"BnbFP4Format", "bnb_fp4",
    [DeclareAttrInterfaceMethods<QOpt_QuantFormatAttrInterface>]> {
  let summary = "bitsandbytes' 4-bit float codebook (quant_type=\"fp4\")";
  let description = [{
    The 16 code values of bitsandbytes' FP4, in its index order:

    ```
    0, 0.0052083, 0.6666667, 1, 0.3333333, 0.5, 0.1666667, 0.25,
    -0 (index 8), -0.0052083, -0.6666667, -1, -0.3333333, -0.5, -0.1666667, -0.25
    ```

    Not OCP's E2M1 (`#qopt.float<f4E2M1FN>`): the magnitudes are E2M1's
    divided by 6 except the subnormal (1/192 instead of 1/12), and bit 3 is
    the sign. A value is `x = code[q] · s` with `s` the absolute maximum of
    its block; quantizing picks the nearest code. What QLoRA checkpoints
    saved with `bnb_4bit_quant_type="fp4"` hold.

    ```mlir
    !qopt.qtensor<4096x4096, #qopt.bnb_fp4, #qopt.per_block<64>, scales = f32>
    ```
  }];
}

def QOpt_Dynamic8FormatAttr : QOpt_Attr<"Dynamic8Format", "dynamic8",
    [DeclareAttrInterfaceMethods<QOpt_QuantFormatAttrInterface>]> {
  let summary = "bitsandbytes' signed 8-bit dynamic codebook";
  let description = [{
    The 256 ascending values of bitsandbytes' `create_dynamic_map()`, from
    -0.99296875 to 1: a sign, a run of zero bits that sets the exponent
    (down to 1e-7) and linear fraction bits after it. A value is
    `x = code[q] · s` with `s` the absolute maximum of its block
    (bitsandbytes' `quantize_blockwise`). QLoRA's double quantization
    stores the 4-bit blocks' scales in it, in blocks of 256, after
    subtracting their mean (the quantized tensor's `offset`).

    ```mlir
    !qopt.qtensor<4096x4096, #qopt.nf4, #qopt.per_block<64>,
        scales = !qopt.qtensor<262144, #qopt.dynamic8, #qopt.per_block<256>,
                               scales = f32, offset>>
    ```
  }];
}

def QOpt_FloatFormatAttr : QOpt_Attr<"FloatFormat", "float",
    [DeclareAttrInterfaceMethods<QOpt_QuantFormatAttrInterface>]> {
  let summary = "low-precision floating-point format (FP8 E4M3/E5M2, FP4 E2M1)";
  let description = [{
    Elements are stored in one of the builtin small float types
    `f8E4M3FN` (max 448), `f8E5M2` (max 57344) or `f4E2M1FN` (max 6).
    A value is `x = decode(q) · s`; quantizing divides by the scale and
    rounds to the nearest representable value (ties to even), saturating at
    the format's maximum.

    With `f4E2M1FN` and a `per_group`/`per_block` granularity of 32 and
    `f8E8M0FNU` scales this is OCP MXFP4; with blocks of 16 and `f8E4M3FN`
    scales that are themselves scaled per tensor (a nested `!qopt.qtensor`),
    NVFP4.

    ```mlir
    #qopt.float<f8E4M3FN>
    #qopt.float<f4E2M1FN>
    ```
  }];
  let parameters = (ins "::mlir::Type":$type);
  let assemblyFormat = "`<` $type `>`";
  let genVerifyDecl = 1;
}

//===----------------------------------------------------------------------===//
// Granularities
//===----------------------------------------------------------------------===//

def QOpt_PerTensorAttr : QOpt_Attr<"PerTensor", "per_tensor",
    [DeclareAttrInterfaceMethods<QOpt_GranularityAttrInterface>]> {
  let summary = "one scale for the whole tensor";
  let description = [{
    Scales have shape `[]` (a rank-0 tensor).

    ```mlir
    #qopt.per_tensor
    ```
  }];
}

def QOpt_PerChannelAttr : QOpt_Attr<"PerChannel", "per_channel",
    [DeclareAttrInterfaceMethods<QOpt_GranularityAttrInterface>]> {
  let summary = "one scale per index along an axis";
  let description = [{
    Scales have shape `[d_axis]`, as ONNX per-axis and PyTorch per-channel
    quantization. For a linear weight `N×K`, `axis = 0` gives one scale per
    output feature.

    ```mlir
    #qopt.per_channel<0>
    ```
  }];
  let parameters = (ins "int64_t":$axis);
  let assemblyFormat = "`<` $axis `>`";
  let genVerifyDecl = 1;
}

def QOpt_PerGroupAttr : QOpt_Attr<"PerGroup", "per_group",
    [DeclareAttrInterfaceMethods<QOpt_GranularityAttrInterface>]> {
  let summary = "one scale per group of consecutive elements along an axis";
  let description = [{
    Elements are grouped by `size` consecutive indices along `axis`; the last
    group may be short. Scales keep the data's rank with dimension `axis`
    replaced by `ceil(d_axis / size)` (the layout of ONNX blocked
    quantization and `MatMulNBits`). For a linear weight `N×K`, `axis = 1`
    groups along the reduction dimension, as GPTQ and AWQ do.

    ```mlir
    #qopt.per_group<axis = 1, size = 128>
    ```
  }];
  let parameters = (ins "int64_t":$axis, "int64_t":$size);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def QOpt_PerBlockAttr : QOpt_Attr<"PerBlock", "per_block",
    [DeclareAttrInterfaceMethods<QOpt_GranularityAttrInterface>]> {
  let summary = "one scale per block of consecutive elements of the "
                "flattened tensor";
  let description = [{
    The tensor is flattened in row-major order and cut into blocks of `size`
    elements (the last may be short): scales have shape
    `[ceil(numel / size)]`. This is bitsandbytes' blockwise layout (QLoRA
    uses 64 for NF4 data and 256 for double-quantized scales). When `size`
    divides the innermost dimension it equals `per_group` along that axis.

    ```mlir
    #qopt.per_block<64>
    ```
  }];
  let parameters = (ins "int64_t":$size);
  let assemblyFormat = "`<` $size `>`";
  let genVerifyDecl = 1;
}

def QOpt_PerTokenAttr : QOpt_Attr<"PerToken", "per_token",
    [DeclareAttrInterfaceMethods<QOpt_GranularityAttrInterface>]> {
  let summary = "one scale per row of the innermost dimension (per token)";
  let description = [{
    For activations `[batch, seq, hidden]`: one scale per token, i.e. scales
    of shape `[batch, seq]` (all dimensions but the last). Such scales are
    usually computed at run time from the activation itself.

    ```mlir
    #qopt.per_token
    ```
  }];
}

//===----------------------------------------------------------------------===//
// Parameter data
//===----------------------------------------------------------------------===//

def QOpt_ExternalDataAttr : QOpt_Attr<"ExternalData", "external"> {
  let summary = "parameter data stored in a file beside the model";
  let description = [{
    `length` bytes at byte `offset` of `location`, a path relative to the
    folder of the model (or of the IR file). The bytes are the parameter's
    elements in row-major order, little-endian, in the parameter's element
    type. Large weights stay in their file (safetensors, ONNX external
    data): they never pass through IR text.

    Paths that could leave the model's folder (absolute, or with a `..`
    component) are refused.

    ```mlir
    #qopt.external<"model.safetensors", offset = 1024, length = 33554432>
    ```
  }];
  let parameters = (ins StringRefParameter<"relative file path">:$location,
                        "uint64_t":$offset, "uint64_t":$length);
  let assemblyFormat = [{
    `<` $location `,` `offset` `=` $offset `,` `length` `=` $length `>`
  }];
  let genVerifyDecl = 1;
}

#endif // QOPT_DIALECT_QOPT_IR_QOPTATTRS_TD
