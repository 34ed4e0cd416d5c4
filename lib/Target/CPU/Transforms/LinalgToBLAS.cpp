//===- LinalgToBLAS.cpp - f32 matrix products as kernel-library calls -----===//
//
// On bufferized IR, f32 contractions C += A·B (linalg.matmul, batch_matmul,
// contract, and linalg.generic with a multiply-add body) become calls to
// qopt_kernel_sgemm (lib/Runtime/Kernels/CPU), which takes every operand as
// (aligned pointer, offset, one stride per loop) so that transposed and
// broadcast operands and strided views need no copies. A product with a
// quantized weight expanded only for it calls qopt_kernel_qlinear on the
// codes instead.
//
//===----------------------------------------------------------------------===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "MulAddBody.h"

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/IR/QOptMarkers.h"
#include "qopt/Support/CompiledModel.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"

#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/bit.h"

#include <limits>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTLINALGTOBLASPASS
#include "qopt/Target/CPU/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

static constexpr StringLiteral kSgemm = ::qopt::compiled_model::kSgemmSymbol;
static constexpr StringLiteral kQLinear =
    ::qopt::compiled_model::kQLinearSymbol;
static constexpr unsigned kMaxOuter = 2;

/// A contraction C += A·B as the kernel sees it: loop dimensions of the
/// op for M, N, K and up to two outer loops (batch dimensions, and further
/// row or column dimensions of C, which the kernel merges into M when the
/// strides allow, e.g. a [batch, seq, k] activation times a 2-D weight).
struct GemmDims {
  unsigned m, n, k;
  SmallVector<unsigned, kMaxOuter> outer;
};

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

/// A weight the quantized-product kernel reads: the loop nest that expands
/// it (erased with the product) and the kernel's description of it.
struct QuantizedWeight {
  linalg::GenericOp expand;
  int64_t format, group;
  bool zeroPoints;
  /// Scales per row of W: the scales buffer's row stride is its first
  /// stride times this (per_block scales are one flat list; 0: per_tensor,
  /// one scale read for every row).
  int64_t scaleRowFactor = 1;
  /// The product reads W itself (C += A·W, W's rows along the reduction: a
  /// linear layer's dX = dY·W), not Wᵀ: only the CUDA library's GEMM takes
  /// it (flag 8).
  bool transposed = false;
  /// Double-quantized scales the CUDA library reads as they are
  /// (matchNestedScales): the loop nest that expands them into the f32
  /// scales (erased with the product; null: f32 scales), the nested block,
  /// the offset and the 256-value table (a constant).
  linalg::GenericOp scaleExpand;
  int64_t nestedBlock = 1;
  float nestedOffset = 0.0f;
  Value scaleTable;
};

/// The kernel library's format code (QLinear.cpp), or -1.
static int64_t kernelFormat(QuantFormatAttrInterface format) {
  if (isa<NF4FormatAttr>(format))
    return 4;
  if (auto f = dyn_cast<FloatFormatAttr>(format))
    return isa<Float8E4M3FNType>(f.getType()) ? 5
           : isa<Float8E5M2Type>(f.getType()) ? 6
                                              : -1;
  auto i = dyn_cast<IntFormatAttr>(format);
  if (!i || (i.getBits() != 4 && i.getBits() != 8))
    return -1;
  return (i.getBits() == 8 ? 2 : 0) + (i.getIsSigned() ? 0 : 1);
}

/// Whether `user` is the loop nest that expands a quantized weight into
/// `buffer` (written whole, never read).
static bool expandsInto(Operation *user, Value buffer) {
  auto g = dyn_cast<linalg::GenericOp>(user);
  return g && g->hasAttr(kDequantizedAttr) && g.getNumDpsInits() == 1 &&
         g.getDpsInitOperand(0)->get() == buffer &&
         !llvm::is_contained(g.getDpsInputs(), buffer);
}

/// Whether B of the contraction `op` is a quantized weight W[n, k] that a
/// `qopt.dequantized` loop nest expands just before, for `op` alone: the
/// buffer's previous user is that nest, and its next one (if any) frees or
/// overwrites it (bufferization reuses one buffer for several layers'
/// weights).
static std::optional<QuantizedWeight> matchQuantized(linalg::GenericOp op,
                                                     const GemmDims &dims) {
  Value b = op.getDpsInputOperand(1)->get();
  auto alloc = b.getDefiningOp<memref::AllocOp>();
  if (!alloc || llvm::is_contained(op.getDpsInits(), b) ||
      op.getDpsInputOperand(0)->get() == b)
    return std::nullopt;
  Block *block = op->getBlock();
  SmallVector<Operation *> users;
  for (Operation *user : alloc->getUsers()) {
    Operation *inBlock = block->findAncestorOpInBlock(*user);
    if (!inBlock)
      return std::nullopt;
    if (!llvm::is_contained(users, inBlock))
      users.push_back(inBlock);
  }
  llvm::sort(users,
             [](Operation *x, Operation *y) { return x->isBeforeInBlock(y); });
  auto at = llvm::find(users, op.getOperation());
  if (at == users.begin() || !expandsInto(*std::prev(at), b))
    return std::nullopt;
  if (std::next(at) != users.end() && !isa<memref::DeallocOp>(*std::next(at)) &&
      !expandsInto(*std::next(at), b))
    return std::nullopt;
  auto expand = cast<linalg::GenericOp>(*std::prev(at));
  // The call reads the expansion's inputs where the product is: nothing
  // between the two may touch them but their own deallocation (moved after
  // the call). Views are not followed: inputs are parameters or buffers.
  for (Value input : expand.getDpsInputs()) {
    Operation *def = input.getDefiningOp();
    auto type = dyn_cast<MemRefType>(input.getType());
    if ((def && !isa<memref::AllocOp, memref::GetGlobalOp>(def)) || !type ||
        !type.isLastDimUnitStride())
      return std::nullopt;
    for (Operation *user : input.getUsers()) {
      Operation *inBlock = block->findAncestorOpInBlock(*user);
      if (!inBlock)
        return std::nullopt;
      bool between =
          expand->isBeforeInBlock(inBlock) && inBlock->isBeforeInBlock(op);
      if (between && !(isa<memref::DeallocOp>(user) && inBlock == user))
        return std::nullopt;
    }
  }
  MLIRContext *ctx = op.getContext();
  AffineMap bMap = op.getIndexingMapsArray()[1];
  if (bMap.getNumResults() != 2)
    return std::nullopt;
  bool transposed = bMap.getResult(0) == getAffineDimExpr(dims.k, ctx) &&
                    bMap.getResult(1) == getAffineDimExpr(dims.n, ctx);
  if (!transposed && (bMap.getResult(0) != getAffineDimExpr(dims.n, ctx) ||
                      bMap.getResult(1) != getAffineDimExpr(dims.k, ctx)))
    return std::nullopt;
  auto type = dyn_cast<QTensorType>(
      cast<TypeAttr>(expand->getAttr(kDequantizedAttr)).getValue());
  if (!type || type.getRank() != 2 || type.getOffsetType())
    return std::nullopt;
  QuantizedWeight w{expand, kernelFormat(type.getFormat()), 0,
                    type.getFormat().hasZeroPoint()};
  w.transposed = transposed;
  if (w.format < 0)
    return std::nullopt;
  int64_t k = type.getShape()[1];
  Attribute granularity = type.getGranularity();
  if (auto group = dyn_cast<PerGroupAttr>(granularity)) {
    if (group.getAxis() != 1)
      return std::nullopt;
    w.group = group.getSize();
  } else if (auto channel = dyn_cast<PerChannelAttr>(granularity)) {
    if (channel.getAxis() != 0 || ShapedType::isDynamic(k))
      return std::nullopt;
    w.group = k;
  } else if (isa<PerTensorAttr>(granularity)) {
    // One scale: the kernel reads it for every row (row stride 0).
    if (ShapedType::isDynamic(k))
      return std::nullopt;
    w.group = k;
    w.scaleRowFactor = 0;
  } else if (auto block = dyn_cast<PerBlockAttr>(granularity)) {
    // Blocks of the flattened weight that never cross a row.
    if (ShapedType::isDynamic(k) || k % block.getSize() != 0)
      return std::nullopt;
    w.group = block.getSize();
    w.scaleRowFactor = k / block.getSize();
  } else {
    return std::nullopt;
  }
  // Inputs: codes (i8), scales (f32: double quantization expanded), zero
  // points (i8).
  auto inputType = [&](unsigned i) {
    return cast<MemRefType>(expand.getDpsInputOperand(i)->get().getType());
  };
  if (expand.getNumDpsInputs() != 2u + w.zeroPoints ||
      !inputType(0).getElementType().isInteger(8) ||
      !inputType(1).getElementType().isF32() ||
      (w.zeroPoints && !inputType(2).getElementType().isInteger(8)) ||
      inputType(0).getRank() != 2 ||
      inputType(1).getRank() != (isa<PerGroupAttr>(granularity)    ? 2
                                 : isa<PerTensorAttr>(granularity) ? 0
                                                                   : 1))
    return std::nullopt;
  return w;
}

/// Declares (once) the private function `name` taking `args`' types and
/// calls it at `b`'s insertion point.
static func::CallOp callFunction(OpBuilder &b, Location loc, ModuleOp module,
                                 StringRef name, ValueRange args) {
  auto callee = module.lookupSymbol<func::FuncOp>(name);
  if (!callee) {
    OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
    callee = func::FuncOp::create(
        mb, module.getLoc(), name,
        mb.getFunctionType(TypeRange(args.getTypes()), {}));
    callee.setPrivate();
  }
  return func::CallOp::create(b, loc, callee, args);
}

/// Builds a kernel call's arguments from a contraction: loop sizes and, per
/// operand, its aligned pointer, offset and the strides of given loops.
class CallArgs {
public:
  /// (`a`: another buffer laid out as A, read in its place.)
  CallArgs(linalg::GenericOp op, const GemmDims &dims, Value a = {})
      : op(op), a(a), b(op), loc(op.getLoc()), maps(op.getIndexingMapsArray()) {
    zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    unsigned numLoops = op.getNumLoops();
    // Size of each loop dimension, read from an operand that indexes it:
    // A or C first (B may be an expanded weight that goes).
    loopSize.resize(numLoops + 1);
    loopSize[numLoops] = one; // the stand-in dimension
    for (unsigned i : {0u, 2u, 1u})
      for (auto [pos, result] : llvm::enumerate(maps[i].getResults()))
        if (auto dim = dyn_cast<AffineDimExpr>(result))
          if (!loopSize[dim.getPosition()])
            loopSize[dim.getPosition()] =
                memref::DimOp::create(b, loc, operandValue(i), pos);
    outer.assign(dims.outer.begin(), dims.outer.end());
    while (outer.size() < kMaxOuter)
      outer.insert(outer.begin(), numLoops); // size-1 loops
  }
  void constant(int64_t v) {
    args.push_back(arith::ConstantIndexOp::create(b, loc, v));
  }
  /// The sizes of the outer loops and of `dims`.
  void sizes(ArrayRef<unsigned> dims) {
    for (unsigned d : outer)
      args.push_back(loopSize[d]);
    for (unsigned d : dims)
      args.push_back(loopSize[d]);
  }
  /// Operand i's pointer, offset and strides along the outer loops and
  /// `dims`.
  void operand(unsigned i, ArrayRef<unsigned> dims) {
    Value v = operandValue(i);
    auto meta = memref::ExtractStridedMetadataOp::create(b, loc, v);
    args.push_back(memref::ExtractAlignedPointerAsIndexOp::create(b, loc, v));
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
    for (unsigned d : dims)
      args.push_back(strideOf(d));
  }
  /// A buffer outside the contraction: pointer, offset and its first
  /// stride times `factor` (0: a zero stride, as for a rank-0 buffer).
  void buffer(Value v, int64_t factor) {
    auto meta = memref::ExtractStridedMetadataOp::create(b, loc, v);
    args.push_back(memref::ExtractAlignedPointerAsIndexOp::create(b, loc, v));
    args.push_back(meta.getOffset());
    if (factor == 0) {
      args.push_back(zero);
      return;
    }
    Value stride = meta.getStrides()[0];
    if (factor != 1)
      stride = arith::MulIOp::create(
          b, loc, stride, arith::ConstantIndexOp::create(b, loc, factor));
    args.push_back(stride);
  }
  void zeros(unsigned n) { args.append(n, zero); }
  /// A buffer's pointer and offset.
  void pointer(Value v) {
    auto meta = memref::ExtractStridedMetadataOp::create(b, loc, v);
    args.push_back(memref::ExtractAlignedPointerAsIndexOp::create(b, loc, v));
    args.push_back(meta.getOffset());
  }
  /// The size of loop `dim`.
  void size(unsigned dim) { args.push_back(loopSize[dim]); }
  /// Another call's arguments so far (built before this op).
  void append(const CallArgs &other) { llvm::append_range(args, other.args); }
  /// The callee `name` (declared private, every argument an index), called.
  void call(ModuleOp module, StringRef name) {
    callFunction(b, loc, module, name, args);
  }

private:
  Value operandValue(unsigned i) { return i == 0 && a ? a : op->getOperand(i); }

