//===- Autodiff.cpp - Reverse-mode differentiation of tensor programs -----===//
//
// The adjoint of a linalg op is derived from the op itself: for each input,
// a linalg.generic over the same loops recomputes the scalar body, runs
// reverse mode through it from the adjoints of the yielded values, and sums
// over the loops that input's indexing map drops. One rule thus covers
// elementwise ops, broadcasts, transposes, reductions and contractions; the
// data-movement ops of the tensor dialect have a rule each.
//
//===----------------------------------------------------------------------===//

#include "qopt/Training/Autodiff.h"

#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qopt;

namespace {

constexpr double kLn2 = 0.69314718055994530942;
constexpr double kPi = 3.14159265358979323846;

bool isFloatValue(Value v) {
  return isa<FloatType>(getElementTypeOrSelf(v.getType()));
}

Value floatConstant(OpBuilder &b, Location loc, Type type, double value) {
  return arith::ConstantOp::create(b, loc, b.getFloatAttr(type, value));
}

/// A tensor of `v`'s shape and element type (sizes read at run time where
/// dynamic) filled with zeros.
Value zerosLike(OpBuilder &b, Location loc, Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  Value empty = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, v), type.getElementType());
  Value zero = floatConstant(b, loc, type.getElementType(), 0.0);
  Value filled = linalg::FillOp::create(b, loc, zero, empty).getResult(0);
  if (filled.getType() != type)
    filled = tensor::CastOp::create(b, loc, type, filled);
  return filled;
}

/// `v`'s shape as a 1-D index tensor (tensor.reshape's shape operand).
Value shapeOf(OpBuilder &b, Location loc, Value v) {
  SmallVector<Value> sizes;
  for (OpFoldResult size : tensor::getMixedSizes(b, loc, v))
    sizes.push_back(getValueOrCreateConstantIndexOp(b, loc, size));
  if (sizes.empty())
    return arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(RankedTensorType::get({0}, b.getIndexType()),
                               ArrayRef<Attribute>{}));
  return tensor::FromElementsOp::create(b, loc, sizes);
}

/// lhs + rhs of one type, elementwise.
Value addTensors(OpBuilder &b, Location loc, Value lhs, Value rhs) {
  auto type = cast<RankedTensorType>(lhs.getType());
  AffineMap id = b.getMultiDimIdentityMap(type.getRank());
  Value init = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, lhs), type.getElementType());
  SmallVector<utils::IteratorType> iterators(type.getRank(),
                                             utils::IteratorType::parallel);
  auto add = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange{lhs, rhs}, ValueRange{init},
      ArrayRef<AffineMap>{id, id, id}, iterators,
      [](OpBuilder &nb, Location l, ValueRange args) {
        Value sum = arith::AddFOp::create(nb, l, args[0], args[1]);
        linalg::YieldOp::create(nb, l, sum);
      });
  Value result = add.getResult(0);
  if (result.getType() != type)
    result = tensor::CastOp::create(b, loc, type, result);
  return result;
}

/// `v` summed over consecutive groups of `factor` along dimension `pos`
/// (static, divisible): the adjoint of a per-group read.
Value sumGroups(OpBuilder &b, Location loc, Value v, unsigned pos,
                int64_t factor) {
  auto type = cast<RankedTensorType>(v.getType());
  int64_t rank = type.getRank();
  SmallVector<int64_t> shape(type.getShape());
  shape[pos] /= factor;
  shape.insert(shape.begin() + pos + 1, factor);
  SmallVector<OpFoldResult> expandedSizes = tensor::getMixedSizes(b, loc, v);
  expandedSizes[pos] = b.getIndexAttr(shape[pos]);
  expandedSizes.insert(expandedSizes.begin() + pos + 1, b.getIndexAttr(factor));
  SmallVector<ReassociationIndices> reassociation;
  for (int64_t d = 0, e = 0; d < rank; ++d) {
    ReassociationIndices group = {e++};
    if (d == (int64_t)pos)
      group.push_back(e++);
    reassociation.push_back(group);
  }
  Value expanded = tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get(shape, type.getElementType()), v,
      reassociation, expandedSizes);
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d <= rank; ++d) {
    bool summed = d == (int64_t)pos + 1;
    iterators.push_back(summed ? utils::IteratorType::reduction
                               : utils::IteratorType::parallel);
    if (!summed)
      outExprs.push_back(b.getAffineDimExpr(d));
  }
  SmallVector<OpFoldResult> outSizes(expandedSizes);
  outSizes.erase(outSizes.begin() + pos + 1);
  Value init = tensor::EmptyOp::create(b, loc, outSizes, type.getElementType());
  init = linalg::FillOp::create(
             b, loc, floatConstant(b, loc, type.getElementType(), 0.0), init)
             .getResult(0);
  AffineMap maps[] = {b.getMultiDimIdentityMap(rank + 1),
                      AffineMap::get(rank + 1, 0, outExprs, b.getContext())};
  return linalg::GenericOp::create(
             b, loc, init.getType(), expanded, init, maps, iterators,
             [](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(
                   nb, l, arith::AddFOp::create(nb, l, a[1], a[0]).getResult());
             })
      .getResult(0);
}

/// Reverse mode through the scalar ops of a loop body, cloned in `ops` (in
/// program order). `adj` holds the seeds and receives every adjoint; new
/// ops are built at `b`'s insertion point (after the clones).
class ScalarReverse {
public:
  ScalarReverse(OpBuilder &b, Location loc, Operation *owner,
                DenseMap<Value, Value> &adj)
      : b(b), loc(loc), owner(owner), adj(adj) {}

  void add(Value v, Value contribution) {
    if (!isFloatValue(v))
      return;
    Value &slot = adj[v];
    slot = slot ? arith::AddFOp::create(b, loc, slot, contribution).getResult()
                : contribution;
  }

