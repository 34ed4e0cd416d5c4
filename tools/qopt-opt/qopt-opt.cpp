//===- qopt-opt.cpp - qopt's mlir-opt ---------------------------*- C++ -*-===//
//
// Every upstream dialect and pass plus qopt's, driven by MlirOptMain.
//
//===----------------------------------------------------------------------===//

#include "qopt/Config.h"
#include "qopt/InitAllDialects.h"
#include "qopt/InitAllPasses.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/raw_ostream.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  mlir::qopt::registerAllPasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  mlir::qopt::registerAllDialects(registry);
  // gpu-module-to-binary translates GPU modules to LLVM IR (NVVM, ...).
  mlir::registerAllGPUToLLVMIRTranslations(registry);

  llvm::cl::AddExtraVersionPrinter([](llvm::raw_ostream &os) {
    os << "qopt version " << QOPT_VERSION << " (" << QOPT_GIT_REVISION
       << ")\n  built with MLIR " << LLVM_VERSION_STRING << "\n";
  });

  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "qopt optimizer driver\n", registry));
}