  linalg::GenericOp op;
  Value a;
  OpBuilder b;
  Location loc;
  SmallVector<AffineMap> maps;
  Value zero;
  SmallVector<Value> loopSize;
  SmallVector<unsigned> outer;
  SmallVector<Value> args;
};

/// C += A·B as qopt_kernel_sgemm(o0, o1, M, N, K, then pointer, offset and
/// 4 strides of A (m, k), B (k, n) and C (m, n)).
static void rewriteSgemm(linalg::GenericOp op, const GemmDims &dims,
                         ModuleOp module, StringRef callee = kSgemm) {
  CallArgs args(op, dims);
  args.sizes({dims.m, dims.n, dims.k});
  args.operand(0, {dims.m, dims.k});
  args.operand(1, {dims.k, dims.n});
  args.operand(2, {dims.m, dims.n});
  args.call(module, callee);
  op->erase();
}

/// A LoRA layer's sum y = x·Wᵀ + scale·(z·Bᵀ) around a quantized product
/// (matchLoRASum): the branch's product, the sum's loop nest, and the
/// buffers that go with them.
struct LoRASum {
  linalg::GenericOp branch; // Q = z·Bᵀ, from zeros
  GemmDims branchDims;
  /// The loop nest computing P + scale·Q, alone (y = P + scale·Q: the call
  /// writes y, flag 16, and the nest goes) or within more (a residual
  /// added too: the call adds the branch to P, and the nest reads P where
  /// it read P + scale·Q).
  linalg::GenericOp sum;
  Value y;              // null: within more
  Operation *add;       // P + scale·Q in the nest's body
  unsigned branchInput; // Q's input of the nest
  float scale;
  Value base, branchOut; // P and Q
  /// z = x·Aᵀ from zeros on the product's own x (null: z stays its own
  /// product): the call writes z itself (matchLoRADown).
  linalg::GenericOp down;
  GemmDims downDims;
};

static void eraseUnread(Value buffer);

/// Whether `op` fills `buffer` itself (not a view of it) with the constant 0.
static bool isZeroFill(Operation *op, Value buffer) {
  auto fill = dyn_cast<linalg::FillOp>(op);
  FloatAttr value;
  return fill && fill.hasPureBufferSemantics() &&
         fill.getDpsInitOperand(0)->get() == buffer &&
         matchPattern(fill.getDpsInputOperand(0)->get(), m_Constant(&value)) &&
         value.getValue().isZero();
}

/// Erases `buffer` (allocated here) with its zero fills and deallocations
/// when nothing else uses it (a zeros buffer whose copies went).
static void eraseIfOnlyZeroed(Value buffer) {
  if (!buffer.getDefiningOp<memref::AllocOp>() ||
      !llvm::all_of(buffer.getUsers(), [&](Operation *user) {
        return isZeroFill(user, buffer) || isa<memref::DeallocOp>(user);
      }))
    return;
  for (Operation *user : llvm::make_early_inc_range(buffer.getUsers()))
    user->erase();
  buffer.getDefiningOp()->erase();
}

static Value rootBuffer(Value v);

/// Moves the deallocations of `from`'s inputs that lie between `from` and
/// `call` (in one block) after `call`, which now reads those inputs.
static void freeAfter(linalg::GenericOp from, Operation *call) {
  for (Value input : from.getDpsInputs()) {
    // (A view's buffer is freed through its root.)
    SmallVector<Value, 2> buffers = {input};
    if (rootBuffer(input) != input)
      buffers.push_back(rootBuffer(input));
    for (Value buffer : buffers)
      for (Operation *user : llvm::make_early_inc_range(buffer.getUsers()))
        if (isa<memref::DeallocOp>(user) &&
            user->getBlock() == call->getBlock() &&
            from->isBeforeInBlock(user) && user->isBeforeInBlock(call))
          user->moveAfter(call);
  }
}

/// Erases what the call of rewriteQuantized (before the product `op`) now
/// computes of the sum `l`: the branch's product, the sum, the buffers P
/// and Q with their zero initializations; the branch's inputs, freed
/// between the branch and the call, are freed after it.
static void eraseLoRASum(LoRASum l, Operation *op) {
  for (linalg::GenericOp product : {l.down, l.branch})
    if (product)
      freeAfter(product, op);
  l.branch->erase();
  SmallVector<Value, 2> gone = {l.branchOut};
  if (l.y) {
    l.sum->erase();
    gone.push_back(l.base);
  } else {
    // The nest reads P (now P + scale·Q) instead of the sum, and not Q.
    Block &body = l.sum.getRegion().front();
    Value q = body.getArgument(l.branchInput), p, other;
    for (Value operand : l.add->getOperands()) {
      auto arg = dyn_cast<BlockArgument>(operand);
      (arg && arg.getOwner() == &body && operand != q ? p : other) = operand;
    }
    Operation *mul = other.getDefiningOp();
    l.add->getResult(0).replaceAllUsesWith(p);
    l.add->erase();
    if (mul)
      mul->erase();
    SmallVector<AffineMap> maps = l.sum.getIndexingMapsArray();
    maps.erase(maps.begin() + l.branchInput);
    l.sum.getInputsMutable().erase(l.branchInput);
    l.sum.setIndexingMapsAttr(OpBuilder(l.sum).getAffineMapArrayAttr(maps));
    body.eraseArgument(l.branchInput);
  }
  // P and Q go with their zero initializations where nothing else uses
  // them (bufferization reuses buffers: then they stay).
  SmallVector<Value> sources;
  llvm::DenseSet<Value> erasedBuffers;
  for (Value buffer : gone) {
    SmallVector<Operation *> users;
    bool dedicated = true;
    for (Operation *user : buffer.getUsers()) {
      users.push_back(user);
      auto copy = dyn_cast<memref::CopyOp>(user);
      dedicated &= (copy && copy.getTarget() == buffer) ||
                   isZeroFill(user, buffer) || isa<memref::DeallocOp>(user) ||
                   (isa<memref::DimOp>(user) && user->use_empty());
    }
    if (!dedicated || !buffer.getDefiningOp<memref::AllocOp>())
      continue;
    llvm::SmallPtrSet<Operation *, 4> erased;
    for (Operation *user : users) {
      if (!erased.insert(user).second)
        continue;
      if (auto copy = dyn_cast<memref::CopyOp>(user))
        sources.push_back(copy.getSource());
      user->erase();
    }
    buffer.getDefiningOp()->erase();
    erasedBuffers.insert(buffer);
  }
  // (One of P and Q may be the zeros the other was copied from.)
  for (Value source : sources)
    if (!erasedBuffers.contains(source) && erasedBuffers.insert(source).second)
      eraseIfOnlyZeroed(source);
}

/// C += A·Wᵀ as qopt_kernel_qlinear(format, group, flags, o0, o1, M, N, K,
/// A (pointer, offset, 4 strides), codes, scales, zero points (pointer,
/// offset, row stride each), C (pointer, offset, 4 strides)); the loop
/// nest that expanded W and its buffer go.
static void
rewriteQuantized(linalg::GenericOp op, const GemmDims &dims, QuantizedWeight w,
                 bool int8Activations, int64_t perTokenBits, ModuleOp module,
                 StringRef callee = kQLinear, const LoRASum *lora = nullptr,
                 bool overwrite = false, bool cuda = false, Value codes = {},
                 Value steps = {}, int64_t precisionFlag = 0) {
  // With a LoRA branch the call writes the sum's output (flag 16: C = …,
  // not C +=; its layout is the product's C's, which it replaces).
  std::optional<CallArgs> branchArgs;
  if (lora) {
    if (lora->y)
      op->setOperand(2, lora->y);
    branchArgs.emplace(lora->branch, lora->branchDims);
    branchArgs->operand(0, {lora->branchDims.m, lora->branchDims.k});
    branchArgs->operand(1, {lora->branchDims.n, lora->branchDims.k});
    branchArgs->size(lora->branchDims.k);
  }
  CallArgs args(op, dims, codes);
  args.constant(w.format);
  args.constant(w.group);
  args.constant((w.zeroPoints ? 1 : 0) | (int8Activations ? 2 : 0) |
                (perTokenBits ? 4 | (perTokenBits << 8) : 0) |
                (w.transposed ? 8 : 0) |
                ((lora && lora->y) || overwrite ? 16 : 0) | (codes ? 32 : 0) |
                (perTokenBits ? 0 : precisionFlag));
  args.sizes({dims.m, dims.n, dims.k});
  // (Per-token codes given: A's rows quantized once for every product of
  // the quantizer, read in its place.)
  args.operand(0, {dims.m, dims.k});
  args.buffer(w.expand.getDpsInputOperand(0)->get(), 1);
  // (Double-quantized scales: their codes, laid out as the f32 scales.)
  Value scaleCodes =
      w.scaleExpand ? w.scaleExpand.getDpsInputOperand(0)->get() : Value();
  args.buffer(scaleCodes ? scaleCodes : w.expand.getDpsInputOperand(1)->get(),
              w.scaleRowFactor);
  if (w.zeroPoints)
    args.buffer(w.expand.getDpsInputOperand(2)->get(), w.scaleRowFactor);
  else
    args.zeros(3);
  args.operand(2, {dims.m, dims.n});
  // The CUDA entries: the double-quantized scales (codes, absmax, block,
  // offset bits, table; zeros: none).
  if (cuda && scaleCodes) {
    args.pointer(scaleCodes);
    args.pointer(w.scaleExpand.getDpsInputOperand(1)->get());
    args.constant(w.nestedBlock);
    args.constant(int64_t(llvm::bit_cast<uint32_t>(w.nestedOffset)));
    args.pointer(w.scaleTable);
  } else if (cuda && codes) {
    // (The nested scales' first slots: the rows' steps.)
    args.pointer(steps);
    args.zeros(6);
  } else if (cuda) {
    args.zeros(8);
  }
  if (lora) {
    args.append(*branchArgs);
    args.constant(int64_t(llvm::bit_cast<uint32_t>(lora->scale)));
    // The down projection's A (pointer, offset, strides along the outer
    // loops, the rank and K; zeros: z is given). (The caller erases z's
    // product, and its zero initialization, which the call makes dead,
    // after the other products: their zeros may be copied from the same
    // buffer until then.)
    if (lora->down) {
      CallArgs downArgs(lora->down, lora->downDims);
      downArgs.operand(1, {lora->downDims.n, lora->downDims.k});
      args.append(downArgs);
    } else {
      args.zeros(6);
    }
  }
  args.call(module, callee);
  if (lora)
    eraseLoRASum(*lora, op);
  // The call now reads the expansion's inputs: buffers freed after their
  // last use so far (double-quantized scales expanded just before) are
  // freed after the call instead.
  freeAfter(w.expand, op);
  if (w.scaleExpand)
    freeAfter(w.scaleExpand, op);
  Value expanded = op.getDpsInputOperand(1)->get();
  Value f32Scales = w.expand.getDpsInputOperand(1)->get();
  op->erase();
  w.expand->erase();
  if (w.scaleExpand) { // the nest that expanded the f32 scales
    w.scaleExpand->erase();
    eraseUnread(f32Scales); // (and the buffer, where nothing reads it)
  }
  // The buffer goes when nothing but its deallocation is left.
  Operation *alloc = expanded.getDefiningOp();
  if (llvm::all_of(alloc->getUsers(), [](Operation *user) {
        return isa<memref::DeallocOp>(user);
      })) {
    for (Operation *user : llvm::make_early_inc_range(alloc->getUsers()))
      user->erase();
    alloc->erase();
  }
}

