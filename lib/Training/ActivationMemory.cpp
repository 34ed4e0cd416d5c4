//===- ActivationMemory.cpp - Checkpointing and activation memory ---------===//
//
// Gradient checkpointing as a rewrite of the differentiated function (the
// forward's values the backward reads are recomputed per segment between
// checkpoints), and an estimate of the tensors a function holds at once.
//
//===----------------------------------------------------------------------===//

#include "qopt/Training/ActivationMemory.h"

#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "llvm/ADT/SetVector.h"

using namespace mlir;
using namespace mlir::qopt;

namespace {

/// Whether `use` reads its value: not an input of a linalg op whose body
/// ignores it (the adjoints' loops take every primal operand; the unused
/// ones are erased later).
bool isRead(OpOperand &use) {
  auto linalgOp = dyn_cast<linalg::LinalgOp>(use.getOwner());
  return !linalgOp || !linalgOp.isDpsInput(&use) ||
         !linalgOp.getMatchingBlockArgument(&use).use_empty();
}

/// The values of `block` that `op` reads: its operands and the values its
/// regions capture.
SmallVector<Value> readsOf(Operation *op, Block *block) {
  SmallVector<Value> reads;
  op->walk([&](Operation *nested) {
    for (OpOperand &use : nested->getOpOperands())
      if (use.get().getParentBlock() == block && isRead(use))
        reads.push_back(use.get());
  });
  return reads;
}

} // namespace

//===----------------------------------------------------------------------===//
// Gradient checkpointing
//===----------------------------------------------------------------------===//

unsigned mlir::qopt::recomputeSegments(func::FuncOp func,
                                       Operation *firstBackward) {
  Block *block = &func.getBody().front();
  // Segment of each forward op: the checkpoints before it.
  DenseMap<Operation *, unsigned> segment;
  SmallVector<Operation *> forward;
  unsigned checkpoints = 0;
  for (Operation &op : *block) {
    if (&op == firstBackward)
      break;
    segment[&op] = checkpoints;
    forward.push_back(&op);
    if (op.hasAttr(kCheckpointAttr))
      ++checkpoints;
  }
  if (!checkpoints)
    return 0;
  // Values never recomputed: checkpoints, constants, values read by other
  // segments, and everything of the last segment.
  DenseSet<Value> kept;
  for (Operation *op : forward) {
    if (op->hasAttr(kCheckpointAttr) || op->hasTrait<OpTrait::ConstantLike>() ||
        segment[op] == checkpoints)
      kept.insert(op->result_begin(), op->result_end());
    for (Value v : readsOf(op, block))
      if (Operation *def = v.getDefiningOp())
        if (segment[def] != segment[op])
          kept.insert(v);
  }
  auto recomputable = [&](Value v) {
    Operation *def = v.getDefiningOp();
    return def && def->getBlock() == block && segment.contains(def) &&
           !kept.contains(v);
  };

  // The backward's ops with the forward values each reads, and per
  // segment all the values the backward reads.
  SmallVector<std::pair<Operation *, SmallVector<Value>>> backward;
  DenseMap<unsigned, SmallVector<Value>> wanted;
  for (Operation *op = firstBackward; op; op = op->getNextNode()) {
    SmallVector<Value> reads;
    for (Value v : readsOf(op, block))
      if (recomputable(v)) {
        reads.push_back(v);
        wanted[segment[v.getDefiningOp()]].push_back(v);
      }
    backward.push_back({op, std::move(reads)});
  }

  OpBuilder b(func.getContext());
  DenseMap<unsigned, IRMapping> recomputed;
  unsigned cloned = 0;
  for (auto &[op, reads] : backward) {
    // Materializes each segment this op is the first to read.
    for (Value v : reads) {
      unsigned s = segment[v.getDefiningOp()];
      if (recomputed.contains(s))
        continue;
      // The segment's ops the wanted values depend on, in forward order.
      llvm::SetVector<Operation *> needed;
      SmallVector<Value> work(wanted[s]);
      while (!work.empty()) {
        Value w = work.pop_back_val();
        if (!recomputable(w) || !needed.insert(w.getDefiningOp()))
          continue;
        llvm::append_range(work, readsOf(w.getDefiningOp(), block));
      }
      SmallVector<Operation *> ordered = needed.takeVector();
      llvm::sort(ordered, [](Operation *x, Operation *y) {
        return x->isBeforeInBlock(y);
      });
      IRMapping &mapping = recomputed[s];
      b.setInsertionPoint(op);
      for (Operation *def : ordered) {
        Operation *clone = b.clone(*def, mapping);
        clone->setAttr(kRecomputedAttr, b.getUnitAttr());
        ++cloned;
      }
    }
    // Reads the recomputed values instead of the forward's.
    op->walk([&](Operation *nested) {
      for (OpOperand &use : nested->getOpOperands()) {
        if (use.get().getParentBlock() != block || !recomputable(use.get()))
          continue;
        auto it = recomputed.find(segment[use.get().getDefiningOp()]);
        if (it != recomputed.end())
          if (Value again = it->second.lookupOrNull(use.get()))
            use.set(again);
      }
    });
  }
  return cloned;
}

