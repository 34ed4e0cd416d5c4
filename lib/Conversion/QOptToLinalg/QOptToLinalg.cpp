//===- QOptToLinalg.cpp - QOpt ops to linalg reference semantics ----------===//

#include "qopt/Conversion/QOptToLinalg/Passes.h"

#include "qopt/Conversion/QOptToLinalg/QTensorConversion.h"
#include "qopt/Conversion/Utils/LinalgBuilders.h"
#include "qopt/Dialect/QOpt/Transforms/QuantScales.h"
#include "qopt/Support/Hadamard.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/MathExtras.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include <cmath>
#include <limits>

namespace mlir::qopt {
#define GEN_PASS_DEF_CONVERTQOPTTOLINALGPASS
#include "qopt/Conversion/QOptToLinalg/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

Value f32Const(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
}

int64_t normalizedAxis(int64_t axis, int64_t rank) {
  return axis < 0 ? axis + rank : axis;
}

/// "node '/model/layers.0/mlp/up_proj/MatMul' (qopt.linear)" for an op
/// raised from an ONNX node (its location is the node's name), else the
/// op's name: what run-time check messages start with.
std::string describe(Operation *op) {
  std::string name = op->getName().getStringRef().str();
  if (auto loc = dyn_cast<NameLoc>(op->getLoc()))
    return "node '" + loc.getName().str() + "' (" + name + ")";
  return name;
}

/// Stops the run with a message naming `op` unless dimension `xDim` of `x`
/// equals dimension `yDim` of `y`, where the types leave that open (a
/// static mismatch is the verifier's).
void checkSameSize(OpBuilder &b, Operation *op, Value x, int64_t xDim, Value y,
                   int64_t yDim, const Twine &what) {
  auto xType = cast<ShapedType>(x.getType());
  auto yType = cast<ShapedType>(y.getType());
  if (!xType.isDynamicDim(xDim) && !yType.isDynamicDim(yDim))
    return;
  Location loc = op->getLoc();
  auto size = [&](Value v, int64_t d) {
    return getValueOrCreateConstantIndexOp(b, loc,
                                           tensor::getMixedSize(b, loc, v, d));
  };
  Value same = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                     size(x, xDim), size(y, yDim));
  std::string message = describe(op) + ": " + what.str();
  if (!yType.isDynamicDim(yDim))
    message += " (" + std::to_string(yType.getDimSize(yDim)) + ")";
  cf::AssertOp::create(b, loc, same, message);
}

/// The dimensions from `axis` on of `x` must be those of a norm's `scale`.
void checkNormalizedSizes(OpBuilder &b, Operation *op, Value x, int64_t axis,
                          Value scale, StringRef what) {
  if (!scale)
    return;
  int64_t rank = cast<ShapedType>(x.getType()).getRank();
  for (int64_t d = axis; d < rank; ++d)
    checkSameSize(b, op, x, d, scale, d - axis,
                  "the input's dimension " + Twine(d) +
                      " differs from the size of the " + what);
}

/// Philox4x32-10 (Random123's constants and round), first word of each
/// block, one block per element: counter (index, stream, run counter lo,
/// hi), key (seed lo, hi).
/// Philox4x32-10 uniforms of `type` from `key`, as `qopt.random_uniform`
/// defines them.
Value createRandomUniform(OpBuilder &rewriter, Location loc, Value key,
                          RankedTensorType type, ValueRange dynamicSizes,
                          int64_t stream) {
  int64_t rank = type.getRank();
  Type i32 = rewriter.getI32Type(), i64 = rewriter.getI64Type();
  auto word = [&](OpBuilder &b, Location l, Value v, bool high) -> Value {
    if (high)
      v = arith::ShRUIOp::create(
          b, l, v, arith::ConstantOp::create(b, l, b.getI64IntegerAttr(32)));
    return arith::TruncIOp::create(b, l, i32, v);
  };
  auto keyAt = [&](int64_t i) -> Value {
    return tensor::ExtractOp::create(
        rewriter, loc, key,
        ValueRange{arith::ConstantIndexOp::create(rewriter, loc, i)});
  };
  Value seed = keyAt(0), counter = keyAt(1);
  Value k0 = word(rewriter, loc, seed, false),
        k1 = word(rewriter, loc, seed, true);
  Value c2 = word(rewriter, loc, counter, false),
        c3 = word(rewriter, loc, counter, true);
  Value c1 = arith::ConstantOp::create(
      rewriter, loc, rewriter.getI32IntegerAttr(static_cast<int32_t>(stream)));
  Value init = tensor::EmptyOp::create(rewriter, loc, type.getShape(),
                                       type.getElementType(), dynamicSizes);
  SmallVector<Value> sizes;
  for (int64_t d = 0; d < rank; ++d)
    sizes.push_back(getValueOrCreateConstantIndexOp(
        rewriter, loc, tensor::getMixedSize(rewriter, loc, init, d)));
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             rewriter, loc, type, ValueRange{}, init,
             rewriter.getMultiDimIdentityMap(rank), par,
             [&](OpBuilder &b, Location l, ValueRange) {
               // Row-major linear index of the element.
               Value index = arith::ConstantIndexOp::create(b, l, 0);
               for (int64_t d = 0; d < rank; ++d)
                 index = arith::AddIOp::create(
                     b, l, arith::MulIOp::create(b, l, index, sizes[d]),
                     linalg::IndexOp::create(b, l, d));
               Value x0 = word(
                   b, l, arith::IndexCastUIOp::create(b, l, i64, index), false);
               Value x1 = c1, x2 = c2, x3 = c3, key0 = k0, key1 = k1;
               auto c = [&](uint32_t v) -> Value {
                 return arith::ConstantOp::create(
                     b, l, b.getI32IntegerAttr(static_cast<int32_t>(v)));
               };
               Value m0 = c(0xD2511F53u), m1 = c(0xCD9E8D57u);
               Value w0 = c(0x9E3779B9u), w1 = c(0xBB67AE85u);
               for (int round = 0; round < 10; ++round) {
                 if (round) {
                   key0 = arith::AddIOp::create(b, l, key0, w0);
                   key1 = arith::AddIOp::create(b, l, key1, w1);
                 }
                 auto p0 = arith::MulUIExtendedOp::create(b, l, m0, x0);
                 auto p1 = arith::MulUIExtendedOp::create(b, l, m1, x2);
                 Value y0 = arith::XOrIOp::create(
                     b, l, arith::XOrIOp::create(b, l, p1.getHigh(), x1), key0);
                 Value y2 = arith::XOrIOp::create(
                     b, l, arith::XOrIOp::create(b, l, p0.getHigh(), x3), key1);
                 x0 = y0, x1 = p1.getLow(), x2 = y2, x3 = p0.getLow();
               }
               // 24 random bits as a float in [0, 1).
               Value bits = arith::ShRUIOp::create(b, l, x0, c(8));
               Value f = arith::UIToFPOp::create(b, l, b.getF32Type(), bits);
               Value scaled = arith::MulFOp::create(
                   b, l, f,
                   arith::ConstantOp::create(
                       b, l, b.getF32FloatAttr(1.0f / 16777216)));
               linalg::YieldOp::create(b, l, scaled);
             })
      .getResult(0);
}

struct LowerRandomUniform : OpRewritePattern<RandomUniformOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RandomUniformOp op,
                                PatternRewriter &rewriter) const override {
    rewriter.replaceOp(op, createRandomUniform(
                               rewriter, op.getLoc(), op.getKey(),
                               cast<RankedTensorType>(op.getResult().getType()),
                               op.getDynamicSizes(),
                               static_cast<int64_t>(op.getStream())));
    return success();
  }
};

/// A memref type of `rank` dynamic sizes and any strides and offset: how
/// the kernel library's entries take their buffers.
static MemRefType anyStridedMemRef(MLIRContext *ctx, int64_t rank,
                                   Type element) {
  SmallVector<int64_t> dynamic(rank, ShapedType::kDynamic);
  return MemRefType::get(
      dynamic, element,
      StridedLayoutAttr::get(ctx, ShapedType::kDynamic, dynamic));
}

/// What convert-qopt-to-linalg's kernel-library options ask for (the
/// entries' names, empty: linalg; keep-attention, keep-norms), and the number
/// the next library read gets (libraryRead).
struct LibraryCalls {
  std::string attention, hadamard, norm;
  bool keepAttention = false, keepNorms = false;
  int64_t nextRead = 0;
};

/// A lowering that may call the kernel library.
template <typename Op> struct LibraryPattern : OpRewritePattern<Op> {
  LibraryPattern(MLIRContext *ctx, LibraryCalls &calls)
      : OpRewritePattern<Op>(ctx), calls(calls) {}
  LibraryCalls &calls;
};

/// Tensor `t` read as a strided memref by a library call
/// (bufferization.to_buffer read_only, which bufferization keeps). Each
/// read carries a number of its own (`calls.nextRead`): to_buffer is pure,
/// and CSE merging one call's read into an earlier call's would place it
/// before ops that bufferization may then let write that tensor in place.
static Value libraryRead(PatternRewriter &rewriter, Operation *op,
                         LibraryCalls &calls, Value t) {
  Location loc = op->getLoc();
  auto tt = cast<RankedTensorType>(t.getType());
  MemRefType any = anyStridedMemRef(rewriter.getContext(), tt.getRank(),
                                    tt.getElementType());
  auto read = bufferization::ToBufferOp::create(
      rewriter, loc,
      MemRefType::get(tt.getShape(), tt.getElementType(), any.getLayout()), t,
      /*read_only=*/true);
  read->setAttr("qopt.read", rewriter.getI64IntegerAttr(calls.nextRead++));
  return memref::CastOp::create(rewriter, loc, any, read);
}

/// Calls the private function `name` (declared on first use with the
/// arguments' types) with `args`.
static void callLibrary(PatternRewriter &rewriter, Operation *op,
                        StringRef name, ArrayRef<Value> args) {
  auto module = op->getParentOfType<ModuleOp>();
  auto fn = module.lookupSymbol<func::FuncOp>(name);
  if (!fn) {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToEnd(module.getBody());
    SmallVector<Type> types;
    for (Value a : args)
      types.push_back(a.getType());
    fn = func::FuncOp::create(rewriter, module.getLoc(), name,
                              rewriter.getFunctionType(types, {}));
    fn.setPrivate();
  }
  func::CallOp::create(rewriter, op->getLoc(), fn, args);
}

/// A fresh buffer of `shape` and `element` for a library call to write
/// (dynamic size d: dimension sizes[d].second of tensor sizes[d].first).
static Value libraryOutput(PatternRewriter &rewriter, Location loc,
                           ArrayRef<int64_t> shape, Type element,
                           ArrayRef<std::pair<Value, int64_t>> sizes) {
  SmallVector<Value> dynamicSizes;
  for (auto [d, size] : llvm::enumerate(shape))
    if (ShapedType::isDynamic(size))
      dynamicSizes.push_back(tensor::DimOp::create(
          rewriter, loc, sizes[d].first, sizes[d].second));
  return memref::AllocOp::create(rewriter, loc, MemRefType::get(shape, element),
                                 dynamicSizes);
}

/// `buffer` as a library call's strided argument.
static Value libraryArg(PatternRewriter &rewriter, Location loc, Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  return memref::CastOp::create(rewriter, loc,
                                anyStridedMemRef(rewriter.getContext(),
                                                 type.getRank(),
                                                 type.getElementType()),
                                buffer);
}

/// A library call's output buffer as a tensor. Not writable: another
/// library call may read this buffer through a to_buffer that
/// canonicalization folds into it, out of bufferization's sight, so
/// nothing may be written into it in place.
static Value libraryResult(PatternRewriter &rewriter, Location loc,
                           Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  return bufferization::ToTensorOp::create(
      rewriter, loc,
      RankedTensorType::get(type.getShape(), type.getElementType()), buffer,
      /*restrict=*/true, /*writable=*/false);
}

/// `x` viewed as [rows, D] (its last axis D; the leading dimensions as
/// one: a vector is one row).
static Value toRows(PatternRewriter &rewriter, Location loc, Value x) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  if (rank == 1)
    return tensor::ExpandShapeOp::create(
        rewriter, loc, RankedTensorType::get({1, type.getDimSize(0)}, element),
        x, ArrayRef<ReassociationIndices>{{0, 1}},
        ArrayRef<OpFoldResult>{rewriter.getIndexAttr(1),
                               tensor::getMixedSizes(rewriter, loc, x)[0]});
  if (rank == 2)
    return x;
  SmallVector<ReassociationIndices> groups(2);
  for (int64_t d = 0; d + 1 < rank; ++d)
    groups[0].push_back(d);
  groups[1].push_back(rank - 1);
  return tensor::CollapseShapeOp::create(rewriter, loc, x, groups);
}

/// `rows` ([rows, D], as toRows made it from `like`) back in `like`'s shape.
static Value fromRows(PatternRewriter &rewriter, Location loc, Value rows,
                      Value like) {
  auto type = cast<RankedTensorType>(like.getType());
  int64_t rank = type.getRank();
  if (rank == 1)
    return tensor::CollapseShapeOp::create(
        rewriter, loc, type, rows, ArrayRef<ReassociationIndices>{{0, 1}});
  if (rank == 2)
    return rows;
  // Through tensor.reshape: LLVM 22's expand-strided-metadata cannot lower a
  // memref.expand_shape whose group has several dynamic sizes ([batch,
  // seq]).
  SmallVector<Value> sizes;
  for (OpFoldResult size : tensor::getMixedSizes(rewriter, loc, like))
    sizes.push_back(getValueOrCreateConstantIndexOp(rewriter, loc, size));
  return tensor::ReshapeOp::create(
      rewriter, loc, type, rows,
      tensor::FromElementsOp::create(rewriter, loc, sizes));
}

/// One call of `library` that maps the rows of x (its last axis; the
/// leading dimensions as one) to the rows of a fresh output of x's shape:
/// `scalars`, then x viewed as [rows, D], `vectors` (rank 1) and the output
/// [rows, D] as strided memrefs. Returns the output in x's shape.
static Value rowwiseLibraryCall(PatternRewriter &rewriter, Operation *op,
                                LibraryCalls &calls, StringRef library, Value x,
                                ArrayRef<Value> scalars,
                                ArrayRef<Value> vectors) {
  Location loc = op->getLoc();
  Value x2 = toRows(rewriter, loc, x);
  Value y = libraryOutput(
      rewriter, loc, cast<RankedTensorType>(x2.getType()).getShape(),
      cast<RankedTensorType>(x.getType()).getElementType(), {{x2, 0}, {x2, 1}});
  SmallVector<Value> args(scalars);
  args.push_back(libraryRead(rewriter, op, calls, x2));
  for (Value v : vectors)
    args.push_back(libraryRead(rewriter, op, calls, v));
  args.push_back(libraryArg(rewriter, loc, y));
  callLibrary(rewriter, op, library, args);
  return fromRows(rewriter, loc, libraryResult(rewriter, loc, y), x);
}

/// Whether the library's norm kernels take a norm of `x` over `axis` (f32
/// data over the last axis, gamma 1-D).
static bool normLibraryTakes(Value x, int64_t axis, Value gamma, Value beta) {
  auto type = cast<RankedTensorType>(x.getType());
  auto isF32 = [](Value v) {
    return cast<RankedTensorType>(v.getType()).getElementType().isF32();
  };
  return axis == type.getRank() - 1 && isF32(x) && isF32(gamma) &&
         cast<RankedTensorType>(gamma.getType()).getRank() == 1 &&
         (!beta || isF32(beta));
}

/// RMSNorm / LayerNorm over the last axis of f32 data as one call of the
/// library's row kernel (`library`: the norm-library option): flags
/// (NormTile.h's: LayerNorm 1, beta 2) as i64 and epsilon as f64, then x
/// as [rows, D], gamma, beta (gamma where there is none) and a fresh y.
/// Null where the kernel does not take the op.
static Value normCall(PatternRewriter &rewriter, Operation *op,
                      LibraryCalls &calls, Value x, int64_t axis, Value gamma,
                      Value beta, double eps, bool layer) {
  if (!normLibraryTakes(x, axis, gamma, beta))
    return nullptr;
  Location loc = op->getLoc();
  Value scalars[] = {arith::ConstantIntOp::create(
                         rewriter, loc, (layer ? 1 : 0) | (beta ? 2 : 0), 64),
                     arith::ConstantFloatOp::create(
                         rewriter, loc, rewriter.getF64Type(), APFloat(eps))};
  Value vectors[] = {gamma, beta ? beta : gamma};
  return rowwiseLibraryCall(rewriter, op, calls, calls.norm, x, scalars,
                            vectors);
}

struct LowerRMSNorm : LibraryPattern<RMSNormOp> {
  using LibraryPattern::LibraryPattern;
  LogicalResult matchAndRewrite(RMSNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t axis = normalizedAxis(static_cast<int64_t>(op.getAxis()),
                                  op.getInput().getType().getRank());
    double eps = op.getEpsilon().convertToDouble();
    if (calls.keepNorms && normLibraryTakes(x, axis, op.getGamma(), Value()))
      return rewriter.notifyMatchFailure(op, "kept for the library");
    checkNormalizedSizes(rewriter, op, x, axis, op.getGamma(), "scale");
    if (!calls.norm.empty())
      if (Value y = normCall(rewriter, op, calls, x, axis, op.getGamma(),
                             Value(), eps, /*layer=*/false)) {
        rewriter.replaceOp(op, y);
        return success();
      }
    // y = x / sqrt(mean(x^2) + eps) * gamma
    Value ms = createRowMean(rewriter, loc, x, axis, {},
                             [](OpBuilder &b, Location l, Value v, ValueRange) {
                               return Value(arith::MulFOp::create(b, l, v, v));
                             });
    Value y = createNormalizedRows(
        rewriter, loc, x, axis, ms, op.getGamma(), Value(),
        [&](OpBuilder &b, Location l, Value v, ValueRange s) {
          Value d = math::SqrtOp::create(
              b, l, arith::AddFOp::create(b, l, s[0], f32Const(b, l, eps)));
          return Value(arith::DivFOp::create(b, l, v, d));
        });
    rewriter.replaceOp(op, y);
    return success();
  }
};

/// qopt.norm_grad as one call of `<norm-library>_backward`: flags
/// (LayerNorm 1, gamma's gradient wanted 4, beta's 8) and epsilon (f64),
/// then x viewed as [rows, D], gamma, dy as [rows, D], and fresh dx
/// ([rows, D]), gamma's and beta's gradients ([D]) as strided memrefs. No
/// linalg form (whyNotLowered).
struct LowerNormGrad : LibraryPattern<NormGradOp> {
  using LibraryPattern::LibraryPattern;
  LogicalResult matchAndRewrite(NormGradOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput(), gamma = op.getGamma(), dy = op.getOutputGrad();
    int64_t rank = op.getInput().getType().getRank();
    if (calls.norm.empty() || !normLibraryTakes(x, rank - 1, gamma, Value()))
      return rewriter.notifyMatchFailure(op, "no library for it");
    checkNormalizedSizes(rewriter, op, x, rank - 1, gamma, "scale");
    // (The kernels take x's sizes for dy's.)
    for (int64_t d = 0; d < rank; ++d)
      checkSameSize(rewriter, op, x, d, dy, d,
                    "the input and the output's gradient have different "
                    "sizes");
    Type f32 = rewriter.getF32Type();
    int64_t flags = (op.getLayer() ? 1 : 0) |
                    (op.getGammaGrad().use_empty() ? 0 : 4) |
                    (op.getBetaGrad().use_empty() ? 0 : 8);
    Value x2 = toRows(rewriter, loc, x), dy2 = toRows(rewriter, loc, dy);
    auto rowsType = cast<RankedTensorType>(x2.getType());
    int64_t d = cast<RankedTensorType>(gamma.getType()).getDimSize(0);
    Value dx = libraryOutput(rewriter, loc, rowsType.getShape(), f32,
                             {{x2, 0}, {x2, 1}});
    Value dg = libraryOutput(rewriter, loc, {d}, f32, {{gamma, 0}});
    Value db = libraryOutput(rewriter, loc, {d}, f32, {{gamma, 0}});
    Value args[] = {arith::ConstantIntOp::create(rewriter, loc, flags, 64),
                    arith::ConstantFloatOp::create(
                        rewriter, loc, rewriter.getF64Type(), op.getEpsilon()),
                    libraryRead(rewriter, op, calls, x2),
                    libraryRead(rewriter, op, calls, gamma),
                    libraryRead(rewriter, op, calls, dy2),
                    libraryArg(rewriter, loc, dx),
                    libraryArg(rewriter, loc, dg),
                    libraryArg(rewriter, loc, db)};
    callLibrary(rewriter, op, calls.norm + "_backward", args);
    Value results[] = {
        fromRows(rewriter, loc, libraryResult(rewriter, loc, dx), x),
        libraryResult(rewriter, loc, dg), libraryResult(rewriter, loc, db)};
    rewriter.replaceOp(op, results);
    return success();
  }
};