/// The buffer `v` is a view of (itself if none).
static Value rootBuffer(Value v) {
  while (auto view = v.getDefiningOp<ViewLikeOpInterface>())
    v = view.getViewSource();
  return v;
}

/// Whether an operand of `op` is a constant or a view of one: host memory
/// on the CUDA target (generated kernels read device copies; the library
/// gets pointers).
static bool readsConstant(linalg::GenericOp op) {
  return llvm::any_of(op->getOperands(), [](Value v) {
    return rootBuffer(v).getDefiningOp<memref::GetGlobalOp>() != nullptr;
  });
}

/// Whether the CUDA kernel library's quantized products (QLinear.cu's GEMV,
/// Gemm.cu's GEMM) take the product: int4 / uint4 / int8 / uint8 / NF4 /
/// FP8 codes, a static number of W's columns and a scale group that are
/// multiples of 32 (16-byte rows of 4-bit codes), A and C contiguous along
/// K and N, no constant operand.
static bool cudaGemvTakes(linalg::GenericOp op, const GemmDims &dims,
                          QuantizedWeight w) {
  if (w.format < 0 || w.format > 6 || w.group % 32 != 0)
    return false;
  // Constants (memref.get_global, or views of them) live in host memory,
  // which the GPU cannot read: such products stay generated kernels, which
  // read their own device copies.
  if (readsConstant(op) || readsConstant(w.expand))
    return false;
  auto codes =
      cast<MemRefType>(w.expand.getDpsInputOperand(0)->get().getType());
  if (ShapedType::isDynamic(codes.getShape()[1]))
    return false;
  bool fourBit = w.format == 0 || w.format == 1 || w.format == 4;
  int64_t k = codes.getShape()[1] * (fourBit ? 2 : 1);
  if (k % 32 != 0)
    return false;
  // Unit strides along K in A and along N in C, as the GEMV reads them.
  auto unitStride = [&](unsigned operand, unsigned dim) {
    Value v = op->getOperand(operand);
    auto type = cast<MemRefType>(v.getType());
    AffineMap map = op.getIndexingMapsArray()[operand];
    if (map.getNumResults() == 0 ||
        map.getResults().back() != getAffineDimExpr(dim, op.getContext()))
      return false;
    return type.isLastDimUnitStride();
  };
  return unitStride(0, dims.k) && unitStride(2, dims.n);
}

/// Whether `op` or an operation nested in it has `buffer` as an operand.
static bool usesBuffer(Operation *op, Value buffer) {
  bool found = false;
  op->walk([&](Operation *nested) {
    for (Value v : nested->getOperands())
      found |= isa<MemRefType>(v.getType()) && rootBuffer(v) == buffer;
  });
  return found;
}

/// Whether `op` only reads `buffer` or its views (a loop nest's input, a
/// copy's source, sizes, a view: whose own uses count as the buffer's).
static bool onlyReads(Operation *op, Value buffer) {
  auto in = [&](Value v) { return rootBuffer(v) == buffer; };
  if (auto copy = dyn_cast<memref::CopyOp>(op))
    return !in(copy.getTarget());
  if (isa<memref::DimOp, memref::ExtractStridedMetadataOp,
          memref::ExtractAlignedPointerAsIndexOp, ViewLikeOpInterface>(op))
    return true;
  auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
  return linalgOp && llvm::none_of(linalgOp.getDpsInits(), in);
}

/// Whether `buffer` holds zeros where `at` (in the same block) starts: the
/// last operation before it that writes `buffer` fills it with 0 or copies
/// a buffer holding zeros there.
static bool zeroAt(Value buffer, Operation *at, int depth = 0) {
  for (Operation *op = at->getPrevNode(); op; op = op->getPrevNode()) {
    if (!usesBuffer(op, buffer) || onlyReads(op, buffer))
      continue;
    if (isa<linalg::FillOp>(op))
      return isZeroFill(op, buffer);
    auto copy = dyn_cast<memref::CopyOp>(op);
    return copy && copy.getTarget() == buffer && depth == 0 &&
           rootBuffer(copy.getSource()) == copy.getSource() &&
           zeroAt(copy.getSource(), copy, depth + 1);
  }
  return false;
}

/// Whether the product `product` accumulates into `buffer` from zeros and
/// `sum` (later, in the same block) is the only reader of the result: no
/// other use between them, and after `sum` the next use (if any) frees or
/// overwrites the buffer.
static bool readOnlyBySum(Value buffer, linalg::GenericOp product,
                          linalg::GenericOp sum) {
  Block *block = product->getBlock();
  if (sum->getBlock() != block || !product->isBeforeInBlock(sum) ||
      product.getDpsInitOperand(0)->get() != buffer ||
      llvm::is_contained(product.getDpsInputs(), buffer) ||
      llvm::count(sum->getOperands(), buffer) != 1 || !zeroAt(buffer, product))
    return false;
  for (Operation *op = product->getNextNode(); op != sum.getOperation();
       op = op->getNextNode())
    if (usesBuffer(op, buffer))
      return false;
  for (Operation *op = sum->getNextNode(); op; op = op->getNextNode()) {
    if (!usesBuffer(op, buffer))
      continue;
    if (isa<memref::DeallocOp>(op) || isZeroFill(op, buffer))
      return true;
    auto copy = dyn_cast<memref::CopyOp>(op);
    return copy && copy.getTarget() == buffer;
  }
  return true;
}

/// In the body of `sum`, the addition p + s·q (or p + q: s = 1) of the
/// block arguments `baseIndex` (p) and `branchIndex` (q), their only use;
/// null if there is none.
static Operation *branchSum(linalg::GenericOp sum, unsigned baseIndex,
                            unsigned branchIndex, float &scale) {
  Block &body = sum.getRegion().front();
  Value p = body.getArgument(baseIndex), q = body.getArgument(branchIndex);
  if (!p.hasOneUse() || !q.hasOneUse())
    return nullptr;
  auto add = dyn_cast<arith::AddFOp>(*p.getUsers().begin());
  if (!add)
    return nullptr;
  Value other = add.getLhs() == p ? add.getRhs() : add.getLhs();
  if (other == q) {
    scale = 1.0f;
    return add;
  }
  auto mul = other.getDefiningOp<arith::MulFOp>();
  if (!mul || mul->getBlock() != &body || !other.hasOneUse())
    return nullptr;
  Value c = mul.getLhs() == q   ? mul.getRhs()
            : mul.getRhs() == q ? mul.getLhs()
                                : Value();
  FloatAttr attr;
  if (!c || !matchPattern(c, m_Constant(&attr)))
    return nullptr;
  scale = float(attr.getValueAsDouble());
  return add;
}

/// Whether, strictly between `from` and `to` (in one block), `buffer` is
/// only read by loop nests or freed (deallocations move after the call).
static bool onlyReadBetween(Value buffer, Operation *from, Operation *to) {
  // (Not a view: the checks below see every access through its uses'
  // roots, and its deallocation is its own.)
  if (rootBuffer(buffer) != buffer)
    return false;
  for (Operation *op = from->getNextNode(); op && op != to;
       op = op->getNextNode())
    if (usesBuffer(op, buffer) && !onlyReads(op, buffer) &&
        !(isa<memref::DeallocOp>(op) && op->getOperand(0) == buffer))
      return false;
  return true;
}

/// The one loop nest other than `known` that uses `buffer` (null if none
/// or several).
static linalg::GenericOp otherLoopNest(Value buffer, Operation *known) {
  linalg::GenericOp found;
  for (Operation *user : buffer.getUsers())
    if (auto g = dyn_cast<linalg::GenericOp>(user); g && g != known) {
      if (found && found != g)
        return nullptr;
      found = g;
    }
  return found;
}

/// Where W's f32 scales are double-quantized ones a loop nest expanded
/// just for W (scale i = table[code i] · absmax[i / block] (+ offset), the
/// table a constant of 256 values: the 8-bit dynamic code), records that
/// nest in `w`, so that the CUDA library reads the codes, absmax and
/// table instead of an f32 copy (QLoRA's NF4 weights: a byte per 64
/// codes rather than 4 bytes).
static void matchNestedScales(QuantizedWeight &w, linalg::GenericOp op) {
  Value scales = w.expand.getDpsInputOperand(1)->get();
  auto scalesType = dyn_cast<MemRefType>(scales.getType());
  if (!scales.getDefiningOp<memref::AllocOp>() || !scalesType ||
      scalesType.getRank() != 1)
    return;
  // The nest: the last use of the buffer before the expansion (which
  // bufferization may reuse for several layers' scales); the next use
  // after the expansion frees or overwrites it (the call does not read
  // the f32 scales: the expansion was their only reader).
  // (The buffer is this block's: one allocated outside a loop may hold
  // the scales a previous iteration read.)
  if (w.expand->getBlock() != op->getBlock() ||
      scales.getDefiningOp()->getBlock() != op->getBlock())
    return;
  Operation *prev = w.expand->getPrevNode();
  while (prev && !usesBuffer(prev, scales))
    prev = prev->getPrevNode();
  auto s = dyn_cast_or_null<linalg::GenericOp>(prev);
  if (!s || s.getNumDpsInputs() != 2 || s.getNumDpsInits() != 1 ||
      s.getDpsInitOperand(0)->get() != scales || s.getNumLoops() != 1 ||
      s.getNumParallelLoops() != 1 || readsConstant(s) ||
      usesBuffer(&s.getRegion().front().back(), scales))
    return;
  for (Operation *next = w.expand->getNextNode(); next;
       next = next->getNextNode()) {
    if (next == op.getOperation() || !usesBuffer(next, scales))
      continue;
    // (An overwrite writes every element without reading the old ones.)
    auto writer = dyn_cast<linalg::GenericOp>(next);
    bool overwrites =
        writer && writer.getNumDpsInits() == 1 &&
        writer.getDpsInitOperand(0)->get() == scales &&
        !llvm::is_contained(writer.getDpsInputs(), scales) &&
        writer.getNumParallelLoops() == writer.getNumLoops() &&
        writer.getMatchingIndexingMap(writer.getDpsInitOperand(0))
            .isPermutation() &&
        !writer.payloadUsesValueFromOperand(writer.getDpsInitOperand(0));
    if (!isa<memref::DeallocOp>(next) && !overwrites)
      return;
    break;
  }
  Value codes = s.getDpsInputOperand(0)->get(),
        absmax = s.getDpsInputOperand(1)->get();
  auto codesType = dyn_cast<MemRefType>(codes.getType());
  auto absmaxType = dyn_cast<MemRefType>(absmax.getType());
  if (!codesType || !codesType.getElementType().isInteger(8) ||
      codesType.getRank() != 1 || !codesType.isLastDimUnitStride() ||
      !absmaxType || !absmaxType.getElementType().isF32() ||
      absmaxType.getRank() != 1 || !absmaxType.isLastDimUnitStride() ||
      !onlyReadBetween(codes, s, op) || !onlyReadBetween(absmax, s, op))
    return;
  SmallVector<AffineMap> maps = s.getIndexingMapsArray();
  if (!maps[0].isIdentity() || !maps[2].isIdentity() ||
      maps[1].getNumResults() != 1)
    return;
  // absmax[i / block] (one block: absmax[0]).
  int64_t block = 0;
  AffineExpr e = maps[1].getResult(0);
  if (auto c = dyn_cast<AffineConstantExpr>(e); c && c.getValue() == 0)
    block = int64_t(1) << 62;
  else if (auto div = dyn_cast<AffineBinaryOpExpr>(e);
           div && div.getKind() == AffineExprKind::FloorDiv &&
           div.getLHS() == getAffineDimExpr(0, op.getContext()))
    if (auto c = dyn_cast<AffineConstantExpr>(div.getRHS()))
      block = c.getValue();
  if (block <= 0)
    return;
  // The body: table[index_castui(code)] * absmax (+ offset).
  Block &body = s.getRegion().front();
  Value code = body.getArgument(0), scale = body.getArgument(1);
  Value result = body.getTerminator()->getOperand(0);
  float offset = 0.0f;
  if (auto add = result.getDefiningOp<arith::AddFOp>()) {
    FloatAttr c;
    Value other = matchPattern(add.getRhs(), m_Constant(&c))   ? add.getLhs()
                  : matchPattern(add.getLhs(), m_Constant(&c)) ? add.getRhs()
                                                               : Value();
    if (!other)
      return;
    offset = float(c.getValueAsDouble());
    result = other;
  }
  auto mul = result.getDefiningOp<arith::MulFOp>();
  if (!mul)
    return;
  Value looked = mul.getLhs() == scale   ? mul.getRhs()
                 : mul.getRhs() == scale ? mul.getLhs()
                                         : Value();
  auto load = looked ? looked.getDefiningOp<memref::LoadOp>() : nullptr;
  if (!load || load.getIndices().size() != 1)
    return;
  auto cast = load.getIndices()[0].getDefiningOp<arith::IndexCastUIOp>();
  auto table = load.getMemRef().getDefiningOp<memref::GetGlobalOp>();
  // (A constant: the call copies the table when it runs.)
  auto global = table ? SymbolTable::lookupNearestSymbolFrom<memref::GlobalOp>(
                            table, table.getNameAttr())
                      : memref::GlobalOp();
  if (!global || !global.getConstant())
    return;
  auto tableType =
      cast ? dyn_cast<MemRefType>(load.getMemRef().getType()) : MemRefType();
  if (!cast || cast.getIn() != code || !table || !tableType ||
      tableType.getRank() != 1 || tableType.getShape()[0] != 256 ||
      !tableType.getElementType().isF32() ||
      body.getOperations().size() != (offset != 0.0f ? 5u : 4u))
    return;
  w.scaleExpand = s;
  w.nestedBlock = block;
  w.nestedOffset = offset;
  w.scaleTable = load.getMemRef();
}