//===----------------------------------------------------------------------===//
// Activation memory
//===----------------------------------------------------------------------===//

namespace {

/// Concrete sizes of the tensors of one function, from the sizes of its
/// arguments' named dimensions.
class SizeEvaluator {
public:
  SizeEvaluator(func::FuncOp func, const llvm::StringMap<int64_t> &sizes)
      : func(func), sizes(sizes) {}

  /// `v`'s shape; failure after an error on the op that cannot be sized.
  FailureOr<SmallVector<int64_t>> shapeOf(Value v);
  FailureOr<int64_t> valueOf(Value v);

private:
  FailureOr<SmallVector<int64_t>> computeShape(Value v);
  FailureOr<int64_t> computeValue(Value v);
  FailureOr<SmallVector<int64_t>> mixed(ArrayRef<OpFoldResult> sizes);
  /// Element `i` of a 1-D integer tensor built from scalars or constants;
  /// none when it is not built that way.
  std::optional<FailureOr<int64_t>> elementOf(Value tensor, int64_t i);

  func::FuncOp func;
  const llvm::StringMap<int64_t> &sizes;
  DenseMap<Value, SmallVector<int64_t>> shapes;
  DenseMap<Value, int64_t> values;
  /// The loop body being evaluated by elementOf, and its index.
  Region *loopRegion = nullptr;
  int64_t loopIndex = 0;
};

FailureOr<SmallVector<int64_t>> SizeEvaluator::shapeOf(Value v) {
  auto it = shapes.find(v);
  if (it != shapes.end())
    return it->second;
  FailureOr<SmallVector<int64_t>> shape = computeShape(v);
  if (succeeded(shape))
    shapes[v] = *shape;
  return shape;
}

FailureOr<int64_t> SizeEvaluator::valueOf(Value v) {
  if (loopRegion && v.getParentRegion() == loopRegion)
    return computeValue(v); // depends on the loop index: not kept
  auto it = values.find(v);
  if (it != values.end())
    return it->second;
  FailureOr<int64_t> value = computeValue(v);
  if (succeeded(value))
    values[v] = *value;
  return value;
}

FailureOr<SmallVector<int64_t>>
SizeEvaluator::mixed(ArrayRef<OpFoldResult> list) {
  SmallVector<int64_t> out;
  for (OpFoldResult size : list) {
    if (std::optional<int64_t> c = getConstantIntValue(size)) {
      out.push_back(*c);
      continue;
    }
    FailureOr<int64_t> value = valueOf(cast<Value>(size));
    if (failed(value))
      return failure();
    out.push_back(*value);
  }
  return out;
}

std::optional<FailureOr<int64_t>> SizeEvaluator::elementOf(Value tensor,
                                                           int64_t i) {
  Operation *def = tensor.getDefiningOp();
  if (!def || i < 0)
    return std::nullopt;
  if (auto elements = dyn_cast<tensor::FromElementsOp>(def)) {
    if (i >= (int64_t)elements.getElements().size())
      return std::nullopt;
    return valueOf(elements.getElements()[i]);
  }
  DenseIntElementsAttr dense;
  if (matchPattern(tensor, m_Constant(&dense))) {
    if (dense.getType().getRank() > 1 || i >= dense.getNumElements())
      return std::nullopt;
    return dense.getValues<APInt>()[i].getSExtValue();
  }
  if (auto castOp = dyn_cast<tensor::CastOp>(def))
    return elementOf(castOp.getSource(), i);
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    if (slice.getSourceType().getRank() != 1 ||
        slice.getResultType().getRank() != 1)
      return std::nullopt;
    FailureOr<SmallVector<int64_t>> offset = mixed(slice.getMixedOffsets());
    FailureOr<SmallVector<int64_t>> stride = mixed(slice.getMixedStrides());
    if (failed(offset) || failed(stride))
      return FailureOr<int64_t>(failure());
    return elementOf(slice.getSource(), (*offset)[0] + i * (*stride)[0]);
  }
  if (auto fill = dyn_cast<linalg::FillOp>(def))
    return valueOf(fill.value());
  if (auto generic = dyn_cast<linalg::GenericOp>(def)) {
    // A 1-D loop of no inputs (a gather or fill of shape entries): its
    // body evaluated at index i.
    if (generic.getNumDpsInputs() != 0 || generic.getNumLoops() != 1)
      return std::nullopt;
    Value yielded = generic.getBody()->getTerminator()->getOperand(
        cast<OpResult>(tensor).getResultNumber());
    auto saved = std::make_pair(loopRegion, loopIndex);
    loopRegion = &generic.getRegion();
    loopIndex = i;
    FailureOr<int64_t> element = valueOf(yielded);
    std::tie(loopRegion, loopIndex) = saved;
    return element;
  }
  if (auto concat = dyn_cast<tensor::ConcatOp>(def)) {
    if (concat.getDim() != 0 || concat.getResultType().getRank() != 1)
      return std::nullopt;
    for (Value part : concat.getInputs()) {
      int64_t n = cast<RankedTensorType>(part.getType()).getDimSize(0);
      if (ShapedType::isDynamic(n))
        return std::nullopt;
      if (i < n)
        return elementOf(part, i);
      i -= n;
    }
  }
  return std::nullopt;
}

