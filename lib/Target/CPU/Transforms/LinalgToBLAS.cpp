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
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"

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

/// Builds a kernel call's arguments from a contraction: loop sizes and, per
/// operand, its aligned pointer, offset and the strides of given loops.
class CallArgs {
public:
  CallArgs(linalg::GenericOp op, const GemmDims &dims)
      : op(op), b(op), loc(op.getLoc()), maps(op.getIndexingMapsArray()) {
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
                memref::DimOp::create(b, loc, op->getOperand(i), pos);
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
    Value v = op->getOperand(i);
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
  /// The callee `name` (declared private, every argument an index), called.
  void call(ModuleOp module, StringRef name) {
    auto callee = module.lookupSymbol<func::FuncOp>(name);
    if (!callee) {
      OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
      SmallVector<Type> inputs(args.size(), mb.getIndexType());
      callee = func::FuncOp::create(mb, module.getLoc(), name,
                                    mb.getFunctionType(inputs, {}));
      callee.setPrivate();
    }
    func::CallOp::create(b, loc, callee, args);
  }

private:
  linalg::GenericOp op;
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

/// C += A·Wᵀ as qopt_kernel_qlinear(format, group, flags, o0, o1, M, N, K,
/// A (pointer, offset, 4 strides), codes, scales, zero points (pointer,
/// offset, row stride each), C (pointer, offset, 4 strides)); the loop
/// nest that expanded W and its buffer go.
static void rewriteQuantized(linalg::GenericOp op, const GemmDims &dims,
                             QuantizedWeight w, bool int8Activations,
                             int64_t perTokenBits, ModuleOp module,
                             StringRef callee = kQLinear) {
  CallArgs args(op, dims);
  args.constant(w.format);
  args.constant(w.group);
  args.constant((w.zeroPoints ? 1 : 0) | (int8Activations ? 2 : 0) |
                (perTokenBits ? 4 | (perTokenBits << 8) : 0) |
                (w.transposed ? 8 : 0));
  args.sizes({dims.m, dims.n, dims.k});
  args.operand(0, {dims.m, dims.k});
  args.buffer(w.expand.getDpsInputOperand(0)->get(), 1);
  args.buffer(w.expand.getDpsInputOperand(1)->get(), w.scaleRowFactor);
  if (w.zeroPoints)
    args.buffer(w.expand.getDpsInputOperand(2)->get(), w.scaleRowFactor);
  else
    args.zeros(3);
  args.operand(2, {dims.m, dims.n});
  args.call(module, callee);
  // The call now reads the expansion's inputs: buffers freed after their
  // last use so far (double-quantized scales expanded just before) are
  // freed after the call instead.
  for (Value input : w.expand.getDpsInputs())
    for (Operation *user : llvm::make_early_inc_range(input.getUsers()))
      if (isa<memref::DeallocOp>(user) && user->getBlock() == op->getBlock() &&
          w.expand->isBeforeInBlock(user) && user->isBeforeInBlock(op))
        user->moveAfter(op);
  Value expanded = op.getDpsInputOperand(1)->get();
  op->erase();
  w.expand->erase();
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

/// Where the product `op` (with integer weight codes) reads activations
/// that a per-token quantizer loop wrote (kPerTokenQuantAttr): makes it
/// read the quantizer's input instead, which the kernel quantizes as the
/// loop does and multiplies in integers, and returns the bits (0 where the
/// pattern is not there, or the input may be written or freed before the
/// product: then nothing changes).
static int64_t readQuantizerInput(linalg::GenericOp op, const GemmDims &dims,
                                  const QuantizedWeight &w) {
  if (w.format < 0 || w.format > 3) // int4, uint4, int8, uint8
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
           .isIdentity())
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
        for (auto [i, arg] : llvm::enumerate(call.getOperands())) {
          bool isA = (call.getCallee() == kQLinear && i == 8) ||
                     (call.getCallee() == kSgemm && i == 5);
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
  for (Operation *free : frees)
    free->moveAfter(op);
  // (A generic reads any layout: x keeps its own strides and offset.)
  aOperand->set(x);
  int64_t bits =
      cast<IntegerAttr>(quantizer->getAttr(kPerTokenQuantAttr)).getInt();
  eraseUnread(a);
  return bits;
}

namespace {
struct QOptLinalgToBLASPass
    : mlir::qopt::impl::QOptLinalgToBLASPassBase<QOptLinalgToBLASPass> {
  using Base::Base;
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
    for (auto &[op, dims] : matmuls) {
      std::optional<QuantizedWeight> w = matchQuantized(op, dims);
      if (!cudaQLinear.empty()) {
        if (w && cudaGemvTakes(op, dims, *w))
          rewriteQuantized(op, dims, *w, /*int8Activations=*/false,
                           /*perTokenBits=*/0, module, cudaQLinear);
        else if (!cudaSgemm.empty() && !readsConstant(op))
          rewriteSgemm(op, dims, module, cudaSgemm);
        continue;
      }
      if (w && !w->transposed)
        rewriteQuantized(op, dims, *w, int8Activations,
                         readQuantizerInput(op, dims, *w), module);
      else
        rewriteSgemm(op, dims, module);
    }
  }
};
} // namespace
