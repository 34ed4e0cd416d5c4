//===- ParallelToPool.cpp - scf.parallel on the kernel library's pool -----===//
//
// Each outermost scf.parallel becomes a private function over a range of
// its dimensions' combined index, called through qopt_kernel_parallel_for,
// which splits the range among the same thread pool that the library's
// products use.
// The loop's captured values travel in one stack struct: memrefs as their
// LLVM descriptors, bridged with unrealized casts that the memref-to-LLVM
// conversion and reconcile-unrealized-casts later fold away.
//
//===----------------------------------------------------------------------===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "qopt/Support/CompiledModel.h"

#include "mlir/Conversion/LLVMCommon/TypeConverter.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Transforms/RegionUtils.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTPARALLELTOPOOLPASS
#include "qopt/Target/CPU/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

namespace {

/// Values an outlined body recreates instead of loading them.
bool isRematerializable(Value v) {
  Operation *def = v.getDefiningOp();
  return def &&
         (matchPattern(v, m_Constant()) || isa<memref::GetGlobalOp>(def));
}

/// max(0, ceil((ub - lb) / step)) as an index (folded where the bounds
/// are constants); steps are positive in scf loops.
Value tripCount(OpBuilder &b, Location loc, Value lb, Value ub, Value step) {
  Value span = b.createOrFold<arith::SubIOp>(loc, ub, lb);
  Value trips = b.createOrFold<arith::CeilDivSIOp>(loc, span, step);
  return b.createOrFold<arith::MaxSIOp>(
      loc, trips, arith::ConstantIndexOp::create(b, loc, 0));
}

class Outliner {
public:
  Outliner(ModuleOp module, const LLVMTypeConverter &converter)
      : module(module), symbols(module), converter(converter),
        ptrType(LLVM::LLVMPointerType::get(module.getContext())),
        i64(IntegerType::get(module.getContext(), 64)) {}

  /// Outlines `op`; false (the loop left as it is, to run sequentially)
  /// where its body cannot move to another thread.
  bool outline(scf::ParallelOp op) {
    if (op.getNumResults() != 0)
      return false;
    // A failed check unwinds the model's entry on the calling thread.
    if (op.getBody()
            ->walk([](Operation *inner) {
              return isa<cf::AssertOp, func::CallOp>(inner)
                         ? WalkResult::interrupt()
                         : WalkResult::advance();
            })
            .wasInterrupted())
      return false;
    auto func = op->getParentOfType<func::FuncOp>();
    if (!func)
      return false;
    llvm::SetVector<Value> used;
    getUsedValuesDefinedAbove(op.getRegion(), used);
    used.insert_range(op.getLowerBound());
    used.insert_range(op.getStep());
    for (Value v : used)
      if (!isRematerializable(v) && !llvmType(v))
        return false;

    // The iterations: the product of the dimensions' trip counts; the body
    // splits a combined index with those of all dimensions but the first.
    Location loc = op.getLoc();
    OpBuilder b(op);
    SmallVector<Value> trips;
    for (unsigned d = 0; d < op.getNumLoops(); ++d)
      trips.push_back(tripCount(b, loc, op.getLowerBound()[d],
                                op.getUpperBound()[d], op.getStep()[d]));
    Value n = trips[0];
    for (Value t : ArrayRef(trips).drop_front()) {
      used.insert(t);
      n = b.createOrFold<arith::MulIOp>(loc, n, t);
    }
    SmallVector<Value> loaded, remat;
    SmallVector<Type> fields;
    for (Value v : used) {
      if (isRematerializable(v)) {
        remat.push_back(v);
        continue;
      }
      loaded.push_back(v);
      fields.push_back(llvmType(v));
    }
    auto structType =
        LLVM::LLVMStructType::getLiteral(module.getContext(), fields);
    func::FuncOp body = createBody(op, func, structType, loaded, remat, trips);

    // The call: captures stored in a struct allocated once per frame.
    OpBuilder entry = OpBuilder::atBlockBegin(&func.getBody().front());
    Value one = LLVM::ConstantOp::create(entry, loc, i64, 1);
    Value ctx = LLVM::AllocaOp::create(entry, loc, ptrType, structType, one);
    Value packed = LLVM::UndefOp::create(b, loc, structType);
    for (auto [i, v] : llvm::enumerate(loaded))
      packed = LLVM::InsertValueOp::create(b, loc, packed,
                                           toLLVM(b, loc, v, fields[i]), i);
    LLVM::StoreOp::create(b, loc, packed, ctx);
    Value work = arith::MulIOp::create(b, loc, n, innerIterations(b, op));
    Value fn = func::ConstantOp::create(b, loc, body.getFunctionType(),
                                        SymbolRefAttr::get(body));
    func::CallOp::create(
        b, loc, parallelFor(fn.getType()),
        ValueRange{fn, ctx, toI64(b, loc, n), toI64(b, loc, work)});
    op.erase();
    return true;
  }

private:
  /// The LLVM type `v` travels as, or null where it has none.
  Type llvmType(Value v) {
    Type t = converter.convertType(v.getType());
    return t && LLVM::isCompatibleType(t) ? t : Type();
  }

