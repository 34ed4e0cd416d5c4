//===- RuntimeChecks.cpp - cf.assert as an error status -------------------===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "qopt/Support/CompiledModel.h"

#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTLOWERRUNTIMECHECKSPASS
#include "qopt/Target/CPU/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

namespace {
constexpr StringLiteral kCheckFailed =
    ::qopt::compiled_model::kCheckFailedSymbol;

struct QOptLowerRuntimeChecksPass
    : mlir::qopt::impl::QOptLowerRuntimeChecksPassBase<
          QOptLowerRuntimeChecksPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<cf::AssertOp> asserts;
    module.walk([&](cf::AssertOp op) { asserts.push_back(op); });
    if (asserts.empty())
      return;
    MLIRContext *ctx = &getContext();
    SymbolTable symbols(module);
    auto ptrType = LLVM::LLVMPointerType::get(ctx);
    OpBuilder b(ctx);
    b.setInsertionPointToStart(module.getBody());
    auto callee = module.lookupSymbol<func::FuncOp>(kCheckFailed);
    if (!callee) {
      callee = func::FuncOp::create(b, module.getLoc(), kCheckFailed,
                                    b.getFunctionType({ptrType}, {}));
      callee.setPrivate();
      symbols.insert(callee);
    }
    llvm::StringMap<LLVM::GlobalOp> messages;
    for (cf::AssertOp op : asserts) {
      LLVM::GlobalOp &global = messages[op.getMsg()];
      if (!global) {
        std::string text = op.getMsg().str();
        text.push_back('\0');
        b.setInsertionPointToStart(module.getBody());
        global = LLVM::GlobalOp::create(
            b, op.getLoc(),
            LLVM::LLVMArrayType::get(IntegerType::get(ctx, 8), text.size()),
            /*isConstant=*/true, LLVM::Linkage::Private, "qopt_check_message",
            b.getStringAttr(text));
        symbols.insert(global); // renames to a unique symbol
      }
      b.setInsertionPoint(op);
      Location loc = op.getLoc();
      Value isTrue = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
      Value failed = arith::XOrIOp::create(b, loc, op.getArg(), isTrue);
      auto ifOp = scf::IfOp::create(b, loc, failed, /*withElseRegion=*/false);
      b.setInsertionPointToStart(ifOp.thenBlock());
      Value text = LLVM::AddressOfOp::create(b, loc, global);
      func::CallOp::create(b, loc, callee, text);
      op.erase();
    }
  }
};
} // namespace