  LogicalResult run(ArrayRef<Operation *> ops) {
    for (Operation *op : llvm::reverse(ops)) {
      if (op->getNumResults() != 1) {
        if (llvm::any_of(op->getResults(),
                         [&](Value r) { return adj.lookup(r); }))
          return owner->emitError()
                 << "no gradient rule for '" << op->getName()
                 << "' (several results) in the body of this op";
        continue;
      }
      Value g = adj.lookup(op->getResult(0));
      if (!g)
        continue;
      if (failed(visit(op, g)))
        return failure();
    }
    return success();
  }

private:
  Value cst(Value like, double value) {
    return floatConstant(b, loc, like.getType(), value);
  }
  Value mul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, loc, x, y); }
  Value neg(Value x) { return arith::NegFOp::create(b, loc, x); }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, loc, c, x, y);
  }
  Value cmp(arith::CmpFPredicate p, Value x, Value y) {
    return arith::CmpFOp::create(b, loc, p, x, y);
  }

  LogicalResult visit(Operation *op, Value g) {
    Value r = op->getResult(0);
    auto operand = [&](unsigned i) { return op->getOperand(i); };
    if (op->hasAttr(kNoGradientAttr) ||
        llvm::none_of(op->getOperands(), isFloatValue)) {
      // Detached, or a function of integers alone (sitofp, a bitcast of
      // bits): nothing to pass back.
    } else if (op->hasAttr(kStraightThroughAttr)) {
      // A quantizer's rounding: the straight-through estimator.
      add(operand(0), g);
    } else if (isa<arith::AddFOp>(op)) {
      add(operand(0), g);
      add(operand(1), g);
    } else if (isa<arith::SubFOp>(op)) {
      add(operand(0), g);
      add(operand(1), neg(g));
    } else if (isa<arith::MulFOp>(op)) {
      add(operand(0), mul(g, operand(1)));
      add(operand(1), mul(g, operand(0)));
    } else if (isa<arith::DivFOp>(op)) {
      Value gOverB = div(g, operand(1));
      add(operand(0), gOverB);
      add(operand(1), neg(mul(gOverB, r)));
    } else if (isa<arith::NegFOp>(op)) {
      add(operand(0), neg(g));
    } else if (isa<arith::MaximumFOp, arith::MaxNumFOp, arith::MinimumFOp,
                   arith::MinNumFOp>(op)) {
      // The whole adjoint goes to the operand that was chosen (the first
      // one on ties).
      bool isMax = isa<arith::MaximumFOp, arith::MaxNumFOp>(op);
      Value first =
          cmp(isMax ? arith::CmpFPredicate::OGE : arith::CmpFPredicate::OLE,
              operand(0), operand(1));
      Value zero = cst(g, 0.0);
      add(operand(0), select(first, g, zero));
      add(operand(1), select(first, zero, g));
    } else if (auto sel = dyn_cast<arith::SelectOp>(op)) {
      Value zero = cst(g, 0.0);
      add(sel.getTrueValue(), select(sel.getCondition(), g, zero));
      add(sel.getFalseValue(), select(sel.getCondition(), zero, g));
    } else if (isa<arith::ExtFOp>(op)) {
      add(operand(0), arith::TruncFOp::create(b, loc, operand(0).getType(), g));
    } else if (isa<arith::TruncFOp>(op)) {
      add(operand(0), arith::ExtFOp::create(b, loc, operand(0).getType(), g));
    } else if (isa<math::ExpOp>(op)) {
      add(operand(0), mul(g, r));
    } else if (isa<math::Exp2Op>(op)) {
      add(operand(0), mul(g, mul(r, cst(r, kLn2))));
    } else if (isa<math::ExpM1Op>(op)) {
      add(operand(0),
          mul(g, arith::AddFOp::create(b, loc, r, cst(r, 1.0)).getResult()));
    } else if (isa<math::LogOp>(op)) {
      add(operand(0), div(g, operand(0)));
    } else if (isa<math::Log1pOp>(op)) {
      add(operand(0),
          div(g, arith::AddFOp::create(b, loc, operand(0), cst(g, 1.0))));
    } else if (isa<math::Log2Op>(op)) {
      add(operand(0), div(g, mul(operand(0), cst(g, kLn2))));
    } else if (isa<math::SqrtOp>(op)) {
      add(operand(0), div(mul(g, cst(g, 0.5)), r));
    } else if (isa<math::RsqrtOp>(op)) {
      // d x^-1/2 = -1/2 x^-3/2 = -r / (2x)
      add(operand(0), neg(div(mul(mul(g, cst(g, 0.5)), r), operand(0))));
    } else if (isa<math::TanhOp>(op)) {
      Value oneMinusR2 = arith::SubFOp::create(b, loc, cst(r, 1.0), mul(r, r));
      add(operand(0), mul(g, oneMinusR2));
    } else if (isa<math::ErfOp>(op)) {
      Value x = operand(0);
      Value e = math::ExpOp::create(b, loc, neg(mul(x, x)));
      add(x, mul(g, mul(e, cst(g, 2.0 / std::sqrt(kPi)))));
    } else if (isa<math::SinOp>(op)) {
      add(operand(0), mul(g, math::CosOp::create(b, loc, operand(0))));
    } else if (isa<math::CosOp>(op)) {
      add(operand(0), neg(mul(g, math::SinOp::create(b, loc, operand(0)))));
    } else if (isa<math::PowFOp>(op)) {
      Value x = operand(0), y = operand(1);
      Value yMinus1 = arith::SubFOp::create(b, loc, y, cst(y, 1.0));
      add(x, mul(g, mul(y, math::PowFOp::create(b, loc, x, yMinus1))));
      if (adjWanted(y))
        add(y, mul(g, mul(r, math::LogOp::create(b, loc, x))));
    } else if (auto powi = dyn_cast<math::FPowIOp>(op)) {
      Value x = powi.getLhs(), n = powi.getRhs();
      Value one =
          arith::ConstantOp::create(b, loc, b.getIntegerAttr(n.getType(), 1));
      Value nMinus1 = arith::SubIOp::create(b, loc, n, one);
      Value nf = arith::SIToFPOp::create(b, loc, x.getType(), n);
      add(x, mul(g, mul(nf, math::FPowIOp::create(b, loc, x, nMinus1))));
    } else if (isa<math::AbsFOp>(op)) {
      Value x = operand(0), zero = cst(g, 0.0);
      Value positive = cmp(arith::CmpFPredicate::OGT, x, zero);
      Value negative = cmp(arith::CmpFPredicate::OLT, x, zero);
      add(x, select(positive, g, select(negative, neg(g), zero)));
    } else if (isa<math::FmaOp>(op)) {
      add(operand(0), mul(g, operand(1)));
      add(operand(1), mul(g, operand(0)));
      add(operand(2), g);
    } else if (isa<tensor::ExtractOp>(op)) {
      // A gather: its adjoint stays with the op's result, where the
      // scatter-add of a trainable table reads it.
    } else if (isa<math::RoundEvenOp, math::RoundOp, math::FloorOp,
                   math::CeilOp, math::TruncOp, arith::ConstantOp>(op)) {
      // Piecewise constant: derivative zero.
    } else {
      return owner->emitError()
             << "no gradient rule for '" << op->getName()
             << "' in the body of this op (it depends on a trainable "
                "parameter and the loss depends on it)";
    }
    return success();
  }

  /// Operands defined outside the body (constants, captured scalars) need
  /// no adjoint; only values of the body do.
  bool adjWanted(Value v) { return v.getParentBlock() == b.getBlock(); }

  OpBuilder &b;
  Location loc;
  Operation *owner;
  DenseMap<Value, Value> &adj;
};