/// Where the product `op` accumulates into zeros that only it reads (C
/// allocated here, contiguous, every element its own: all outer loops
/// index C, or with `shared` none does: every product adds into all of C,
/// as a weight gradient sums over batch and sequence; the last operation
/// before it that uses C fills C with 0 or copies zeros into it): erases
/// that initialization, so that the call writes C (C = A·B: on the CUDA
/// target, one kernel launch fewer; the f32 GEMM's launches fold such
/// loops into K, or the first product writes and the rest add), and
/// returns true.
static bool dropZeroInit(linalg::GenericOp op, const GemmDims &dims,
                         bool shared = false) {
  Value c = op.getDpsInitOperand(0)->get();
  auto type = dyn_cast<MemRefType>(c.getType());
  AffineMap cMap = op.getIndexingMapsArray()[2];
  auto indexesC = [&](unsigned d) { return uses(cMap, d); };
  if (!c.getDefiningOp<memref::AllocOp>() || !type ||
      !type.getLayout().isIdentity() ||
      llvm::is_contained(op.getDpsInputs(), c) ||
      !llvm::all_of(cMap.getResults(),
                    [](AffineExpr e) { return isa<AffineDimExpr>(e); }) ||
      !(llvm::all_of(dims.outer, indexesC) ||
        (shared && llvm::none_of(dims.outer, indexesC))))
    return false;
  // (Size queries do not read C.)
  Operation *init = op->getPrevNode();
  while (init && (!usesBuffer(init, c) || isa<memref::DimOp>(init)))
    init = init->getPrevNode();
  if (!init || !zeroAt(c, op))
    return false;
  auto copy = dyn_cast<memref::CopyOp>(init);
  if (!(copy && copy.getTarget() == c) && !isZeroFill(init, c))
    return false;
  Value source = copy ? copy.getSource() : Value();
  init->erase();
  if (source)
    eraseIfOnlyZeroed(source);
  return true;
}

/// The product z = x·Aᵀ that the LoRA branch `branch` (Q = z·Bᵀ) reads,
/// where the quantized product `op` can compute it too: the last use of z
/// before the branch, from zeros, with op's loops, x and op's A the same
/// buffer read the same way, A (the down projection) not moving with the
/// outer loops and contiguous along K, x and A only read until op, z
/// written as the branch reads it (every product its own z), and nothing
/// but the branch (and z's deallocation, which moves after the call)
/// between them using z. Null where there is none.
static linalg::GenericOp matchLoRADown(linalg::GenericOp op,
                                       const GemmDims &dims,
                                       linalg::GenericOp branch,
                                       const GemmDims &bd, GemmDims &dd) {
  Value z = branch.getDpsInputOperand(0)->get();
  Block *block = op->getBlock();
  auto alloc = z.getDefiningOp<memref::AllocOp>();
  if (!alloc || alloc->getBlock() != block)
    return {};
  Operation *prev = branch->getPrevNode();
  while (prev && !usesBuffer(prev, z))
    prev = prev->getPrevNode();
  auto down = dyn_cast_or_null<linalg::GenericOp>(prev);
  std::optional<GemmDims> found = down ? matchGemm(down) : std::nullopt;
  if (!found || down.getDpsInitOperand(0)->get() != z ||
      down.getNumLoops() != op.getNumLoops() || found->outer != dims.outer ||
      found->m != dims.m || found->n != dims.n || found->k != dims.k ||
      readsConstant(down) || matchQuantized(down, *found))
    return {};
  SmallVector<AffineMap> maps = down.getIndexingMapsArray();
  Value x = down.getDpsInputOperand(0)->get();
  Value a = down.getDpsInputOperand(1)->get();
  MLIRContext *ctx = op.getContext();
  if (x != op.getDpsInputOperand(0)->get() ||
      maps[0] != op.getIndexingMapsArray()[0] || rootBuffer(x) == z ||
      rootBuffer(a) == z || llvm::count(down.getDpsInputs(), z))
    return {};
  // A: (rank, K), K contiguous, the same for every product.
  for (unsigned d : dims.outer)
    if (uses(maps[1], d) || !uses(maps[2], d))
      return {};
  if (maps[1].getNumResults() == 0 ||
      maps[1].getResults().back() != getAffineDimExpr(found->k, ctx) ||
      !cast<MemRefType>(a.getType()).isLastDimUnitStride())
    return {};
  // z as the down projection writes it = z as the branch reads it (the
  // branch's K is the rank, the down projection's N).
  AffineMap read = branch.getIndexingMapsArray()[0].replace(
      getAffineDimExpr(bd.k, ctx), getAffineDimExpr(found->n, ctx),
      branch.getNumLoops(), 0);
  // (x may be a view, e.g. of a norm's [rows, D] output reshaped: its
  // buffer is what must not change.)
  if (read != maps[2] || !zeroAt(z, down) ||
      !onlyReadBetween(rootBuffer(x), down, op) ||
      !onlyReadBetween(rootBuffer(a), down, op))
    return {};
  for (Operation *between = down->getNextNode(); between != op.getOperation();
       between = between->getNextNode())
    if (between != branch.getOperation() && usesBuffer(between, z) &&
        !(isa<memref::DeallocOp>(between) && between->getOperand(0) == z))
      return {};
  dd = *found;
  return down;
}

/// A LoRA layer's sum around the quantized product `op` (P = x·Wᵀ from
/// zeros): a loop nest y = P + s·Q, the only reader of P and Q, Q = z·Bᵀ
/// an f32 product from zeros with op's outer and output loops, before op,
/// its operands only read between (B not moving with the outer loops; z
/// and B contiguous along the rank), y contiguous and untouched between
/// op and the sum, op's outer loops all indexing C (every product its own
/// outputs: the call writes them, flag 16).
static std::optional<LoRASum> matchLoRASum(linalg::GenericOp op,
                                           const GemmDims &dims) {
  Value p = op.getDpsInitOperand(0)->get();
  AffineMap cMap = op.getIndexingMapsArray()[2];
  if (!llvm::all_of(dims.outer, [&](unsigned d) { return uses(cMap, d); }))
    return std::nullopt;
  // P and Q are this block's own buffers (not arguments or views that
  // other code reads).
  Block *block = op->getBlock();
  auto local = [&](Value v) {
    auto alloc = v.getDefiningOp<memref::AllocOp>();
    return alloc && alloc->getBlock() == block;
  };
  if (!local(p))
    return std::nullopt;
  linalg::GenericOp sum = otherLoopNest(p, op);
  if (!sum || !sum.hasPureBufferSemantics() || sum.getNumDpsInits() != 1 ||
      sum.getNumParallelLoops() != sum.getNumLoops())
    return std::nullopt;
  // P and Q: two inputs read element for element (identity maps), P once.
  SmallVector<AffineMap> sumMaps = sum.getIndexingMapsArray();
  int baseIndex = -1;
  for (OpOperand *input : sum.getDpsInputOperands())
    if (input->get() == p) {
      if (baseIndex >= 0)
        return std::nullopt;
      baseIndex = int(input->getOperandNumber());
    }
  if (baseIndex < 0 || !sumMaps[baseIndex].isIdentity())
    return std::nullopt;
  Value q;
  Operation *add = nullptr;
  unsigned branchIndex = 0;
  float scale = 1.0f;
  for (OpOperand *input : sum.getDpsInputOperands()) {
    unsigned i = input->getOperandNumber();
    if (int(i) == baseIndex || input->get().getType() != p.getType() ||
        !sumMaps[i].isIdentity() ||
        llvm::count(sum.getDpsInputs(), input->get()) != 1)
      continue;
    if ((add = branchSum(sum, unsigned(baseIndex), i, scale))) {
      q = input->get();
      branchIndex = i;
      break;
    }
  }
  if (!add)
    return std::nullopt;
  // The nest is the sum alone (y = P + s·Q): the call writes y.
  Value y = sum.getDpsInitOperand(0)->get();
  auto yType = dyn_cast<MemRefType>(y.getType());
  Block &body = sum.getRegion().front();
  if (!local(q))
    return std::nullopt;
  bool alone = sum.getNumDpsInputs() == 2 && sumMaps[2].isIdentity() &&
               body.getTerminator()->getOperand(0) == add->getResult(0) &&
               y != p && y != q && yType && yType.getLayout().isIdentity() &&
               yType.getElementType().isF32();
  // y exists where the call goes.
  if (Operation *def = y.getDefiningOp())
    alone &= def->getBlock() == block && def->isBeforeInBlock(op);
  else
    alone &= y.getParentBlock() == block;
  linalg::GenericOp branch = otherLoopNest(q, sum);
  std::optional<GemmDims> bd = branch ? matchGemm(branch) : std::nullopt;
  if (!bd || branch->getBlock() != block || !branch->isBeforeInBlock(op) ||
      branch.getNumLoops() != op.getNumLoops() || bd->m != dims.m ||
      bd->n != dims.n || bd->outer != dims.outer ||
      branch.getIndexingMapsArray()[2] != cMap || readsConstant(branch) ||
      matchQuantized(branch, *bd))
    return std::nullopt;
  SmallVector<AffineMap> bMaps = branch.getIndexingMapsArray();
  for (unsigned d : dims.outer)
    if (uses(bMaps[1], d))
      return std::nullopt;
  MLIRContext *ctx = op.getContext();
  for (unsigned i : {0u, 1u}) {
    Value v = branch.getDpsInputOperand(i)->get();
    if (bMaps[i].getNumResults() == 0 ||
        bMaps[i].getResults().back() != getAffineDimExpr(bd->k, ctx) ||
        !cast<MemRefType>(v.getType()).isLastDimUnitStride() ||
        !onlyReadBetween(v, branch, op))
      return std::nullopt;
  }
  if (!readOnlyBySum(p, op, sum) || !readOnlyBySum(q, branch, sum))
    return std::nullopt;
  // Nothing between the call and the sum touches y, if the call writes it,
  // and y is none of the buffers the call reads (bufferization may reuse
  // x's for it).
  Value yRoot = rootBuffer(y);
  for (Value v : llvm::concat<Value>(op.getDpsInputs(), branch.getDpsInputs()))
    alone &= rootBuffer(v) != yRoot;
  for (Operation *between = op->getNextNode();
       alone && between != sum.getOperation(); between = between->getNextNode())
    between->walk([&](Operation *nested) {
      for (Value v : nested->getOperands())
        if (isa<MemRefType>(v.getType()) && rootBuffer(v) == yRoot)
          alone = false;
    });
  LoRASum l{branch, *bd, sum, alone ? y : Value(), add, branchIndex,
            scale,  p,   q};
  l.down = matchLoRADown(op, dims, branch, *bd, l.downDims);
  // (The call writes z: neither P nor y may be it; it writes y while its
  // first blocks read A: y may not be A either.)
  if (l.down) {
    Value z = branch.getDpsInputOperand(0)->get();
    Value a = l.down.getDpsInputOperand(1)->get();
    if (rootBuffer(p) == z ||
        (l.y && (rootBuffer(l.y) == z || rootBuffer(l.y) == rootBuffer(a))))
      l.down = {};
  }
  return l;
}