struct LowerLayerNorm : LibraryPattern<LayerNormOp> {
  using LibraryPattern::LibraryPattern;
  LogicalResult matchAndRewrite(LayerNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t axis = normalizedAxis(static_cast<int64_t>(op.getAxis()),
                                  op.getInput().getType().getRank());
    double eps = op.getEpsilon().convertToDouble();
    if (calls.keepNorms &&
        normLibraryTakes(x, axis, op.getGamma(), op.getBeta()))
      return rewriter.notifyMatchFailure(op, "kept for the library");
    checkNormalizedSizes(rewriter, op, x, axis, op.getGamma(), "scale");
    checkNormalizedSizes(rewriter, op, x, axis, op.getBeta(), "bias");
    if (!calls.norm.empty())
      if (Value y = normCall(rewriter, op, calls, x, axis, op.getGamma(),
                             op.getBeta(), eps, /*layer=*/true)) {
        rewriter.replaceOp(op, y);
        return success();
      }
    // Two passes (mean, then the mean of squared deviations) for accuracy.
    Value mean = createRowMean(
        rewriter, loc, x, axis, {},
        [](OpBuilder &, Location, Value v, ValueRange) { return v; });
    Value var =
        createRowMean(rewriter, loc, x, axis, mean,
                      [](OpBuilder &b, Location l, Value v, ValueRange s) {
                        Value d = arith::SubFOp::create(b, l, v, s[0]);
                        return Value(arith::MulFOp::create(b, l, d, d));
                      });
    Value y = createNormalizedRows(
        rewriter, loc, x, axis, {mean, var}, op.getGamma(), op.getBeta(),
        [&](OpBuilder &b, Location l, Value v, ValueRange s) {
          Value d = math::SqrtOp::create(
              b, l, arith::AddFOp::create(b, l, s[1], f32Const(b, l, eps)));
          return Value(arith::DivFOp::create(
              b, l, arith::SubFOp::create(b, l, v, s[0]), d));
        });
    rewriter.replaceOp(op, y);
    return success();
  }
};

FailureOr<AffineMap> scaleMap(OpBuilder &b, GranularityAttrInterface g,
                              RankedTensorType type);
Value snapToGrid(OpBuilder &b, Location loc, Value v,
                 QuantFormatAttrInterface format, Value zp);

/// Stops the run unless the scales (or zero points) `s` have the sizes
/// granularity `g` gives a quantized tensor of `sizes`, where the types
/// leave that open (a dynamic quantized tensor read past short scales).
void checkScaleSizes(OpBuilder &b, Operation *op, GranularityAttrInterface g,
                     ArrayRef<OpFoldResult> sizes, Value s) {
  auto sType = cast<RankedTensorType>(s.getType());
  Location loc = op->getLoc();
  auto check = [&](int64_t sDim, int64_t dim, int64_t group) {
    OpFoldResult expected = sizes[dim];
    if (!sType.isDynamicDim(sDim) && isa<Attribute>(expected))
      return; // both static: the verifier's
    Value want = getValueOrCreateConstantIndexOp(b, loc, expected);
    if (group > 1)
      want = arith::CeilDivUIOp::create(
          b, loc, want, arith::ConstantIndexOp::create(b, loc, group));
    Value have = tensor::DimOp::create(b, loc, s, sDim);
    Value same =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, have, want);
    cf::AssertOp::create(b, loc, same,
                         describe(op) +
                             ": the quantized tensor's scales do not fit its "
                             "shape (scales dimension " +
                             std::to_string(sDim) + ", tensor dimension " +
                             std::to_string(dim) + ")");
  };
  int64_t rank = sizes.size();
  if (auto c = dyn_cast<PerChannelAttr>(g)) {
    check(0, c.getAxis(), 1);
  } else if (auto grp = dyn_cast<PerGroupAttr>(g)) {
    for (int64_t d = 0; d < rank; ++d)
      check(d, d, d == grp.getAxis() ? grp.getSize() : 1);
  } else if (isa<PerTokenAttr>(g)) {
    for (int64_t d = 0; d + 1 < rank; ++d)
      check(d, d, 1);
  }
}

/// Why `dequantize` cannot expand a quantized tensor of `type`, or an empty
/// string when it can.
std::string whyNotDequantized(QTensorType type) {
  QuantFormatAttrInterface format = type.getFormat();
  unsigned bits = format.getStorageBits();
  if (auto nested = dyn_cast<QTensorType>(type.getScaleType())) {
    std::string why = whyNotDequantized(nested);
    if (!why.empty())
      return "its double-quantized scales: " + why;
  }
  if (isa<PerBlockAttr>(type.getGranularity()) &&
      !llvm::none_of(type.getShape(), ShapedType::isDynamic))
    return "per_block scales need a static shape";
  // The packed bytes of a dynamic innermost dimension do not say how many
  // codes the last byte holds.
  if (bits < 8 && ShapedType::isDynamic(type.getShape().back()))
    return "a dynamic innermost dimension of packed " + std::to_string(bits) +
           "-bit codes has no known size";
  return "";
}

/// The float tensor (element type `element`) a quantized tensor stands for:
/// codes unpacked from their bytes, `(code - zp) * scale (+ offset)`, a
/// codebook format's code looked up in its table. Handles integer and
/// codebook formats of 2, 4 or 8 bits with float scales or double-quantized
/// ones (dequantized first, to f32), of static or dynamic shape; fails where
/// `whyNotDequantized` says.
FailureOr<Value> dequantize(OpBuilder &b, Operation *op, Value q,
                            Type element) {
  Location loc = op->getLoc();
  auto type = cast<QTensorType>(q.getType());
  if (!whyNotDequantized(type).empty())
    return failure();
  QuantFormatAttrInterface format = type.getFormat();
  unsigned bits = format.getStorageBits();
  auto logical = RankedTensorType::get(type.getShape(), element);
  FailureOr<AffineMap> smap = scaleMap(b, type.getGranularity(), logical);
  if (failed(smap))
    return failure();
  RankedTensorType offsetType = type.getOffsetType();
  auto parts = DisassembleOp::create(
      b, loc, type.getDataType(), type.getScalesType(),
      type.getZeroPointsType() ? Type(type.getZeroPointsType()) : Type(),
      offsetType ? Type(offsetType) : Type(), q);
  Value scales = parts.getScales();
  if (isa<QTensorType>(scales.getType())) { // double quantization
    FailureOr<Value> s = dequantize(b, op, scales, b.getF32Type());
    if (failed(s))
      return failure();
    scales = *s;
  }
  // 8-bit float scales (MXFP4's E8M0) are decoded by table from their
  // bytes: the bitcast folds with the one that made them from bytes.
  Value scaleTable;
  if (auto scaleFloat = dyn_cast<FloatType>(type.getScaleType());
      scaleFloat && scaleFloat.getWidth() < 16) {
    auto scalesType = cast<RankedTensorType>(scales.getType());
    scales = arith::BitcastOp::create(
        b, loc, scalesType.clone(b.getIntegerType(8)), scales);
    ArrayRef<float> values = decodedTable(*smallFloatKindOf(scaleFloat));
    scaleTable = arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(
            RankedTensorType::get({int64_t(values.size())}, b.getF32Type()),
            values));
  }
  int64_t rank = type.getRank();
  // 3-, 5-, 6- or 7-bit codes straddle bytes: each is read from the bytes
  // holding its first and last bit.
  bool straddles = 8 % bits != 0;
  int64_t perByte = straddles ? 1 : 8 / bits;
  // Dynamic sizes are the data's (the innermost one only unpacked, bits 8).
  SmallVector<OpFoldResult> sizes =
      tensor::getMixedSizes(b, loc, parts.getData());
  if (rank > 0 && !ShapedType::isDynamic(type.getShape().back()))
    sizes.back() = b.getIndexAttr(type.getShape().back());
  checkScaleSizes(b, op, type.getGranularity(), sizes, scales);
  if (Value zp = parts.getZeroPoints())
    checkScaleSizes(b, op, type.getGranularity(), sizes, zp);
  // The byte of the element's bit `bit` (0: its first) in the last dimension.
  auto dataMap = [&](int64_t bit) {
    SmallVector<AffineExpr> exprs;
    for (int64_t d = 0; d < rank; ++d) {
      AffineExpr e = b.getAffineDimExpr(d);
      exprs.push_back(d + 1 < rank ? e
                      : straddles  ? (e * bits + bit).floorDiv(8)
                                   : e.floorDiv(perByte));
    }
    return AffineMap::get(rank, 0, exprs, b.getContext());
  };
  SmallVector<Value> inputs = {parts.getData(), scales};
  SmallVector<AffineMap> maps = {dataMap(0), *smap};
  Value zpIn = parts.getZeroPoints(), offsetIn = parts.getOffset();
  if (zpIn) {
    inputs.push_back(zpIn);
    maps.push_back(*smap);
  }
  size_t offsetIndex = inputs.size();
  if (offsetIn) { // one f32 for the whole tensor
    inputs.push_back(offsetIn);
    maps.push_back(AffineMap::get(rank, 0, {}, b.getContext()));
  }
  size_t highIndex = inputs.size();
  if (straddles) {
    inputs.push_back(parts.getData());
    maps.push_back(dataMap(bits - 1));
  }
  maps.push_back(b.getMultiDimIdentityMap(rank));
  Value init = tensor::EmptyOp::create(b, loc, sizes, element);
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  bool isSigned = false;
  if (auto intFormat = dyn_cast<IntFormatAttr>(format))
    isSigned = intFormat.getIsSigned();
  // A codebook's values as a constant table, indexed by the code.
  ArrayRef<float> codebook = codebookOf(format);
  Value table;
  if (!codebook.empty())
    table = arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(
            RankedTensorType::get({int64_t(codebook.size())}, b.getF32Type()),
            codebook));
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), inputs, init, maps, par,
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Type i32 = nb.getI32Type();
        auto c = [&](int64_t v) {
          return arith::ConstantOp::create(nb, l, nb.getI32IntegerAttr(v))
              .getResult();
        };
        Value code = arith::ExtUIOp::create(nb, l, i32, a[0]);
        if (straddles) {
          // The two bytes as a little-endian word, shifted by the
          // element's first bit within the first.
          Value high = arith::ShLIOp::create(
              nb, l, arith::ExtUIOp::create(nb, l, i32, a[highIndex]), c(8));
          Value k = arith::IndexCastOp::create(
              nb, l, i32, linalg::IndexOp::create(nb, l, rank - 1));
          Value shift = arith::RemUIOp::create(
              nb, l, arith::MulIOp::create(nb, l, k, c(bits)), c(8));
          code = arith::AndIOp::create(
              nb, l,
              arith::ShRUIOp::create(
                  nb, l, arith::OrIOp::create(nb, l, code, high), shift),
              c((1 << bits) - 1));
        } else if (bits < 8) {
          // The element's bits within its byte (little-endian).
          Value k = linalg::IndexOp::create(nb, l, rank - 1);
          Value within = arith::RemUIOp::create(
              nb, l, k, arith::ConstantIndexOp::create(nb, l, perByte));
          Value shift = arith::MulIOp::create(
              nb, l, arith::IndexCastOp::create(nb, l, i32, within), c(bits));
          code = arith::AndIOp::create(
              nb, l, arith::ShRUIOp::create(nb, l, code, shift),
              c((1 << bits) - 1));
        }
        if (isSigned) // sign-extend the low `bits` bits
          code = arith::ShRSIOp::create(
              nb, l, arith::ShLIOp::create(nb, l, code, c(32 - bits)),
              c(32 - bits));
        Value value;
        Type f32 = nb.getF32Type();
        if (table) {
          Value index =
              arith::IndexCastUIOp::create(nb, l, nb.getIndexType(), code);
          value = tensor::ExtractOp::create(nb, l, table, index);
        } else {
          Value zp = c(0);
          if (zpIn) {
            zp = arith::ExtSIOp::create(nb, l, i32, a[2]);
            if (!isSigned) // stored as the code's unsigned byte
              zp = arith::ExtUIOp::create(nb, l, i32, a[2]);
          }
          value = arith::SIToFPOp::create(
              nb, l, f32, arith::SubIOp::create(nb, l, code, zp));
        }
        Value scale = scaleTable
                          ? tensor::ExtractOp::create(
                                nb, l, scaleTable,
                                ValueRange{arith::IndexCastUIOp::create(
                                    nb, l, nb.getIndexType(),
                                    arith::ExtUIOp::create(nb, l, i32, a[1]))})
                                .getResult()
                          : castToF32(nb, l, a[1]);
        Value w = arith::MulFOp::create(nb, l, value, scale);
        if (offsetIn)
          w = arith::AddFOp::create(nb, l, w, a[offsetIndex]);
        linalg::YieldOp::create(nb, l, castFromF32(nb, l, w, element));
      });
  // Training recomputes it in the backward pass rather than keeping it.
  generic->setAttr(kRecomputeAttr, b.getUnitAttr());
  generic->setAttr(kDequantizedAttr, TypeAttr::get(type));
  return generic.getResult(0);
}

/// Replaces the quantized weight of a linear layer or adapter by its
/// dequantized float tensor; the float pattern then lowers the op (a fused
/// dequant-GEMM kernel replaces this on the fast paths).
template <typename OpTy>
LogicalResult dequantizeWeight(PatternRewriter &rewriter, OpTy op) {
  FailureOr<Value> w = dequantize(rewriter, op, op.getWeight(),
                                  op.getInput().getType().getElementType());
  if (failed(w))
    return rewriter.notifyMatchFailure(op, "weight format not lowered yet");
  rewriter.modifyOpInPlace(op, [&] { op.getWeightMutable().assign(*w); });
  return success();
}

/// Replaces `op` by `y`, cast to the op's declared type where that is more
/// static than `y`'s.
LogicalResult replaceWithCast(PatternRewriter &rewriter, Operation *op,
                              Value y) {
  Type type = op->getResult(0).getType();
  if (y.getType() != type)
    y = tensor::CastOp::create(rewriter, op->getLoc(), type, y);
  rewriter.replaceOp(op, y);
  return success();
}

/// Why `qopt.quantize` of a tensor of `input` type into `type` cannot be
/// lowered, or an empty string when it can.
/// Whether `format` is one of bitsandbytes' codebooks, encoded as its CUDA
/// kernels do.
bool isBnbCodebook(QuantFormatAttrInterface format) {
  return isa<NF4FormatAttr, BnbFP4FormatAttr, Dynamic8FormatAttr>(format);
}

/// MXFP4's layout: E2M1 codes with E8M0 (power-of-two) scales per group.
bool isMXLayout(QTensorType type) {
  auto f = dyn_cast<FloatFormatAttr>(type.getFormat());
  return f && isa<Float4E2M1FNType>(f.getType()) &&
         isa<Float8E8M0FNUType>(type.getScaleType()) &&
         isa<PerGroupAttr>(type.getGranularity());
}

/// NVFP4's layout: E2M1 codes whose scales are E4M3 codes over one f32
/// global scale (a nested per-tensor qtensor without offset).
bool isNVLayout(QTensorType type) {
  auto f = dyn_cast<FloatFormatAttr>(type.getFormat());
  auto nested = dyn_cast<QTensorType>(type.getScaleType());
  if (!f || !isa<Float4E2M1FNType>(f.getType()) || !nested)
    return false;
  auto nf = dyn_cast<FloatFormatAttr>(nested.getFormat());
  return nf && isa<Float8E4M3FNType>(nf.getType()) &&
         isa<PerTensorAttr>(nested.getGranularity()) &&
         nested.getScaleType().isF32() && !nested.getOffset();
}

std::string whyNotQuantized(RankedTensorType input, QTensorType type) {
  QuantFormatAttrInterface format = type.getFormat();
  auto nested = dyn_cast<QTensorType>(type.getScaleType());
  bool mx = isMXLayout(type), nv = isNVLayout(type);
  if (!type.getScaleType().isF32() && !mx &&
      !(nested && nested.getScaleType().isF32() &&
        !nested.getFormat().hasZeroPoint())) {
    std::string name;
    llvm::raw_string_ostream os(name);
    os << type.getScaleType();
    return "scales of type " + name +
           " are computed at compile time only (qopt-quantize-weights); "
           "at run time they are f32, E8M0 under E2M1 codes (MXFP4), or "
           "quantized once more with f32 scales and no zero points (double "
           "quantization, NVFP4)";
  }
  if (nested && !nv && !isBnbCodebook(format))
    return "double-quantized scales at run time are QLoRA's, under "
           "bitsandbytes' codes (NF4, FP4, 8-bit dynamic), or NVFP4's (E2M1 "
           "codes, E4M3 scales per tensor)";
  if (nested && nested.getOffset() &&
      llvm::any_of(type.getScaleShape(), ShapedType::isDynamic))
    return "double-quantized scales with an offset (their mean) at run time "
           "need a static number of scales";
  if (nested && !nv) {
    auto scalesType = RankedTensorType::get(
        type.getScaleShape(), Float32Type::get(type.getContext()));
    std::string why = whyNotQuantized(scalesType, nested);
    if (!why.empty())
      return "the double-quantized scales: " + why;
  }
  if (auto i = dyn_cast<IntFormatAttr>(format)) {
    if (i.getZeroPoint() && i.getIsSigned())
      return "signed codes with zero points are not quantized at run time "
             "(use unsigned ones)";
  } else if (auto f = dyn_cast<FloatFormatAttr>(format)) {
    if (!isa<Float8E4M3FNType, Float8E5M2Type, Float4E2M1FNType>(f.getType()))
      return "float codes other than f8E4M3FN, f8E5M2 and f4E2M1FN are not "
             "quantized at run time";
  } else if (!isBnbCodebook(format)) {
    return "this format is not quantized at run time";
  }
  GranularityAttrInterface g = type.getGranularity();
  if (auto grp = dyn_cast<PerGroupAttr>(g)) {
    int64_t n = input.getDimSize(grp.getAxis());
    if (ShapedType::isDynamic(n) || n % grp.getSize())
      return "per_group scales at run time need a static dimension that is "
             "a multiple of the group size";
  }
  if (auto blk = dyn_cast<PerBlockAttr>(g))
    if (!input.hasStaticShape() || input.getNumElements() % blk.getSize())
      return "per_block scales at run time need a static shape whose size "
             "is a multiple of the block";
  if (format.getStorageBits() < 8 && input.getRank() > 0 &&
      ShapedType::isDynamic(input.getShape().back()))
    return "a dynamic innermost dimension of packed " +
           std::to_string(format.getStorageBits()) +
           "-bit codes has no known size";
  return "";
}

