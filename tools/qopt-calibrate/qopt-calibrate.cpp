//===- qopt-calibrate.cpp - Activation statistics of a model --------------===//
//
//   qopt-calibrate model.onnx --data calib.npz|calib.jsonl -o stats.qstats
//
// runs the model on the CPU path over the calibration samples and records,
// for every linear layer, the per-channel absmax of its input (what
// SmoothQuant's --qopt-smooth and static activation scales read) and, on
// request, a minibatch of its input rows, in a safetensors file that
// `qoptc --calibration-data stats.qstats` and the passes' `stats=` take.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "ToolSupport.h"

#include "qopt/Config.h"
#include "qopt/Import/ONNX/ImportONNX.h"
#include "qopt/InitAllDialects.h"
#include "qopt/Pipelines/Pipelines.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
namespace cl = llvm::cl;

static cl::OptionCategory category("qopt-calibrate options");
static cl::opt<std::string> inputPath(cl::Positional, cl::Required,
                                      cl::desc("<model.onnx | model.mlir>"),
                                      cl::cat(category));
static cl::opt<std::string> dataPath(
    "data", cl::Required,
    cl::desc("Calibration samples: an .npz of arrays named after the model's "
             "inputs (first dimension = samples; 'labels' ignored) or a "
             ".jsonl file with one object of the inputs per line (without "
             "the sample dimension)"),
    cl::value_desc("calib.npz|calib.jsonl"), cl::cat(category));
static cl::opt<std::string> outputPath("o", cl::Required,
                                       cl::desc("The statistics file"),
                                       cl::value_desc("stats.qstats"),
                                       cl::cat(category));
static cl::opt<int64_t>
    batchSize("batch-size",
              cl::desc("Samples of an .npz per run of the model (default 1)"),
              cl::init(1), cl::cat(category));
static cl::list<std::string>
    modules("modules",
            cl::desc("The layers to record, as PEFT's target_modules (names, "
                     "suffixes or one regex); default: every linear layer, the "
                     "output head included"),
            cl::CommaSeparated, cl::cat(category));
static cl::opt<int64_t> keepRows(
    "keep-rows",
    cl::desc("Also record each layer's first N input rows (kept tokens) as "
             "<module>.input_rows, for SVD-based passes (default 0)"),
    cl::init(0), cl::cat(category));
static cl::opt<bool> fisher(
    "fisher",
    cl::desc("Also record each layer's empirical Fisher diagonal (the mean "
             "squared gradient of the causal-LM loss, per sample with "
             "--batch-size 1) as <module>.weight, what LQ-LoRA's and "
             "--budget-bits' --fisher read; .npz data with input_ids"),
    cl::cat(category));
static cl::list<std::string>
    dims("dim", cl::desc("Pin a symbolic ONNX dimension (name=size)"),
         cl::value_desc("name=size"), cl::CommaSeparated, cl::cat(category));
static cl::opt<bool> noProgress("no-progress",
                                cl::desc("No progress bar on stderr"),
                                cl::cat(category));
static cl::opt<bool> allowUnsupported(
    "allow-unsupported",
    cl::desc("Import nodes of unsupported domains as opaque ops"),
    cl::cat(category));
static cl::opt<std::string>
    kernelsLib("kernels-lib",
               cl::desc("The CPU kernel library (default: "
                        "../lib/libqopt_kernels_cpu.a beside the tool)"),
               cl::cat(category));

static int fail(const Twine &message) {
  llvm::errs() << "qopt-calibrate: error: " << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::SetVersionPrinter([](llvm::raw_ostream &os) {
    os << "qopt-calibrate " << QOPT_VERSION << " (" << QOPT_GIT_REVISION
       << ")\n";
  });
  cl::ParseCommandLineOptions(argc, argv,
                              "qopt calibration: per-layer activation "
                              "statistics of a model\n");
  StringRef data(dataPath);
  if (!data.ends_with(".npz") && !data.ends_with(".jsonl"))
    return fail("--data " + dataPath + ": give an .npz or a .jsonl file");

  mlir::qopt::CPUTargetOptions target;
  target.cpu = "host";
  target.kernelsLibrary = kernelsLib.empty()
                              ? mlir::qopt::defaultKernelsLibrary(
                                    argv[0], reinterpret_cast<void *>(&fail))
                              : kernelsLib.getValue();
  target.modelDir = mlir::qopt::modelFolder(inputPath);

  mlir::qopt::ONNXImportOptions importOptions;
  importOptions.allowUnsupported = allowUnsupported;
  for (const std::string &spec : dims) {
    std::string message;
    if (!mlir::qopt::parseDimSpec(spec, importOptions, message))
      return fail(message);
  }
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  mlir::qopt::registerAllDialects(registry);
  MLIRContext context(registry);
  context.disableMultithreading();
  context.printOpOnDiagnostic(false);
  std::string message;
  auto file = openInputFile(inputPath, &message);
  if (!file)
    return fail(message);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module;
  if (StringRef(inputPath).ends_with(".mlir"))
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  else
    module = mlir::qopt::importONNXModel(sourceMgr, &context, importOptions);
  if (!module)
    return 1;
  PassManager front(&context);
  mlir::qopt::buildONNXFrontEndPipeline(front, allowUnsupported);
  if (failed(front.run(*module)))
    return 1;

  SmallString<256> workDir;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueDirectory("qopt-calibrate", workDir))
    return fail("cannot create a temporary folder: " + ec.message());
  llvm::scope_exit removeWorkDir(
      [&] { llvm::sys::fs::remove_directories(workDir); });
  mlir::qopt::ActivationStatsOptions options;
  options.batchSize = batchSize;
  options.modules.assign(modules.begin(), modules.end());
  options.keepRows = keepRows;
  options.fisher = fisher;
  options.progress = !noProgress;
  options.toolName = "qopt-calibrate";
  options.optionName = "--data";
  options.batchSizeOption = "--batch-size";
  return failed(mlir::qopt::computeActivationStats(*module, dataPath, options,
                                                   target, workDir, outputPath))
             ? 1
             : 0;
}