/// Erases the loops that only write `buffer` (allocated here) when nothing
/// reads it any more, with its allocation, then the same for the buffers
/// those loops read (a quantizer's scales and their reductions).
static void eraseUnread(Value buffer) {
  SmallVector<Value> work{buffer};
  llvm::DenseSet<Value> seen;
  while (!work.empty()) {
    Value b = work.pop_back_val();
    if (!seen.insert(b).second || !b.getDefiningOp<memref::AllocOp>())
      continue;
    SmallVector<Operation *> writers, frees;
    for (OpOperand &use : b.getUses()) {
      auto linalgOp = dyn_cast<linalg::LinalgOp>(use.getOwner());
      if (isa<memref::DeallocOp>(use.getOwner()))
        frees.push_back(use.getOwner());
      else if (linalgOp && linalgOp.isDpsInit(&use) &&
               linalgOp->getNumResults() == 0 &&
               llvm::all_of(linalgOp.getDpsInitsMutable(),
                            [&](OpOperand &o) { return o.get() == b; }) &&
               !llvm::is_contained(linalgOp.getDpsInputs(), b))
        writers.push_back(use.getOwner());
      else
        writers.clear(), frees.clear(), b = Value();
      if (!b)
        break;
    }
    if (!b)
      continue;
    for (Operation *writer : writers)
      for (Value input : cast<linalg::LinalgOp>(writer).getDpsInputs())
        if (isa<MemRefType>(input.getType()))
          work.push_back(input);
    llvm::SmallPtrSet<Operation *, 8> gone;
    for (Operation *o : llvm::concat<Operation *>(writers, frees))
      if (gone.insert(o).second)
        o->erase();
    b.getDefiningOp()->erase();
  }
}

namespace {
/// On the CUDA target, one per-token quantizer's rows quantized once
/// (`call`, of qopt_cuda_quantize_rows, just before the quantizer) into
/// int8 `codes` laid out as its input `x` and `steps` (x's shape without
/// K), which every W8A8 product of its output reads; freed after the last.
struct SharedCodes {
  Value x, codes, steps;
  func::CallOp call;
  Operation *freeCodes, *freeSteps;
};

/// The quantizers' shared codes (qopt-linalg-to-blas{cuda-quantize-rows}).
struct TokenCodes {
  TokenCodes(ModuleOp module, StringRef quantizeRows)
      : module(module), quantizeRows(quantizeRows) {}

  ModuleOp module;
  StringRef quantizeRows;
  SmallVector<SharedCodes> all;
  llvm::DenseMap<Operation *, unsigned> byQuantizer;

  /// The codes of `quantizer`'s input `x` (identity layout) at `bits`,
  /// laid out as its output `a`, made before it on first use; freed after
  /// `product`.
  SharedCodes &get(linalg::GenericOp quantizer, Value x, Value a, int64_t bits,
                   Operation *product) {
    auto [it, fresh] = byQuantizer.try_emplace(quantizer, all.size());
    if (!fresh) {
      SharedCodes &s = all[it->second];
      if (s.freeCodes->isBeforeInBlock(product)) {
        s.freeCodes->moveAfter(product);
        s.freeSteps->moveAfter(s.freeCodes);
      }
      return s;
    }
    OpBuilder b(quantizer);
    Location loc = quantizer.getLoc();
    // (The sizes of A's allocation where it has one: x's views then need
    // not outlive the quantization.)
    auto aType = cast<MemRefType>(a.getType());
    auto aAlloc = a.getDefiningOp<memref::AllocOp>();
    int64_t rank = aType.getRank();
    SmallVector<Value> sizes(rank);
    SmallVector<Value> dynamic;
    for (int64_t i = 0; i < rank; ++i) {
      if (!aType.isDynamicDim(i))
        sizes[i] = arith::ConstantIndexOp::create(b, loc, aType.getDimSize(i));
      else if (aAlloc)
        sizes[i] = aAlloc.getDynamicSizes()[dynamic.size()];
      else
        sizes[i] = memref::DimOp::create(b, loc, x, i);
      if (aType.isDynamicDim(i))
        dynamic.push_back(sizes[i]);
    }
    IntegerAttr align = b.getI64IntegerAttr(64);
    Value codes = memref::AllocOp::create(
        b, loc, MemRefType::get(aType.getShape(), b.getI8Type()), dynamic,
        align);
    Value steps = memref::AllocOp::create(
        b, loc, MemRefType::get(aType.getShape().drop_back(), b.getF32Type()),
        ValueRange(dynamic).take_front(
            aType.isDynamicDim(rank - 1) ? dynamic.size() - 1 : dynamic.size()),
        align);
    Value rows = arith::ConstantIndexOp::create(b, loc, 1);
    for (int64_t i = 0; i + 1 < rank; ++i)
      rows = arith::MulIOp::create(b, loc, rows, sizes[i]);
    Value k = sizes[rank - 1];
    auto pointer = [&](Value v) -> Value {
      return memref::ExtractAlignedPointerAsIndexOp::create(b, loc, v);
    };
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value offset =
        memref::ExtractStridedMetadataOp::create(b, loc, x).getOffset();
    // (x has the identity layout: its rows are K apart.)
    func::CallOp call = callFunction(
        b, loc, module, quantizeRows,
        {arith::ConstantIndexOp::create(b, loc, bits), rows, k, pointer(x),
         offset, k, pointer(codes), zero, pointer(steps), zero,
         /*smoothing: none*/ zero, zero, zero, zero});
    b.setInsertionPointAfter(product);
    Operation *freeCodes = memref::DeallocOp::create(b, loc, codes);
    Operation *freeSteps = memref::DeallocOp::create(b, loc, steps);
    all.push_back({x, codes, steps, call, freeCodes, freeSteps});
    return all.back();
  }
};
} // namespace

/// Where the product `op` (with integer weight codes) reads activations
/// that a per-token quantizer loop wrote (kPerTokenQuantAttr): makes it
/// read the quantizer's input instead, which the kernel quantizes as the
/// loop does and multiplies in integers, and returns the bits (0 where the
/// pattern is not there, or the input may be written or freed before the
/// product: then nothing changes). With `shared` (CUDA) and an input of
/// the identity layout, the product reads the rows' codes quantized once
/// for all the quantizer's products instead (`*codes`: A is unchanged,
/// the call reads them in its place).
static int64_t readQuantizerInput(linalg::GenericOp op, const GemmDims &dims,
                                  const QuantizedWeight &w, bool cuda = false,
                                  TokenCodes *shared = nullptr,
                                  SharedCodes **codes = nullptr) {
  bool fp8Weight = w.format == 5 || w.format == 6; // FP8 E4M3FN, E5M2
  if ((w.format < 0 || w.format > 3) && !(cuda && fp8Weight))
    return 0; // (the CPU: int4, uint4, int8, uint8)
  // The CUDA library's W8A8 GEMM (W8A8Tile.h) multiplies int8 words: codes
  // minus zero points must fit, scales be f32, tokens at most 8 bits; or
  // E4M3 tokens times FP8 codes with one scale per row of W.
  auto scalePerRow = [&] {
    auto type = cast<QTensorType>(
        cast<TypeAttr>(w.expand->getAttr(kDequantizedAttr)).getValue());
    return w.group == type.getShape()[1];
  };
  if (cuda &&
      (w.format == 3 || (w.format == 2 && w.zeroPoints) || w.scaleExpand ||
       w.transposed || (fp8Weight && (w.zeroPoints || !scalePerRow()))))
    return 0;
  // The kernel quantizes along the product's K: A's last axis must be it,
  // as the quantizer's rows are.
  OpOperand *aOperand = op.getDpsInputOperand(0);
  AffineMap aMap = op.getMatchingIndexingMap(aOperand);
  if (aMap.getNumResults() == 0 ||
      aMap.getResults().back() != getAffineDimExpr(dims.k, op.getContext()))
    return 0;
  Value a = aOperand->get();
  // The quantizer: the last op before the product writing A.
  linalg::GenericOp quantizer;
  for (Operation *it = op->getPrevNode(); it && !quantizer;
       it = it->getPrevNode()) {
    auto g = dyn_cast<linalg::GenericOp>(it);
    if (g && g->hasAttr(kPerTokenQuantAttr) && g.getNumDpsInits() == 1 &&
        g.getDpsInitOperand(0)->get() == a)
      quantizer = g;
  }
  if (!quantizer)
    return 0;
  auto bitsAttr = quantizer->getAttrOfType<IntegerAttr>(kPerTokenQuantAttr);
  int64_t bits = bitsAttr ? bitsAttr.getInt() : 0;
  // (FP8 tokens only before FP8 weights, on CUDA; integer ones before
  // integer weights.)
  bool fp8Tokens = bits == kPerTokenFP8E4M3;
  if (!bitsAttr || fp8Tokens != fp8Weight ||
      (cuda && !fp8Tokens && (bits < 2 || bits > 8)))
    return 0;
  OpOperand *input = quantizer.getDpsInputOperand(0);
  Value x = input->get();
  auto xType = dyn_cast<MemRefType>(x.getType());
  auto aType = cast<MemRefType>(a.getType());
  if (!xType || xType.getRank() != aType.getRank() ||
      xType.getElementType() != aType.getElementType() ||
      llvm::any_of(llvm::zip(xType.getShape(), aType.getShape()),
                   [](auto d) {
                     auto [p, q] = d;
                     return !ShapedType::isDynamic(p) &&
                            !ShapedType::isDynamic(q) && p != q;
                   }) ||
      !quantizer.getMatchingIndexingMap(input).isIdentity() ||
      !quantizer.getMatchingIndexingMap(quantizer.getDpsInitOperand(0))
           .isIdentity() ||
      (cuda && !xType.isLastDimUnitStride()))
    return 0;
  // x must be neither A nor the product's output, and between the
  // quantizer and the product x may only be read (by loops, views,
  // metadata, or another quantized product taking it as its activations)
  // and A not written; x's deallocation moves after the product.
  Value root = rootBuffer(x), aRoot = rootBuffer(a);
  if (root == aRoot || rootBuffer(op.getDpsInitOperand(0)->get()) == root)
    return 0;
  auto isPointerOf = [&](Value v, Value buffer) {
    auto ptr = v.getDefiningOp<memref::ExtractAlignedPointerAsIndexOp>();
    return ptr && rootBuffer(ptr.getSource()) == buffer;
  };
  SmallVector<Operation *> frees;
  for (Operation *it = quantizer->getNextNode(); it != op;
       it = it->getNextNode()) {
    if (auto dealloc = dyn_cast<memref::DeallocOp>(it)) {
      if (rootBuffer(dealloc.getMemref()) == root)
        frees.push_back(it);
      else if (rootBuffer(dealloc.getMemref()) == aRoot)
        return 0;
      continue;
    }
    bool unsafe = false;
    it->walk([&](Operation *inner) {
      if (auto call = dyn_cast<func::CallOp>(inner)) {
        // The products read their A (qopt_kernel_qlinear's 9th argument,
        // qopt_kernel_sgemm's 6th); any other use of x or A, or either
        // passed as a buffer, may write them.
        StringRef callee = call.getCallee();
        for (auto [i, arg] : llvm::enumerate(call.getOperands())) {
          bool isA =
              ((callee == kQLinear ||
                callee.starts_with("qopt_cuda_qlinear")) &&
               i == 8) ||
              ((callee == kSgemm || callee.starts_with("qopt_cuda_sgemm")) &&
               i == 5);
          if ((isPointerOf(arg, root) || isPointerOf(arg, aRoot)) && !isA)
            unsafe = true;
          if (isa<MemRefType>(arg.getType()) &&
              (rootBuffer(arg) == root || rootBuffer(arg) == aRoot))
            unsafe = true;
        }
        return;
      }
      for (OpOperand &operand : inner->getOpOperands()) {
        Value r = isa<MemRefType>(operand.get().getType())
                      ? rootBuffer(operand.get())
                      : Value();
        if (!r || (r != root && r != aRoot))
          continue;
        auto linalgOp = dyn_cast<linalg::LinalgOp>(inner);
        if (isa<ViewLikeOpInterface, memref::DimOp,
                memref::ExtractAlignedPointerAsIndexOp,
                memref::ExtractStridedMetadataOp>(inner) ||
            (linalgOp && linalgOp.isDpsInput(&operand)))
          continue;
        unsafe = true;
      }
    });
    if (unsafe)
      return 0;
  }
  if (shared && xType.getLayout().isIdentity() && xType.getRank() >= 1 &&
      aType.getLayout().isIdentity()) {
    // (x is read where the quantizer reads it: its frees stay.)
    *codes = &shared->get(quantizer, x, a, bits, op);
    return bits;
  }
  for (Operation *free : frees)
    free->moveAfter(op);
  // (A generic reads any layout: x keeps its own strides and offset.)
  aOperand->set(x);
  eraseUnread(a);
  return bits;
}