/// A subnormal f32 `v` as the signed zero that CUDA's flush-to-zero
/// arithmetic (bitsandbytes' kernels) reads and writes instead.
Value flushSubnormal(OpBuilder &b, Location l, Value v) {
  Value small = arith::CmpFOp::create(
      b, l, arith::CmpFPredicate::OLT, math::AbsFOp::create(b, l, v),
      arith::ConstantOp::create(b, l, b.getF32FloatAttr(0x1p-126f)));
  Value zero = math::CopySignOp::create(
      b, l, arith::ConstantOp::create(b, l, b.getF32FloatAttr(0.0f)), v);
  return arith::SelectOp::create(b, l, small, zero, v);
}

/// The 8-bit dynamic code table as a constant, for bnbEncode (null for the
/// other formats).
Value createBnbSearchTable(OpBuilder &b, Location loc,
                           QuantFormatAttrInterface format) {
  if (!isa<Dynamic8FormatAttr>(format))
    return Value();
  const auto &table = ::qopt::dynamicCodeTable();
  return arith::ConstantOp::create(
      b, loc,
      DenseElementsAttr::get(RankedTensorType::get({256}, b.getF32Type()),
                             ArrayRef<float>(table.data(), table.size())));
}

/// bitsandbytes' code (i32) of x (f32) in a group of absmax `s`, as its
/// CUDA kernels compute it: v = x · (1 / s) with subnormals flushed, then
/// NF4's or FP4's decision tree over their f32 thresholds, or the 8-bit
/// dynamic code's search (`table` from createBnbSearchTable). A zero
/// group's NaN gives code 0, as there.
Value bnbEncode(OpBuilder &nb, Location l, QuantFormatAttrInterface format,
                Value x, Value s, Value searchTable) {
  Type i32 = nb.getI32Type();
  auto cf = [&](double v) {
    return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(v)).getResult();
  };
  auto ci = [&](int64_t v) {
    return arith::ConstantOp::create(nb, l, nb.getI32IntegerAttr(v))
        .getResult();
  };
  // How many of the ascending `thresholds` t exceeds (0 for NaN).
  auto countAbove = [&](Value t, ArrayRef<float> thresholds) {
    Value k = ci(0);
    for (float th : thresholds) {
      Value above =
          arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OGT, t, cf(th));
      k = arith::AddIOp::create(nb, l, k,
                                arith::ExtUIOp::create(nb, l, i32, above));
    }
    return k;
  };
  Value reciprocal =
      flushSubnormal(nb, l, arith::DivFOp::create(nb, l, cf(1.0), s));
  Value v = flushSubnormal(
      nb, l,
      arith::MulFOp::create(nb, l, flushSubnormal(nb, l, x), reciprocal));
  Value code;
  if (isa<NF4FormatAttr>(format)) {
    const auto &t = ::qopt::nf4Thresholds();
    code = countAbove(v, ArrayRef<float>(t.data(), t.size()));
  } else if (isa<BnbFP4FormatAttr>(format)) {
    // The sign bit from v < 0, the magnitude's code from the
    // thresholds on |v|.
    const auto &t = ::qopt::fp4Thresholds();
    const auto &magnitude = ::qopt::fp4MagnitudeCodes();
    Value k = countAbove(math::AbsFOp::create(nb, l, v),
                         ArrayRef<float>(t.data(), t.size()));
    Value mag = ci(magnitude[0]);
    for (size_t i = 1; i < magnitude.size(); ++i)
      mag = arith::SelectOp::create(
          nb, l,
          arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, k,
                                ci(int64_t(i))),
          ci(magnitude[i]), mag);
    Value negative =
        arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OLT, v, cf(0.0));
    code = arith::OrIOp::create(
        nb, l, mag, arith::SelectOp::create(nb, l, negative, ci(8), ci(0)));
  } else {
    // bitsandbytes' search: seven bisection steps from 127,
    // then the landing code or its neighbour on v's side,
    // whichever is nearer by the f32 midpoint.
    const auto &codes = ::qopt::dynamicCodeTable();
    auto entry = [&](Value index) -> Value {
      return tensor::ExtractOp::create(nb, l, searchTable,
                                       ValueRange{arith::IndexCastOp::create(
                                           nb, l, nb.getIndexType(), index)});
    };
    Value at = ci(127), below = ci(0), above = ci(255);
    Value low = cf(-1.0), high = cf(1.0);
    for (int64_t step = 64; step > 0; step /= 2) {
      Value value = entry(at);
      Value gt =
          arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OGT, v, value);
      below = arith::SelectOp::create(nb, l, gt, at, below);
      low = arith::SelectOp::create(nb, l, gt, value, low);
      above = arith::SelectOp::create(nb, l, gt, above, at);
      high = arith::SelectOp::create(nb, l, gt, high, value);
      at = arith::SelectOp::create(nb, l, gt,
                                   arith::AddIOp::create(nb, l, at, ci(step)),
                                   arith::SubIOp::create(nb, l, at, ci(step)));
    }
    high = arith::SelectOp::create(
        nb, l,
        arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, above, ci(255)),
        cf(codes[255]), high);
    low = arith::SelectOp::create(
        nb, l,
        arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, below, ci(0)),
        cf(codes[0]), low);
    Value landed = entry(at);
    auto half = [&](Value other) {
      return arith::MulFOp::create(
          nb, l, arith::AddFOp::create(nb, l, other, landed), cf(0.5));
    };
    Value up = arith::SelectOp::create(
        nb, l,
        arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OGT, v, half(high)),
        above, at);
    Value down = arith::SelectOp::create(
        nb, l,
        arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OLT, v, half(low)),
        below, at);
    code = arith::SelectOp::create(
        nb, l,
        arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OGT, v, landed), up,
        down);
  }
  return code;
}

/// The bits (i32) of the small float `format` nearest to the f32 `v`
/// (ties to even, saturating): the value on the format's grid, then its
/// exponent and mantissa from the f32 ones; the sign is v's own, as
/// smallFloatEncode takes it (the rounding may drop a tiny negative
/// value's).
Value smallFloatCode(OpBuilder &nb, Location l, Value v,
                     FloatFormatAttr floatFormat) {
  Type i32 = nb.getI32Type();
  auto cf = [&](double x) {
    return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(x)).getResult();
  };
  auto ci = [&](int64_t x) {
    return arith::ConstantOp::create(nb, l, nb.getI32IntegerAttr(x))
        .getResult();
  };
  unsigned bits = floatFormat.getStorageBits();
  const llvm::fltSemantics &sem =
      cast<FloatType>(floatFormat.getType()).getFloatSemantics();
  int m = llvm::APFloat::semanticsPrecision(sem) - 1;
  int minExp = llvm::APFloat::semanticsMinExponent(sem);
  int bias = 1 - minExp;
  Value q = snapToGrid(nb, l, v, floatFormat, Value());
  Value f = arith::BitcastOp::create(nb, l, i32, q);
  Value sign = arith::ShRUIOp::create(
      nb, l, arith::BitcastOp::create(nb, l, i32, v), ci(31));
  Value mag = arith::AndIOp::create(nb, l, f, ci(0x7fffffff));
  Value e = arith::SubIOp::create(
      nb, l, arith::ShRUIOp::create(nb, l, mag, ci(23)), ci(127));
  Value normal = arith::OrIOp::create(
      nb, l,
      arith::ShLIOp::create(nb, l, arith::AddIOp::create(nb, l, e, ci(bias)),
                            ci(m)),
      arith::ShRUIOp::create(
          nb, l, arith::AndIOp::create(nb, l, mag, ci(0x7fffff)), ci(23 - m)));
  // Subnormal: |q| in units of the smallest subnormal.
  Value sub = arith::FPToSIOp::create(
      nb, l, i32,
      arith::MulFOp::create(nb, l, math::AbsFOp::create(nb, l, q),
                            cf(std::ldexp(1.0, bias - 1 + m))));
  Value isNormal =
      arith::CmpIOp::create(nb, l, arith::CmpIPredicate::sge, e, ci(minExp));
  Value code = arith::SelectOp::create(nb, l, isNormal, normal, sub);
  return arith::OrIOp::create(
      nb, l, code, arith::ShLIOp::create(nb, l, sign, ci(int64_t(bits) - 1)));
}

/// `qopt.quantize` at run time: scales (and zero points) reduced from the
/// input per the granularity with the compile-time quantizers' formulas,
/// codes rounded as `qopt.fake_quant` rounds (integers and floats to
/// nearest even, bitsandbytes' codebooks as its kernels), packed per row,
/// and the parts assembled.
struct LowerQuantize : OpRewritePattern<QuantizeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(QuantizeOp op,
                                PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto input = cast<RankedTensorType>(x.getType());
    QTensorType type = op.getType();
    if (!whyNotQuantized(input, type).empty())
      return b.notifyMatchFailure(op, "not quantized at run time");
    QuantFormatAttrInterface format = type.getFormat();
    GranularityAttrInterface g = type.getGranularity();
    int64_t rank = input.getRank();
    auto intFormat = dyn_cast<IntFormatAttr>(format);
    auto floatFormat = dyn_cast<FloatFormatAttr>(format);
    unsigned bits = format.getStorageBits();

    // The scales: a reduction over the elements each one covers.
    Value grouped = x;
    SmallVector<int64_t> dims;
    if (isa<PerTensorAttr>(g)) {
      for (int64_t d = 0; d < rank; ++d)
        dims.push_back(d);
    } else if (auto c = dyn_cast<PerChannelAttr>(g)) {
      for (int64_t d = 0; d < rank; ++d)
        if (d != c.getAxis())
          dims.push_back(d);
    } else if (isa<PerTokenAttr>(g)) {
      dims.push_back(rank - 1);
    } else if (auto grp = dyn_cast<PerGroupAttr>(g)) {
      int64_t a = grp.getAxis(), size = grp.getSize();
      SmallVector<int64_t> shape;
      SmallVector<ReassociationIndices> groups;
      SmallVector<OpFoldResult> outSizes;
      for (auto [d, sz] : llvm::enumerate(tensor::getMixedSizes(b, loc, x))) {
        int64_t dim = input.getDimSize(d);
        if (int64_t(d) == a) {
          groups.push_back({int64_t(shape.size()), int64_t(shape.size()) + 1});
          shape.append({dim / size, size});
          outSizes.append({b.getIndexAttr(dim / size), b.getIndexAttr(size)});
        } else {
          groups.push_back({int64_t(shape.size())});
          shape.push_back(dim);
          outSizes.push_back(sz);
        }
      }
      grouped = tensor::ExpandShapeOp::create(
          b, loc, RankedTensorType::get(shape, input.getElementType()), x,
          groups, outSizes);
      dims.push_back(a + 1);
    } else if (auto blk = dyn_cast<PerBlockAttr>(g)) {
      int64_t n = input.getNumElements(), size = blk.getSize();
      ReassociationIndices all;
      for (int64_t d = 0; d < rank; ++d)
        all.push_back(d);
      Value flat = tensor::CollapseShapeOp::create(
          b, loc, RankedTensorType::get({n}, input.getElementType()), x,
          SmallVector<ReassociationIndices>{all});
      grouped = tensor::ExpandShapeOp::create(
          b, loc,
          RankedTensorType::get({n / size, size}, input.getElementType()), flat,
          SmallVector<ReassociationIndices>{{0, 1}});
      dims.push_back(1);
    } else {
      return b.notifyMatchFailure(op, "unknown granularity");
    }
    bool hasZP = intFormat && intFormat.getZeroPoint();
    // bitsandbytes' codebooks (NF4, FP4, 8-bit dynamic) as its CUDA kernels
    // compute them: the absmax unguarded (0 for a zero group), every value
    // times its f32 reciprocal, subnormals flushed to zero throughout.
    bool bnb = isBnbCodebook(format);
    Value scales, zp;
    // MXFP4 / NVFP4: the rounded scales' codes (E8M0, E4M3) and NVFP4's
    // global scale, stored; `scales` holds their f32 values for the codes.
    Value scaleCodes, globalScale;
    if (bnb) {
      Value absmax =
          createReduction(b, loc, grouped, dims, ReductionKind::AbsMax);
      auto sType = cast<RankedTensorType>(absmax.getType());
      AffineMap id = b.getMultiDimIdentityMap(sType.getRank());
      scales = createElementwise(b, loc, absmax, {absmax}, {id},
                                 [&](OpBuilder &nb, Location l, ValueRange a) {
                                   return flushSubnormal(nb, l, a[0]);
                                 });
    } else if (isMXLayout(type) || isNVLayout(type)) {
      // MXFP4 / NVFP4 round the scales themselves: one pass over the
      // groups' absmax gives each rounded scale's f32 value (for the codes)
      // and its 8-bit code (stored).
      Value absmax =
          createReduction(b, loc, grouped, dims, ReductionKind::AbsMax);
      int64_t sr = cast<RankedTensorType>(absmax.getType()).getRank();
      AffineMap id = b.getMultiDimIdentityMap(sr);
      auto roundScales = [&](ValueRange extra, ArrayRef<AffineMap> extraMaps,
                             function_ref<std::pair<Value, Value>(
                                 OpBuilder &, Location, ValueRange)>
                                 valueAndCode) {
        SmallVector<Value> ins = {absmax};
        ins.append(extra.begin(), extra.end());
        SmallVector<AffineMap> maps = {id};
        maps.append(extraMaps.begin(), extraMaps.end());
        maps.append({id, id});
        SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, absmax);
        Value f = tensor::EmptyOp::create(b, loc, sizes, b.getF32Type());
        Value c = tensor::EmptyOp::create(b, loc, sizes, b.getI8Type());
        auto generic = linalg::GenericOp::create(
            b, loc, TypeRange{f.getType(), c.getType()}, ins, ValueRange{f, c},
            maps,
            SmallVector<utils::IteratorType>(sr, utils::IteratorType::parallel),
            [&](OpBuilder &nb, Location l, ValueRange a) {
              auto [value, code] = valueAndCode(nb, l, a);
              linalg::YieldOp::create(
                  nb, l,
                  ValueRange{value, arith::TruncIOp::create(
                                        nb, l, nb.getI8Type(), code)});
            });
        scales = generic.getResult(0);
        scaleCodes = generic.getResult(1);
      };
      if (isMXLayout(type)) {
        // OCP MXFP4: per group the power of two 2^e, e = floor(log2
        // absmax) - 2 clamped to E8M0's [-127, 127] (-127 for a zero
        // group), the exponent read from the f32 bits; code e + 127.
        roundScales({}, {}, [](OpBuilder &nb, Location l, ValueRange a) {
          auto ci = [&](int64_t v) {
            return arith::ConstantOp::create(nb, l, nb.getI32IntegerAttr(v))
                .getResult();
          };
          Value field = arith::AndIOp::create(
              nb, l,
              arith::ShRUIOp::create(
                  nb, l, arith::BitcastOp::create(nb, l, nb.getI32Type(), a[0]),
                  ci(23)),
              ci(0xff));
          Value e = arith::SubIOp::create(nb, l, field, ci(129));
          e = arith::MinSIOp::create(
              nb, l, arith::MaxSIOp::create(nb, l, e, ci(-127)), ci(127));
          // An infinite absmax: ilogb's largest exponent, clamped.
          e = arith::SelectOp::create(
              nb, l,
              arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, field,
                                    ci(255)),
              ci(127), e);
          Value normal = arith::ShLIOp::create(
              nb, l, arith::AddIOp::create(nb, l, e, ci(127)), ci(23));
          Value bits = arith::SelectOp::create(
              nb, l,
              arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, e,
                                    ci(-127)),
              ci(0x00400000), normal); // 2^-127 is an f32 subnormal
          return std::pair<Value, Value>(
              arith::BitcastOp::create(nb, l, nb.getF32Type(), bits),
              arith::AddIOp::create(nb, l, e, ci(127)));
        });
      } else {
        // NVFP4 (torchao's two levels): g = absmax / (448 · 6) (1 for
        // zeros); per group the E4M3 code of clamp(absmax / 6 / g, 2^-6,
        // 448); codes on g times that scale's value.
        SmallVector<int64_t> all;
        for (int64_t d = 0; d < rank; ++d)
          all.push_back(d);
        Value total = createReduction(b, loc, x, all, ReductionKind::AbsMax);
        AffineMap scalar = AffineMap::get(0, 0, {}, b.getContext());
        globalScale = createElementwise(
            b, loc, total, {total}, {scalar},
            [](OpBuilder &nb, Location l, ValueRange a) -> Value {
              auto cf = [&](float v) {
                return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(v))
                    .getResult();
              };
              Value g = arith::DivFOp::create(nb, l, a[0], cf(448.0f * 6.0f));
              Value zero = arith::CmpFOp::create(
                  nb, l, arith::CmpFPredicate::OEQ, g, cf(0.0f));
              return arith::SelectOp::create(nb, l, zero, cf(1.0f), g);
            });
        auto e4m3 = cast<FloatFormatAttr>(
            cast<QTensorType>(type.getScaleType()).getFormat());
        roundScales(
            globalScale, {AffineMap::get(sr, 0, {}, b.getContext())},
            [e4m3](OpBuilder &nb, Location l, ValueRange a) {
              auto cf = [&](float v) {
                return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(v))
                    .getResult();
              };
              Value bs = arith::DivFOp::create(
                  nb, l, arith::DivFOp::create(nb, l, a[0], cf(6.0f)), a[1]);
              bs = arith::MinimumFOp::create(
                  nb, l, arith::MaximumFOp::create(nb, l, bs, cf(0.015625f)),
                  cf(float(e4m3.getMaxRepresentable())));
              Value q = snapToGrid(nb, l, bs, e4m3, Value());
              return std::pair<Value, Value>(
                  arith::MulFOp::create(nb, l, a[1], q),
                  smallFloatCode(nb, l, bs, e4m3));
            });
      }
    } else {
      double largest = intFormat ? double(intFormat.getQMax())
                                 : floatFormat.getMaxRepresentable();
      std::tie(scales, zp) =
          createQuantScales(b, loc, grouped, dims, largest, hasZP);
    }

    // The codes, one byte each.
    FailureOr<AffineMap> smap = scaleMap(b, g, input);
    if (failed(smap))
      return b.notifyMatchFailure(op, "no scale map");
    SmallVector<Value> inputs = {x, scales};
    SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank), *smap};
    if (zp) {
      inputs.push_back(zp);
      maps.push_back(*smap);
    }
    maps.push_back(b.getMultiDimIdentityMap(rank));
    Type i8 = b.getI8Type(), i32 = b.getI32Type();
    Value init =
        tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, x), i8);
    SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
    Value dynamicTable = createBnbSearchTable(b, loc, format);
    Value codes =
        linalg::GenericOp::create(
            b, loc, init.getType(), inputs, init, maps, par,
            [&](OpBuilder &nb, Location l, ValueRange a) {
              auto cf = [&](double v) {
                return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(v))
                    .getResult();
              };
              auto ci = [&](int64_t v) {
                return arith::ConstantOp::create(nb, l, nb.getI32IntegerAttr(v))
                    .getResult();
              };
              Value code;
              Value v = bnb ? Value()
                            : arith::DivFOp::create(
                                  nb, l, castToF32(nb, l, a[0]), a[1]);
              if (bnb) {
                code = bnbEncode(nb, l, format, castToF32(nb, l, a[0]), a[1],
                                 dynamicTable);
              } else if (intFormat) {
                Value q = math::RoundEvenOp::create(nb, l, v);
                if (zp)
                  q = arith::AddFOp::create(nb, l, q, a[2]);
                q = arith::MaximumFOp::create(nb, l, q,
                                              cf(double(intFormat.getQMin())));
                q = arith::MinimumFOp::create(nb, l, q,
                                              cf(double(intFormat.getQMax())));
                code = arith::FPToSIOp::create(nb, l, i32, q);
              } else {
                code = smallFloatCode(nb, l, v, floatFormat);
              }
              code = arith::AndIOp::create(nb, l, code, ci((1 << bits) - 1));
              linalg::YieldOp::create(
                  nb, l, arith::TruncIOp::create(nb, l, i8, code).getResult());
            })
            .getResult(0);

    // Packed per row, little-endian: each byte gathers the codes whose bits
    // it holds.
    Value data = codes;
    if (bits < 8) {
      RankedTensorType dataType = type.getDataType();
      SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
      int64_t n = input.getShape().back();
      sizes.back() = b.getIndexAttr(dataType.getShape().back());
      Value out = tensor::EmptyOp::create(b, loc, sizes, i8);
      int64_t span = (8 + bits - 1) / bits + 1; // codes one byte can touch
      data =
          linalg::GenericOp::create(
              b, loc, out.getType(), ValueRange{}, out,
              SmallVector<AffineMap>{b.getMultiDimIdentityMap(rank)}, par,
              [&](OpBuilder &nb, Location l, ValueRange) {
                auto ci = [&](int64_t v) {
                  return arith::ConstantOp::create(nb, l,
                                                   nb.getI32IntegerAttr(v))
                      .getResult();
                };
                auto cx = [&](int64_t v) {
                  return arith::ConstantIndexOp::create(nb, l, v).getResult();
                };
                SmallVector<Value> index;
                for (int64_t d = 0; d < rank; ++d)
                  index.push_back(linalg::IndexOp::create(nb, l, d));
                Value byte = index.back();
                // The first code with bits in this byte.
                Value first = arith::DivUIOp::create(
                    nb, l, arith::MulIOp::create(nb, l, byte, cx(8)), cx(bits));
                Value word = ci(0);
                for (int64_t j = 0; j < span; ++j) {
                  Value i = arith::AddIOp::create(nb, l, first, cx(j));
                  Value inside = arith::CmpIOp::create(
                      nb, l, arith::CmpIPredicate::ult, i, cx(n));
                  // Clamped for the read; masked out when outside.
                  Value safe = arith::MinUIOp::create(nb, l, i, cx(n - 1));
                  index.back() = safe;
                  Value c = arith::ExtUIOp::create(
                      nb, l, nb.getI32Type(),
                      tensor::ExtractOp::create(nb, l, codes, index));
                  c = arith::SelectOp::create(nb, l, inside, c, ci(0));
                  // Its first bit relative to the byte's: shift left or
                  // right.
                  Value rel = arith::SubIOp::create(
                      nb, l,
                      arith::IndexCastOp::create(
                          nb, l, nb.getI32Type(),
                          arith::MulIOp::create(nb, l, i, cx(bits))),
                      arith::IndexCastOp::create(
                          nb, l, nb.getI32Type(),
                          arith::MulIOp::create(nb, l, byte, cx(8))));
                  Value left = arith::ShLIOp::create(
                      nb, l, c, arith::MaxSIOp::create(nb, l, rel, ci(0)));
                  Value right = arith::ShRUIOp::create(
                      nb, l, c,
                      arith::MaxSIOp::create(
                          nb, l, arith::SubIOp::create(nb, l, ci(0), rel),
                          ci(0)));
                  Value negative = arith::CmpIOp::create(
                      nb, l, arith::CmpIPredicate::slt, rel, ci(0));
                  Value part =
                      arith::SelectOp::create(nb, l, negative, right, left);
                  // Shifts of 32 or more are poison: only bits < 8 matter.
                  Value far = arith::CmpIOp::create(
                      nb, l, arith::CmpIPredicate::sge, rel, ci(8));
                  part = arith::SelectOp::create(nb, l, far, ci(0), part);
                  word = arith::OrIOp::create(nb, l, word, part);
                }
                linalg::YieldOp::create(
                    nb, l,
                    arith::TruncIOp::create(nb, l, nb.getI8Type(), word)
                        .getResult());
              })
              .getResult(0);
    }
    Value zpBytes;
    if (zp) { // the zero points as the bytes of their codes
      auto zpType = type.getZeroPointsType();
      zpBytes = tensor::EmptyOp::create(b, loc,
                                        tensor::getMixedSizes(b, loc, zp), i8);
      int64_t zr = zpType.getRank();
      SmallVector<utils::IteratorType> zpar(zr, utils::IteratorType::parallel);
      zpBytes =
          linalg::GenericOp::create(
              b, loc, zpBytes.getType(), ValueRange{zp}, zpBytes,
              SmallVector<AffineMap>(2, b.getMultiDimIdentityMap(zr)), zpar,
              [&](OpBuilder &nb, Location l, ValueRange a) {
                Value i = arith::FPToSIOp::create(nb, l, nb.getI32Type(), a[0]);
                linalg::YieldOp::create(
                    nb, l,
                    arith::TruncIOp::create(nb, l, nb.getI8Type(), i)
                        .getResult());
              })
              .getResult(0);
    }
    // Types as the qtensor derives them (static sizes where it has them).
    auto withType = [&](Value v, Type t) -> Value {
      return v.getType() == t ? v : tensor::CastOp::create(b, loc, t, v);
    };
    data = withType(data, type.getDataType());
    if (isMXLayout(type)) {
      scaleCodes =
          withType(scaleCodes, RankedTensorType::get(type.getScaleShape(), i8));
      scales =
          arith::BitcastOp::create(b, loc, type.getScalesType(), scaleCodes);
    } else if (isNVLayout(type)) {
      auto nested = cast<QTensorType>(type.getScaleType());
      scales = AssembleOp::create(
          b, loc, nested, withType(scaleCodes, nested.getDataType()),
          withType(globalScale, cast<RankedTensorType>(nested.getScalesType())),
          Value(), Value());
    } else if (auto nested = dyn_cast<QTensorType>(type.getScaleType())) {
      // Double quantization: the scales minus their mean (with an offset,
      // as QLoRA does: the f32 sum, accumulated here in f64, times the f32
      // reciprocal of the count) quantized to the nested type by a
      // qopt.quantize of their own, then assembled with the mean.
      Type f32 = b.getF32Type(), f64 = b.getF64Type();
      auto sType = RankedTensorType::get(type.getScaleShape(), f32);
      scales = withType(scales, sType);
      Value offset;
      Value centred = scales;
      if (nested.getOffset()) {
        int64_t sr = sType.getRank();
        Value zero = arith::ConstantOp::create(b, loc, b.getF64FloatAttr(0.0));
        Value acc = linalg::FillOp::create(b, loc, zero,
                                           tensor::EmptyOp::create(
                                               b, loc, ArrayRef<int64_t>{}, f64)
                                               .getResult())
                        .getResult(0);
        SmallVector<AffineMap> smaps = {
            b.getMultiDimIdentityMap(sr),
            AffineMap::get(sr, 0, {}, b.getContext())};
        Value sum =
            linalg::GenericOp::create(
                b, loc, acc.getType(), scales, acc, smaps,
                SmallVector<utils::IteratorType>(
                    sr, utils::IteratorType::reduction),
                [&](OpBuilder &nb, Location l, ValueRange a) {
                  Value e = arith::ExtFOp::create(nb, l, nb.getF64Type(), a[0]);
                  linalg::YieldOp::create(
                      nb, l, arith::AddFOp::create(nb, l, e, a[1]).getResult());
                })
                .getResult(0);
        int64_t count = sType.getNumElements();
        offset = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{}, f32);
        offset = linalg::GenericOp::create(
                     b, loc, offset.getType(), sum, offset,
                     SmallVector<AffineMap>(
                         2, AffineMap::get(0, 0, {}, b.getContext())),
                     SmallVector<utils::IteratorType>{},
                     [&](OpBuilder &nb, Location l, ValueRange a) {
                       Value t = arith::TruncFOp::create(nb, l, f32, a[0]);
                       Value m = arith::MulFOp::create(
                           nb, l, t,
                           arith::ConstantOp::create(
                               nb, l, nb.getF32FloatAttr(1.0f / float(count))));
                       linalg::YieldOp::create(nb, l, m);
                     })
                     .getResult(0);
        centred = createElementwise(
            b, loc, scales, {scales, offset},
            {b.getMultiDimIdentityMap(sr),
             AffineMap::get(sr, 0, {}, b.getContext())},
            [](OpBuilder &nb, Location l, ValueRange a) {
              return Value(arith::SubFOp::create(nb, l, a[0], a[1]));
            });
      }
      auto inner = QTensorType::get(b.getContext(), nested.getShape(),
                                    nested.getFormat(), nested.getGranularity(),
                                    f32, /*offset=*/false);
      Value q = QuantizeOp::create(b, loc, inner, centred);
      auto parts =
          DisassembleOp::create(b, loc, inner.getDataType(),
                                inner.getScalesType(), Type(), Type(), q);
      scales = AssembleOp::create(b, loc, nested, parts.getData(),
                                  parts.getScales(), Value(), offset);
    } else {
      scales = withType(scales, type.getScalesType());
    }
    if (zpBytes)
      zpBytes = withType(zpBytes, type.getZeroPointsType());
    b.replaceOpWithNewOp<AssembleOp>(op, type, data, scales, zpBytes, Value());
    return success();
  }
};

