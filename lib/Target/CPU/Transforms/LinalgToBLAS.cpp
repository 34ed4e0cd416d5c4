//===- LinalgToBLAS.cpp - f32 matrix products as kernel-library calls -----===//
//
// On bufferized IR, f32 contractions C += A·B (linalg.matmul, batch_matmul,
// contract, and linalg.generic with a multiply-add body) become calls to
// qopt_kernel_sgemm (lib/Runtime/Kernels/CPU), which takes every operand as
// (aligned pointer, offset, one stride per loop) so that transposed and
// broadcast operands and strided views need no copies.
//
//===----------------------------------------------------------------------===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "qopt/Support/CompiledModel.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTLINALGTOBLASPASS
#include "qopt/Target/CPU/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

static constexpr StringLiteral kSgemm = ::qopt::compiled_model::kSgemmSymbol;
static constexpr unsigned kMaxOuter = 2;

/// A contraction C += A·B as the kernel sees it: loop dimensions of the
/// op for M, N, K and up to two outer loops (batch dimensions, and further
/// row or column dimensions of C, which the kernel merges into M when the
/// strides allow, e.g. a [batch, seq, k] activation times a 2-D weight).
struct GemmDims {
  unsigned m, n, k;
  SmallVector<unsigned, kMaxOuter> outer;
};

/// Whether the body is exactly acc + a*b on f32 (either operand order).
static bool isMulAddBody(linalg::GenericOp op) {
  Block &body = op.getRegion().front();
  if (body.getOperations().size() != 3)
    return false;
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getValues()[0].getDefiningOp<arith::AddFOp>();
  if (!add)
    return false;
  Value acc = body.getArgument(2);
  Value other = add.getLhs() == acc ? add.getRhs() : add.getLhs();
  if (add.getLhs() != acc && add.getRhs() != acc)
    return false;
  auto mul = other.getDefiningOp<arith::MulFOp>();
  if (!mul)
    return false;
  Value a = body.getArgument(0), b = body.getArgument(1);
  return (mul.getLhs() == a && mul.getRhs() == b) ||
         (mul.getLhs() == b && mul.getRhs() == a);
}

/// Each result of `map` is a loop dimension or the constant 0 (a
/// broadcast size-1 dimension).
static bool isDimOrZero(AffineMap map) {
  return llvm::all_of(map.getResults(), [](AffineExpr e) {
    if (isa<AffineDimExpr>(e))
      return true;
    auto c = dyn_cast<AffineConstantExpr>(e);
    return c && c.getValue() == 0;
  });
}

static bool uses(AffineMap map, unsigned dim) {
  return llvm::any_of(map.getResults(), [&](AffineExpr e) {
    auto d = dyn_cast<AffineDimExpr>(e);
    return d && d.getPosition() == dim;
  });
}

static std::optional<GemmDims> matchGemm(linalg::GenericOp op) {
  if (!op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2 ||
      op.getNumDpsInits() != 1)
    return std::nullopt;
  for (Value v : op->getOperands()) {
    auto type = dyn_cast<MemRefType>(v.getType());
    if (!type || !type.getElementType().isF32())
      return std::nullopt;
  }
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();
  if (!llvm::all_of(maps, isDimOrZero) || !isMulAddBody(op))
    return std::nullopt;
  SmallVector<unsigned> ms, ns, ks, outer;
  for (auto [d, iterator] : llvm::enumerate(op.getIteratorTypesArray())) {
    bool inA = uses(maps[0], d), inB = uses(maps[1], d), inC = uses(maps[2], d);
    if (iterator == utils::IteratorType::reduction) {
      if (inC || !inA || !inB)
        return std::nullopt;
      ks.push_back(d);
    } else if (!inC) {
      return std::nullopt;
    } else if (inA && !inB) {
      ms.push_back(d);
    } else if (inB && !inA) {
      ns.push_back(d);
    } else {
      outer.push_back(d);
    }
  }
  if (ks.empty() || ms.size() > 1 + kMaxOuter || ns.size() > 1 + kMaxOuter)
    return std::nullopt;
  GemmDims dims;
  // K: the innermost reduction; others (a weight gradient's batch and
  // sequence) loop outside, accumulating into the same C.
  dims.k = ks.back();
  ks.pop_back();
  // M and N: the row and column dimensions nearest C's innermost one; the
  // others loop outside. Without any (a matrix-vector product), a dummy
  // dimension of size 1 stands in (numLoops, never a real loop).
  unsigned none = op.getNumLoops();
  auto innermost = [&](SmallVector<unsigned> &set) {
    if (set.empty())
      return none;
    unsigned best = set.back();
    set.pop_back();
    return best;
  };
  dims.m = innermost(ms);
  dims.n = innermost(ns);
  dims.outer = llvm::to_vector_of<unsigned, kMaxOuter>(outer);
  for (unsigned d : llvm::concat<unsigned>(ms, ns, ks))
    dims.outer.push_back(d);
  if (dims.outer.size() > kMaxOuter)
    return std::nullopt;
  llvm::sort(dims.outer);
  return dims;
}