class Differentiator {
public:
  explicit Differentiator(func::FuncOp func)
      : func(func), b(func.getContext()) {}

  FailureOr<SmallVector<Value>> run(Value loss, ArrayRef<Value> wrt);

private:
  /// Adds `contribution` to the adjoint of `primal`.
  void accumulate(Value primal, Value contribution) {
    Location loc = primal.getLoc();
    if (contribution.getType() != primal.getType())
      contribution =
          tensor::CastOp::create(b, loc, primal.getType(), contribution);
    Value &slot = adjoints[primal];
    slot = slot ? addTensors(b, loc, slot, contribution) : contribution;
  }
  bool isActive(Value v) const { return active.contains(v); }

  LogicalResult visit(Operation *op, ArrayRef<Value> grads);
  /// The active ops of `block` that `roots` depend on, last first.
  SmallVector<Operation *> tapeOf(Block &block, ArrayRef<Value> roots);
  /// Runs the rules of `tape`'s ops, whose results' adjoints are known.
  LogicalResult replay(ArrayRef<Operation *> tape);
  LogicalResult visitIf(scf::IfOp op, ArrayRef<Value> grads);
  /// `v`, computed again here when its op is marked kRecomputeAttr (with
  /// its marked producers), so the forward's value need not stay alive.
  Value rematerialize(Value v);
  LogicalResult visitLinalg(linalg::LinalgOp op, ArrayRef<Value> grads);

  /// How the adjoint of result j enters the loop body.
  enum class SeedKind { Plain, Sum, Extremum };
  struct Seed {
    unsigned result;
    Value term; // the yielded value, or the reduction's term
    SeedKind kind;
  };
  FailureOr<Value> adjointOfOperand(linalg::LinalgOp op, OpOperand &operand,
                                    ArrayRef<Value> grads,
                                    ArrayRef<Seed> seeds);
  FailureOr<SmallVector<Seed>> seedsOf(linalg::LinalgOp op,
                                       ArrayRef<Value> grads);
  /// `g` (the adjoint of a max / min reduction's result `seed`) divided by
  /// the number of the reduced elements equal to the result.
  Value splitAmongTies(linalg::LinalgOp op, const Seed &seed, Value g);
  /// The adjoint of `table`, read by tensor.extract in `op`'s body: a loop
  /// nest over `op`'s iteration space that adds each point's contribution
  /// at the element the point read (a scatter-add).
  FailureOr<Value> scatterAdjoint(linalg::LinalgOp op, Value table,
                                  ArrayRef<Value> grads, ArrayRef<Seed> seeds);

  func::FuncOp func;
  OpBuilder b;
  DenseSet<Value> active;
  DenseMap<Value, Value> adjoints;
};

/// Erases the ops of `block` whose results nothing uses (a recomputed body
/// keeps only what its adjoint needs), last first so that chains go.
void eraseDeadOps(Block &block) {
  SmallVector<Operation *> ops = llvm::to_vector(llvm::map_range(
      block.without_terminator(), [](Operation &o) { return &o; }));
  for (Operation *op : llvm::reverse(ops))
    if (isOpTriviallyDead(op))
      op->erase();
}

/// Whether `op` reads an active value: an operand, or a value captured by
/// its regions.
bool readsActive(Operation *op, const DenseSet<Value> &active) {
  if (llvm::any_of(op->getOperands(),
                   [&](Value v) { return active.contains(v); }))
    return true;
  bool found = false;
  op->walk([&](Operation *nested) {
    if (nested == op)
      return;
    for (Value v : nested->getOperands())
      if (active.contains(v) &&
          !op->isAncestor(v.getParentBlock()->getParentOp()))
        found = true;
  });
  return found;
}

FailureOr<SmallVector<Value>> Differentiator::run(Value loss,
                                                  ArrayRef<Value> wrt) {
  Block &block = func.getBody().front();
  auto lossType = dyn_cast<RankedTensorType>(loss.getType());
  if (!lossType || !lossType.hasStaticShape() ||
      lossType.getNumElements() != 1 || !isFloatValue(loss))
    return func.emitError() << "the loss to differentiate must be a float "
                               "tensor of one element, not "
                            << loss.getType();
  // Forward: what depends on a wrt value (nested regions included: the
  // branches of scf.if).
  for (Value v : wrt)
    if (isFloatValue(v))
      active.insert(v);
  func.walk<WalkOrder::PreOrder>([&](Operation *op) {
    if (op == func.getOperation())
      return WalkResult::advance();
    if (op->hasAttr(kNoGradientAttr))
      return WalkResult::skip();
    if (readsActive(op, active))
      for (Value r : op->getResults())
        if (isFloatValue(r))
          active.insert(r);
    return WalkResult::advance();
  });
  SmallVector<Operation *> tape = tapeOf(block, {loss});
  b.setInsertionPoint(block.getTerminator());
  Location loc = loss.getLoc();
  if (isActive(loss)) {
    auto one = DenseElementsAttr::get(
        lossType, b.getFloatAttr(lossType.getElementType(), 1.0));
    adjoints[loss] = arith::ConstantOp::create(b, loc, one);
  }
  if (failed(replay(tape)))
    return failure();
  SmallVector<Value> result;
  for (Value v : wrt) {
    Value g = adjoints.lookup(v);
    result.push_back(g ? g : zerosLike(b, v.getLoc(), v));
  }
  return result;
}

SmallVector<Operation *> Differentiator::tapeOf(Block &block,
                                                ArrayRef<Value> roots) {
  DenseSet<Value> needed(roots.begin(), roots.end());
  SmallVector<Operation *> tape;
  for (Operation &op : llvm::reverse(block.without_terminator())) {
    if (!llvm::any_of(op.getResults(), [&](Value r) {
          return needed.contains(r) && isActive(r);
        }))
      continue;
    tape.push_back(&op);
    op.walk([&](Operation *nested) {
      for (Value v : nested->getOperands())
        if (isActive(v))
          needed.insert(v);
    });
  }
  return tape;
}

LogicalResult Differentiator::replay(ArrayRef<Operation *> tape) {
  for (Operation *op : tape) {
    SmallVector<Value> grads;
    for (Value r : op->getResults())
      grads.push_back(adjoints.lookup(r));
    if (llvm::all_of(grads, [](Value g) { return !g; }))
      continue;
    if (failed(visit(op, grads)))
      return failure();
  }
  return success();
}