struct LowerDequantize : OpRewritePattern<DequantizeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(DequantizeOp op,
                                PatternRewriter &rewriter) const override {
    FailureOr<Value> w =
        dequantize(rewriter, op, op.getInput(), op.getType().getElementType());
    if (failed(w))
      return rewriter.notifyMatchFailure(op, "format not lowered yet");
    return replaceWithCast(rewriter, op, *w);
  }
};

struct LowerLinear : OpRewritePattern<LinearOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LinearOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    if (isa<QTensorType>(op.getWeight().getType()))
      return dequantizeWeight(rewriter, op);
    Value x = op.getInput();
    auto xType = op.getInput().getType();
    int64_t rank = xType.getRank();
    checkSameSize(rewriter, op, x, rank - 1, op.getWeight(), 1,
                  "the input's last dimension differs from the weight's K");
    if (Value bias = op.getBias())
      checkSameSize(rewriter, op, bias, 0, op.getWeight(), 0,
                    "the bias's length differs from the weight's N");
    // y[..., n] = sum_k x[..., k] * W[n, k], accumulated onto the bias
    // broadcast over the leading dims (or zeros).
    Value init;
    if (Value bias = op.getBias()) {
      SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(rewriter, loc, x);
      sizes.back() = tensor::getMixedSizes(rewriter, loc, op.getWeight())[0];
      Value empty =
          tensor::EmptyOp::create(rewriter, loc, sizes, xType.getElementType());
      AffineMap last =
          AffineMap::get(rank, 0, {rewriter.getAffineDimExpr(rank - 1)},
                         rewriter.getContext());
      init = createElementwise(
          rewriter, loc, empty, bias, last,
          [](OpBuilder &, Location, ValueRange a) { return a[0]; });
    }
    Value y = createContractLast(rewriter, loc, x, op.getWeight(), init);
    return replaceWithCast(rewriter, op, y);
  }
};

struct LowerSmooth : OpRewritePattern<SmoothOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SmoothOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t rank = op.getInput().getType().getRank();
    int64_t axis = normalizedAxis(static_cast<int64_t>(op.getAxis()), rank);
    checkSameSize(rewriter, op, x, axis, op.getScale(), 0,
                  "the input's smoothed dimension differs from the number "
                  "of scales");
    SmallVector<AffineMap> maps = {
        rewriter.getMultiDimIdentityMap(rank),
        AffineMap::get(rank, 0, {rewriter.getAffineDimExpr(axis)},
                       rewriter.getContext()),
        rewriter.getMultiDimIdentityMap(rank)};
    Value init = tensor::EmptyOp::create(
        rewriter, loc, tensor::getMixedSizes(rewriter, loc, x),
        op.getInput().getType().getElementType());
    SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
    Value y =
        linalg::GenericOp::create(
            rewriter, loc, init.getType(), ValueRange{x, op.getScale()}, init,
            maps, par,
            [](OpBuilder &b, Location l, ValueRange a) {
              linalg::YieldOp::create(
                  b, l, arith::DivFOp::create(b, l, a[0], a[1]).getResult());
            })
            .getResult(0);
    rewriter.replaceOp(op, y);
    return success();
  }
};

/// A transposed copy of a 2-D tensor.
Value transpose2D(OpBuilder &b, Location loc, Value m) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, m);
  Value init = tensor::EmptyOp::create(
      b, loc, SmallVector<OpFoldResult>{sizes[1], sizes[0]},
      cast<RankedTensorType>(m.getType()).getElementType());
  return linalg::TransposeOp::create(b, loc, m, init, ArrayRef<int64_t>{1, 0})
      .getResult()[0];
}

/// Training-mode dropout of `x` (inverted: survivors scaled by 1/(1-p)):
/// the mask is `qopt.random_uniform`'s numbers of the run's key in
/// `stream`, an element kept where u >= p. The uniforms are recomputed by
/// the backward pass rather than kept; the dropping loop is marked
/// kDropoutAttr so that an evaluation entry can take it out.
Value createDropout(PatternRewriter &rewriter, Location loc, Value x, double p,
                    int64_t stream) {
  auto type = cast<RankedTensorType>(x.getType());
  Value key = RandomKeyOp::create(
      rewriter, loc, RankedTensorType::get({2}, rewriter.getI64Type()));
  SmallVector<Value> dynamic;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamic.push_back(tensor::DimOp::create(rewriter, loc, x, d));
  Value u = createRandomUniform(
      rewriter, loc, key,
      RankedTensorType::get(type.getShape(), rewriter.getF32Type()), dynamic,
      stream);
  u.getDefiningOp()->setAttr(kRecomputeAttr, rewriter.getUnitAttr());
  // As torch's native dropout: x · (1 / (1 - p)) with the factor rounded
  // to the element type.
  Type element = type.getElementType();
  Value threshold = arith::ConstantOp::create(
      rewriter, loc, rewriter.getF32FloatAttr(static_cast<float>(p)));
  Value factor = arith::ConstantOp::create(
      rewriter, loc, rewriter.getFloatAttr(element, 1.0 / (1.0 - p)));
  Value zero =
      arith::ConstantOp::create(rewriter, loc, rewriter.getZeroAttr(element));
  AffineMap id = rewriter.getMultiDimIdentityMap(type.getRank());
  Value dropped = createElementwise(
      rewriter, loc, x, {x, u}, {id, id},
      [&](OpBuilder &b, Location l, ValueRange v) {
        Value drop = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OLT,
                                           v[1], threshold);
        return Value(arith::SelectOp::create(
            b, l, drop, zero, arith::MulFOp::create(b, l, v[0], factor)));
      });
  dropped.getDefiningOp()->setAttr(kDropoutAttr, rewriter.getUnitAttr());
  return dropped;
}

struct LowerLoRA : OpRewritePattern<LoRAOp> {
  /// `dropoutStreams`: the layers that drop their adapter's input
  /// (training), each with its stream of random numbers.
  LowerLoRA(MLIRContext *ctx,
            const DenseMap<Operation *, int64_t> *dropoutStreams)
      : OpRewritePattern(ctx), dropoutStreams(dropoutStreams) {}
  const DenseMap<Operation *, int64_t> *dropoutStreams;

  LogicalResult matchAndRewrite(LoRAOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    if (op.getMerged()) { // W already holds the branch
      rewriter.replaceOpWithNewOp<LinearOp>(op, op.getType(), op.getInput(),
                                            op.getWeight(), op.getBias(),
                                            op.getModuleAttr());
      return success();
    }
    if (isa<QTensorType>(op.getWeight().getType()))
      return dequantizeWeight(rewriter, op); // QLoRA's frozen base
    Value x = op.getInput();
    Type element = op.getInput().getType().getElementType();
    int64_t rank = op.getInput().getType().getRank();
    checkSameSize(rewriter, op, x, rank - 1, op.getWeight(), 1,
                  "the input's last dimension differs from the weight's K");
    checkSameSize(rewriter, op, x, rank - 1, op.getLoraA(), 1,
                  "the input's last dimension differs from lora_a's K");
    Value scale = arith::ConstantOp::create(
        rewriter, loc, rewriter.getFloatAttr(element, op.getScale()));
    // The branch's input: dropped in training, x itself in inference.
    Value xd = x;
    if (auto it = dropoutStreams->find(op.getOperation());
        it != dropoutStreams->end())
      xd = createDropout(rewriter, loc, x, op.getDropout().convertToDouble(),
                         it->second);
    // z = dropout(x) A^T, then gate, middle.
    Value z = createContractLast(rewriter, loc, xd, op.getLoraA(), Value());
    AffineMap id = rewriter.getMultiDimIdentityMap(rank);
    AffineMap last = AffineMap::get(
        rank, 0, {rewriter.getAffineDimExpr(rank - 1)}, rewriter.getContext());
    if (Value gate = op.getGate())
      z = createElementwise(rewriter, loc, z, {z, gate}, {id, last},
                            [](OpBuilder &b, Location l, ValueRange a) {
                              return Value(
                                  arith::MulFOp::create(b, l, a[0], a[1]));
                            });
    if (Value middle = op.getMiddle())
      z = createContractLast(rewriter, loc, z, middle, Value());
    Value branch = createContractLast(rewriter, loc, z, op.getLoraB(), Value());
    Value base = createContractLast(rewriter, loc, x, op.getWeight(), Value());
    Value y;
    if (Value magnitude = op.getMagnitude()) {
      // DoRA: W' = W + scale * B (M diag(g) A); y = m / ||W'||_row * (...).
      Value a = op.getLoraA();
      if (Value gate = op.getGate()) {
        AffineMap id2 = rewriter.getMultiDimIdentityMap(2);
        AffineMap row = AffineMap::get(2, 0, {rewriter.getAffineDimExpr(0)},
                                       rewriter.getContext());
        a = createElementwise(rewriter, loc, a, {a, gate}, {id2, row},
                              [](OpBuilder &b, Location l, ValueRange v) {
                                return Value(
                                    arith::MulFOp::create(b, l, v[0], v[1]));
                              });
      }
      // (M g A) as r x K, then B (r x K) -> N x K via createContractLast(B,
      // (MgA)^T).
      Value mga = a;
      if (Value middle = op.getMiddle())
        mga = createContractLast(rewriter, loc, transpose2D(rewriter, loc, a),
                                 middle,
                                 Value()); // K x r = (M gA)^T
      else
        mga = transpose2D(rewriter, loc, a); // K x r
      Value ba = createContractLast(rewriter, loc, op.getLoraB(), mga,
                                    Value()); // N x K
      Value w = op.getWeight();
      AffineMap id2 = rewriter.getMultiDimIdentityMap(2);
      Value merged = createElementwise(
          rewriter, loc, w, {w, ba}, {id2, id2},
          [&](OpBuilder &b, Location l, ValueRange v) {
            return Value(arith::AddFOp::create(
                b, l, v[0], arith::MulFOp::create(b, l, v[1], scale)));
          });
      // Row norms of W'.
      SmallVector<OpFoldResult> n = {
          tensor::getMixedSizes(rewriter, loc, w)[0]};
      Value zero = arith::ConstantOp::create(rewriter, loc,
                                             rewriter.getZeroAttr(element));
      Value norms =
          linalg::FillOp::create(
              rewriter, loc, zero,
              tensor::EmptyOp::create(rewriter, loc, n, element).getResult())
              .getResult(0);
      SmallVector<AffineMap> nmaps = {
          id2, AffineMap::get(2, 0, {rewriter.getAffineDimExpr(0)},
                              rewriter.getContext())};
      norms =
          linalg::GenericOp::create(
              rewriter, loc, norms.getType(), merged, norms, nmaps,
              {utils::IteratorType::parallel, utils::IteratorType::reduction},
              [](OpBuilder &b, Location l, ValueRange v) {
                Value sq = arith::MulFOp::create(b, l, v[0], v[0]);
                linalg::YieldOp::create(
                    b, l, arith::AddFOp::create(b, l, v[1], sq).getResult());
              })
              .getResult(0);
      // The norm is a constant to training, as in DoRA's paper and PEFT
      // (weight_norm.detach()): no gradient reaches A and B through it.
      norms.getDefiningOp()->setAttr(kNoGradientAttr, rewriter.getUnitAttr());
      Value bias = op.getBias();
      SmallVector<Value> inputs = {base, branch, magnitude, norms};
      SmallVector<AffineMap> maps = {id, id, last, last};
      // With dropout, PEFT's DoRA rescales the dropped input's base
      // product: y = x·Wᵀ + (f - 1)·(x_d·Wᵀ) + f·scale·z_d·Bᵀ (+ b), with
      // f = m / ||W'||; without, x_d = x and this is f·(x·Wᵀ + scale·z·Bᵀ).
      bool dropped = xd != x;
      if (dropped) {
        inputs.push_back(
            createContractLast(rewriter, loc, xd, op.getWeight(), Value()));
        maps.push_back(id);
      }
      if (bias) {
        inputs.push_back(bias);
        maps.push_back(last);
      }
      y = createElementwise(
          rewriter, loc, base, inputs, maps,
          [&](OpBuilder &b, Location l, ValueRange v) {
            Value factor = arith::DivFOp::create(
                b, l, v[2], math::SqrtOp::create(b, l, v[3]));
            Value out;
            if (dropped) {
              Value one = arith::ConstantOp::create(
                  b, l, b.getFloatAttr(factor.getType(), 1.0));
              Value rescale = arith::MulFOp::create(
                  b, l, arith::SubFOp::create(b, l, factor, one), v[4]);
              Value lora = arith::MulFOp::create(
                  b, l, factor, arith::MulFOp::create(b, l, v[1], scale));
              out = arith::AddFOp::create(
                  b, l, v[0], arith::AddFOp::create(b, l, rescale, lora));
            } else {
              Value sum = arith::AddFOp::create(
                  b, l, v[0], arith::MulFOp::create(b, l, v[1], scale));
              out = arith::MulFOp::create(b, l, sum, factor);
            }
            if (bias)
              out = arith::AddFOp::create(b, l, out, v.back());
            return out;
          });
    } else {
      SmallVector<Value> inputs = {base, branch};
      SmallVector<AffineMap> maps = {id, id};
      if (Value bias = op.getBias()) {
        inputs.push_back(bias);
        maps.push_back(last);
      }
      y = createElementwise(rewriter, loc, base, inputs, maps,
                            [&](OpBuilder &b, Location l, ValueRange v) {
                              Value out = arith::AddFOp::create(
                                  b, l, v[0],
                                  arith::MulFOp::create(b, l, v[1], scale));
                              if (v.size() > 2)
                                out = arith::AddFOp::create(b, l, out, v[2]);
                              return out;
                            });
    }
    return replaceWithCast(rewriter, op, y);
  }
};