static void rewrite(linalg::GenericOp op, const GemmDims &dims,
                    func::FuncOp callee) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  unsigned numLoops = op.getNumLoops();
  SmallVector<AffineMap> maps = op.getIndexingMapsArray();

  // Size of each loop dimension, read from an operand that indexes it.
  SmallVector<Value> loopSize(numLoops + 1);
  loopSize[numLoops] = one; // the stand-in dimension
  for (auto [operand, map] : llvm::zip(op->getOperands(), maps))
    for (auto [pos, result] : llvm::enumerate(map.getResults()))
      if (auto dim = dyn_cast<AffineDimExpr>(result))
        if (!loopSize[dim.getPosition()])
          loopSize[dim.getPosition()] =
              memref::DimOp::create(b, loc, operand, pos);

  SmallVector<unsigned> outer(dims.outer.begin(), dims.outer.end());
  while (outer.size() < kMaxOuter)
    outer.insert(outer.begin(), numLoops); // size-1 loops
  SmallVector<Value> args;
  for (unsigned d : outer)
    args.push_back(loopSize[d]);
  args.append({loopSize[dims.m], loopSize[dims.n], loopSize[dims.k]});
  // Per operand: aligned pointer, offset, strides along the outer loops and
  // its two matrix dimensions: A (m, k), B (k, n), C (m, n).
  const unsigned matrix[3][2] = {
      {dims.m, dims.k}, {dims.k, dims.n}, {dims.m, dims.n}};
  for (auto [i, operand] : llvm::enumerate(op->getOperands())) {
    auto meta = memref::ExtractStridedMetadataOp::create(b, loc, operand);
    args.push_back(
        memref::ExtractAlignedPointerAsIndexOp::create(b, loc, operand));
    args.push_back(meta.getOffset());
    auto strideOf = [&](unsigned dim) -> Value {
      for (auto [pos, result] : llvm::enumerate(maps[i].getResults()))
        if (auto d = dyn_cast<AffineDimExpr>(result))
          if (d.getPosition() == dim)
            return meta.getStrides()[pos];
      return zero; // not indexed by this loop (or the stand-in)
    };
    for (unsigned d : outer)
      args.push_back(strideOf(d));
    args.push_back(strideOf(matrix[i][0]));
    args.push_back(strideOf(matrix[i][1]));
  }
  func::CallOp::create(b, loc, callee, args);
  op->erase();
}

namespace {
struct QOptLinalgToBLASPass
    : mlir::qopt::impl::QOptLinalgToBLASPassBase<QOptLinalgToBLASPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Named products become generics first, so one matcher sees them all.
    SmallVector<linalg::LinalgOp> named;
    module.walk([&](linalg::LinalgOp op) {
      if (isa<linalg::MatmulOp, linalg::BatchMatmulOp, linalg::ContractOp>(
              op) &&
          op.hasPureBufferSemantics() &&
          llvm::all_of(op->getOperandTypes(), [](Type t) {
            return cast<MemRefType>(t).getElementType().isF32();
          }))
        named.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : named) {
      rewriter.setInsertionPoint(op);
      (void)linalg::generalizeNamedOp(rewriter, op);
    }
    SmallVector<std::pair<linalg::GenericOp, GemmDims>> matmuls;
    module.walk([&](linalg::GenericOp op) {
      if (std::optional<GemmDims> dims = matchGemm(op))
        matmuls.push_back({op, *dims});
    });
    if (matmuls.empty())
      return;
    auto callee = module.lookupSymbol<func::FuncOp>(kSgemm);
    if (!callee) {
      OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
      Type index = b.getIndexType();
      // Two outer sizes, M, N, K, then (pointer, offset, 4 strides) for A,
      // B and C.
      SmallVector<Type> inputs(5 + 3 * 6, index);
      callee = func::FuncOp::create(b, module.getLoc(), kSgemm,
                                    b.getFunctionType(inputs, {}));
      callee.setPrivate();
    }
    for (auto &[op, dims] : matmuls)
      rewrite(op, dims, callee);
  }
};
} // namespace