/// The adjoint of an scf.if (a run-time choice, e.g. whether a size-1
/// dimension must be broadcast): an scf.if on the same condition whose
/// branches differentiate the original ones and yield the contributions to
/// every active value they read from outside.
LogicalResult Differentiator::visitIf(scf::IfOp op, ArrayRef<Value> grads) {
  Location loc = op.getLoc();
  llvm::SetVector<Value> captured;
  op->walk([&](Operation *nested) {
    for (Value v : nested->getOperands())
      if (isActive(v) && !op->isAncestor(v.getParentBlock()->getParentOp()))
        captured.insert(v);
  });
  if (captured.empty())
    return success();
  for (Value v : captured)
    if (!isa<RankedTensorType>(v.getType()))
      return op.emitError()
             << "no gradient rule for an scf.if whose branches read a scalar "
                "that depends on a trainable parameter";
  if (op.getElseRegion().empty())
    return op.emitError("no gradient rule for an scf.if without else branch "
                        "that depends on a trainable parameter");
  SmallVector<Type> types;
  for (Value v : captured)
    types.push_back(v.getType());
  auto adjointIf = scf::IfOp::create(b, loc, types, op.getCondition(),
                                     /*withElseRegion=*/true);
  for (auto [from, to] : {std::pair<Region *, Region *>{
                              &op.getThenRegion(), &adjointIf.getThenRegion()},
                          {&op.getElseRegion(), &adjointIf.getElseRegion()}}) {
    Block &branch = from->front();
    Block &body = to->front();
    Differentiator nested(func);
    nested.active = active;
    if (!body.empty() && isa<scf::YieldOp>(body.back()))
      body.back().erase();
    nested.b.setInsertionPointToEnd(&body);
    // The branch's values are not visible here: recompute them first.
    IRMapping mapping;
    for (Operation &primal : branch.without_terminator()) {
      Operation *clone = nested.b.clone(primal, mapping);
      // Nested regions too (an scf.if within the branch).
      SmallVector<Operation *> primals, clones;
      primal.walk([&](Operation *o) { primals.push_back(o); });
      clone->walk([&](Operation *o) { clones.push_back(o); });
      for (auto [p, c] : llvm::zip(primals, clones))
        for (auto [r, cr] : llvm::zip(p->getResults(), c->getResults()))
          if (isActive(r))
            nested.active.insert(cr);
    }
    auto yield = cast<scf::YieldOp>(branch.getTerminator());
    SmallVector<Value> roots;
    for (auto [value, g] : llvm::zip(yield.getOperands(), grads)) {
      if (!g || !isActive(value))
        continue;
      Value mapped = mapping.lookupOrDefault(value);
      roots.push_back(mapped);
      nested.accumulate(mapped, g);
    }
    if (failed(nested.replay(nested.tapeOf(body, roots))))
      return failure();
    SmallVector<Value> results;
    for (Value v : captured) {
      Value g = nested.adjoints.lookup(v);
      results.push_back(g ? g : zerosLike(nested.b, loc, v));
    }
    scf::YieldOp::create(nested.b, loc, results);
  }
  for (auto [v, result] : llvm::zip(captured, adjointIf.getResults()))
    accumulate(v, result);
  return success();
}