/// Whether `v` is all of `root` (itself, or casts and reshapes of it: no
/// subview), so that its rows are root's rows in order.
static bool wholeOf(Value v, Value root) {
  while (v != root) {
    Operation *def = v.getDefiningOp();
    if (!isa_and_nonnull<memref::CastOp, memref::ReshapeOp,
                         memref::CollapseShapeOp, memref::ExpandShapeOp>(def))
      return false;
    v = def->getOperand(0);
  }
  return true;
}

/// Whether `op` touches `buffer` other than through views, sizes, metadata
/// or pointers that only `allowed` takes (calls get buffers as pointers:
/// any other taker may read or write it). (This pass takes each pointer
/// just before the call it is for, so a window's calls get theirs in it.)
static bool touchesBeyond(Operation *op, Value buffer, Operation *allowed) {
  if (!usesBuffer(op, buffer))
    return false;
  if (isa<memref::ExtractAlignedPointerAsIndexOp>(op))
    return llvm::any_of(op->getUsers(),
                        [&](Operation *user) { return user != allowed; });
  return !isa<ViewLikeOpInterface, memref::DimOp,
              memref::ExtractStridedMetadataOp>(op);
}

/// Whether, strictly between `from` and `to` (one block), `buffer` (a root)
/// is only read by loop nests or views, or freed (collected in `frees`):
/// onlyReadBetween's rule, except that a pointer taken of it counts as a
/// write (it escapes to a call that may write it).
static bool onlyReadOrFreedBetween(Value buffer, Operation *from, Operation *to,
                                   SmallVectorImpl<Operation *> &frees) {
  for (Operation *it = from->getNextNode(); it != to; it = it->getNextNode()) {
    if (auto free = dyn_cast<memref::DeallocOp>(it);
        free && rootBuffer(free.getMemref()) == buffer) {
      frees.push_back(it);
      continue;
    }
    if (!usesBuffer(it, buffer))
      continue;
    if (isa<memref::ExtractAlignedPointerAsIndexOp>(it) ||
        !onlyReads(it, buffer))
      return false;
  }
  return true;
}

/// Erases `buffer` (allocated here) with its views, sizes, metadata and
/// deallocations where nothing else uses it.
static void eraseIfOnlyViewed(Value buffer) {
  if (!buffer.getDefiningOp<memref::AllocOp>())
    return;
  SmallVector<Operation *> ops;
  llvm::SmallPtrSet<Operation *, 16> seen;
  SmallVector<Value> work{buffer};
  while (!work.empty()) {
    Value v = work.pop_back_val();
    for (Operation *user : v.getUsers()) {
      if (!seen.insert(user).second)
        continue;
      ops.push_back(user);
      // (Metadata first: extract_strided_metadata is view-like too, but its
      // sizes and strides must be unused.)
      if (isa<memref::ExtractStridedMetadataOp,
              memref::ExtractAlignedPointerAsIndexOp, memref::DimOp>(user)) {
        if (!user->use_empty())
          return;
      } else if (auto view = dyn_cast<ViewLikeOpInterface>(user)) {
        if (view.getViewSource() != v)
          return; // (used as a shape, not viewed)
        work.push_back(user->getResult(0));
      } else if (!isa<memref::DeallocOp>(user)) {
        return;
      }
    }
  }
  // (Users first: each view's uses are later in the list.)
  for (Operation *o : llvm::reverse(ops))
    o->erase();
  buffer.getDefiningOp()->erase();
}

/// Replaces the rows' quantization `codes.call` by `fused` (built just
/// before it): the deallocations in `frees` move after `fused`, and the
/// quantization's reads of its rows (their pointer and offset, arguments 3
/// and 4) go with it where nothing else uses them.
static void replaceQuantization(SharedCodes &codes, func::CallOp fused,
                                ArrayRef<Operation *> frees) {
  for (Operation *free : frees)
    free->moveAfter(fused);
  llvm::SmallSetVector<Operation *, 2> reads;
  for (unsigned i : {3u, 4u})
    if (Operation *def = codes.call->getOperand(i).getDefiningOp())
      reads.insert(def);
  codes.call->erase();
  codes.call = fused;
  for (Operation *def : reads)
    if (def->use_empty())
      def->erase();
}

/// Where the rows `codes.call` quantizes are the whole output y of a call
/// of the row kernel `producer` (qopt_cuda_norm, qopt_cuda_hadamard:
/// `operands` operands, y the last, a [rows, K] buffer nothing reads in
/// between, K static and at most `maxK`), one call of `fused` at the
/// quantization
/// computes the rows and their codes and steps (and y where something
/// reads it later); the producer's inputs must not be written in between.
static void fuseRowProducer(SharedCodes &codes, StringRef producer,
                            unsigned operands, StringRef fused, ModuleOp module,
                            int64_t maxK) {
  Operation *at = codes.call;
  Value root = rootBuffer(codes.x);
  auto rootType = dyn_cast<MemRefType>(root.getType());
  auto xType = cast<MemRefType>(codes.x.getType());
  // (y allocated in this block: its later readers are all after `at` here.)
  if (!root.getDefiningOp<memref::AllocOp>() ||
      root.getDefiningOp()->getBlock() != at->getBlock() || !rootType ||
      rootType.getRank() != 2 || !rootType.getLayout().isIdentity() ||
      ShapedType::isDynamic(rootType.getShape()[1]) ||
      rootType.getShape()[1] != xType.getShape().back() ||
      rootType.getShape()[1] > maxK || !wholeOf(codes.x, root))
    return;
  // The norm: the last op before writing y; nothing between may touch y
  // but views and their metadata (pointers only for the quantization).
  func::CallOp call;
  for (Operation *it = at->getPrevNode(); it && !call; it = it->getPrevNode()) {
    auto c = dyn_cast<func::CallOp>(it);
    if (c && c.getCallee() == producer && c.getNumOperands() == operands &&
        rootBuffer(c.getOperand(operands - 1)) == root) {
      call = c;
      break;
    }
    if (touchesBeyond(it, root, at))
      return;
  }
  // (y: the buffer itself, cast; rows of K in order, as x's.)
  unsigned last = operands - 1;
  Value y = call ? call.getOperand(last) : Value();
  while (auto cast = y ? y.getDefiningOp<memref::CastOp>() : nullptr)
    y = cast.getSource();
  if (!call || y != root)
    return;
  // The norm's inputs are only read (or freed: after the fused call) in
  // between.
  SmallVector<Operation *> frees;
  for (unsigned i = 0; i < last; ++i)
    if (isa<MemRefType>(call.getOperand(i).getType()) &&
        !onlyReadOrFreedBetween(rootBuffer(call.getOperand(i)), call, at,
                                frees))
      return;
  // Whether y is read after the quantization.
  bool keepY = false;
  for (Operation *it = at->getNextNode(); it && !keepY; it = it->getNextNode())
    keepY = usesBuffer(it, root) &&
            !(isa<memref::DeallocOp>(it) && it->getOperand(0) == root);
  OpBuilder b(at);
  Location loc = call.getLoc();
  SmallVector<Value> args(call.getOperands());
  // (Not written: the first input of y's type in its place. The kernels
  // read their inputs again after writing y: not in place.)
  for (unsigned i = 0; i < last; ++i) {
    if (!isa<MemRefType>(args[i].getType()))
      continue;
    if (keepY && rootBuffer(args[i]) == root)
      return;
    if (!keepY && args[i].getType() == args[last].getType() &&
        args[last] == call.getOperand(last))
      args[last] = args[i];
  }
  args.push_back(at->getOperand(0)); // bits
  args.push_back(arith::ConstantIndexOp::create(b, loc, keepY ? 1 : 0));
  for (unsigned i : {6u, 7u, 8u, 9u}) // codes, steps
    args.push_back(at->getOperand(i));
  replaceQuantization(codes, callFunction(b, loc, module, fused, args), frees);
  call->erase();
  if (!keepY)
    eraseIfOnlyViewed(root);
}

