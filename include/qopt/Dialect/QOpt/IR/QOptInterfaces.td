//===- QOptInterfaces.td - QOpt interfaces -----------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_QOPT_IR_QOPTINTERFACES_TD
#define QOPT_DIALECT_QOPT_IR_QOPTINTERFACES_TD

include "mlir/IR/OpBase.td"

def QOpt_QuantFormatAttrInterface : AttrInterface<"QuantFormatAttrInterface"> {
  let cppNamespace = "::mlir::qopt";
  let description = [{
    A number format that values are quantized to: how many bits one element
    takes in storage, whether a zero point comes with each scale, and the
    range of representable codes once divided by the scale.
  }];
  let methods = [
    InterfaceMethod<"Bits one element takes in packed storage.",
      "unsigned", "getStorageBits">,
    InterfaceMethod<"Whether each scale comes with an integer zero point.",
      "bool", "hasZeroPoint", (ins), [{}], [{ return false; }]>,
    InterfaceMethod<[{The largest magnitude a code represents (before the
      scale is applied): the scale of a group is its absolute maximum divided
      by this.}],
      "double", "getMaxRepresentable">,
  ];
}

def QOpt_GranularityAttrInterface : AttrInterface<"GranularityAttrInterface"> {
  let cppNamespace = "::mlir::qopt";
  let description = [{
    How scales (and zero points) are shared over the elements of a tensor.
    Gives the shape of the scale tensor for a given data shape.
  }];
  let methods = [
    InterfaceMethod<[{
        Shape of the scales for data of shape `shape` (dynamic dims allowed).
        Emits an error through `emitError` (when given) and fails when the
        granularity does not apply to that shape.
      }],
      "::mlir::FailureOr<::llvm::SmallVector<int64_t>>", "getScaleShape",
      (ins "::llvm::ArrayRef<int64_t>":$shape,
           "::llvm::function_ref<::mlir::InFlightDiagnostic()>":$emitError)>,
  ];
}

def QOpt_LinearLikeOpInterface : OpInterface<"LinearLikeOpInterface"> {
  let cppNamespace = "::mlir::qopt";
  let description = [{
    An op computing `x · Wᵀ (+ b)` possibly with more terms: what weight
    quantization and adapter passes match on, whatever the op.
  }];
  let methods = [
    InterfaceMethod<"The activation operand `x`.", "::mlir::Value", "getInput">,
    InterfaceMethod<"The weight `W` (N×K; a tensor or a `!qopt.qtensor`).",
      "::mlir::Value", "getWeight">,
    InterfaceMethod<"The bias `b`, or null.", "::mlir::Value", "getBias">,
    InterfaceMethod<[{The layer's module path (`model.layers.0.mlp.up_proj`),
      or null when the model does not say.}], "::mlir::StringAttr",
      "getModuleAttr">,
  ];
}

#endif // QOPT_DIALECT_QOPT_IR_QOPTINTERFACES_TD