LogicalResult Differentiator::visit(Operation *op, ArrayRef<Value> grads) {
  Location loc = op->getLoc();
  if (auto ifOp = dyn_cast<scf::IfOp>(op))
    return visitIf(ifOp, grads);
  if (auto linalgOp = dyn_cast<linalg::LinalgOp>(op)) {
    if (!linalgOp.hasPureTensorSemantics())
      return op->emitError("no gradient rule for a linalg op on buffers");
    return visitLinalg(linalgOp, grads);
  }
  Value g = grads[0];
  if (auto castOp = dyn_cast<tensor::CastOp>(op)) {
    accumulate(castOp.getSource(), g);
  } else if (auto reshape = dyn_cast<tensor::ReshapeOp>(op)) {
    Value src = reshape.getSource();
    accumulate(src, tensor::ReshapeOp::create(b, loc, src.getType(), g,
                                              shapeOf(b, loc, src)));
  } else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(op)) {
    Value src = expand.getSrc();
    accumulate(
        src, tensor::CollapseShapeOp::create(b, loc, src.getType(), g,
                                             expand.getReassociationIndices()));
  } else if (auto collapse = dyn_cast<tensor::CollapseShapeOp>(op)) {
    Value src = collapse.getSrc();
    auto srcType = cast<RankedTensorType>(src.getType());
    // A group of several dynamic sizes expands through tensor.reshape:
    // LLVM 22's expand-strided-metadata cannot lower such a
    // memref.expand_shape (the online Hadamards' views of [batch, seq]).
    bool severalDynamic = llvm::any_of(
        collapse.getReassociationIndices(), [&](ArrayRef<int64_t> group) {
          return llvm::count_if(group, [&](int64_t d) {
                   return srcType.isDynamicDim(d);
                 }) > 1;
        });
    if (severalDynamic)
      accumulate(src, tensor::ReshapeOp::create(b, loc, srcType, g,
                                                shapeOf(b, loc, src)));
    else
      accumulate(src,
                 tensor::ExpandShapeOp::create(
                     b, loc, srcType, g, collapse.getReassociationIndices(),
                     tensor::getMixedSizes(b, loc, src)));
  } else if (auto extract = dyn_cast<tensor::ExtractSliceOp>(op)) {
    Value src = extract.getSource();
    accumulate(src,
               tensor::InsertSliceOp::create(
                   b, loc, g, zerosLike(b, loc, src), extract.getMixedOffsets(),
                   extract.getMixedSizes(), extract.getMixedStrides()));
  } else if (auto insert = dyn_cast<tensor::InsertSliceOp>(op)) {
    Value src = insert.getSource(), dest = insert.getDest();
    if (isActive(src))
      accumulate(src, tensor::ExtractSliceOp::create(
                          b, loc, cast<RankedTensorType>(src.getType()), g,
                          insert.getMixedOffsets(), insert.getMixedSizes(),
                          insert.getMixedStrides()));
    if (isActive(dest))
      accumulate(dest, tensor::InsertSliceOp::create(
                           b, loc, zerosLike(b, loc, src), g,
                           insert.getMixedOffsets(), insert.getMixedSizes(),
                           insert.getMixedStrides()));
  } else if (auto concat = dyn_cast<tensor::ConcatOp>(op)) {
    int64_t dim = concat.getDim();
    OpFoldResult offset = b.getIndexAttr(0);
    for (Value input : concat.getInputs()) {
      SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, input);
      if (isActive(input)) {
        SmallVector<OpFoldResult> offsets(sizes.size(), b.getIndexAttr(0));
        offsets[dim] = offset;
        SmallVector<OpFoldResult> strides(sizes.size(), b.getIndexAttr(1));
        accumulate(input, tensor::ExtractSliceOp::create(
                              b, loc, cast<RankedTensorType>(input.getType()),
                              g, offsets, sizes, strides));
      }
      offset = getAsOpFoldResult(arith::AddIOp::create(
          b, loc, getValueOrCreateConstantIndexOp(b, loc, offset),
          getValueOrCreateConstantIndexOp(b, loc, sizes[dim])));
    }
  } else if (auto attention = dyn_cast<AttentionOp>(op)) {
    // Kept whole for a target with a fused backward (the CUDA library's):
    // one op that recomputes the probabilities instead of a saved
    // [B, H, S, L] tensor of them.
    Value mask = attention.getMask();
    if (mask && isActive(mask))
      return op->emitError("no gradient rule for an attention mask that "
                           "depends on a trainable parameter");
    Value q = attention.getQuery(), k = attention.getKey(),
          v = attention.getValue();
    auto grad = AttentionGradOp::create(
        b, loc, TypeRange{q.getType(), k.getType(), v.getType()}, q, k, v, mask,
        attention.getResult(), g, attention.getCausalAttr(),
        b.getF64FloatAttr(attention.getScaleValue()),
        attention.getSoftcapAttr());
    Value operands[] = {q, k, v};
    for (auto [operand, adjoint] : llvm::zip(operands, grad.getResults()))
      if (isActive(operand))
        accumulate(operand, adjoint);
  } else if (isa<RMSNormOp, LayerNormOp>(op)) {
    // Kept whole for a target with a fused backward (the CUDA library's,
    // over the last axis): one op whose lowering is a warp per row.
    auto layer = dyn_cast<LayerNormOp>(op);
    auto rms = dyn_cast<RMSNormOp>(op);
    Value x = op->getOperand(0), gamma = op->getOperand(1);
    int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
    int64_t axis = layer ? layer.getAxis() : rms.getAxis();
    if ((axis < 0 ? axis + rank : axis) != rank - 1 ||
        cast<RankedTensorType>(gamma.getType()).getRank() != 1)
      return op->emitError()
             << "no gradient rule for '" << op->getName()
             << "' over several axes (a norm kept whole is differentiated "
                "over the last axis only; lower it to linalg first)";
    Value beta = layer ? layer.getBeta() : Value();
    double eps = layer ? layer.getEpsilon().convertToDouble()
                       : rms.getEpsilon().convertToDouble();
    auto grad = NormGradOp::create(
        b, loc, TypeRange{x.getType(), gamma.getType(), gamma.getType()}, x,
        gamma, g, layer ? b.getUnitAttr() : UnitAttr(), b.getF64FloatAttr(eps));
    if (isActive(x))
      accumulate(x, grad.getInputGrad());
    if (isActive(gamma))
      accumulate(gamma, grad.getGammaGrad());
    if (beta && isActive(beta))
      accumulate(beta, grad.getBetaGrad());
  } else if (auto pad = dyn_cast<tensor::PadOp>(op)) {
    Value src = pad.getSource();
    Value padValue = pad.getConstantPaddingValue();
    if (!padValue || isActive(padValue))
      return op->emitError("no gradient rule for a 'tensor.pad' whose "
                           "padding value depends on a trainable parameter");
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, src);
    SmallVector<OpFoldResult> strides(sizes.size(), b.getIndexAttr(1));
    accumulate(src, tensor::ExtractSliceOp::create(
                        b, loc, cast<RankedTensorType>(src.getType()), g,
                        pad.getMixedLowPad(), sizes, strides));
  } else {
    return op->emitError()
           << "no gradient rule for '" << op->getName()
           << "' (it depends on a trainable parameter and the loss depends "
              "on it)";
  }
  return success();
}

/// The values a body computes from `value`: its users in the block,
/// transitively.
bool dependsOn(Value value, Value root) {
  SmallVector<Value> work = {value};
  DenseSet<Value> seen;
  while (!work.empty()) {
    Value v = work.pop_back_val();
    if (v == root)
      return true;
    if (!seen.insert(v).second)
      continue;
    if (Operation *def = v.getDefiningOp())
      llvm::append_range(work, def->getOperands());
  }
  return false;
}

FailureOr<SmallVector<Differentiator::Seed>>
Differentiator::seedsOf(linalg::LinalgOp op, ArrayRef<Value> grads) {
  SmallVector<Seed> seeds;
  Block *body = op.getBlock();
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  unsigned numLoops = op.getNumLoops();
  for (auto [j, init] : llvm::enumerate(op.getDpsInitsMutable())) {
    if (!grads[j])
      continue;
    AffineMap map = op.getMatchingIndexingMap(&init);
    bool reduced = false;
    for (unsigned d = 0; d < numLoops; ++d)
      if (!map.isFunctionOfDim(d))
        reduced = true;
    Value yielded = yield.getValues()[j];
    if (!reduced) {
      seeds.push_back({(unsigned)j, yielded, SeedKind::Plain});
      continue;
    }
    BlockArgument out = op.getMatchingBlockArgument(&init);
    Operation *combiner = yielded.getDefiningOp();
    auto notUnderstood = [&] {
      return op->emitError()
             << "no gradient rule for this reduction: its body must "
                "combine its result #"
             << j
             << " with one term by addf, maximumf, maxnumf, minimumf "
                "or minnumf";
    };
    if (!combiner || combiner->getBlock() != body ||
        combiner->getNumOperands() != 2 || !out.hasOneUse() ||
        !isa<arith::AddFOp, arith::MaximumFOp, arith::MaxNumFOp,
             arith::MinimumFOp, arith::MinNumFOp>(combiner))
      return notUnderstood();
    Value term = combiner->getOperand(0) == out ? combiner->getOperand(1)
                                                : combiner->getOperand(0);
    if (combiner->getOperand(0) != out && combiner->getOperand(1) != out)
      return notUnderstood();
    for (BlockArgument other : op.getRegionOutputArgs())
      if (dependsOn(term, other))
        return notUnderstood();
    bool sum = isa<arith::AddFOp>(combiner);
    if (isActive(init.get())) {
      if (!sum)
        return op->emitError()
               << "no gradient rule for a max / min reduction whose initial "
                  "value depends on a trainable parameter";
      accumulate(init.get(), grads[j]);
    }
    seeds.push_back(
        {(unsigned)j, term, sum ? SeedKind::Sum : SeedKind::Extremum});
  }
  return seeds;
}