/// Where the rows `codes.call` (of qopt_cuda_quantize_rows) quantizes are
/// a loop nest's output that only smooths, y = x / s or x · s with s along
/// K (SmoothQuant's where no norm takes s in gamma), and that nothing else
/// reads, the call reads x and applies s itself (arguments 10-13: 2 for
/// x / s, 1 for x · s; the vector's pointer, offset and stride): the nest
/// and y's buffer go. x and s must only be read in between.
static void fuseSmoothing(SharedCodes &codes) {
  Operation *call = codes.call;
  Value y = codes.x;
  if (call->getNumOperands() != 14 || rootBuffer(y) != y ||
      !y.getDefiningOp<memref::AllocOp>() ||
      y.getDefiningOp()->getBlock() != call->getBlock())
    return;
  // The writer: the last op before the call to touch y beyond views and
  // metadata (pointers only for the call).
  linalg::GenericOp nest;
  for (Operation *it = call->getPrevNode(); it && !nest;
       it = it->getPrevNode()) {
    if (!touchesBeyond(it, y, call))
      continue;
    nest = dyn_cast<linalg::GenericOp>(it);
    if (!nest)
      return;
  }
  if (!nest || nest.getNumDpsInputs() != 2 || nest.getNumDpsInits() != 1 ||
      nest.getDpsInitOperand(0)->get() != y || nest.getNumReductionLoops())
    return;
  MLIRContext *ctx = nest.getContext();
  Value x = nest.getDpsInputOperand(0)->get();
  Value smooth = nest.getDpsInputOperand(1)->get();
  auto xType = dyn_cast<MemRefType>(x.getType());
  auto sType = dyn_cast<MemRefType>(smooth.getType());
  unsigned loops = nest.getNumLoops();
  SmallVector<AffineMap> maps = nest.getIndexingMapsArray();
  // (Constants are host memory, which the library cannot read.)
  if (!xType || !sType || !xType.getLayout().isIdentity() ||
      rootBuffer(x).getDefiningOp<memref::GetGlobalOp>() ||
      rootBuffer(smooth).getDefiningOp<memref::GetGlobalOp>() ||
      !xType.getElementType().isF32() || sType.getRank() != 1 ||
      !sType.getElementType().isF32() || !maps[0].isIdentity() ||
      !maps[2].isIdentity() ||
      maps[1] != AffineMap::get(loops, 0, getAffineDimExpr(loops - 1, ctx)))
    return;
  // The body: yield(a / s), or yield(a · s) either way round, no fast-math.
  Block &body = nest.getRegion().front();
  Operation *op = &body.front();
  auto fast = op->getAttrOfType<arith::FastMathFlagsAttr>("fastmath");
  int64_t mode = isa<arith::DivFOp>(op) ? 2 : isa<arith::MulFOp>(op) ? 1 : 0;
  Value a = body.getArgument(0), s = body.getArgument(1);
  if (!mode || body.getOperations().size() != 2 ||
      (fast && fast.getValue() != arith::FastMathFlags::none) ||
      body.getTerminator()->getOperand(0) != op->getResult(0) ||
      !((op->getOperand(0) == a && op->getOperand(1) == s) ||
        (mode == 1 && op->getOperand(0) == s && op->getOperand(1) == a)))
    return;
  SmallVector<Operation *> frees;
  for (Value input : {x, smooth})
    if (!onlyReadOrFreedBetween(rootBuffer(input), nest, call, frees))
      return;
  for (Operation *it = call->getNextNode(); it; it = it->getNextNode())
    if (usesBuffer(it, y) &&
        !(isa<memref::DeallocOp>(it) && it->getOperand(0) == y))
      return;
  OpBuilder b(call);
  Location loc = call->getLoc();
  auto xMeta = memref::ExtractStridedMetadataOp::create(b, loc, x);
  auto sMeta = memref::ExtractStridedMetadataOp::create(b, loc, smooth);
  SmallVector<Value> args(call->getOperands());
  // (x has the identity layout and y's shape: rows K apart, as y's.)
  args[3] = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, x);
  args[4] = xMeta.getOffset();
  args[10] = arith::ConstantIndexOp::create(b, loc, mode);
  args[11] = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, smooth);
  args[12] = sMeta.getOffset();
  args[13] = sMeta.getStrides()[0];
  replaceQuantization(
      codes,
      func::CallOp::create(b, loc, codes.call.getCallee(), TypeRange(), args),
      frees);
  nest->erase();
  codes.x = x;
  eraseIfOnlyViewed(y);
}

//===-- A train step's AdamW, one multi-tensor call ----------------------===//

/// A train step's AdamW update of one parameter (OptimizerBuilder's loop
/// nest): the step's scalars (decay and clip null where unused) and the
/// body's constants.
struct AdamWUpdate {
  linalg::GenericOp op;
  Value stepSize, bc2Sqrt, decay, clip;
  float c1 = 0, b2 = 0, c2 = 0, eps = 0;
  bool sameStep(const AdamWUpdate &o) const {
    return stepSize == o.stepSize && bc2Sqrt == o.bc2Sqrt && decay == o.decay &&
           clip == o.clip && c1 == o.c1 && b2 == o.b2 && c2 == o.c2 &&
           eps == o.eps;
  }
};

/// `v` = OpTy(a, b) without fast-math flags, with the operands either way
/// round for commutative ops (canonicalization moves constants to the
/// right), `fits` deciding which is which: true where (a, b) fits.
template <typename OpTy>
static bool binary(Value v, Value &a, Value &b,
                   function_ref<bool(Value, Value)> fits) {
  auto op = v ? v.getDefiningOp<OpTy>() : nullptr;
  if (!op || op.getFastmath() != arith::FastMathFlags::none)
    return false;
  Value l = op.getLhs(), r = op.getRhs();
  if (fits(l, r)) {
    a = l, b = r;
    return true;
  }
  if (OpTy::template hasTrait<OpTrait::IsCommutative>() && fits(r, l)) {
    a = r, b = l;
    return true;
  }
  return false;
}

/// OptimizerBuilder's AdamW nest (lib/Training/Optimizer.cpp), marked
/// qopt.adamw, exactly: p, g, m, v in; p', m', v' out; f32 buffers of one
/// shape with identity layouts, identity maps; the body
///   g = g · clip, p = p · decay (where used),
///   m' = m + c1 · (g − m), v' = v · b2 + (g · g) · c2,
///   p' = p − step · (m' / (sqrt(v') / bc2 + eps)),
/// no fast-math flags, nothing else. The library's kernel computes that
/// formula in that order.
static std::optional<AdamWUpdate> matchAdamW(linalg::GenericOp op) {
  // (Constants are host memory, which the library's kernel cannot read.)
  if (!op->hasAttr("qopt.adamw") || readsConstant(op) ||
      op.getNumDpsInputs() != 4 || op.getNumDpsInits() != 3 ||
      op.getNumParallelLoops() != op.getNumLoops() ||
      !llvm::all_of(op.getIndexingMapsArray(),
                    [](AffineMap m) { return m.isIdentity(); }))
    return std::nullopt;
  auto first = dyn_cast<MemRefType>(op->getOperand(0).getType());
  for (Value v : op->getOperands()) {
    auto type = dyn_cast<MemRefType>(v.getType());
    if (!first || !type || !type.getElementType().isF32() ||
        !type.getLayout().isIdentity() || type.getShape() != first.getShape())
      return std::nullopt;
  }
  Block &body = op.getRegion().front();
  Value p = body.getArgument(0), g = body.getArgument(1),
        m = body.getArgument(2), v = body.getArgument(3);
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  Value pNew = yield.getOperand(0), mNew = yield.getOperand(1),
        vNew = yield.getOperand(2);
  // A value from outside the nest (the step's scalars), an f32 constant.
  auto outside = [&](Value x) {
    return x && x.getType().isF32() &&
           !op.getRegion().isAncestor(x.getParentRegion());
  };
  auto constant = [](Value x, float &value) {
    FloatAttr attr;
    if (!matchPattern(x, m_Constant(&attr)) || !attr.getType().isF32())
      return false;
    value = attr.getValue().convertToFloat();
    return true;
  };
  AdamWUpdate u;
  u.op = op;
  Value a, b, c, d, e, f;
  int ops = 13;
  // x = base, or base · s with s from outside (then `scalar` = s, one more
  // op): g clipped, p decayed.
  auto scaled = [&](Value x, Value base, Value &scalar) {
    if (x == base)
      return true;
    Value l;
    if (!binary<arith::MulFOp>(x, l, scalar, [&](Value l, Value r) {
          return l == base && outside(r);
        }))
      return false;
    ++ops;
    return true;
  };
  // m' = m + c1 · (g − m)
  if (!binary<arith::AddFOp>(mNew, a, b,
                             [&](Value l, Value r) {
                               return l == m &&
                                      r.getDefiningOp<arith::MulFOp>();
                             }) ||
      !binary<arith::MulFOp>(b, c, d,
                             [&](Value l, Value r) {
                               return constant(l, u.c1) &&
                                      r.getDefiningOp<arith::SubFOp>();
                             }) ||
      !binary<arith::SubFOp>(d, e, f, [&](Value l, Value r) { return r == m; }))
    return std::nullopt;
  Value gIn = e;
  if (!scaled(gIn, g, u.clip))
    return std::nullopt;
  // v' = v · b2 + (g · g) · c2
  Value gg;
  if (!binary<arith::AddFOp>(vNew, a, b, [&](Value l, Value r) {
        Value x, y;
        return binary<arith::MulFOp>(l, x, y,
                                     [&](Value x, Value y) {
                                       return x == v && constant(y, u.b2);
                                     }) &&
               binary<arith::MulFOp>(r, gg, y, [&](Value x, Value y) {
                 Value s, t;
                 return constant(y, u.c2) &&
                        binary<arith::MulFOp>(x, s, t, [&](Value s, Value t) {
                          return s == gIn && t == gIn;
                        });
               });
      }))
    return std::nullopt;
  // p' = p − step · (m' / (sqrt(v') / bc2 + eps))
  Value denom;
  if (!binary<arith::SubFOp>(pNew, a, b, [](Value, Value) { return true; }))
    return std::nullopt;
  Value pIn = a;
  if (!binary<arith::MulFOp>(b, c, d, [&](Value l, Value r) {
        return outside(l) && r.getDefiningOp<arith::DivFOp>();
      }))
    return std::nullopt;
  u.stepSize = c;
  if (!binary<arith::DivFOp>(d, e, denom,
                             [&](Value l, Value) { return l == mNew; }) ||
      !binary<arith::AddFOp>(
          denom, a, b,
          [&](Value l, Value r) {
            Value s;
            return constant(r, u.eps) &&
                   binary<arith::DivFOp>(
                       l, s, u.bc2Sqrt, [&](Value s, Value t) {
                         auto sqrt = s.getDefiningOp<math::SqrtOp>();
                         return sqrt && sqrt.getOperand() == vNew &&
                                sqrt.getFastmath() ==
                                    arith::FastMathFlags::none &&
                                outside(t);
                       });
          }) ||
      !scaled(pIn, p, u.decay))
    return std::nullopt;
  // Nothing else in the body (constants aside).
  int count = 0;
  for (Operation &inner : body.without_terminator())
    if (!matchPattern(&inner, m_Constant()))
      ++count;
  if (count != ops)
    return std::nullopt;
  return u;
}

/// Whether `u`, which may wait until `from` (itself, or a later op of its
/// block), may wait until `to` too: strictly between `from` and `to` its
/// inputs are only read or freed (the frees, collected in `frees`, then
/// move after the call) and its outputs are not used.
static bool canDelay(AdamWUpdate &u, Operation *from, Operation *to,
                     SmallVectorImpl<Operation *> &frees) {
  for (Value input : u.op.getDpsInputs())
    if (!onlyReadOrFreedBetween(rootBuffer(input), from, to, frees))
      return false;
  for (Value output : u.op.getDpsInits())
    for (Operation *it = from->getNextNode(); it != to; it = it->getNextNode())
      if (usesBuffer(it, rootBuffer(output)))
        return false;
  return true;
}

