//===- qopt-opt.cpp - qopt's mlir-opt ---------------------------*- C++ -*-===//
//
// Every upstream dialect and pass plus qopt's, driven by MlirOptMain.
//
//===----------------------------------------------------------------------===//

#include "qopt/Config.h"
#include "qopt/InitAllDialects.h"
#include "qopt/InitAllPasses.h"
#include "qopt/Pipelines/Recipes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/raw_ostream.h"

#include <string>
#include <vector>

// Listed in --help; read from argv before MlirOptMain parses the rest.
static llvm::cl::opt<std::string> recipeFlag(
    "qopt-recipe",
    llvm::cl::desc("Run a recipe's passes (a built-in name or a .yaml file; "
                   "qoptc --list-recipes lists them) on the input"),
    llvm::cl::value_desc("name|recipe.yaml"));
static llvm::cl::opt<bool> printPipelineFlag(
    "print-pipeline",
    llvm::cl::desc("With --qopt-recipe: print the recipe's pass pipeline "
                   "and exit"));

/// `--qopt-recipe=NAME [--print-pipeline]`: prints the recipe's pipeline,
/// or rewrites the arguments to run it with --pass-pipeline. Returns an
/// exit code when qopt-opt is done, -1 to go on with `args`.
static int handleRecipe(int argc, char **argv, std::vector<std::string> &args,
                        mlir::MLIRContext &context) {
  std::string recipe;
  bool print = false;
  for (int i = 0; i < argc; ++i) {
    llvm::StringRef arg(argv[i]);
    llvm::StringRef bare = arg.ltrim('-');
    if (i > 0 && arg.starts_with("-") && bare.consume_front("qopt-recipe")) {
      if (bare.consume_front("="))
        recipe = bare.str();
      else if (bare.empty() && i + 1 < argc)
        recipe = argv[++i];
      if (recipe.empty()) {
        llvm::errs() << "qopt-opt: --qopt-recipe needs a name or a .yaml "
                        "file\n";
        return 1;
      }
      continue;
    }
    if (i > 0 && arg.starts_with("-") && bare.consume_front("print-pipeline")) {
      print = bare.empty() || bare == "=true" || bare == "=1";
      continue;
    }
    args.push_back(arg.str());
  }
  if (recipe.empty()) {
    if (print) {
      llvm::errs() << "qopt-opt: --print-pipeline needs --qopt-recipe=NAME\n";
      return 1;
    }
    return -1;
  }
  llvm::Expected<mlir::qopt::Recipe> r = mlir::qopt::loadRecipe(recipe);
  if (!r) {
    llvm::errs() << "qopt-opt: " << llvm::toString(r.takeError()) << "\n";
    return 1;
  }
  llvm::Expected<std::string> pipeline =
      mlir::qopt::recipePipeline(*r, &context);
  if (!pipeline) {
    llvm::errs() << "qopt-opt: " << llvm::toString(pipeline.takeError())
                 << "\n";
    return 1;
  }
  if (print) {
    llvm::outs() << *pipeline << "\n";
    if (r->int8Activations || r->calibration)
      llvm::outs() << "// qoptc adds:"
                   << (r->int8Activations ? " --int8-activations" : "")
                   << (r->calibration ? " --calibration-data (required)" : "")
                   << "\n";
    return 0;
  }
  args.push_back("--pass-pipeline=" + *pipeline);
  return -1;
}

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

  std::vector<std::string> args;
  {
    mlir::MLIRContext context(registry);
    int done = handleRecipe(argc, argv, args, context);
    if (done >= 0)
      return done;
  }
  std::vector<char *> argvOut;
  for (std::string &a : args)
    argvOut.push_back(a.data());
  argvOut.push_back(nullptr);
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      int(args.size()), argvOut.data(), "qopt optimizer driver\n", registry));
}