/// How a scale of `granularity` is indexed from the data's loop dims, as an
/// affine map; failure where it is not affine (per_block over dynamic data).
FailureOr<AffineMap> scaleMap(OpBuilder &b, GranularityAttrInterface g,
                              RankedTensorType type) {
  int64_t rank = type.getRank();
  MLIRContext *ctx = b.getContext();
  if (isa<PerTensorAttr>(g))
    return AffineMap::get(rank, 0, {}, ctx);
  if (auto c = dyn_cast<PerChannelAttr>(g))
    return AffineMap::get(rank, 0, {b.getAffineDimExpr(c.getAxis())}, ctx);
  if (auto grp = dyn_cast<PerGroupAttr>(g)) {
    SmallVector<AffineExpr> exprs;
    for (int64_t d = 0; d < rank; ++d)
      exprs.push_back(d == grp.getAxis()
                          ? b.getAffineDimExpr(d).floorDiv(grp.getSize())
                          : b.getAffineDimExpr(d));
    return AffineMap::get(rank, 0, exprs, ctx);
  }
  if (isa<PerTokenAttr>(g)) {
    SmallVector<AffineExpr> exprs;
    for (int64_t d = 0; d + 1 < rank; ++d)
      exprs.push_back(b.getAffineDimExpr(d));
    return AffineMap::get(rank, 0, exprs, ctx);
  }
  if (auto blk = dyn_cast<PerBlockAttr>(g)) {
    if (!type.hasStaticShape())
      return failure();
    AffineExpr linear = b.getAffineConstantExpr(0);
    int64_t stride = 1;
    for (int64_t d = rank - 1; d >= 0; --d) {
      linear = linear + b.getAffineDimExpr(d) * stride;
      stride *= type.getDimSize(d);
    }
    return AffineMap::get(rank, 0, {linear.floorDiv(blk.getSize())}, ctx);
  }
  return failure();
}

/// q = encode(v) in code space, then decode: the value on `format`'s grid
/// nearest to v (v already divided by the scale and shifted by zp).
Value snapToGrid(OpBuilder &b, Location loc, Value v,
                 QuantFormatAttrInterface format, Value zp) {
  Type t = v.getType();
  auto c = [&](double x) {
    return arith::ConstantOp::create(b, loc, b.getFloatAttr(t, x)).getResult();
  };
  if (auto intFormat = dyn_cast<IntFormatAttr>(format)) {
    Value q = math::RoundEvenOp::create(b, loc, v);
    q.getDefiningOp()->setAttr(kStraightThroughAttr, b.getUnitAttr());
    if (zp)
      q = arith::AddFOp::create(b, loc, q, zp);
    q = arith::MaximumFOp::create(b, loc, q, c((double)intFormat.getQMin()));
    q = arith::MinimumFOp::create(b, loc, q, c((double)intFormat.getQMax()));
    if (zp)
      q = arith::SubFOp::create(b, loc, q, zp);
    return q;
  }
  // (The small float formats round to nearest even on their grid, below,
  // as ml_dtypes, torch and the compile-time quantizer do; the codebooks
  // of NF4 and bitsandbytes' formats by their midpoints.)
  if (ArrayRef<float> codebook = codebookOf(format);
      !codebook.empty() && !isa<FloatFormatAttr>(format)) {
    // The nearest code: compare with the midpoints of the sorted values
    // (ties low).
    SmallVector<float> sorted(codebook);
    llvm::sort(sorted);
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    Value result = c(sorted[0]);
    for (size_t i = 1; i < sorted.size(); ++i) {
      float lo = sorted[i - 1], hi = sorted[i];
      Value above = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, v,
                                          c(((double)lo + (double)hi) / 2));
      result = arith::SelectOp::create(b, loc, above, c((double)hi), result);
    }
    // As clamp(v) + (code - clamp(v)) with the difference detached, so that
    // training sees the straight-through estimator with its clipping mask.
    // The sum is exactly the code: both are within a factor of two of each
    // other (or the code is 0), so the difference is exact (Sterbenz).
    float lowest = 0, highest = 0;
    for (float x : sorted)
      if (std::isfinite(x)) {
        lowest = std::min(lowest, x);
        highest = std::max(highest, x);
      }
    Value clamped = arith::MinimumFOp::create(
        b, loc, arith::MaximumFOp::create(b, loc, v, c(lowest)), c(highest));
    Value delta = arith::SubFOp::create(b, loc, result, clamped);
    delta.getDefiningOp()->setAttr(kNoGradientAttr, b.getUnitAttr());
    return arith::AddFOp::create(b, loc, clamped, delta);
  }
  auto fmt = cast<FloatFormatAttr>(format);
  double max = fmt.getMaxRepresentable();
  // Round to nearest even on the format's grid without the narrow type (the
  // LLVM lowering has no f8/f4 arithmetic): clamp, take the binade's
  // exponent from the f32 bits (not below the smallest normal one, so
  // subnormals get the fixed quantum), and round to a multiple of
  // 2^(exponent - mantissa bits).
  const llvm::fltSemantics &sem =
      cast<FloatType>(fmt.getType()).getFloatSemantics();
  int mantissaBits = llvm::APFloat::semanticsPrecision(sem) - 1;
  int minExponent = llvm::APFloat::semanticsMinExponent(sem);
  Value clamped = arith::MinimumFOp::create(
      b, loc, arith::MaximumFOp::create(b, loc, v, c(-max)), c(max));
  Type i32 = b.getI32Type();
  auto i32c = [&](int64_t x) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(x))
        .getResult();
  };
  Value bits = arith::BitcastOp::create(b, loc, i32, clamped);
  Value exponent = arith::SubIOp::create(
      b, loc,
      arith::AndIOp::create(
          b, loc, arith::ShRUIOp::create(b, loc, bits, i32c(23)), i32c(0xff)),
      i32c(127));
  exponent = arith::MaxSIOp::create(b, loc, exponent, i32c(minExponent));
  Value quantumBits = arith::ShLIOp::create(
      b, loc, arith::AddIOp::create(b, loc, exponent, i32c(127 - mantissaBits)),
      i32c(23));
  Value quantum = arith::BitcastOp::create(b, loc, b.getF32Type(), quantumBits);
  Value steps = math::RoundEvenOp::create(
      b, loc, arith::DivFOp::create(b, loc, clamped, quantum));
  steps.getDefiningOp()->setAttr(kStraightThroughAttr, b.getUnitAttr());
  return arith::MulFOp::create(b, loc, steps, quantum);
}

/// The bits of a fake-quantizer of activations per token whose scales are
/// createQuantScales' of its own input (max|x| / qmax over the last axis:
/// a reduction of the input, then an elementwise map), signed, without a
/// zero point (kPerTokenFP8E4M3 for E4M3FN); 0 otherwise.
template <typename QuantOp> static unsigned dynamicPerTokenBits(QuantOp op) {
  auto format = dyn_cast<IntFormatAttr>(op.getFormat());
  auto floatFormat = dyn_cast<FloatFormatAttr>(op.getFormat());
  bool e4m3 = floatFormat && isa<Float8E4M3FNType>(floatFormat.getType());
  if (!std::is_same_v<QuantOp, FakeQuantOp> ||
      !op->hasAttr(kDynamicScalesAttr) ||
      (!e4m3 && (!format || !format.getIsSigned() || format.getZeroPoint())) ||
      op.getZeroPoint() || !isa<PerTokenAttr>(op.getGranularity()))
    return 0;
  auto map = op.getScale().template getDefiningOp<linalg::GenericOp>();
  if (!map || map.getNumDpsInputs() != 1)
    return 0;
  auto reduce = map.getDpsInputOperand(0)
                    ->get()
                    .template getDefiningOp<linalg::ReduceOp>();
  int64_t rank = op.getInput().getType().getRank();
  if (!reduce || reduce.getInputs().size() != 1 ||
      reduce.getInputs()[0] != op.getInput() ||
      reduce.getDimensions() != ArrayRef<int64_t>{rank - 1})
    return 0;
  return e4m3 ? unsigned(kPerTokenFP8E4M3) : format.getBits();
}

template <typename QuantOp> struct LowerFakeQuant : OpRewritePattern<QuantOp> {
  using OpRewritePattern<QuantOp>::OpRewritePattern;
  LogicalResult matchAndRewrite(QuantOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = op.getInput().getType();
    FailureOr<AffineMap> smap = scaleMap(rewriter, op.getGranularity(), type);
    if (failed(smap))
      return rewriter.notifyMatchFailure(op, "per_block needs static shapes");
    int64_t rank = type.getRank();
    SmallVector<Value> inputs = {op.getInput(), op.getScale()};
    SmallVector<AffineMap> maps = {rewriter.getMultiDimIdentityMap(rank),
                                   *smap};
    if (Value zp = op.getZeroPoint()) {
      inputs.push_back(zp);
      maps.push_back(*smap);
    }
    QuantFormatAttrInterface format = op.getFormat();
    // bitsandbytes' codebooks round as its kernels encode: the code, then
    // its value times the absmax.
    Value searchTable, values;
    if (isBnbCodebook(format)) {
      searchTable = createBnbSearchTable(rewriter, loc, format);
      ArrayRef<float> codebook = codebookOf(format);
      values = arith::ConstantOp::create(
          rewriter, loc,
          DenseElementsAttr::get(
              RankedTensorType::get({int64_t(codebook.size())},
                                    rewriter.getF32Type()),
              codebook));
    }
    Value y = createElementwise(
        rewriter, loc, op.getInput(), inputs, maps,
        [&](OpBuilder &b, Location l, ValueRange a) {
          // Computed in f32, as the reference formats are defined there.
          Value x = castToF32(b, l, a[0]), s = castToF32(b, l, a[1]);
          Value zp = a.size() > 2 ? castToF32(b, l, a[2]) : Value();
          Value q;
          if (values) {
            Value code = bnbEncode(b, l, format, x, s, searchTable);
            q = tensor::ExtractOp::create(b, l, values,
                                          ValueRange{arith::IndexCastOp::create(
                                              b, l, b.getIndexType(), code)});
          } else {
            q = snapToGrid(b, l, arith::DivFOp::create(b, l, x, s), format, zp);
          }
          return castFromF32(b, l, arith::MulFOp::create(b, l, q, s),
                             a[0].getType());
        });
    // Training: straight-through estimators (the rounding is marked in the
    // body; a codebook's lookup as a whole), and LSQ's gradient scale.
    Operation *generic = y.getDefiningOp();
    if (values)
      generic->setAttr(kStraightThroughAttr, rewriter.getUnitAttr());
    if (unsigned bits = dynamicPerTokenBits(op))
      generic->setAttr(kPerTokenQuantAttr, rewriter.getI64IntegerAttr(bits));
    if constexpr (std::is_same_v<QuantOp, LSQOp>) {
      double g = 1.0;
      if (FloatAttr given = op.getGradScaleAttr()) {
        g = given.getValueAsDouble();
      } else if (auto intFormat = dyn_cast<IntFormatAttr>(format);
                 intFormat && type.hasStaticShape() &&
                 op.getScale().getType().hasStaticShape()) {
        // 1 / √(n · qmax), n the elements sharing one scale.
        double n = double(type.getNumElements()) /
                   double(op.getScale().getType().getNumElements());
        g = 1.0 / std::sqrt(n * double(intFormat.getQMax()));
      }
      SmallVector<double> scales(inputs.size(), g);
      scales[0] = 1.0;
      generic->setAttr(kGradientScaleAttr,
                       rewriter.getDenseF64ArrayAttr(scales));
    }
    rewriter.replaceOp(op, y);
    return success();
  }
};

/// (1/√n) · H_n applied to each run of n = base · power elements of the
/// f32 tensor `x` (whose last axis holds whole runs), as products: with
/// power = p1 · p2 (Sylvester: H_power = H_p1 ⊗ H_p2), the data viewed as
/// [runs, base, p1, p2] takes H_base, H_p1 and H_p2 on one axis each, as
/// contractions (base + p1 + p2 multiply-adds per element, BLAS on the CPU;
/// the butterflies' log2(power) passes of scalar gathers were 18% of a
/// prefill step of a QuaRot model).
static Value kronProducts(OpBuilder &b, Location loc, Value x, int64_t n) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  ::qopt::hadamard::KroneckerFactors f = ::qopt::hadamard::kroneckerFactors(n);
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  // The data as one axis (a view: the layout is row-major).
  int64_t total =
      type.hasStaticShape() ? type.getNumElements() : ShapedType::kDynamic;
  Value flat = x;
  if (rank > 1) {
    ReassociationIndices all;
    for (int64_t d = 0; d < rank; ++d)
      all.push_back(d);
    flat = tensor::CollapseShapeOp::create(
        b, loc, RankedTensorType::get({total}, f32), x,
        ArrayRef<ReassociationIndices>{all});
  }
  bool first = true;
  // y[o, a, j] = Σ_k H[a, k] · x[o, k, j] over the view [total / (f · inner),
  // f, inner] (inner = 1: y[o, a] = Σ_k x[o, k] · H[a, k]).
  auto factor = [&](int64_t f, int64_t inner,
                    const std::vector<int8_t> &matrix) {
    // The normalisation goes into the first factor's constant.
    float scale = first ? float(1.0 / std::sqrt(double(n))) : 1.0f;
    first = false;
    SmallVector<float> values;
    for (int8_t v : matrix)
      values.push_back(float(v) * scale);
    Value h = arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(RankedTensorType::get({f, f}, f32),
                               ArrayRef<float>(values)));
    int64_t rows = ShapedType::isDynamic(total) ? ShapedType::kDynamic
                                                : total / (f * inner);
    SmallVector<int64_t> shape = {rows, f};
    if (inner > 1)
      shape.push_back(inner);
    ReassociationIndices group;
    for (int64_t d = 0; d < int64_t(shape.size()); ++d)
      group.push_back(d);
    auto viewType = RankedTensorType::get(shape, f32);
    Value view = tensor::ExpandShapeOp::create(
        b, loc, viewType, flat, ArrayRef<ReassociationIndices>{group});
    Value init = createFilledTensor(b, loc, tensor::getMixedSizes(b, loc, view),
                                    f32, 0.0);
    AffineExpr o = getAffineDimExpr(0, ctx), a = getAffineDimExpr(1, ctx);
    SmallVector<AffineMap> maps;
    SmallVector<utils::IteratorType> iterators(shape.size(),
                                               utils::IteratorType::parallel);
    iterators.push_back(utils::IteratorType::reduction);
    unsigned dims = shape.size() + 1;
    if (inner > 1) {
      AffineExpr j = getAffineDimExpr(2, ctx), k = getAffineDimExpr(3, ctx);
      maps = {AffineMap::get(dims, 0, {a, k}, ctx),
              AffineMap::get(dims, 0, {o, k, j}, ctx),
              AffineMap::get(dims, 0, {o, a, j}, ctx)};
    } else {
      AffineExpr k = getAffineDimExpr(2, ctx);
      maps = {AffineMap::get(dims, 0, {a, k}, ctx),
              AffineMap::get(dims, 0, {o, k}, ctx),
              AffineMap::get(dims, 0, {o, a}, ctx)};
    }
    Value y =
        linalg::GenericOp::create(
            b, loc, viewType, ValueRange{h, view}, init, maps, iterators,
            [](OpBuilder &nb, Location l, ValueRange args) {
              Value prod = arith::MulFOp::create(nb, l, args[0], args[1]);
              linalg::YieldOp::create(
                  nb, l, Value(arith::AddFOp::create(nb, l, args[2], prod)));
            })
            .getResult(0);
    flat = tensor::CollapseShapeOp::create(
        b, loc, RankedTensorType::get({total}, f32), y,
        ArrayRef<ReassociationIndices>{group});
  };
  if (f.base > 1)
    factor(f.base, f.p1 * f.p2, ::qopt::hadamard::matrix(f.base));
  if (f.p1 > 1)
    factor(f.p1, f.p2, ::qopt::hadamard::matrix(f.p1));
  if (f.p2 > 1)
    factor(f.p2, 1, ::qopt::hadamard::matrix(f.p2));
  if (first) // n = 1: the identity
    return x;
  if (rank == 1)
    return flat;
  // Back to x's shape: a reshape by a shape operand (expand-strided-metadata
  // of LLVM 22 crashes on an expand_shape whose group holds two dynamic
  // sizes, as [batch, seq, hidden] would).
  SmallVector<Value> dims;
  for (int64_t d = 0; d < rank; ++d)
    dims.push_back(arith::IndexCastOp::create(
        b, loc, b.getI64Type(), tensor::DimOp::create(b, loc, x, d)));
  Value shape = tensor::FromElementsOp::create(
      b, loc, RankedTensorType::get({rank}, b.getI64Type()), dims);
  return tensor::ReshapeOp::create(b, loc, type, flat, shape);
}

