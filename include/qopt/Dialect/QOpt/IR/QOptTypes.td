//===- QOptTypes.td - QOpt types ---------------------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_QOPT_IR_QOPTTYPES_TD
#define QOPT_DIALECT_QOPT_IR_QOPTTYPES_TD

include "qopt/Dialect/QOpt/IR/QOptDialect.td"
include "qopt/Dialect/QOpt/IR/QOptInterfaces.td"
include "mlir/IR/AttrTypeBase.td"

def QOpt_QTensorType : TypeDef<QOpt_Dialect, "QTensor"> {
  let mnemonic = "qtensor";
  let summary = "quantized tensor: packed codes, scales (and zero points) "
                "with the logical shape";
  let description = [{
    A tensor of logical shape `shape` whose elements are stored as codes of
    `format`, sharing scales as `granularity` says. It stands for the
    following storage, which `qopt.assemble` and `qopt.disassemble` convert
    to and from:

    | part | type |
    |---|---|
    | data | `tensor<d0 x … x ceil(d_last · bits / 8) x i8>`: codes packed little-endian along the innermost dimension, each row padded to whole bytes |
    | scales | `tensor<S x scales>` with `S` the granularity's scale shape, or, when `scales` is itself a `!qopt.qtensor` of shape `S`, that quantized tensor (**double quantization**) |
    | zero points | `tensor<S x i8>`, one per scale, only if the format has zero points |
    | offset | `tensor<f32>`, only with `offset`: added to every dequantized value (QLoRA subtracts the mean of the scales before quantizing them) |

    Dequantized, element `i` is `x_i = (code(q_i) - zp_g) · s_g + offset`
    with `g` the group of `i`.

    ```mlir
    // QLoRA: NF4 in blocks of 64, the fp32 absmax quantized again to int8 in
    // blocks of 256 after subtracting their mean.
    !qopt.qtensor<4096x4096, #qopt.nf4, #qopt.per_block<64>,
        scales = !qopt.qtensor<262144, #qopt.int<8>, #qopt.per_block<256>,
                               scales = f32, offset>>
    // GPTQ-style uint4 with zero points, groups of 128 along K.
    !qopt.qtensor<4096x11008, #qopt.int<4, unsigned, zero_point>,
        #qopt.per_group<axis = 1, size = 128>, scales = f16>
    // MXFP4.
    !qopt.qtensor<?x4096, #qopt.float<f4E2M1FN>,
        #qopt.per_group<axis = 1, size = 32>, scales = f8E8M0FNU>
    ```
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t", "logical shape">:$shape,
    "::mlir::qopt::QuantFormatAttrInterface":$format,
    "::mlir::qopt::GranularityAttrInterface":$granularity,
    "::mlir::Type":$scaleType,
    "bool":$offset
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRank() const { return getShape().size(); }
    /// Shape of the scales (and zero points).
    ::llvm::SmallVector<int64_t> getScaleShape() const;
    /// `tensor<… x i8>` holding the packed codes.
    ::mlir::RankedTensorType getDataType() const;
    /// The scales' type: a ranked float tensor, or a nested `QTensorType`.
    ::mlir::Type getScalesType() const;
    /// `tensor<S x i8>` when the format has zero points, else null.
    ::mlir::RankedTensorType getZeroPointsType() const;
    /// `tensor<f32>` when the type has an offset, else null.
    ::mlir::RankedTensorType getOffsetType() const;
  }];
}

#endif // QOPT_DIALECT_QOPT_IR_QOPTTYPES_TD