Value Differentiator::rematerialize(Value v) {
  Operation *def = v.getDefiningOp();
  if (!def || !def->hasAttr(kRecomputeAttr))
    return v;
  IRMapping mapping;
  for (Value operand : def->getOperands())
    mapping.map(operand, rematerialize(operand));
  Operation *clone = b.clone(*def, mapping);
  // Marked apart from the forward's op, which CSE would merge it with.
  clone->setAttr(kRecomputeAttr, b.getStringAttr("backward"));
  return clone->getResult(cast<OpResult>(v).getResultNumber());
}

LogicalResult Differentiator::visitLinalg(linalg::LinalgOp op,
                                          ArrayRef<Value> grads) {
  // Tensors of the trainable computation read inside the body by
  // tensor.extract (a gather from a trainable table) get their adjoint by a
  // scatter-add; any other read of an outside value would need a rule.
  Block *body = op.getBlock();
  llvm::SetVector<Value> gathered;
  for (Operation &nested : body->without_terminator())
    for (Value v : nested.getOperands()) {
      if (!isActive(v) || v.getParentBlock() == body)
        continue;
      auto extract = dyn_cast<tensor::ExtractOp>(nested);
      if (!extract || extract.getTensor() != v)
        return op->emitError()
               << "no gradient rule for this op: its body reads a value that "
                  "depends on a trainable parameter ('"
               << nested.getName() << "' of a captured value)";
      gathered.insert(v);
    }
  if (op->hasAttr(kStraightThroughAttr)) {
    // A codebook quantizer (bitsandbytes' NF4 / FP4 / 8-bit dynamic): the
    // straight-through estimator passes the output's adjoint to the input.
    OpOperand *input = op.getDpsInputOperand(0);
    if (grads[0] && isActive(input->get()))
      accumulate(input->get(), grads[0]);
    return success();
  }
  FailureOr<SmallVector<Seed>> seeds = seedsOf(op, grads);
  if (failed(seeds))
    return failure();
  if (seeds->empty())
    return success();
  // A max / min reduction's adjoint goes to the elements equal to its
  // result, split evenly among ties (torch's amax / max backward).
  SmallVector<Value> split(grads);
  for (const Seed &seed : *seeds)
    if (seed.kind == SeedKind::Extremum)
      split[seed.result] = splitAmongTies(op, seed, grads[seed.result]);
  grads = split;
  for (Value table : gathered) {
    FailureOr<Value> adjoint = scatterAdjoint(op, table, grads, *seeds);
    if (failed(adjoint))
      return failure();
    accumulate(table, *adjoint);
  }
  for (OpOperand &operand : op->getOpOperands()) {
    if (!isActive(operand.get()))
      continue;
    bool isInit = op.isDpsInit(&operand);
    if (isInit) {
      // A reduction's initial value was handled with its seed; a parallel
      // op's output operand matters only where the body reads it.
      AffineMap map = op.getMatchingIndexingMap(&operand);
      if (map.getNumResults() < op.getNumLoops() ||
          !llvm::all_of(llvm::seq(op.getNumLoops()),
                        [&](unsigned d) { return map.isFunctionOfDim(d); }))
        continue;
      if (op.getMatchingBlockArgument(&operand).use_empty())
        continue;
    }
    if (!isa<RankedTensorType>(operand.get().getType()))
      return op->emitError()
             << "no gradient rule for a scalar operand that depends on a "
                "trainable parameter";
    FailureOr<Value> adjoint = adjointOfOperand(op, operand, grads, *seeds);
    if (failed(adjoint))
      return failure();
    accumulate(operand.get(), *adjoint);
  }
  return success();
}