FailureOr<SmallVector<int64_t>> SizeEvaluator::computeShape(Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.hasStaticShape())
    return SmallVector<int64_t>(type.getShape());
  if (auto arg = dyn_cast<BlockArgument>(v)) {
    if (arg.getOwner() != &func.getBody().front())
      return emitError(v.getLoc(), "activation memory: cannot size a block "
                                   "argument of a nested region");
    auto names = func.getArgAttrOfType<ArrayAttr>(
        arg.getArgNumber(), QOptDialect::DimNamesAttrHelper::getNameStr());
    SmallVector<int64_t> shape(type.getShape());
    for (auto [d, size] : llvm::enumerate(shape)) {
      if (!ShapedType::isDynamic(size))
        continue;
      StringRef name;
      if (names && d < names.size())
        if (auto s = dyn_cast<StringAttr>(names[d]))
          name = s.getValue();
      auto it = name.empty() ? sizes.end() : sizes.find(name);
      if (it == sizes.end())
        return func.emitError()
               << "activation memory: no size for dimension " << d
               << (name.empty() ? std::string(" (unnamed)")
                                : " '" + name.str() + "'")
               << " of argument " << arg.getArgNumber()
               << (name.empty() ? "" : " (give it as NAME=SIZE)");
      size = it->second;
    }
    return shape;
  }
  Operation *def = v.getDefiningOp();
  unsigned index = cast<OpResult>(v).getResultNumber();
  auto fail = [&]() -> FailureOr<SmallVector<int64_t>> {
    return def->emitError() << "activation memory: cannot size the result of '"
                            << def->getName() << "'";
  };
  if (auto dps = dyn_cast<DestinationStyleOpInterface>(def))
    return shapeOf(dps.getTiedOpOperand(cast<OpResult>(v))->get());
  // Ops a train step keeps whole for the CUDA kernel library, and their
  // gradients: shaped like their operands.
  if (isa<RMSNormOp, LayerNormOp>(def) || (isa<NormGradOp>(def) && index == 0))
    return shapeOf(def->getOperand(0));
  if (isa<NormGradOp>(def))
    return shapeOf(def->getOperand(1)); // gamma's
  if (isa<AttentionGradOp>(def))
    return shapeOf(def->getOperand(index)); // query's, key's, value's
  if (auto attention = dyn_cast<AttentionOp>(def)) {
    // [B, Hq, S] of the query, the value's head size.
    FailureOr<SmallVector<int64_t>> q = shapeOf(attention.getQuery()),
                                    value = shapeOf(attention.getValue());
    if (failed(q) || failed(value))
      return failure();
    (*q)[3] = (*value)[3];
    return *q;
  }
  if (auto empty = dyn_cast<tensor::EmptyOp>(def))
    return mixed(empty.getMixedSizes());
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    FailureOr<SmallVector<int64_t>> all = mixed(slice.getMixedSizes());
    if (failed(all))
      return failure();
    llvm::SmallBitVector dropped = slice.getDroppedDims();
    SmallVector<int64_t> shape;
    for (auto [d, size] : llvm::enumerate(*all))
      if (!dropped.test(d))
        shape.push_back(size);
    return shape;
  }
  if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def))
    return mixed(expand.getMixedOutputShape());
  if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(def)) {
    FailureOr<SmallVector<int64_t>> source = shapeOf(collapse.getSrc());
    if (failed(source))
      return failure();
    SmallVector<int64_t> shape;
    for (const ReassociationIndices &group :
         collapse.getReassociationIndices()) {
      int64_t n = 1;
      for (int64_t d : group)
        n *= (*source)[d];
      shape.push_back(n);
    }
    return shape;
  }
  if (auto castOp = dyn_cast<tensor::CastOp>(def))
    return shapeOf(castOp.getSource());
  if (auto reshape = dyn_cast<tensor::ReshapeOp>(def)) {
    // Sizes known from the type, the rest from the shape operand.
    SmallVector<int64_t> shape(type.getShape());
    for (auto [d, size] : llvm::enumerate(shape)) {
      if (!ShapedType::isDynamic(size))
        continue;
      std::optional<FailureOr<int64_t>> element =
          elementOf(reshape.getShape(), d);
      if (!element)
        return fail();
      if (failed(*element))
        return failure();
      size = **element;
    }
    return shape;
  }
  if (auto concat = dyn_cast<tensor::ConcatOp>(def)) {
    SmallVector<int64_t> shape;
    for (Value input : concat.getInputs()) {
      FailureOr<SmallVector<int64_t>> part = shapeOf(input);
      if (failed(part))
        return failure();
      if (shape.empty())
        shape = *part;
      else
        shape[concat.getDim()] += (*part)[concat.getDim()];
    }
    return shape;
  }
  if (auto pad = dyn_cast<tensor::PadOp>(def)) {
    FailureOr<SmallVector<int64_t>> source = shapeOf(pad.getSource());
    FailureOr<SmallVector<int64_t>> low = mixed(pad.getMixedLowPad());
    FailureOr<SmallVector<int64_t>> high = mixed(pad.getMixedHighPad());
    if (failed(source) || failed(low) || failed(high))
      return failure();
    SmallVector<int64_t> shape = *source;
    for (auto [d, size] : llvm::enumerate(shape))
      size += (*low)[d] + (*high)[d];
    return shape;
  }
  if (auto ifOp = dyn_cast<scf::IfOp>(def))
    return shapeOf(ifOp.thenYield().getOperand(index));
  if (auto generate = dyn_cast<tensor::GenerateOp>(def)) {
    SmallVector<int64_t> shape(type.getShape());
    auto extents = generate.getDynamicExtents().begin();
    for (int64_t &size : shape)
      if (ShapedType::isDynamic(size)) {
        FailureOr<int64_t> value = valueOf(*extents++);
        if (failed(value))
          return failure();
        size = *value;
      }
    return shape;
  }
  return fail();
}