/// An f32 qopt.hadamard over the last axis of a static size, with a block
/// n = base · 2^k of 2 to 23040 (base ≤ 252: H_base travels in the launch),
/// or longer where base · 2^k / 8192 ≤ 252 (two launches: the split plan),
/// as one call of the library's fast Walsh-Hadamard transform (`library`:
/// the hadamard-library option): n and flags (1: signs) as i64, the scale
/// 1/√n as f64, then x viewed as [rows, D], the signs (a one-element
/// constant where there are none), H_base as an i8 constant [base, base]
/// ([[1]] for powers of two; the library reads it on the host) and a fresh
/// y [rows, D] as strided memrefs. Null where the kernel does not take the
/// op. (HadamardTile.h's kHadamardMaxBase, kHadamardMixedMaxElements and
/// kHadamardMaxN.)
static Value hadamardCall(PatternRewriter &rewriter, HadamardOp op,
                          LibraryCalls &calls, int64_t n, int64_t base) {
  Location loc = op.getLoc();
  Value x = op.getInput(), signs = op.getSigns();
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  Type f32 = rewriter.getF32Type();
  if (!type.getElementType().isF32() ||
      normalizedAxis(static_cast<int64_t>(op.getAxis()), rank) != rank - 1 ||
      type.isDynamicDim(rank - 1) || type.getDimSize(rank - 1) % n || n < 2 ||
      base > 252 ||
      (n > 23040 && base * std::max<int64_t>(1, n / base / 8192) > 252) ||
      (signs &&
       !cast<RankedTensorType>(signs.getType()).getElementType().isF32()))
    return nullptr;
  if (!signs)
    signs = arith::ConstantOp::create(
        rewriter, loc,
        DenseElementsAttr::get(RankedTensorType::get({1}, f32), 1.0f));
  std::vector<int8_t> hm = ::qopt::hadamard::baseMatrix(base);
  Value baseMatrix = arith::ConstantOp::create(
      rewriter, loc,
      DenseElementsAttr::get(
          RankedTensorType::get({base, base}, rewriter.getI8Type()),
          ArrayRef<int8_t>(hm)));
  Value scalars[] = {
      arith::ConstantIntOp::create(rewriter, loc, op.getSigns() ? 1 : 0, 64),
      arith::ConstantIntOp::create(rewriter, loc, n, 64),
      arith::ConstantFloatOp::create(rewriter, loc, rewriter.getF64Type(),
                                     APFloat(1.0 / std::sqrt(double(n))))};
  return rowwiseLibraryCall(rewriter, op, calls, calls.hadamard, x, scalars,
                            {signs, baseMatrix});
}

struct LowerHadamard : LibraryPattern<HadamardOp> {
  using LibraryPattern::LibraryPattern;
  LogicalResult matchAndRewrite(HadamardOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = op.getInput().getType();
    int64_t rank = type.getRank();
    int64_t axis = normalizedAxis(static_cast<int64_t>(op.getAxis()), rank);
    int64_t n = op.getBlock() ? *op.getBlock() : type.getDimSize(axis);
    if (ShapedType::isDynamic(n))
      return rewriter.notifyMatchFailure(op, "needs a static transform size");
    // n = base · power: H_base ⊗ H_power, index i = a · power + b.
    ::qopt::hadamard::Order order = ::qopt::hadamard::split(n);
    if (order.base == 0)
      return rewriter.notifyMatchFailure(op, "no Hadamard matrix of order n");
    int64_t power = order.power, base = order.base;
    if (!calls.hadamard.empty())
      if (Value y = hadamardCall(rewriter, op, calls, n, base)) {
        rewriter.replaceOp(op, y);
        return success();
      }
    Value x = op.getInput();
    // Blocks over a dynamic axis: the size must be a multiple of the block,
    // or the last butterflies would read past the end.
    if (type.isDynamicDim(axis)) {
      Value size = tensor::DimOp::create(rewriter, loc, x, axis);
      Value rest = arith::RemUIOp::create(
          rewriter, loc, size,
          arith::ConstantIndexOp::create(rewriter, loc, n));
      Value whole = arith::CmpIOp::create(
          rewriter, loc, arith::CmpIPredicate::eq, rest,
          arith::ConstantIndexOp::create(rewriter, loc, 0));
      cf::AssertOp::create(
          rewriter, loc, whole,
          describe(op) + ": the size of axis " + std::to_string(axis) +
              " is not a multiple of the block (" + std::to_string(n) + ")");
    }
    AffineMap id = rewriter.getMultiDimIdentityMap(rank);
    Type element = type.getElementType();
    // f32 over a static last axis: H_n = H_base ⊗ H_p1 ⊗ H_p2 as three small
    // products on views of the data (kronProducts), which the CPU target
    // runs as BLAS calls.
    bool products = element.isF32() && axis == rank - 1 &&
                    !type.isDynamicDim(axis) && type.getDimSize(axis) % n == 0;
    if (Value signs = op.getSigns()) {
      AffineMap within =
          AffineMap::get(rank, 0, {rewriter.getAffineDimExpr(axis) % n},
                         rewriter.getContext());
      x = createElementwise(rewriter, loc, x, {x, signs}, {id, within},
                            [](OpBuilder &b, Location l, ValueRange a) {
                              return Value(
                                  arith::MulFOp::create(b, l, a[0], a[1]));
                            });
    }
    if (products) {
      rewriter.replaceOp(op, kronProducts(rewriter, loc, x, n));
      return success();
    }
    // Fast Walsh-Hadamard transform over each run of `power` elements:
    // log2(power) butterfly stages, each reading the partner element i ^ h.
    for (int64_t h = 1; h < power; h *= 2) {
      Value in = x;
      x = createElementwise(
          rewriter, loc, in, {}, {}, [&](OpBuilder &b, Location l, ValueRange) {
            SmallVector<Value> idx;
            for (int64_t d = 0; d < rank; ++d)
              idx.push_back(linalg::IndexOp::create(b, l, d));
            Value i = idx[axis];
            Value hv = arith::ConstantIndexOp::create(b, l, h);
            Value bit = arith::RemUIOp::create(
                b, l, arith::DivUIOp::create(b, l, i, hv),
                arith::ConstantIndexOp::create(b, l, 2));
            Value high =
                arith::CmpIOp::create(b, l, arith::CmpIPredicate::ne, bit,
                                      arith::ConstantIndexOp::create(b, l, 0));
            Value partner = arith::SelectOp::create(
                b, l, high, arith::SubIOp::create(b, l, i, hv),
                arith::AddIOp::create(b, l, i, hv));
            SmallVector<Value> pidx(idx);
            pidx[axis] = partner;
            Value self = tensor::ExtractOp::create(b, l, in, idx);
            Value other = tensor::ExtractOp::create(b, l, in, pidx);
            // low: self + other; high: other - self.
            return Value(arith::SelectOp::create(
                b, l, high, arith::SubFOp::create(b, l, other, self),
                arith::AddFOp::create(b, l, self, other)));
          });
    }
    if (base == 1) {
      Value norm = arith::ConstantOp::create(
          rewriter, loc,
          rewriter.getFloatAttr(element, 1.0 / std::sqrt((double)n)));
      x = createElementwise(rewriter, loc, x, {x}, {id},
                            [&](OpBuilder &b, Location l, ValueRange a) {
                              return Value(
                                  arith::MulFOp::create(b, l, a[0], norm));
                            });
      rewriter.replaceOp(op, x);
      return success();
    }
    // Then H_base across the runs, in f32: y[.., g·n + a·power + b, ..] =
    // Σ_r H[a, r] · x[.., g·n + r·power + b, ..], a reduction over r whose
    // maps split the axis index (i mod n) floordiv power.
    Type f32 = rewriter.getF32Type();
    std::vector<int8_t> hm = ::qopt::hadamard::baseMatrix(base);
    SmallVector<float> values(hm.begin(), hm.end());
    Value h = arith::ConstantOp::create(
        rewriter, loc,
        DenseElementsAttr::get(RankedTensorType::get({base, base}, f32),
                               ArrayRef<float>(values)));
    MLIRContext *ctx = rewriter.getContext();
    AffineExpr i = rewriter.getAffineDimExpr(axis),
               r = rewriter.getAffineDimExpr(rank);
    AffineExpr a = (i % n).floorDiv(power);
    SmallVector<AffineExpr> xExprs, outExprs;
    for (int64_t d = 0; d < rank; ++d) {
      xExprs.push_back(d == axis ? i - a * power + r * power
                                 : rewriter.getAffineDimExpr(d));
      outExprs.push_back(rewriter.getAffineDimExpr(d));
    }
    SmallVector<AffineMap> maps = {AffineMap::get(rank + 1, 0, {a, r}, ctx),
                                   AffineMap::get(rank + 1, 0, xExprs, ctx),
                                   AffineMap::get(rank + 1, 0, outExprs, ctx)};
    SmallVector<utils::IteratorType> iterators(rank,
                                               utils::IteratorType::parallel);
    iterators.push_back(utils::IteratorType::reduction);
    Value zero = arith::ConstantOp::create(rewriter, loc,
                                           rewriter.getF32FloatAttr(0.0f));
    Value init =
        linalg::FillOp::create(
            rewriter, loc, zero,
            tensor::EmptyOp::create(
                rewriter, loc, tensor::getMixedSizes(rewriter, loc, x), f32)
                .getResult())
            .getResult(0);
    Value mixed =
        linalg::GenericOp::create(
            rewriter, loc, init.getType(), ValueRange{h, x}, init, maps,
            iterators,
            [&](OpBuilder &b, Location l, ValueRange args) {
              Value prod = arith::MulFOp::create(b, l, args[0],
                                                 castToF32(b, l, args[1]));
              linalg::YieldOp::create(
                  b, l, Value(arith::AddFOp::create(b, l, args[2], prod)));
            })
            .getResult(0);
    Value norm = f32Const(rewriter, loc, 1.0 / std::sqrt((double)n));
    x = createElementwise(
        rewriter, loc, x, {mixed}, {id},
        [&](OpBuilder &b, Location l, ValueRange args) {
          return castFromF32(b, l, arith::MulFOp::create(b, l, args[0], norm),
                             element);
        });
    rewriter.replaceOp(op, x);
    return success();
  }
};

/// `fn(x)` elementwise over the op's input, computed in f32 whatever the
/// element type (the activations below).
Value unaryInF32(PatternRewriter &rewriter, Operation *op, Value x,
                 function_ref<Value(OpBuilder &, Location, Value)> fn) {
  auto type = cast<RankedTensorType>(x.getType());
  return createElementwise(
      rewriter, op->getLoc(), x, x,
      {rewriter.getMultiDimIdentityMap(type.getRank())},
      [&](OpBuilder &b, Location l, ValueRange a) -> Value {
        return castFromF32(b, l, fn(b, l, castToF32(b, l, a[0])),
                           type.getElementType());
      });
}

struct LowerGelu : OpRewritePattern<GeluOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(GeluOp op,
                                PatternRewriter &rewriter) const override {
    bool useTanh = op.getApproximate() == "tanh";
    rewriter.replaceOp(
        op,
        unaryInF32(
            rewriter, op, op.getInput(),
            [&](OpBuilder &b, Location l, Value v) -> Value {
              auto c = [&](double d) { return f32Const(b, l, d); };
              Value inner;
              if (useTanh) {
                Value v3 = arith::MulFOp::create(
                    b, l, v, arith::MulFOp::create(b, l, v, v));
                Value s = arith::AddFOp::create(
                    b, l, v, arith::MulFOp::create(b, l, v3, c(0.044715)));
                inner = math::TanhOp::create(
                    b, l,
                    arith::MulFOp::create(b, l, s, c(std::sqrt(2.0 / M_PI))));
              } else {
                inner = math::ErfOp::create(
                    b, l,
                    arith::MulFOp::create(b, l, v, c(1.0 / std::sqrt(2.0))));
              }
              return arith::MulFOp::create(
                  b, l, arith::MulFOp::create(b, l, v, c(0.5)),
                  arith::AddFOp::create(b, l, inner, c(1.0)));
            }));
    return success();
  }
};

struct LowerSiLU : OpRewritePattern<SiLUOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SiLUOp op,
                                PatternRewriter &rewriter) const override {
    rewriter.replaceOp(
        op,
        unaryInF32(rewriter, op, op.getInput(),
                   [](OpBuilder &b, Location l, Value v) -> Value {
                     Value e = math::ExpOp::create(
                         b, l, arith::NegFOp::create(b, l, v));
                     return arith::DivFOp::create(
                         b, l, v,
                         arith::AddFOp::create(b, l, e, f32Const(b, l, 1.0)));
                   }));
    return success();
  }
};

/// out[b, h, i, n] = Σ_k lhs[b, h, i, k] · rhs[b, h / group, (k, n) or
/// (n, k)], accumulated in f32 from zero: a named product (grouped heads
/// read through h / group are a linalg.generic).
Value headProduct(OpBuilder &b, Location loc, Value lhs, Value rhs,
                  int64_t group, bool rhsTransposed, OpFoldResult nSize) {
  MLIRContext *ctx = b.getContext();
  SmallVector<OpFoldResult> ls = tensor::getMixedSizes(b, loc, lhs);
  AffineExpr bd = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1),
             i = b.getAffineDimExpr(2), n = b.getAffineDimExpr(3),
             k = b.getAffineDimExpr(4);
  AffineExpr kvHead = group == 1 ? h : h.floorDiv(group);
  SmallVector<AffineMap> maps = {
      AffineMap::get(5, 0, {bd, h, i, k}, ctx),
      AffineMap::get(5, 0,
                     rhsTransposed ? ArrayRef<AffineExpr>{bd, kvHead, n, k}
                                   : ArrayRef<AffineExpr>{bd, kvHead, k, n},
                     ctx),
      AffineMap::get(5, 0, {bd, h, i, n}, ctx)};
  Value init = createFilledTensor(b, loc, {ls[0], ls[1], ls[2], nSize},
                                  b.getF32Type(), 0);
  SmallVector<utils::IteratorType> it(4, utils::IteratorType::parallel);
  it.push_back(utils::IteratorType::reduction);
  return createMulAddContraction(b, loc, lhs, rhs, init, maps, it);
}

/// Whether the attention library's kernels take an attention with these
/// operands: f32 query, key, value and result, an f32 or i1 mask or none,
/// static head sizes up to 128.
static bool libraryTakesAttention(Value q, Value k, Value v, Value mask,
                                  Value result) {
  auto type = [](Value t) { return cast<RankedTensorType>(t.getType()); };
  for (Value t : {q, k, v, result})
    if (!type(t).getElementType().isF32())
      return false;
  if (mask && !type(mask).getElementType().isF32() &&
      !type(mask).getElementType().isInteger(1))
    return false;
  for (int64_t size : {type(q).getDimSize(3), type(v).getDimSize(3)})
    if (ShapedType::isDynamic(size) || size > 128)
      return false;
  return true;
}

/// One call of the attention library (`name`, `name`_i1 for a bool mask)
/// for qopt.attention and qopt.attention_grad: flags (AttentionTile.h's:
/// float mask 1, bool mask 2, causal 4, soft cap 8), the scale and the soft
/// cap as f64, then `inputs` (query, key, value, the mask (rank 4: leading
/// unit dimensions added; the query where there is none), …) read as
/// strided memrefs through bufferization.to_buffer, which bufferization
/// keeps, then fresh buffers of `outputs` (a shape and the tensors whose
/// sizes fill its dynamic dimensions, dimension by dimension). Returns the
/// outputs as tensors.
static SmallVector<Value> callAttentionLibrary(
    PatternRewriter &rewriter, Operation *op, LibraryCalls &calls,
    StringRef name, Value mask, bool causal, double scale,
    std::optional<double> softcap, ArrayRef<Value> inputs,
    ArrayRef<
        std::pair<ArrayRef<int64_t>, SmallVector<std::pair<Value, int64_t>>>>
        outputs) {
  Location loc = op->getLoc();
  auto type = [](Value t) { return cast<RankedTensorType>(t.getType()); };
  Type f32 = rewriter.getF32Type();
  auto buffer = [&](Value t) { return libraryRead(rewriter, op, calls, t); };
  int64_t flags = 0;
  Type maskElement = mask ? type(mask).getElementType() : f32;
  SmallVector<Value> args;
  for (Value in : inputs)
    args.push_back(buffer(in));
  if (mask) {
    int64_t rank = type(mask).getRank();
    if (rank < 4) { // leading unit dimensions (the mask aligns right)
      SmallVector<ReassociationIndices> groups;
      SmallVector<int64_t> shape(4 - rank, 1);
      llvm::append_range(shape, type(mask).getShape());
      for (int64_t d = 0; d < rank; ++d) {
        groups.emplace_back();
        if (d == 0)
          for (int64_t u = 0; u < 4 - rank; ++u)
            groups.back().push_back(u);
        groups.back().push_back(4 - rank + d);
      }
      mask = tensor::ExpandShapeOp::create(
          rewriter, loc, RankedTensorType::get(shape, maskElement), mask,
          groups);
    }
    args.insert(args.begin() + 3, buffer(mask));
    flags |= maskElement.isF32() ? 1 : 2;
  } else {
    args.insert(args.begin() + 3, args[0]);
  }
  if (causal)
    flags |= 4;
  if (softcap)
    flags |= 8;
  SmallVector<Value> allocs;
  for (auto &[shape, sizes] : outputs) {
    allocs.push_back(libraryOutput(rewriter, loc, shape, f32, sizes));
    args.push_back(libraryArg(rewriter, loc, allocs.back()));
  }
  FloatType f64 = rewriter.getF64Type();
  Value leading[] = {
      arith::ConstantIntOp::create(rewriter, loc, flags, 64),
      arith::ConstantFloatOp::create(rewriter, loc, f64, APFloat(scale)),
      arith::ConstantFloatOp::create(rewriter, loc, f64,
                                     APFloat(softcap.value_or(0.0)))};
  args.insert(args.begin(), std::begin(leading), std::end(leading));
  callLibrary(rewriter, op,
              maskElement.isInteger(1) ? name.str() + "_i1" : name, args);
  SmallVector<Value> results;
  for (Value buffer : allocs)
    results.push_back(libraryResult(rewriter, loc, buffer));
  return results;
}

static std::optional<double> softcapOf(std::optional<APFloat> cap) {
  if (!cap)
    return std::nullopt;
  return cap->convertToDouble();
}

/// qopt.attention as one call of the library's fused forward (`library`:
/// the attention-library option): Q, K, V, the mask, then Y. Null where the
/// kernel does not take the op.
static Value attentionCall(PatternRewriter &rewriter, AttentionOp op,
                           LibraryCalls &calls) {
  Value q = op.getQuery(), k = op.getKey(), v = op.getValue();
  if (!libraryTakesAttention(q, k, v, op.getMask(), op.getResult()))
    return nullptr;
  // Y [B, Hq, S, Dv]: Q's first three sizes, V's last.
  return callAttentionLibrary(
      rewriter, op, calls, calls.attention, op.getMask(), op.getCausal(),
      op.getScaleValue(), softcapOf(op.getSoftcap()), {q, k, v},
      {{op.getType().getShape(), {{q, 0}, {q, 1}, {q, 2}, {v, 3}}}})[0];
}

