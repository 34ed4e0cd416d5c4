//===- RelayoutQuantizedWeights.cpp - QDQ weights as N×K qtensors ---------===//
//
// QDQ exports quantize MatMul weights K×N with scales per output column;
// a linear layer wants its quantized weight N×K. The codes are transposed
// once, at compile time, into a new parameter.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Transforms/RegionUtils.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTRELAYOUTQUANTIZEDWEIGHTSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

/// The quantized tensor a layer's weight operand is the transposed
/// dequantization of, when the pass can store it N×K: 2-D 8-bit codes read
/// from a parameter with data, plain scales per tensor or per column.
AssembleOp transposedQuantizedWeight(Value weight) {
  auto transpose = weight.getDefiningOp<linalg::TransposeOp>();
  if (!transpose || transpose.getPermutation() != ArrayRef<int64_t>{1, 0})
    return nullptr;
  auto dequantize = transpose.getInput().getDefiningOp<DequantizeOp>();
  if (!dequantize)
    return nullptr;
  auto assemble = dequantize.getInput().getDefiningOp<AssembleOp>();
  if (!assemble || !assemble.getData().getDefiningOp<LoadParamOp>())
    return nullptr;
  QTensorType type = assemble.getType();
  auto channel = dyn_cast<PerChannelAttr>(type.getGranularity());
  if (type.getRank() != 2 || type.getFormat().getStorageBits() != 8 ||
      isa<QTensorType>(type.getScaleType()) || type.getOffset() ||
      !(isa<PerTensorAttr>(type.getGranularity()) ||
        (channel && channel.getAxis() == 1)) ||
      llvm::any_of(type.getShape(), ShapedType::isDynamic))
    return nullptr;
  return assemble;
}

struct QOptRelayoutQuantizedWeightsPass
    : mlir::qopt::impl::QOptRelayoutQuantizedWeightsPassBase<
          QOptRelayoutQuantizedWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<Operation *> layers;
    module.walk([&](Operation *op) {
      if (isa<LinearOp, LoRAOp>(op))
        layers.push_back(op);
    });
    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    // One N×K weight per K×N one, however many layers share it.
    DenseMap<Operation *, Value> relaid;
    SmallVector<Operation *> maybeDead;
    for (Operation *layer : layers) {
      OpOperand &weight = isa<LinearOp>(layer)
                              ? cast<LinearOp>(layer).getWeightMutable()
                              : cast<LoRAOp>(layer).getWeightMutable();
      AssembleOp assemble = transposedQuantizedWeight(weight.get());
      if (!assemble)
        continue;
      Value &q = relaid[assemble];
      if (!q) {
        auto load = assemble.getData().getDefiningOp<LoadParamOp>();
        auto param = symbols.lookup<ParamOp>(load.getName());
        // Codes given at run time, or ones training writes: transposed per
        // run (a frozen copy would go stale).
        if (!param || !param.getInitialValue() || param.isMutable())
          continue;
        FailureOr<std::vector<char>> bytes = reader.readBytes(param, layer);
        if (failed(bytes))
          return signalPassFailure();
        QTensorType type = assemble.getType();
        int64_t k = type.getShape()[0], n = type.getShape()[1];
        auto path = layer->getAttrOfType<StringAttr>("module");
        std::string name =
            path ? path.str() + ".weight" : param.getSymName().str() + ".nk";
        auto codesType =
            RankedTensorType::get({n, k}, load.getType().getElementType());
        ParamOp nk =
            createParam(symbols, param.getLoc(), name, codesType,
                        /*trainable=*/false, [&](MutableArrayRef<char> out) {
                          for (int64_t r = 0; r < k; ++r)
                            for (int64_t c = 0; c < n; ++c)
                              out[c * k + r] = (*bytes)[r * n + c];
                        });
        if (!nk)
          return signalPassFailure();
        GranularityAttrInterface granularity = type.getGranularity();
        if (isa<PerChannelAttr>(granularity))
          granularity = PerChannelAttr::get(&getContext(), 0);
        auto nkType = QTensorType::get(&getContext(), {n, k}, type.getFormat(),
                                       granularity, type.getScaleType(), false);
        OpBuilder builder(assemble);
        builder.setInsertionPointAfter(assemble);
        Value codes = LoadParamOp::create(builder, load.getLoc(), codesType,
                                          nk.getSymName());
        q = AssembleOp::create(builder, assemble.getLoc(), nkType, codes,
                               assemble.getScales(), assemble.getZeroPoints(),
                               Value());
      }
      maybeDead.push_back(weight.get().getDefiningOp());
      weight.set(q);
    }
    // The K×N chain and codes, where nothing else reads them.
    eraseDeadOps(maybeDead, symbols);
  }
};

} // namespace