  /// func.func private @name(%ctx: !llvm.ptr, %begin: i64, %end: i64)
  /// running the combined iterations [begin, end) of `op`.
  func::FuncOp createBody(scf::ParallelOp op, func::FuncOp parent,
                          LLVM::LLVMStructType structType,
                          ArrayRef<Value> loaded, ArrayRef<Value> remat,
                          ArrayRef<Value> trips) {
    Location loc = op.getLoc();
    OpBuilder mb(parent);
    auto type = mb.getFunctionType({ptrType, i64, i64}, {});
    auto body = func::FuncOp::create(
        mb, loc, (parent.getSymName() + "_parallel").str(), type);
    body.setPrivate();
    symbols.insert(body); // renames on a clash
    OpBuilder b = OpBuilder::atBlockBegin(body.addEntryBlock());
    IRMapping map;
    for (Value v : remat)
      b.clone(*v.getDefiningOp(), map);
    Value packed =
        LLVM::LoadOp::create(b, loc, structType, body.getArgument(0));
    for (auto [i, v] : llvm::enumerate(loaded)) {
      Value field = LLVM::ExtractValueOp::create(b, loc, packed, i);
      map.map(v, fromLLVM(b, loc, field, v.getType()));
    }
    Value begin = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                             body.getArgument(1));
    Value end = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                           body.getArgument(2));
    Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
    auto loop = scf::ForOp::create(b, loc, begin, end, c1);
    func::ReturnOp::create(b, loc);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    // Dimension d's index from the combined one (the last varies fastest),
    // then iv = lb + index * step.
    Value rest = loop.getInductionVar();
    for (unsigned d = op.getNumLoops(); d-- > 0;) {
      Value index = rest;
      if (d > 0) {
        Value count = map.lookupOrDefault(trips[d]);
        index = arith::RemUIOp::create(b, loc, rest, count);
        rest = arith::DivUIOp::create(b, loc, rest, count);
      }
      Value iv = arith::AddIOp::create(
          b, loc, map.lookupOrDefault(op.getLowerBound()[d]),
          arith::MulIOp::create(b, loc, index,
                                map.lookupOrDefault(op.getStep()[d])));
      map.map(op.getInductionVars()[d], iv);
    }
    for (Operation &inner : op.getBody()->without_terminator())
      b.clone(inner, map);
    return body;
  }

  /// The iterations of the loops nested first in each body, counted where
  /// their bounds are known outside `op`: the work one outer iteration does,
  /// which decides at run time whether the loop is worth the threads.
  Value innerIterations(OpBuilder &b, scf::ParallelOp op) {
    Location loc = op.getLoc();
    Value count = arith::ConstantIndexOp::create(b, loc, 1);
    // The bound at the call, or null where it is computed inside the loop.
    auto atCall = [&](Value v) -> Value {
      if (!op.getRegion().isAncestor(v.getParentRegion()))
        return v;
      if (std::optional<int64_t> c = getConstantIntValue(v))
        return arith::ConstantIndexOp::create(b, loc, *c);
      return nullptr;
    };
    Block *block = op.getBody();
    while (true) {
      auto ops = block->getOps<scf::ForOp>();
      if (ops.empty())
        return count;
      scf::ForOp loop = *ops.begin();
      Value lb = atCall(loop.getLowerBound()),
            ub = atCall(loop.getUpperBound()), step = atCall(loop.getStep());
      if (lb && ub && step) {
        count = b.createOrFold<arith::MulIOp>(loc, count,
                                              tripCount(b, loc, lb, ub, step));
      }
      block = loop.getBody();
    }
  }

  Value toI64(OpBuilder &b, Location loc, Value index) {
    return arith::IndexCastOp::create(b, loc, i64, index);
  }
  Value toLLVM(OpBuilder &b, Location loc, Value v, Type llvmType) {
    if (v.getType() == llvmType)
      return v;
    if (v.getType().isIndex())
      return toI64(b, loc, v);
    return UnrealizedConversionCastOp::create(b, loc, llvmType, v).getResult(0);
  }
  Value fromLLVM(OpBuilder &b, Location loc, Value v, Type type) {
    if (v.getType() == type)
      return v;
    if (type.isIndex())
      return arith::IndexCastOp::create(b, loc, type, v);
    return UnrealizedConversionCastOp::create(b, loc, type, v).getResult(0);
  }

  /// void qopt_kernel_parallel_for(void (*)(void *, int64_t, int64_t),
  ///                               void *ctx, int64_t n, int64_t work)
  func::FuncOp parallelFor(Type fnType) {
    StringRef name = ::qopt::compiled_model::kParallelForSymbol;
    if (auto f = module.lookupSymbol<func::FuncOp>(name))
      return f;
    OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
    auto f = func::FuncOp::create(
        mb, module.getLoc(), name,
        mb.getFunctionType({fnType, ptrType, i64, i64}, {}));
    f.setPrivate();
    return f;
  }

  ModuleOp module;
  SymbolTable symbols;
  const LLVMTypeConverter &converter;
  Type ptrType, i64;
};

struct QOptParallelToPoolPass
    : mlir::qopt::impl::QOptParallelToPoolPassBase<QOptParallelToPoolPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<scf::ParallelOp> loops;
    module.walk([&](scf::ParallelOp op) {
      if (!op->getParentOfType<scf::ParallelOp>())
        loops.push_back(op);
    });
    if (loops.empty())
      return;
    LLVMTypeConverter converter(&getContext());
    Outliner outliner(module, converter);
    for (scf::ParallelOp op : loops)
      (void)outliner.outline(op);
  }
};

} // namespace
