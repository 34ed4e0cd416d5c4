//===- ListModules.cpp - Print the linear layers and their module paths ---===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"

#include "llvm/Support/raw_ostream.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTLISTMODULESPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

/// The weight's shape (rows x columns) and element type or format.
void printWeight(llvm::raw_ostream &os, Type w) {
  if (auto q = dyn_cast<QTensorType>(w)) {
    os << '\t' << q.getShape()[0] << 'x' << q.getShape()[1] << "\tquantized "
       << q.getFormat() << ' ' << q.getGranularity();
    return;
  }
  auto t = cast<RankedTensorType>(w);
  os << '\t' << t.getDimSize(0) << 'x' << t.getDimSize(1) << '\t'
     << t.getElementType();
}

struct QOptListModulesPass
    : mlir::qopt::impl::QOptListModulesPassBase<QOptListModulesPass> {
  using Base::Base;
  void runOnOperation() override {
    std::vector<LinearLayer> layers = collectLinearLayers(getOperation());
    std::optional<LoraTargets> targets;
    if (!targetModules.empty()) {
      llvm::Expected<LoraTargets> t = LoraTargets::create(
          selectionFromOptions(targetModules, excludeModules, layersToTransform,
                               layersPattern),
          layers);
      if (!t) {
        mlir::emitError(getOperation().getLoc())
            << "qopt-list-modules: " << llvm::toString(t.takeError());
        return signalPassFailure();
      }
      targets = std::move(*t);
    }
    llvm::raw_ostream &os = llvm::outs();
    os << "# module\top\tshape (out x in)\tweight\tnote\n";
    // Embeddings (PEFT's lora.Embedding targets): the table is V x D.
    for (const LinearLayer &layer : collectEmbeddingLayers(getOperation())) {
      os << (layer.name.empty() ? "<unnamed>" : layer.name) << '\t';
      if (auto lora = dyn_cast<LoRAEmbeddingOp>(layer.op))
        os << "lora_embedding r=" << lora.getRank();
      else
        os << "embedding";
      Type w = layer.op->getOperand(1).getType();
      printWeight(os, w);
      SmallVector<StringRef> notes = {"table: num_embeddings x dim"};
      if (targets && targets->matchesEmbedding(layer.name))
        notes.push_back("targeted");
      os << '\t' << llvm::join(notes, ", ") << '\n';
    }
    for (const LinearLayer &layer : layers) {
      auto op = cast<LinearLikeOpInterface>(layer.op);
      os << (layer.name.empty() ? "<unnamed>" : layer.name) << '\t';
      if (auto lora = dyn_cast<LoRAOp>(layer.op))
        os << "lora r=" << lora.getRank();
      else
        os << "linear";
      Type w = op.getWeight().getType();
      printWeight(os, w);
      SmallVector<StringRef> notes;
      if (layer.outputHead)
        notes.push_back("output head");
      if (targets && targets->matches(layer.name))
        notes.push_back("targeted");
      os << '\t' << llvm::join(notes, ", ") << '\n';
    }
    os.flush();
    markAllAnalysesPreserved();
  }
};

} // namespace