struct LowerAttention : LibraryPattern<AttentionOp> {
  using LibraryPattern::LibraryPattern;
  LogicalResult matchAndRewrite(AttentionOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value q = op.getQuery(), k = op.getKey(), v = op.getValue();
    Value mask = op.getMask();
    if (calls.keepAttention &&
        libraryTakesAttention(q, k, v, mask, op.getResult()))
      return rewriter.notifyMatchFailure(op, "kept for the library");
    int64_t hq = op.getQuery().getType().getDimSize(1),
            hkv = op.getKey().getType().getDimSize(1);
    // Dynamic head counts must be equal (no grouping).
    int64_t group =
        ShapedType::isDynamic(hq) || ShapedType::isDynamic(hkv) ? 1 : hq / hkv;
    if (group == 1)
      checkSameSize(rewriter, op, q, 1, k, 1,
                    "Q and K have different numbers of heads");
    checkSameSize(rewriter, op, k, 1, v, 1,
                  "K and V have different numbers of heads");
    // The products assume these sizes agree where the types leave it open.
    checkSameSize(rewriter, op, q, 0, k, 0,
                  "Q and K have different batch sizes");
    checkSameSize(rewriter, op, k, 0, v, 0,
                  "K and V have different batch sizes");
    checkSameSize(rewriter, op, q, 3, k, 3,
                  "Q and K have different head sizes");
    checkSameSize(rewriter, op, k, 2, v, 2,
                  "K and V have different sequence lengths");
    // Scores [B, Hq, S, L]: each of their dimensions and where it comes from.
    std::pair<Value, int64_t> scoreDims[4] = {{q, 0}, {q, 1}, {q, 2}, {k, 2}};
    MLIRContext *ctx = rewriter.getContext();
    AffineMap full = rewriter.getMultiDimIdentityMap(4);
    SmallVector<AffineMap> maps = {full};
    SmallVector<Value> inputs;
    inputs.push_back(Value()); // the scores, below
    bool boolMask = false;
    if (mask) {
      // Aligned right; a static 1 broadcasts, any other size must match.
      auto mType = cast<RankedTensorType>(mask.getType());
      int64_t offset = 4 - mType.getRank();
      SmallVector<AffineExpr> exprs;
      for (int64_t d = 0; d < mType.getRank(); ++d) {
        auto [source, dim] = scoreDims[offset + d];
        bool broadcasts =
            mType.getDimSize(d) == 1 &&
            cast<RankedTensorType>(source.getType()).getDimSize(dim) != 1;
        exprs.push_back(broadcasts ? rewriter.getAffineConstantExpr(0)
                                   : rewriter.getAffineDimExpr(offset + d));
        if (!broadcasts)
          checkSameSize(rewriter, op, mask, d, source, dim,
                        "attn_mask does not broadcast to the scores");
      }
      maps.push_back(AffineMap::get(4, 0, exprs, ctx));
      inputs.push_back(mask);
      boolMask = mType.getElementType().isInteger(1);
    }
    // (After the checks, which the call relies on too.)
    if (!calls.attention.empty())
      if (Value y = attentionCall(rewriter, op, calls))
        return replaceWithCast(rewriter, op, y);
    OpFoldResult kvLen = tensor::getMixedSizes(rewriter, loc, k)[2];
    Value scores =
        headProduct(rewriter, loc, q, k, group, /*rhsTransposed=*/true, kvLen);
    inputs[0] = scores;
    double scale = op.getScaleValue();
    std::optional<double> softcap;
    if (std::optional<APFloat> cap = op.getSoftcap())
      softcap = cap->convertToDouble();
    bool causal = op.getCausal();
    double negInf = -std::numeric_limits<double>::infinity();
    // scale, softcap, mask, causal: the masked scores in f32.
    Value like = tensor::EmptyOp::create(
        rewriter, loc, tensor::getMixedSizes(rewriter, loc, scores),
        rewriter.getF32Type());
    Value x = createElementwise(
        rewriter, loc, like, inputs, maps,
        [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
          auto c = [&](double d) { return f32Const(nb, l, d); };
          Value s = arith::MulFOp::create(nb, l, a[0], c(scale));
          if (softcap)
            s = arith::MulFOp::create(
                nb, l,
                math::TanhOp::create(
                    nb, l, arith::DivFOp::create(nb, l, s, c(*softcap))),
                c(*softcap));
          if (a.size() > 1)
            s = boolMask
                    ? Value(arith::SelectOp::create(nb, l, a[1], s, c(negInf)))
                    : Value(arith::AddFOp::create(nb, l, s,
                                                  castToF32(nb, l, a[1])));
          if (causal) {
            Value i = linalg::IndexOp::create(nb, l, 2);
            Value j = linalg::IndexOp::create(nb, l, 3);
            Value allowed =
                arith::CmpIOp::create(nb, l, arith::CmpIPredicate::ule, j, i);
            s = arith::SelectOp::create(nb, l, allowed, s, c(negInf));
          }
          return s;
        });
    // Softmax over keys; a row with every score -inf gives 0.
    auto rowReduce =
        [&](ValueRange extra, double initValue,
            function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
          return createTrailingReduction(rewriter, loc, x, /*axis=*/3,
                                         /*keepDims=*/true, extra, initValue,
                                         body);
        };
    Value rowMax = rowReduce(
        {}, negInf, [](OpBuilder &nb, Location l, ValueRange a) -> Value {
          return arith::MaximumFOp::create(nb, l, a[0], a[1]);
        });
    // A shift the probabilities do not depend on: no gradient.
    rowMax.getDefiningOp()->setAttr(kNoGradientAttr, rewriter.getUnitAttr());
    auto safeMax = [&](OpBuilder &nb, Location l, Value m) -> Value {
      Value isInf = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ, m,
                                          f32Const(nb, l, negInf));
      return arith::SelectOp::create(nb, l, isInf, f32Const(nb, l, 0), m);
    };
    Value rowSum = rowReduce(
        {rowMax}, 0.0, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
          Value e = createExpFlushed(
              nb, l, arith::SubFOp::create(nb, l, a[0], safeMax(nb, l, a[1])));
          return arith::AddFOp::create(nb, l, a[2], e);
        });
    AffineExpr d0, d1, d2;
    bindDims(ctx, d0, d1, d2);
    AffineMap row = AffineMap::get(
        4, 0, {d0, d1, d2, rewriter.getAffineConstantExpr(0)}, ctx);
    Value probs = createElementwise(
        rewriter, loc, x, {x, rowMax, rowSum}, {full, row, row},
        [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
          Value e = createExpFlushed(
              nb, l, arith::SubFOp::create(nb, l, a[0], safeMax(nb, l, a[1])));
          Value isZero = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ,
                                               a[2], f32Const(nb, l, 0));
          Value sum =
              arith::SelectOp::create(nb, l, isZero, f32Const(nb, l, 1), a[2]);
          return createFlushSubnormal(nb, l,
                                      arith::DivFOp::create(nb, l, e, sum));
        });
    OpFoldResult vDim = tensor::getMixedSizes(rewriter, loc, v)[3];
    Value y = headProduct(rewriter, loc, probs, v, group,
                          /*rhsTransposed=*/false, vDim);
    Type element = op.getType().getElementType();
    if (!element.isF32())
      y = createElementwise(
          rewriter, loc,
          tensor::EmptyOp::create(
              rewriter, loc, tensor::getMixedSizes(rewriter, loc, y), element),
          {y}, {full}, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
            return castFromF32(nb, l, a[0], element);
          });
    return replaceWithCast(rewriter, op, y);
  }
};

/// qopt.attention_grad as one call of the library's fused backward
/// (`library`_backward): Q, K, V, the mask, O, dO, then dQ, dK, dV and a
/// [B, Hq, S, 2] scratch buffer (the rows' log-sum-exp and Σ dO·O, which
/// its first kernel writes for its second). Only with the library: the op
/// has no linalg form (where there is no library the attention is
/// differentiated as linalg instead).
struct LowerAttentionGrad : LibraryPattern<AttentionGradOp> {
  using LibraryPattern::LibraryPattern;
  LogicalResult matchAndRewrite(AttentionGradOp op,
                                PatternRewriter &rewriter) const override {
    Value q = op.getQuery(), k = op.getKey(), v = op.getValue();
    if (calls.attention.empty() ||
        !libraryTakesAttention(q, k, v, op.getMask(), op.getOutput()))
      return rewriter.notifyMatchFailure(op, "no library for it");
    auto shape = [](Value t) {
      return cast<RankedTensorType>(t.getType()).getShape();
    };
    auto sizes = [](Value t) {
      return SmallVector<std::pair<Value, int64_t>>{
          {t, 0}, {t, 1}, {t, 2}, {t, 3}};
    };
    SmallVector<int64_t> stats = {shape(q)[0], shape(q)[1], shape(q)[2], 2};
    SmallVector<Value> grads = callAttentionLibrary(
        rewriter, op, calls, calls.attention + "_backward", op.getMask(),
        op.getCausal(), op.getScale().convertToDouble(),
        softcapOf(op.getSoftcap()),
        {q, k, v, op.getOutput(), op.getOutputGrad()},
        {{shape(q), sizes(q)},
         {shape(k), sizes(k)},
         {shape(v), sizes(v)},
         {stats, {{q, 0}, {q, 1}, {q, 2}, {q, 3}}}});
    SmallVector<Value> results;
    for (auto [g, r] :
         llvm::zip(ArrayRef<Value>(grads).take_front(3), op.getResults()))
      results.push_back(
          g.getType() == r.getType()
              ? g
              : tensor::CastOp::create(rewriter, op.getLoc(), r.getType(), g)
                    .getResult());
    rewriter.replaceOp(op, results);
    return success();
  }
};

/// y[i…, k] = T[ids[i…], k] (or, with `columns`, T[k, ids[i…]]) for k below
/// `width`, a negative id counting back from `count` (ids already checked).
Value createGather(OpBuilder &b, Location loc, Value ids, Value table,
                   Value count, OpFoldResult width, Type element,
                   bool columns) {
  int64_t q = cast<RankedTensorType>(ids.getType()).getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, ids);
  sizes.push_back(width);
  Value init = tensor::EmptyOp::create(b, loc, sizes, element);
  SmallVector<AffineExpr> idExprs;
  for (int64_t d = 0; d < q; ++d)
    idExprs.push_back(b.getAffineDimExpr(d));
  SmallVector<AffineMap> maps = {
      AffineMap::get(q + 1, 0, idExprs, b.getContext()),
      b.getMultiDimIdentityMap(q + 1)};
  SmallVector<utils::IteratorType> par(q + 1, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, init.getType(), ids, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               Value id = createWrappedIndex(nb, l, a[0], count);
               Value k = linalg::IndexOp::create(nb, l, q);
               SmallVector<Value> at = columns ? SmallVector<Value>{k, id}
                                               : SmallVector<Value>{id, k};
               linalg::YieldOp::create(
                   nb, l,
                   tensor::ExtractOp::create(nb, l, table, at).getResult());
             })
      .getResult(0);
}

/// y[i…, d] = W[ids[i…], d], ids checked against the table's rows first.
struct LowerEmbedding : OpRewritePattern<EmbeddingOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(EmbeddingOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Type element = op.getType().getElementType();
    if (isa<QTensorType>(op.getWeight().getType())) {
      FailureOr<Value> w = dequantize(rewriter, op, op.getWeight(), element);
      if (failed(w))
        return rewriter.notifyMatchFailure(op, "table format not lowered yet");
      rewriter.modifyOpInPlace(op, [&] { op.getWeightMutable().assign(*w); });
      return success();
    }
    Value table = op.getWeight(), ids = op.getIds();
    auto tableType = cast<RankedTensorType>(table.getType());
    Value rows = tensor::DimOp::create(rewriter, loc, table, 0);
    std::string valid;
    if (!tableType.isDynamicDim(0))
      valid = " (valid: " + std::to_string(-tableType.getDimSize(0)) + " to " +
              std::to_string(tableType.getDimSize(0) - 1) + ")";
    bool readsData = false;
    auto check = cf::AssertOp::create(
        rewriter, loc,
        createIndicesInRange(rewriter, loc, ids, rows, &readsData),
        describe(op) + ": an id is out of range" + valid);
    if (readsData)
      QOptDialect::DataCheckAttrHelper(getContext())
          .setAttr(check, rewriter.getUnitAttr());
    Value y = createGather(rewriter, loc, ids, table, rows,
                           tensor::getMixedSizes(rewriter, loc, table)[1],
                           element, /*columns=*/false);
    return replaceWithCast(rewriter, op, y);
  }
};

/// PEFT's LoRA embedding: the base lookup (a qopt.embedding, lowered by its
/// own pattern, range check included) plus scale · A[:, ids]ᵀ · Bᵀ, the
/// columns of A gathered directly (no transposed copy of the r×V factor).
struct LowerLoRAEmbedding : OpRewritePattern<LoRAEmbeddingOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LoRAEmbeddingOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value ids = op.getIds();
    if (op.getMerged()) { // the table already holds the branch
      rewriter.replaceOp(op, EmbeddingOp::create(rewriter, loc, op.getType(),
                                                 ids, op.getWeight(),
                                                 op.getModuleAttr()));
      return success();
    }
    // The base lookup checks the ids against the table's rows, so A must
    // have as many columns, and B as many rows as the table has columns
    // (dynamic sizes are only known at run time).
    if (isa<RankedTensorType>(op.getWeight().getType())) {
      checkSameSize(rewriter, op, op.getWeight(), 0, op.getLoraA(), 1,
                    "the table's rows differ from lora_a's columns");
      checkSameSize(rewriter, op, op.getWeight(), 1, op.getLoraB(), 0,
                    "the table's columns differ from lora_b's rows");
    }
    Value base = EmbeddingOp::create(rewriter, loc, op.getType(), ids,
                                     op.getWeight(), op.getModuleAttr());
    Value a = op.getLoraA();
    Type element = op.getType().getElementType();
    int64_t q = op.getIds().getType().getRank();
    Value z = createGather(rewriter, loc, ids, a,
                           tensor::DimOp::create(rewriter, loc, a, 1),
                           rewriter.getIndexAttr(op.getRank()), element,
                           /*columns=*/true);
    Value branch = createContractLast(rewriter, loc, z, op.getLoraB(), Value());
    Value scale = arith::ConstantOp::create(
        rewriter, loc, rewriter.getFloatAttr(element, op.getScale()));
    AffineMap id = rewriter.getMultiDimIdentityMap(q + 1);
    Value y = createElementwise(
        rewriter, loc, branch, {base, branch}, {id, id},
        [&](OpBuilder &b, Location l, ValueRange v) {
          return Value(arith::AddFOp::create(
              b, l, v[0], arith::MulFOp::create(b, l, v[1], scale)));
        });
    return replaceWithCast(rewriter, op, y);
  }
};

/// The leading `sizes` of the static tensor `t` (zero offsets, unit strides).
Value sliceLeading(OpBuilder &b, Location loc, Value t,
                   ArrayRef<int64_t> sizes) {
  auto type = cast<RankedTensorType>(t.getType());
  if (type.getShape() == sizes)
    return t;
  SmallVector<OpFoldResult> offsets(sizes.size(), b.getIndexAttr(0)),
      strides(sizes.size(), b.getIndexAttr(1)), extents;
  for (int64_t s : sizes)
    extents.push_back(b.getIndexAttr(s));
  return tensor::ExtractSliceOp::create(b, loc, t, offsets, extents, strides);
}

/// y[i·nb + b, j] = λ[i, b] · A[i, 0, j] · γ[b, j]: one elementwise pass
/// over r × nb × m, then a reshape.
struct LowerRandLoRAScale : OpRewritePattern<RandLoRAScaleOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RandLoRAScaleOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    int64_t r = op.getLambda().getType().getDimSize(0),
            nb = op.getLambda().getType().getDimSize(1),
            m = op.getGamma().getType().getDimSize(1);
    Type element = op.getType().getElementType();
    Value basis = sliceLeading(rewriter, loc, op.getBasis(), {r, 1, m});
    Value init = tensor::EmptyOp::create(rewriter, loc,
                                         ArrayRef<int64_t>{r, nb, m}, element);
    MLIRContext *ctx = rewriter.getContext();
    AffineExpr i = rewriter.getAffineDimExpr(0),
               b = rewriter.getAffineDimExpr(1),
               j = rewriter.getAffineDimExpr(2);
    SmallVector<AffineMap> maps = {
        AffineMap::get(3, 0, {i, b}, ctx),
        AffineMap::get(3, 0, {i, rewriter.getAffineConstantExpr(0), j}, ctx),
        AffineMap::get(3, 0, {b, j}, ctx), rewriter.getMultiDimIdentityMap(3)};
    Value y =
        linalg::GenericOp::create(
            rewriter, loc, init.getType(),
            ValueRange{op.getLambda(), basis, op.getGamma()}, init, maps,
            SmallVector<utils::IteratorType>(3, utils::IteratorType::parallel),
            [](OpBuilder &nested, Location l, ValueRange v) {
              Value p = arith::MulFOp::create(nested, l, v[0], v[1]);
              linalg::YieldOp::create(
                  nested, l,
                  arith::MulFOp::create(nested, l, p, v[2]).getResult());
            })
            .getResult(0);
    rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(
        op, op.getType(), y, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
    return success();
  }
};

/// y[p, b·r + i] = B[p, b, i]: a slice of the shared basis, reshaped.
struct LowerRandLoRAFlatten : OpRewritePattern<RandLoRAFlattenOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RandLoRAFlattenOp op,
                                PatternRewriter &rewriter) const override {
    int64_t r = op.getBasis().getType().getDimSize(2);
    int64_t n = op.getType().getDimSize(0), nb = op.getType().getDimSize(1) / r;
    Value slice =
        sliceLeading(rewriter, op.getLoc(), op.getBasis(), {n, nb, r});
    rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(
        op, op.getType(), slice, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
    return success();
  }
};

/// `linalg.softmax` (what the ONNX conversion makes of Softmax) becomes its
/// stable loops here, late: sums accumulated in f32.
struct LowerSoftmax : OpRewritePattern<linalg::SoftmaxOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(linalg::SoftmaxOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics())
      return rewriter.notifyMatchFailure(op, "needs tensors");
    rewriter.replaceOp(op, createSoftmax(rewriter, op.getLoc(), op.getInput(),
                                         op.getDimension(), /*log=*/false,
                                         op->hasAttr(kSafeSoftmaxAttr)));
    return success();
  }
};

struct LowerLogSoftmax : OpRewritePattern<LogSoftmaxOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LogSoftmaxOp op,
                                PatternRewriter &rewriter) const override {
    int64_t axis = normalizedAxis(op.getAxis(), op.getType().getRank());
    rewriter.replaceOp(op, createSoftmax(rewriter, op.getLoc(), op.getInput(),
                                         axis, /*log=*/true));
    return success();
  }
};

/// The f32 sum of every element of `t`, a scalar.
Value sumAllF32(OpBuilder &b, Location loc, Value t) {
  Value sum = createTrailingReduction(
      b, loc, t, /*axis=*/0, /*keepDims=*/false, {}, 0.0,
      [](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return arith::AddFOp::create(nb, l, castToF32(nb, l, a[0]), a[1]);
      });
  return tensor::ExtractOp::create(b, loc, sum);
}