FailureOr<Value> Differentiator::adjointOfOperand(linalg::LinalgOp op,
                                                  OpOperand &target,
                                                  ArrayRef<Value> grads,
                                                  ArrayRef<Seed> seeds) {
  Location loc = op.getLoc();
  MLIRContext *ctx = op.getContext();
  unsigned numLoops = op.getNumLoops();

  // The adjoint's own map: the target's, without its constant-0 results
  // (size-1 dimensions read at index 0), which are put back afterwards.
  AffineMap targetMap = op.getMatchingIndexingMap(&target);
  Value primal = target.get();
  auto primalType = cast<RankedTensorType>(primal.getType());
  Type elem = primalType.getElementType();
  SmallVector<OpFoldResult> primalSizes = tensor::getMixedSizes(b, loc, primal);
  SmallVector<int64_t> loopSizes = op.getStaticLoopRanges();
  SmallVector<AffineExpr> kept;
  SmallVector<bool> isKept;
  SmallVector<OpFoldResult> sizes;
  // Results `d floordiv C` (a scale per group of C): the adjoint is built
  // with d's full extent there, then summed over each group.
  SmallVector<std::pair<unsigned, int64_t>> groups;
  llvm::SmallBitVector used(numLoops);
  for (auto [r, e] : llvm::enumerate(targetMap.getResults())) {
    AffineExpr dimExpr = e;
    int64_t factor = 1;
    if (auto bin = dyn_cast<AffineBinaryOpExpr>(e);
        bin && bin.getKind() == AffineExprKind::FloorDiv &&
        isa<AffineDimExpr>(bin.getLHS()) &&
        isa<AffineConstantExpr>(bin.getRHS()) &&
        cast<AffineConstantExpr>(bin.getRHS()).getValue() > 0) {
      dimExpr = bin.getLHS();
      factor = cast<AffineConstantExpr>(bin.getRHS()).getValue();
    }
    if (auto d = dyn_cast<AffineDimExpr>(dimExpr)) {
      if (used.test(d.getPosition()))
        return op->emitError("no gradient rule for an operand indexed twice "
                             "by one loop (a diagonal)");
      used.set(d.getPosition());
      if (factor != 1) {
        int64_t extent = loopSizes[d.getPosition()];
        if (ShapedType::isDynamic(extent) || extent % factor)
          return op->emitError() << "no gradient rule for an operand read per "
                                    "group of "
                                 << factor
                                 << " along a loop of dynamic or indivisible "
                                    "size";
        groups.push_back({unsigned(kept.size()), factor});
        sizes.push_back(b.getIndexAttr(extent));
      } else {
        sizes.push_back(primalSizes[r]);
      }
      kept.push_back(dimExpr);
      isKept.push_back(true);
      continue;
    }
    auto c = dyn_cast<AffineConstantExpr>(e);
    if (!c || c.getValue() != 0) {
      std::string text;
      llvm::raw_string_ostream os(text);
      e.print(os);
      return op->emitError()
             << "no gradient rule for an operand indexed by " << text
             << " (only loop indices, d floordiv C and 0)";
    }
    isKept.push_back(false);
  }
  AffineMap outMap = AffineMap::get(numLoops, 0, kept, ctx);
  bool accumulates = used.count() != numLoops;
  SmallVector<utils::IteratorType> iterators;
  for (unsigned d = 0; d < numLoops; ++d)
    iterators.push_back(used.test(d) ? utils::IteratorType::parallel
                                     : utils::IteratorType::reduction);

  Value init = tensor::EmptyOp::create(b, loc, sizes, elem);
  if (accumulates)
    init =
        linalg::FillOp::create(b, loc, floatConstant(b, loc, elem, 0.0), init)
            .getResult(0);

  // Operands: the seeds' adjoints (and results, for max / min), then the
  // op's inputs and the outputs its body reads.
  SmallVector<Value> ins;
  SmallVector<AffineMap> maps;
  auto initOperand = [&](unsigned j) -> OpOperand & {
    return op.getDpsInitsMutable()[j];
  };
  for (const Seed &seed : seeds) {
    AffineMap map = op.getMatchingIndexingMap(&initOperand(seed.result));
    ins.push_back(grads[seed.result]);
    maps.push_back(map);
    if (seed.kind == SeedKind::Extremum) {
      ins.push_back(op->getResult(seed.result));
      maps.push_back(map);
    }
  }
  unsigned firstPrimal = ins.size();
  SmallVector<BlockArgument> primalArgs;
  for (OpOperand &operand : op->getOpOperands()) {
    BlockArgument arg = op.getMatchingBlockArgument(&operand);
    if (op.isDpsInit(&operand) && arg.use_empty())
      continue;
    if (!isa<ShapedType>(operand.get().getType())) {
      // A scalar operand (linalg.fill): read directly in the body.
      primalArgs.push_back(arg);
      ins.push_back(operand.get());
      maps.push_back(AffineMap::get(numLoops, 0, ctx));
      continue;
    }
    primalArgs.push_back(arg);
    ins.push_back(rematerialize(operand.get()));
    maps.push_back(op.getMatchingIndexingMap(&operand));
  }
  maps.push_back(outMap);

  Block *body = op.getBlock();
  BlockArgument targetArg = op.getMatchingBlockArgument(&target);
  LogicalResult status = success();
  auto adjointOp = linalg::GenericOp::create(
      b, loc, init.getType(), ins, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location l, ValueRange args) {
        IRMapping mapping;
        for (auto [i, arg] : llvm::enumerate(primalArgs))
          mapping.map(arg, args[firstPrimal + i]);
        SmallVector<Operation *> clones;
        for (Operation &nested : body->without_terminator())
          clones.push_back(nb.clone(nested, mapping));
        DenseMap<Value, Value> adj;
        ScalarReverse reverse(nb, l, op, adj);
        unsigned next = 0;
        for (const Seed &seed : seeds) {
          Value g = args[next++];
          Value term = mapping.lookupOrDefault(seed.term);
          if (seed.kind == SeedKind::Extremum) {
            Value result = args[next++];
            Value chosen = arith::CmpFOp::create(
                nb, l, arith::CmpFPredicate::OEQ, term, result);
            g = arith::SelectOp::create(nb, l, chosen, g,
                                        floatConstant(nb, l, g.getType(), 0.0));
          }
          reverse.add(term, g);
        }
        if (failed(reverse.run(clones)))
          status = failure();
        Value contribution = adj.lookup(mapping.lookupOrDefault(targetArg));
        if (!contribution)
          contribution = floatConstant(nb, l, elem, 0.0);
        // A quantizer's gradient scale (LSQ's g) for this operand.
        if (auto scales =
                op->getAttrOfType<DenseF64ArrayAttr>(kGradientScaleAttr))
          if (target.getOperandNumber() < scales.size() &&
              scales[target.getOperandNumber()] != 1.0)
            contribution = arith::MulFOp::create(
                nb, l, contribution,
                floatConstant(nb, l, elem, scales[target.getOperandNumber()]));
        if (accumulates)
          contribution =
              arith::AddFOp::create(nb, l, args.back(), contribution);
        linalg::YieldOp::create(nb, l, contribution);
      });
  if (failed(status))
    return failure();
  // Only what the adjoint needs stays in the body.
  eraseDeadOps(adjointOp.getRegion().front());
  Value result = adjointOp.getResult(0);
  for (auto [pos, factor] : llvm::reverse(groups))
    result = sumGroups(b, loc, result, pos, factor);
  if (kept.size() != targetMap.getNumResults()) {
    SmallVector<OpFoldResult> offsets(primalType.getRank(), b.getIndexAttr(0));
    SmallVector<OpFoldResult> fullSizes = tensor::getMixedSizes(b, loc, primal);
    for (auto [size, keep] : llvm::zip(fullSizes, isKept))
      if (!keep)
        size = b.getIndexAttr(1);
    SmallVector<OpFoldResult> strides(primalType.getRank(), b.getIndexAttr(1));
    result = tensor::InsertSliceOp::create(
        b, loc, result, zerosLike(b, loc, primal), offsets, fullSizes, strides);
  }
  return result;
}

Value Differentiator::splitAmongTies(linalg::LinalgOp op, const Seed &seed,
                                     Value g) {
  Location loc = op.getLoc();
  OpOperand &init = op.getDpsInitsMutable()[seed.result];
  AffineMap outMap = op.getMatchingIndexingMap(&init);
  Value result = op->getResult(seed.result);
  auto type = cast<RankedTensorType>(result.getType());
  Type elem = type.getElementType();
  // count[out] = #{reduced points whose term equals the result}, the body
  // computed again; the op's own output arguments read the count's
  // accumulator (only the dead combiner reads them).
  SmallVector<Value> ins;
  SmallVector<AffineMap> maps;
  SmallVector<BlockArgument> inputArgs;
  for (OpOperand *input : op.getDpsInputOperands()) {
    BlockArgument arg = op.getMatchingBlockArgument(input);
    if (arg.use_empty())
      continue;
    inputArgs.push_back(arg);
    Value v = input->get();
    ins.push_back(isa<ShapedType>(v.getType()) ? rematerialize(v) : v);
    maps.push_back(isa<ShapedType>(v.getType())
                       ? op.getMatchingIndexingMap(input)
                       : AffineMap::get(op.getNumLoops(), 0, op.getContext()));
  }
  ins.push_back(result);
  maps.push_back(outMap);
  maps.push_back(outMap);
  Value zeros = zerosLike(b, loc, result);
  Block *body = op.getBlock();
  auto count = linalg::GenericOp::create(
      b, loc, type, ins, ValueRange{zeros}, maps, op.getIteratorTypesArray(),
      [&](OpBuilder &nb, Location l, ValueRange args) {
        IRMapping mapping;
        for (auto [i, arg] : llvm::enumerate(inputArgs))
          mapping.map(arg, args[i]);
        for (BlockArgument out : op.getRegionOutputArgs())
          mapping.map(out, args.back());
        for (Operation &nested : body->without_terminator())
          nb.clone(nested, mapping);
        Value term = mapping.lookupOrDefault(seed.term);
        Value tied = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ,
                                           term, args[inputArgs.size()]);
        Value one = arith::SelectOp::create(nb, l, tied,
                                            floatConstant(nb, l, elem, 1.0),
                                            floatConstant(nb, l, elem, 0.0));
        linalg::YieldOp::create(
            nb, l, arith::AddFOp::create(nb, l, args.back(), one).getResult());
      });
  eraseDeadOps(count.getRegion().front());
  // g / max(count, 1): a NaN result has no element equal to it.
  AffineMap id = b.getMultiDimIdentityMap(type.getRank());
  SmallVector<utils::IteratorType> parallel(type.getRank(),
                                            utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, type, ValueRange{g, count.getResult(0)},
             ValueRange{tensor::EmptyOp::create(
                 b, loc, tensor::getMixedSizes(b, loc, result), elem)},
             ArrayRef<AffineMap>{id, id, id}, parallel,
             [&](OpBuilder &nb, Location l, ValueRange args) {
               Value n = arith::MaximumFOp::create(
                   nb, l, args[1], floatConstant(nb, l, elem, 1.0));
               linalg::YieldOp::create(
                   nb, l, arith::DivFOp::create(nb, l, args[0], n).getResult());
             })
      .getResult(0);
}