/// One call of `callee` for `group` (updates sharing a step) at its last
/// nest: the [count, 8] table on the stack, the step's scalars; the nests
/// go and `frees` move after the call.
static void callAdamW(ArrayRef<AdamWUpdate> group, ArrayRef<Operation *> frees,
                      ModuleOp module, StringRef callee) {
  Operation *at = group.back().op;
  OpBuilder b(at);
  Location loc = at->getLoc();
  const AdamWUpdate &s = group.front();
  int64_t count = group.size();
  Value table = memref::AllocaOp::create(
      b, loc, MemRefType::get({count, 8}, b.getI64Type()));
  auto index = [&](int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  for (auto [k, u] : llvm::enumerate(group)) {
    auto store = [&](Value v, int64_t field) {
      Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), v);
      memref::StoreOp::create(b, loc, i64, table,
                              ValueRange{index(k), index(field)});
    };
    // (Identity layouts: the aligned pointer is element 0.)
    Operation *op = u.op;
    for (auto [field, operand] : llvm::enumerate(op->getOperands()))
      store(memref::ExtractAlignedPointerAsIndexOp::create(b, loc, operand),
            field);
    Value n = index(1), first = op->getOperand(0);
    auto type = cast<MemRefType>(first.getType());
    for (int64_t d = 0; d < type.getRank(); ++d)
      n = arith::MulIOp::create(
          b, loc, n,
          type.isDynamicDim(d)
              ? memref::DimOp::create(b, loc, first, d).getResult()
              : index(type.getDimSize(d)));
    store(n, 7);
  }
  auto f32 = [&](float x) {
    return arith::ConstantFloatOp::create(b, loc, b.getF32Type(), APFloat(x))
        .getResult();
  };
  // The step's scalars (AdamWTile.h's AdamWStep) go to device memory where
  // the first nest used them: qopt-serial-to-gpu then computes and stores
  // them in a kernel, and the host need not wait for the step counter.
  Value step;
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(group.front().op);
    step = memref::AllocOp::create(b, loc, MemRefType::get({4}, b.getF32Type()),
                                   b.getI64IntegerAttr(64));
    Value scalars[] = {s.stepSize, s.bc2Sqrt, s.decay ? s.decay : f32(1.0f),
                       s.clip ? s.clip : f32(1.0f)};
    for (auto [i, scalar] : llvm::enumerate(scalars))
      memref::StoreOp::create(b, loc, scalar, step, ValueRange{index(i)});
  }
  auto anyStep = MemRefType::get(
      {ShapedType::kDynamic}, b.getF32Type(),
      StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic,
                             {ShapedType::kDynamic}));
  auto anyTable = MemRefType::get(
      {ShapedType::kDynamic, ShapedType::kDynamic}, b.getI64Type(),
      StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic,
                             {ShapedType::kDynamic, ShapedType::kDynamic}));
  Value args[] = {arith::ConstantIntOp::create(b, loc, count, 64),
                  arith::ConstantIntOp::create(
                      b, loc, (s.decay ? 1 : 0) | (s.clip ? 2 : 0), 64),
                  memref::CastOp::create(b, loc, anyStep, step),
                  f32(s.c1),
                  f32(s.b2),
                  f32(s.c2),
                  f32(s.eps),
                  memref::CastOp::create(b, loc, anyTable, table)};
  func::CallOp call = callFunction(b, loc, module, callee, args);
  for (Operation *free : frees)
    free->moveAfter(call);
  b.setInsertionPointAfter(call);
  memref::DeallocOp::create(b, loc, step);
  for (const AdamWUpdate &u : group)
    u.op->erase();
}

/// Whether `pred` holds for a user of `v` or, through views, of a view of
/// it.
static bool anyUserThroughViews(Value v, function_ref<bool(Operation *)> pred) {
  return llvm::any_of(v.getUsers(), [&](Operation *user) {
    return pred(user) || (isa<ViewLikeOpInterface>(user) &&
                          llvm::any_of(user->getResults(), [&](Value view) {
                            return anyUserThroughViews(view, pred);
                          }));
  });
}

/// Where a nest writes an output into a buffer an earlier nest of `updates`
/// reads (bufferization reusing a dead gradient's allocation of this
/// block), the nest gets a fresh buffer of its own instead, which every
/// later use of the old one takes, and the old one is freed after the nest:
/// otherwise one launch could not run both.
static void unshareOutputs(MutableArrayRef<AdamWUpdate> updates) {
  llvm::SmallPtrSet<Value, 16> read;
  for (AdamWUpdate &u : updates) {
    for (OpOperand &out : u.op.getDpsInitsMutable()) {
      Value old = out.get();
      auto alloc = old.getDefiningOp<memref::AllocOp>();
      if (!read.contains(old) || !alloc ||
          alloc->getBlock() != u.op->getBlock())
        continue;
      // (u reading X too: it updates in place, which one launch can run.)
      if (llvm::any_of(u.op.getDpsInputs(),
                       [&](Value in) { return rootBuffer(in) == old; }))
        continue;
      // Uses after the nest move to the fresh buffer; a view taken before
      // it would still see the old one. (Uses outside this block: left
      // alone.)
      Operation *at = u.op;
      Block *block = at->getBlock();
      auto after = [&](Operation *user) {
        Operation *owner = block->findAncestorOpInBlock(*user);
        return owner && (owner == at || at->isBeforeInBlock(owner));
      };
      if (anyUserThroughViews(old, [&](Operation *user) {
            return !block->findAncestorOpInBlock(*user);
          }))
        continue;
      if (llvm::any_of(old.getUsers(), [&](Operation *user) {
            return isa<ViewLikeOpInterface>(user) && !after(user) &&
                   llvm::any_of(user->getResults(), [&](Value view) {
                     return anyUserThroughViews(view, after);
                   });
          }))
        continue;
      OpBuilder b(u.op);
      auto fresh = memref::AllocOp::create(
          b, alloc.getLoc(), alloc.getType(), alloc.getDynamicSizes(),
          alloc.getSymbolOperands(), alloc.getAlignmentAttr());
      old.replaceUsesWithIf(fresh, [&](OpOperand &use) {
        return use.getOwner() == at ? u.op.isDpsInit(&use)
                                    : after(use.getOwner());
      });
      b.setInsertionPointAfter(u.op);
      memref::DeallocOp::create(b, alloc.getLoc(), old);
    }
    for (Value input : u.op.getDpsInputs())
      read.insert(rootBuffer(input));
  }
}

/// The train step's AdamW nests become calls of `callee`, each for a run
/// of nests that share a step (in a block's order) and may all wait until
/// the run's last (canDelay): every nest of a step in one call unless
/// bufferization reused a buffer of one for another's.
static void rewriteAdamW(ModuleOp module, StringRef callee) {
  llvm::MapVector<Block *, SmallVector<AdamWUpdate>> byBlock;
  module.walk([&](linalg::GenericOp op) {
    if (std::optional<AdamWUpdate> u = matchAdamW(op))
      byBlock[op->getBlock()].push_back(*u);
  });
  for (auto &[block, updates] : byBlock) {
    unshareOutputs(updates);
    SmallVector<AdamWUpdate> run;
    // (The frees between the run's nests, which move after its call.)
    SmallVector<Operation *> frees;
    auto flush = [&] {
      if (!run.empty())
        callAdamW(run, frees, module, callee);
      run.clear();
      frees.clear();
    };
    // (One launch runs the run's nests at once: none may write a buffer
    // another reads or writes.)
    auto apart = [](AdamWUpdate &a, AdamWUpdate &b) {
      for (OpOperand &out : a.op.getDpsInitsMutable())
        for (Value other : b.op->getOperands())
          if (rootBuffer(out.get()) == rootBuffer(other))
            return false;
      return true;
    };
    // (Each nest of the run may wait until the run's last: checked from
    // there to the next.)
    for (AdamWUpdate &u : updates) {
      SmallVector<Operation *> more;
      bool fits = !run.empty() && run.front().sameStep(u) &&
                  llvm::all_of(run, [&](AdamWUpdate &earlier) {
                    return apart(earlier, u) && apart(u, earlier) &&
                           canDelay(earlier, run.back().op, u.op, more);
                  });
      if (fits)
        frees.append(more.begin(), more.end());
      else
        flush();
      run.push_back(u);
    }
    flush();
  }
}

namespace {
struct QOptLinalgToBLASPass
    : mlir::qopt::impl::QOptLinalgToBLASPassBase<QOptLinalgToBLASPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // The quantized CUDA calls' tensor-core flag (kQLinearBF16 / TF32).
    int64_t precisionFlag = cudaMatmulPrecision == "medium" ? 64
                            : cudaMatmulPrecision == "high" ? 128
                                                            : 0;
    if (!precisionFlag && cudaMatmulPrecision != "highest") {
      module.emitError() << "qopt-linalg-to-blas: cuda-matmul-precision="
                         << cudaMatmulPrecision
                         << ": unknown precision (highest, high or medium)";
      return signalPassFailure();
    }
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
    std::optional<TokenCodes> tokenCodes;
    if (!cudaQLinear.empty() && !cudaQuantizeRows.empty())
      tokenCodes.emplace(module, cudaQuantizeRows);
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
    // LoRA layers first: their branch's product is one of the matmuls.
    llvm::SmallPtrSet<Operation *, 16> done;
    // The products z = x·Aᵀ that fused calls compute (erased last).
    SmallVector<std::pair<linalg::GenericOp, GemmDims>> downs;
    if (!cudaQLinear.empty() && !cudaQLinearLoRA.empty())
      for (auto &[op, dims] : matmuls) {
        if (done.contains(op))
          continue;
        std::optional<QuantizedWeight> w = matchQuantized(op, dims);
        if (!w || w->transposed || !cudaGemvTakes(op, dims, *w))
          continue;
        matchNestedScales(*w, op);
        if (std::optional<LoRASum> lora = matchLoRASum(op, dims)) {
          done.insert(op);
          done.insert(lora->branch);
          if (lora->down) {
            done.insert(lora->down);
            downs.push_back({lora->down, lora->downDims});
          }
          // (Within a larger nest the call adds the branch to P, which
          // then need not start as zeros either.)
          bool overwrite = !lora->y && dropZeroInit(op, dims);
          rewriteQuantized(op, dims, *w, /*int8Activations=*/false,
                           /*perTokenBits=*/0, module, cudaQLinearLoRA, &*lora,
                           overwrite, /*cuda=*/true, Value(), Value(),
                           precisionFlag);
        }
      }
    for (auto &[op, dims] : matmuls) {
      if (done.contains(op))
        continue;
      std::optional<QuantizedWeight> w = matchQuantized(op, dims);
      if (!cudaQLinear.empty()) {
        // Products from zeros write C (flag 16, <cuda-sgemm>_overwrite):
        // the zeros' copy, a kernel of its own, goes.
        if (w && cudaGemvTakes(op, dims, *w)) {
          matchNestedScales(*w, op);
          bool overwrite = dropZeroInit(op, dims);
          // A per-token quantizer before it: the library quantizes x
          // (once for all the quantizer's products, where
          // cuda-quantize-rows is set) and multiplies the codes in
          // integers (W8A8).
          Value a = op.getDpsInputOperand(0)->get();
          SharedCodes *codes = nullptr;
          int64_t bits =
              readQuantizerInput(op, dims, *w, /*cuda=*/true,
                                 tokenCodes ? &*tokenCodes : nullptr, &codes);
          rewriteQuantized(op, dims, *w, /*int8Activations=*/false, bits,
                           module, cudaQLinear, /*lora=*/nullptr, overwrite,
                           /*cuda=*/true, codes ? codes->codes : Value(),
                           codes ? codes->steps : Value(), precisionFlag);
          if (codes)
            eraseUnread(a);
        } else if (!cudaSgemm.empty() && !readsConstant(op)) {
          bool overwrite = dropZeroInit(op, dims, /*shared=*/true);
          rewriteSgemm(op, dims, module,
                       overwrite ? cudaSgemm + "_overwrite" : cudaSgemm);
        }
        continue;
      }
      if (w && !w->transposed)
        rewriteQuantized(op, dims, *w, int8Activations,
                         readQuantizerInput(op, dims, *w), module);
      else
        rewriteSgemm(op, dims, module);
    }
    for (auto &[down, dims] : downs) {
      dropZeroInit(down, dims);
      down->erase();
    }
    // Each quantization into the norm or Hadamard transform before its
    // rows (one kernel; the Hadamard kernels' block holds a row of at most
    // 23040: HadamardTile.h's kHadamardMixedMaxElements), else its
    // smoothing into it, if a loop of its own.
    if (tokenCodes)
      for (SharedCodes &codes : tokenCodes->all) {
        auto quantizing = [&] {
          return codes.call.getCallee() == cudaQuantizeRows;
        };
        if (!cudaNorm.empty() && !cudaNormQuant.empty())
          fuseRowProducer(codes, cudaNorm, 6, cudaNormQuant, module,
                          std::numeric_limits<int64_t>::max());
        if (quantizing() && !cudaHadamard.empty() && !cudaHadamardQuant.empty())
          fuseRowProducer(codes, cudaHadamard, 7, cudaHadamardQuant, module,
                          23040);
        if (quantizing())
          fuseSmoothing(codes);
      }
    if (!cudaAdamW.empty())
      rewriteAdamW(module, cudaAdamW);
  }
};
} // namespace