/// log-softmax over the classes (unless given log-probabilities), then per
/// position the weighted negative log-probability of its label, then the
/// reduction; labels checked first.
struct LowerCrossEntropy : OpRewritePattern<CrossEntropyOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(CrossEntropyOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput(), labels = op.getLabels(), weight = op.getWeight();
    auto xType = op.getInput().getType();
    Type element = xType.getElementType();
    auto labelType = op.getLabels().getType();
    auto labelElement = cast<IntegerType>(labelType.getElementType());
    int64_t q = labelType.getRank();
    std::optional<int64_t> ignore = op.getIgnoreIndex();
    checkSameSize(rewriter, op, x, 0, labels, 0,
                  "the labels' batch size differs from the input's");
    for (int64_t d = 1; d < q; ++d)
      checkSameSize(rewriter, op, x, d + 1, labels, d,
                    "the labels' dimension " + Twine(d) +
                        " differs from the input's dimension " + Twine(d + 1));
    if (weight)
      checkSameSize(rewriter, op, weight, 0, x, 1,
                    "the weight's length differs from the number of classes");
    Value lp =
        op.getLogProbs() ? x : createSoftmax(rewriter, loc, x, 1, /*log=*/true);
    Value classes = tensor::DimOp::create(rewriter, loc, x, 1);
    auto isIgnored = [&](OpBuilder &b, Location l, Value t) -> Value {
      if (!ignore)
        return arith::ConstantIntOp::create(b, l, 0, 1);
      Value c = arith::ConstantOp::create(
          b, l, b.getIntegerAttr(labelElement, *ignore));
      return arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, t, c);
    };
    // Every label is a class or ignored.
    {
      Value init =
          createFilledTensor(rewriter, loc, {}, rewriter.getI1Type(), 1);
      SmallVector<AffineMap> maps = {
          rewriter.getMultiDimIdentityMap(q),
          AffineMap::get(q, 0, {}, rewriter.getContext())};
      SmallVector<utils::IteratorType> red(q, utils::IteratorType::reduction);
      Value ok =
          linalg::GenericOp::create(
              rewriter, loc, init.getType(), labels, init, maps, red,
              [&](OpBuilder &b, Location l, ValueRange a) {
                Value t =
                    arith::IndexCastOp::create(b, l, b.getIndexType(), a[0]);
                Value zero = arith::ConstantIndexOp::create(b, l, 0);
                Value inRange = arith::AndIOp::create(
                    b, l,
                    arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, t,
                                          zero),
                    arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, t,
                                          classes));
                Value valid =
                    arith::OrIOp::create(b, l, inRange, isIgnored(b, l, a[0]));
                linalg::YieldOp::create(
                    b, l, arith::AndIOp::create(b, l, valid, a[1]).getResult());
              })
              .getResult(0);
      std::string range;
      if (!xType.isDynamicDim(1))
        range = " [0, " + std::to_string(xType.getDimSize(1)) + ")";
      cf::AssertOp::create(
          rewriter, loc, tensor::ExtractOp::create(rewriter, loc, ok),
          describe(op) + ": a label is out of the class range" + range +
              " and not the ignored index");
    }
    // loss[i] = -w[i] · lp[n, label[i], d…] and w[i], per position.
    SmallVector<OpFoldResult> sizes =
        tensor::getMixedSizes(rewriter, loc, labels);
    Value lossInit = tensor::EmptyOp::create(rewriter, loc, sizes, element);
    Value weightInit =
        tensor::EmptyOp::create(rewriter, loc, sizes, rewriter.getF32Type());
    SmallVector<AffineMap> maps(3, rewriter.getMultiDimIdentityMap(q));
    SmallVector<utils::IteratorType> par(q, utils::IteratorType::parallel);
    auto perPosition = linalg::GenericOp::create(
        rewriter, loc, TypeRange{lossInit.getType(), weightInit.getType()},
        labels, ValueRange{lossInit, weightInit}, maps, par,
        [&](OpBuilder &b, Location l, ValueRange a) {
          Value ignored = isIgnored(b, l, a[0]);
          Value zero = arith::ConstantIndexOp::create(b, l, 0);
          Value t = arith::SelectOp::create(
              b, l, ignored, zero,
              arith::IndexCastOp::create(b, l, b.getIndexType(), a[0]));
          SmallVector<Value> at = {linalg::IndexOp::create(b, l, 0), t};
          for (int64_t d = 1; d < q; ++d)
            at.push_back(linalg::IndexOp::create(b, l, d));
          Value logProb = tensor::ExtractOp::create(b, l, lp, at);
          Value w =
              weight ? tensor::ExtractOp::create(b, l, weight, t).getResult()
                     : arith::ConstantOp::create(b, l,
                                                 b.getFloatAttr(element, 1.0))
                           .getResult();
          w = arith::SelectOp::create(
              b, l, ignored,
              arith::ConstantOp::create(b, l, b.getFloatAttr(element, 0.0)), w);
          Value loss = arith::NegFOp::create(
              b, l, arith::MulFOp::create(b, l, logProb, w));
          linalg::YieldOp::create(b, l, ValueRange{loss, castToF32(b, l, w)});
        });
    Value loss = perPosition.getResult(0);
    StringRef reduction = op.getReduction();
    if (reduction == "none") {
      rewriter.replaceOp(op, loss);
      return success();
    }
    Value total = sumAllF32(rewriter, loc, loss);
    if (reduction == "mean")
      total = arith::DivFOp::create(
          rewriter, loc, total,
          sumAllF32(rewriter, loc, perPosition.getResult(1)));
    total = castFromF32(rewriter, loc, total, element);
    rewriter.replaceOpWithNewOp<tensor::FromElementsOp>(op, op.getType(),
                                                        total);
    return success();
  }
};

/// y = x · cos + rotate(x) · sin on the first R features, x beyond. The
/// partner features come from slices put back in swapped order (a concat),
/// not from reads at computed indices, so that the lowering is made of ops
/// with gradient rules (training differentiates it); one elementwise pass
/// then applies the signs, cos and sin (their broadcast dimensions at 0).
struct LowerRotary : OpRewritePattern<RotaryOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RotaryOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput(), cos = op.getCos(), sin = op.getSin();
    auto xType = op.getInput().getType();
    auto cType = op.getCos().getType();
    int64_t rank = xType.getRank();
    int64_t r = cType.getDimSize(rank - 1);
    SmallVector<bool> broadcasts;
    for (int64_t d = 0; d + 1 < rank; ++d) {
      broadcasts.push_back(cType.getDimSize(d) == 1 &&
                           xType.getDimSize(d) != 1);
      if (!broadcasts.back())
        checkSameSize(rewriter, op, cos, d, x, d,
                      "cos and sin dimension " + Twine(d) +
                          " is neither 1 nor the input's");
    }
    if (xType.isDynamicDim(rank - 1)) {
      Value features = tensor::DimOp::create(rewriter, loc, x, rank - 1);
      cf::AssertOp::create(
          rewriter, loc,
          arith::CmpIOp::create(
              rewriter, loc, arith::CmpIPredicate::sge, features,
              arith::ConstantIndexOp::create(rewriter, loc, r)),
          describe(op) +
              ": the input has fewer features than the rotary "
              "width (" +
              std::to_string(r) + ")");
    }
    bool interleaved = op.getInterleaved();
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(rewriter, loc, x);
    // A slice of the last dimension: [from, from + width).
    auto lastSlice = [&](Value v, OpFoldResult from,
                         OpFoldResult width) -> Value {
      int64_t n = cast<RankedTensorType>(v.getType()).getRank();
      SmallVector<OpFoldResult> offsets(n, rewriter.getIndexAttr(0));
      SmallVector<OpFoldResult> vSizes =
          tensor::getMixedSizes(rewriter, loc, v);
      offsets.back() = from;
      vSizes.back() = width;
      SmallVector<OpFoldResult> strides(n, rewriter.getIndexAttr(1));
      return tensor::ExtractSliceOp::create(rewriter, loc, v, offsets, vSizes,
                                            strides);
    };
    bool partial =
        xType.isDynamicDim(rank - 1) || xType.getDimSize(rank - 1) != r;
    Value xr = partial ? lastSlice(x, rewriter.getIndexAttr(0),
                                   rewriter.getIndexAttr(r))
                       : x;
    // The partner of each feature, unsigned.
    Value swapped;
    if (!interleaved) {
      Value first =
          lastSlice(xr, rewriter.getIndexAttr(0), rewriter.getIndexAttr(r / 2));
      Value second = lastSlice(xr, rewriter.getIndexAttr(r / 2),
                               rewriter.getIndexAttr(r / 2));
      swapped = tensor::ConcatOp::create(rewriter, loc, rank - 1,
                                         ValueRange{second, first});
    } else {
      // [..., R] as [..., R/2, 2]: the pairs' two members swapped.
      SmallVector<ReassociationIndices> groups;
      for (int64_t d = 0; d + 1 < rank; ++d)
        groups.push_back({d});
      groups.push_back({rank - 1, rank});
      SmallVector<OpFoldResult> pairSizes(sizes.begin(), sizes.end() - 1);
      pairSizes.push_back(rewriter.getIndexAttr(r / 2));
      pairSizes.push_back(rewriter.getIndexAttr(2));
      SmallVector<int64_t> pairShape(xType.getShape().drop_back());
      pairShape.push_back(r / 2);
      pairShape.push_back(2);
      auto pairType = RankedTensorType::get(pairShape, xType.getElementType());
      Value pairs = tensor::ExpandShapeOp::create(rewriter, loc, pairType, xr,
                                                  groups, pairSizes);
      Value even =
          lastSlice(pairs, rewriter.getIndexAttr(0), rewriter.getIndexAttr(1));
      Value odd =
          lastSlice(pairs, rewriter.getIndexAttr(1), rewriter.getIndexAttr(1));
      Value swappedPairs =
          tensor::ConcatOp::create(rewriter, loc, rank, ValueRange{odd, even});
      swapped = tensor::CollapseShapeOp::create(rewriter, loc, xr.getType(),
                                                swappedPairs, groups);
    }
    // cos / sin read with their broadcast dimensions at 0.
    SmallVector<AffineExpr> cExprs;
    for (int64_t d = 0; d < rank; ++d)
      cExprs.push_back(d + 1 < rank && broadcasts[d]
                           ? rewriter.getAffineConstantExpr(0)
                           : rewriter.getAffineDimExpr(d));
    AffineMap id = rewriter.getMultiDimIdentityMap(rank);
    AffineMap cMap = AffineMap::get(rank, 0, cExprs, rewriter.getContext());
    Value y = createElementwise(
        rewriter, loc, xr, {xr, swapped, cos, sin}, {id, id, cMap, cMap},
        [&](OpBuilder &b, Location l, ValueRange a) {
          Value d = linalg::IndexOp::create(b, l, rank - 1);
          // rotate() negates the partner of the first half's features
          // (halves) or of the even ones (interleaved).
          Value negate;
          if (interleaved)
            negate = arith::CmpIOp::create(
                b, l, arith::CmpIPredicate::eq,
                arith::RemUIOp::create(b, l, d,
                                       arith::ConstantIndexOp::create(b, l, 2)),
                arith::ConstantIndexOp::create(b, l, 0));
          else
            negate = arith::CmpIOp::create(
                b, l, arith::CmpIPredicate::slt, d,
                arith::ConstantIndexOp::create(b, l, r / 2));
          Value other = arith::SelectOp::create(
              b, l, negate, arith::NegFOp::create(b, l, a[1]), a[1]);
          return arith::AddFOp::create(b, l,
                                       arith::MulFOp::create(b, l, a[0], a[2]),
                                       arith::MulFOp::create(b, l, other, a[3]))
              .getResult();
        });
    if (partial) {
      OpFoldResult rest = getAsOpFoldResult(arith::SubIOp::create(
          rewriter, loc,
          getValueOrCreateConstantIndexOp(rewriter, loc, sizes.back()),
          arith::ConstantIndexOp::create(rewriter, loc, r)));
      Value tail = lastSlice(x, rewriter.getIndexAttr(r), rest);
      y = tensor::ConcatOp::create(rewriter, loc, rank - 1,
                                   ValueRange{y, tail});
      if (y.getType() != xType)
        y = tensor::CastOp::create(rewriter, loc, xType, y);
    }
    rewriter.replaceOp(op, y);
    return success();
  }
};

struct LowerResidualAdd : OpRewritePattern<ResidualAddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ResidualAddOp op,
                                PatternRewriter &rewriter) const override {
    int64_t rank = op.getType().getRank();
    AffineMap id = rewriter.getMultiDimIdentityMap(rank);
    Value sum = createElementwise(
        rewriter, op.getLoc(), op.getStream(),
        ValueRange{op.getStream(), op.getUpdate()}, {id, id},
        [](OpBuilder &b, Location l, ValueRange a) {
          return arith::AddFOp::create(b, l, a[0], a[1]).getResult();
        });
    sum.getDefiningOp()->setAttr(
        kCheckpointAttr, rewriter.getStringAttr(op.getModule().value_or("")));
    rewriter.replaceOp(op, sum);
    return success();
  }
};

/// Why the lowering left `op` in place: the message of the pass's error.
std::string whyNotLowered(Operation *op) {
  auto weightReason = [](Value w) -> std::string {
    if (auto q = dyn_cast<QTensorType>(w.getType()))
      return "its quantized weight: " + whyNotDequantized(q);
    return "";
  };
  return TypeSwitch<Operation *, std::string>(op)
      .Case([](DequantizeOp d) {
        return whyNotDequantized(d.getInput().getType());
      })
      .Case([&](LinearOp l) { return weightReason(l.getWeight()); })
      .Case([&](LoRAOp l) { return weightReason(l.getWeight()); })
      .Case([&](EmbeddingOp e) { return weightReason(e.getWeight()); })
      .Case([&](LoRAEmbeddingOp e) { return weightReason(e.getWeight()); })
      .Case([](QuantizeOp q) {
        return whyNotQuantized(cast<RankedTensorType>(q.getInput().getType()),
                               q.getType());
      })
      .Case([](HadamardOp) {
        return std::string("Hadamard transforms need a static size (a "
                           "static dimension or block)");
      })
      .Case<FakeQuantOp, LSQOp>([](Operation *) {
        return std::string("per_block granularity needs static shapes");
      })
      .Case([](NormGradOp) {
        return std::string(
            "it has only a kernel library's form (norm-library, for f32 "
            "data); elsewhere norms are differentiated in their linalg "
            "form");
      })
      .Case([](AttentionGradOp) {
        return std::string(
            "it has only a kernel library's form (attention-library, for f32 "
            "operands and head sizes up to 128); elsewhere attention is "
            "differentiated in its linalg form");
      })
      .Default([](Operation *) { return std::string(); });
}

/// The QOpt ops that stay: parameters and the random key, which
/// qopt-params-to-arguments turns into entry arguments.
bool staysAfterLowering(Operation *op) {
  return isa<ParamOp, LoadParamOp, StoreParamOp, RandomKeyOp>(op);
}

struct ConvertQOptToLinalgPass
    : mlir::qopt::impl::ConvertQOptToLinalgPassBase<ConvertQOptToLinalgPass> {
  using ConvertQOptToLinalgPassBase::ConvertQOptToLinalgPassBase;
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    ModuleOp module = getOperation();
    // 1. Every QOpt computation becomes linalg; quantized operands are read
    // through qopt.disassemble.
    RewritePatternSet patterns(ctx);
    // Training: each adapter with dropout draws its mask from its own
    // stream: the 32-bit FNV-1a hash of its module path (without one, its
    // position among the module's qopt.lora ops), the next free number on
    // a collision, the model's own qopt.random_uniform streams excepted.
    // A layer's masks thus do not depend on the graph's order.
    DenseMap<Operation *, int64_t> dropoutStreams;
    if (trainingDropout) {
      DenseSet<int64_t> used;
      module.walk([&](RandomUniformOp op) {
        used.insert(static_cast<int64_t>(op.getStream()) & 0xFFFFFFFF);
      });
      int64_t position = 0;
      module.walk([&](LoRAOp op) {
        if (!op.getMerged() && op.getDropout().convertToDouble() > 0) {
          int64_t stream = position;
          if (std::optional<StringRef> path = op.getModule()) {
            uint32_t hash = 2166136261u;
            for (char c : *path)
              hash = (hash ^ static_cast<uint8_t>(c)) * 16777619u;
            stream = hash;
          }
          while (!used.insert(stream).second)
            stream = (stream + 1) & 0xFFFFFFFF;
          dropoutStreams[op.getOperation()] = stream;
        }
        ++position;
      });
    }
    patterns.add<LowerLoRA>(ctx, &dropoutStreams);
    // Kernel-library calls; reads numbered past any already in the module.
    LibraryCalls calls{attentionLibrary, hadamardLibrary, normLibrary,
                       keepAttention, keepNorms};
    module.walk([&](bufferization::ToBufferOp read) {
      if (auto n = read->getAttrOfType<IntegerAttr>("qopt.read"))
        calls.nextRead = std::max(calls.nextRead, n.getInt() + 1);
    });
    patterns.add<LowerAttention, LowerAttentionGrad, LowerHadamard,
                 LowerRMSNorm, LowerLayerNorm, LowerNormGrad>(ctx, calls);
    patterns
        .add<LowerLinear, LowerSmooth, LowerFakeQuant<FakeQuantOp>,
             LowerFakeQuant<LSQOp>, LowerQuantize, LowerDequantize, LowerGelu,
             LowerSiLU, LowerRandomUniform, LowerSoftmax, LowerEmbedding,
             LowerLoRAEmbedding, LowerRandLoRAScale, LowerRandLoRAFlatten,
             LowerLogSoftmax, LowerCrossEntropy, LowerRotary, LowerResidualAdd>(
            ctx);
    if (failed(applyPatternsGreedily(module, std::move(patterns)))) {
      module.emitError() << "convert-qopt-to-linalg: the lowering patterns "
                            "did not converge";
      return signalPassFailure();
    }
    // 2. What could not be lowered is an error here, naming the op and why,
    // not a failure later in bufferization.
    bool unlowered = false;
    module.walk([&](Operation *op) {
      if (!isa_and_nonnull<QOptDialect>(op->getDialect()) ||
          staysAfterLowering(op) || isa<AssembleOp, DisassembleOp>(op) ||
          (keepAttention && isa<AttentionOp>(op)) ||
          (keepNorms && isa<RMSNormOp, LayerNormOp>(op)))
        return;
      std::string why = whyNotLowered(op);
      InFlightDiagnostic diag = op->emitError()
                                << "'" << op->getName()
                                << "' could not be lowered to linalg";
      if (!why.empty())
        diag << ": " << why;
      unlowered = true;
    });
    if (unlowered)
      return signalPassFailure();
    // 3. Quantized tensors become their storage wherever they flow
    // (functions, calls, branches, scf), a dialect conversion in which QOpt
    // is illegal.
    QTensorTypeConverter converter;
    ConversionTarget target(*ctx);
    RewritePatternSet decompose(ctx);
    populateQTensorDecompositionPatterns(converter, decompose, target);
    target.addIllegalDialect<QOptDialect>();
    target.addLegalOp<ParamOp, LoadParamOp, StoreParamOp, RandomKeyOp>();
    if (keepAttention)
      target.addLegalOp<AttentionOp>();
    if (keepNorms)
      target.addLegalOp<RMSNormOp, LayerNormOp>();
    if (failed(applyPartialConversion(module, target, std::move(decompose))))
      signalPassFailure();
  }
};

} // namespace