FailureOr<Value> Differentiator::scatterAdjoint(linalg::LinalgOp op,
                                                Value table,
                                                ArrayRef<Value> grads,
                                                ArrayRef<Seed> seeds) {
  Location loc = op.getLoc();
  Block *body = op.getBlock();
  // What the body reads, outside the loops: each seed's adjoint (and result,
  // for max / min), then the operands whose block arguments are used.
  SmallVector<std::pair<Value, AffineMap>> seedReads;
  for (const Seed &seed : seeds) {
    AffineMap map =
        op.getMatchingIndexingMap(&op.getDpsInitsMutable()[seed.result]);
    seedReads.push_back({grads[seed.result], map});
    if (seed.kind == SeedKind::Extremum)
      seedReads.push_back({op->getResult(seed.result), map});
  }
  SmallVector<std::tuple<BlockArgument, Value, AffineMap>> operandReads;
  for (OpOperand &operand : op->getOpOperands()) {
    BlockArgument arg = op.getMatchingBlockArgument(&operand);
    if (arg.use_empty())
      continue;
    Value v = operand.get();
    operandReads.push_back({arg,
                            isa<ShapedType>(v.getType()) ? rematerialize(v) : v,
                            op.getMatchingIndexingMap(&operand)});
  }
  SmallVector<Value> lbs, ubs, steps;
  for (Range r : op.createLoopRanges(b, loc)) {
    lbs.push_back(getValueOrCreateConstantIndexOp(b, loc, r.offset));
    ubs.push_back(getValueOrCreateConstantIndexOp(b, loc, r.size));
    steps.push_back(getValueOrCreateConstantIndexOp(b, loc, r.stride));
  }
  LogicalResult status = success();
  auto pointAdjoint = [&](OpBuilder &nb, Location l, ValueRange ivs,
                          ValueRange iters) -> scf::ValueVector {
    auto at = [&](AffineMap map) {
      SmallVector<Value> indices;
      for (AffineExpr e : map.getResults()) {
        if (auto d = dyn_cast<AffineDimExpr>(e))
          indices.push_back(ivs[d.getPosition()]);
        else
          indices.push_back(affine::AffineApplyOp::create(
              nb, l, AffineMap::get(map.getNumDims(), 0, e), ivs));
      }
      return indices;
    };
    auto read = [&](Value v, AffineMap map) -> Value {
      if (!isa<ShapedType>(v.getType()))
        return v;
      return tensor::ExtractOp::create(nb, l, v, at(map));
    };
    IRMapping mapping;
    for (auto [arg, v, map] : operandReads)
      mapping.map(arg, read(v, map));
    SmallVector<Operation *> clones;
    SmallVector<tensor::ExtractOp> gathers;
    for (Operation &nested : body->without_terminator()) {
      if (auto index = dyn_cast<linalg::IndexOp>(nested)) {
        mapping.map(index.getResult(), ivs[index.getDim()]);
        continue;
      }
      Operation *clone = nb.clone(nested, mapping);
      clones.push_back(clone);
      if (auto extract = dyn_cast<tensor::ExtractOp>(clone);
          extract && extract.getTensor() == table)
        gathers.push_back(extract);
    }
    DenseMap<Value, Value> adj;
    ScalarReverse reverse(nb, l, op, adj);
    unsigned next = 0;
    for (const Seed &seed : seeds) {
      Value g = read(seedReads[next].first, seedReads[next].second);
      ++next;
      Value term = mapping.lookupOrDefault(seed.term);
      if (seed.kind == SeedKind::Extremum) {
        Value result = read(seedReads[next].first, seedReads[next].second);
        ++next;
        Value chosen = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ,
                                             term, result);
        g = arith::SelectOp::create(nb, l, chosen, g,
                                    floatConstant(nb, l, g.getType(), 0.0));
      }
      reverse.add(term, g);
    }
    if (failed(reverse.run(clones)))
      status = failure();
    Value acc = iters[0];
    for (tensor::ExtractOp gather : gathers) {
      Value contribution = adj.lookup(gather.getResult());
      if (!contribution)
        continue;
      Value old = tensor::ExtractOp::create(nb, l, acc, gather.getIndices());
      Value sum = arith::AddFOp::create(nb, l, old, contribution);
      acc = tensor::InsertOp::create(nb, l, sum, acc, gather.getIndices());
    }
    return {acc};
  };
  Value init = zerosLike(b, loc, table);
  if (lbs.empty()) {
    // An op without loops: its one point, here (canonicalization drops
    // what the adjoint does not need).
    Value result = pointAdjoint(b, loc, {}, {init}).front();
    return failed(status) ? FailureOr<Value>(failure()) : result;
  }
  scf::LoopNest nest = scf::buildLoopNest(b, loc, lbs, ubs, steps,
                                          ValueRange{init}, pointAdjoint);
  if (failed(status))
    return failure();
  // The forward's values recomputed in the loop but not needed by the
  // adjoint are dropped.
  eraseDeadOps(*nest.loops.back().getBody());
  return nest.results.front();
}

} // namespace

FailureOr<SmallVector<Value>>
mlir::qopt::buildGradients(func::FuncOp func, Value loss, ArrayRef<Value> wrt) {
  if (!func.getBody().hasOneBlock())
    return func.emitError("can only differentiate a function of one block");
  return Differentiator(func).run(loss, wrt);
}