FailureOr<int64_t> SizeEvaluator::computeValue(Value v) {
  if (std::optional<int64_t> c = getConstantIntValue(v))
    return *c;
  Operation *def = v.getDefiningOp();
  if (!def)
    return emitError(v.getLoc(), "activation memory: a size depends on a "
                                 "scalar argument");
  auto operand = [&](unsigned i) { return valueOf(def->getOperand(i)); };
  if (isa<linalg::IndexOp>(def) && def->getParentRegion() == loopRegion)
    return loopIndex;
  if (auto dim = dyn_cast<tensor::DimOp>(def)) {
    std::optional<int64_t> d = dim.getConstantIndex();
    FailureOr<SmallVector<int64_t>> shape = shapeOf(dim.getSource());
    if (!d || failed(shape))
      return failure();
    return (*shape)[*d];
  }
  if (isa<arith::IndexCastOp, arith::IndexCastUIOp, arith::ExtSIOp,
          arith::ExtUIOp, arith::TruncIOp>(def))
    return operand(0);
  if (def->getNumOperands() == 2 &&
      isa_and_nonnull<arith::ArithDialect>(def->getDialect())) {
    FailureOr<int64_t> x = operand(0), y = operand(1);
    if (failed(x) || failed(y))
      return failure();
    int64_t a = *x, c = *y;
    if (c == 0 && isa<arith::DivSIOp, arith::DivUIOp, arith::CeilDivSIOp,
                      arith::CeilDivUIOp, arith::FloorDivSIOp, arith::RemSIOp,
                      arith::RemUIOp>(def))
      return def->emitError("activation memory: a size divides by zero");
    if (isa<arith::AddIOp>(def))
      return a + c;
    if (isa<arith::SubIOp>(def))
      return a - c;
    if (isa<arith::MulIOp>(def))
      return a * c;
    if (isa<arith::DivSIOp, arith::DivUIOp>(def))
      return a / c;
    if (isa<arith::CeilDivSIOp, arith::CeilDivUIOp>(def))
      return llvm::divideCeilSigned(a, c);
    if (isa<arith::FloorDivSIOp>(def))
      return llvm::divideFloorSigned(a, c);
    if (isa<arith::RemSIOp, arith::RemUIOp>(def))
      return a % c;
    if (isa<arith::AndIOp>(def))
      return a & c;
    if (isa<arith::OrIOp>(def))
      return a | c;
    if (isa<arith::XOrIOp>(def))
      return a ^ c;
    if (isa<arith::MaxSIOp, arith::MaxUIOp>(def))
      return std::max(a, c);
    if (isa<arith::MinSIOp, arith::MinUIOp>(def))
      return std::min(a, c);
    if (auto cmp = dyn_cast<arith::CmpIOp>(def)) {
      switch (cmp.getPredicate()) {
      case arith::CmpIPredicate::eq:
        return int64_t(a == c);
      case arith::CmpIPredicate::ne:
        return int64_t(a != c);
      case arith::CmpIPredicate::slt:
      case arith::CmpIPredicate::ult:
        return int64_t(a < c);
      case arith::CmpIPredicate::sle:
      case arith::CmpIPredicate::ule:
        return int64_t(a <= c);
      case arith::CmpIPredicate::sgt:
      case arith::CmpIPredicate::ugt:
        return int64_t(a > c);
      case arith::CmpIPredicate::sge:
      case arith::CmpIPredicate::uge:
        return int64_t(a >= c);
      }
    }
  }
  if (auto select = dyn_cast<arith::SelectOp>(def)) {
    FailureOr<int64_t> cond = operand(0);
    if (failed(cond))
      return failure();
    return operand(*cond ? 1 : 2);
  }
  if (isa<affine::AffineApplyOp, affine::AffineMinOp, affine::AffineMaxOp>(
          def)) {
    AffineMap map = isa<affine::AffineApplyOp>(def)
                        ? cast<affine::AffineApplyOp>(def).getAffineMap()
                    : isa<affine::AffineMinOp>(def)
                        ? cast<affine::AffineMinOp>(def).getAffineMap()
                        : cast<affine::AffineMaxOp>(def).getAffineMap();
    SmallVector<Attribute> inputs;
    Builder b(def->getContext());
    for (Value o : def->getOperands()) {
      FailureOr<int64_t> x = valueOf(o);
      if (failed(x))
        return failure();
      inputs.push_back(b.getIndexAttr(*x));
    }
    SmallVector<Attribute> results;
    if (failed(map.constantFold(inputs, results)) || results.empty())
      return def->emitError("activation memory: cannot evaluate this map");
    SmallVector<int64_t> ints;
    for (Attribute r : results)
      ints.push_back(cast<IntegerAttr>(r).getInt());
    if (isa<affine::AffineMinOp>(def))
      return *llvm::min_element(ints);
    if (isa<affine::AffineMaxOp>(def))
      return *llvm::max_element(ints);
    return ints.front();
  }
  if (auto extract = dyn_cast<tensor::ExtractOp>(def)) {
    if (extract.getIndices().size() <= 1) {
      int64_t i = 0;
      if (!extract.getIndices().empty()) {
        FailureOr<int64_t> at = valueOf(extract.getIndices()[0]);
        if (failed(at))
          return failure();
        i = *at;
      }
      if (std::optional<FailureOr<int64_t>> element =
              elementOf(extract.getTensor(), i))
        return *element;
    }
  }
  return def->emitError() << "activation memory: cannot evaluate a size "
                             "computed by '"
                          << def->getName() << "'";
}

/// Whether `op`'s tensor result shares its buffer with operand 0 (a view).
bool isView(Operation *op) {
  return isa<tensor::ExtractSliceOp, tensor::ExpandShapeOp,
             tensor::CollapseShapeOp, tensor::CastOp, tensor::ReshapeOp,
             tensor::BitcastOp>(op);
}

} // namespace

FailureOr<ActivationMemory>
mlir::qopt::estimateActivationMemory(func::FuncOp func,
                                     Operation *firstBackward,
                                     const llvm::StringMap<int64_t> &sizes) {
  Block *block = &func.getBody().front();
  SizeEvaluator evaluator(func, sizes);
  struct Buffer {
    uint64_t bytes;
    unsigned def, last;
  };
  SmallVector<Buffer> buffers;
  DenseMap<Value, unsigned> bufferOf;
  DenseSet<Value> empty;
  SmallVector<Operation *> order;
  unsigned boundary = ~0u;
  for (Operation &op : *block) {
    unsigned at = order.size();
    order.push_back(&op);
    if (&op == firstBackward)
      boundary = at;
    for (Value v : readsOf(&op, block)) {
      auto it = bufferOf.find(v);
      if (it != bufferOf.end())
        buffers[it->second].last = at;
    }
    for (OpResult r : op.getResults()) {
      auto type = dyn_cast<RankedTensorType>(r.getType());
      if (!type || op.hasTrait<OpTrait::ConstantLike>())
        continue;
      if (isa<tensor::EmptyOp>(op)) {
        empty.insert(r); // allocated by the op that writes into it
        continue;
      }
      Value source;
      bool written = false;
      if (auto dps = dyn_cast<DestinationStyleOpInterface>(&op)) {
        source = dps.getTiedOpOperand(r)->get();
        written = true;
      } else if (isView(&op)) {
        source = op.getOperand(0);
      }
      if (source) {
        if (empty.contains(source) && !written) {
          empty.insert(r); // a view of a tensor.empty
          continue;
        }
        auto it = bufferOf.find(source);
        if (it != bufferOf.end()) {
          bufferOf[r] = it->second; // in place
          continue;
        }
        // A view of an argument or a constant is not counted; writing
        // into a tensor.empty, an argument or a constant allocates.
        if (!written)
          continue;
      }
      FailureOr<SmallVector<int64_t>> shape = evaluator.shapeOf(r);
      if (failed(shape))
        return failure();
      uint64_t elements = 1;
      for (int64_t size : *shape)
        elements *= (uint64_t)std::max<int64_t>(size, 0);
      uint64_t bits = type.getElementType().isIntOrFloat()
                          ? type.getElementType().getIntOrFloatBitWidth()
                          : 64;
      bufferOf[r] = buffers.size();
      buffers.push_back({elements * ((bits + 7) / 8), at, at});
    }
  }
  // Bytes alive at each op: +bytes at the definition, -bytes after the
  // last use.
  SmallVector<int64_t> delta(order.size() + 1, 0);
  ActivationMemory result;
  for (const Buffer &buffer : buffers) {
    delta[buffer.def] += buffer.bytes;
    delta[buffer.last + 1] -= buffer.bytes;
    if (buffer.def < boundary && buffer.last >= boundary && boundary != ~0u)
      result.keptBytes += buffer.bytes;
  }
  int64_t live = 0;
  for (auto [i, op] : llvm::enumerate(order)) {
    live += delta[i];
    if ((uint64_t)live > result.peakBytes) {
      result.peakBytes = live;
      result.peakOp = op;
    }
  }
  return result;
}
