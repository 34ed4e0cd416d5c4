//===- Pipelines.cpp - Whole-model pipelines ------------------------------===//

#include "qopt/Pipelines/Pipelines.h"
#include "qopt/Pipelines/Recipes.h"

#include "qopt/Conversion/ONNXToQOpt/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Export/ONNXExport.h"
#include "qopt/Target/CPU/Pipeline.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

using namespace mlir;

void mlir::qopt::buildONNXFrontEndPipeline(OpPassManager &pm,
                                           bool allowUnsupported) {
  pm.addPass(createQOptRaiseONNXPass());
  ConvertONNXToQOptPassOptions onnx;
  onnx.allowUnsupported = allowUnsupported;
  pm.addPass(createConvertONNXToQOptPass(onnx));
}

void mlir::qopt::buildGraphPipeline(OpPassManager &pm) {
  pm.addPass(createQOptMaterializeParamsPass());
  pm.addPass(createQOptParamsToArgumentsPass());
}

/// What every whole-model pipeline starts with: the front end, the
/// quantized weights' layout, the graph stage.
static void buildModelGraphPipeline(OpPassManager &pm, bool allowUnsupported) {
  mlir::qopt::buildONNXFrontEndPipeline(pm, allowUnsupported);
  pm.addPass(mlir::qopt::createQOptRelayoutQuantizedWeightsPass());
  mlir::qopt::buildGraphPipeline(pm);
}

void mlir::qopt::buildQOptCPUPipeline(OpPassManager &pm,
                                      const CPUPipelineOptions &options) {
  buildModelGraphPipeline(pm, options.allowUnsupported);
  CPUCodegenOptions codegen;
  codegen.blas = options.blas;
  codegen.parallel = options.parallel;
  buildCPUCodegenPipeline(pm, codegen);
}

void mlir::qopt::buildQOptCUDAPipeline(OpPassManager &pm,
                                       const CUDAPipelineOptions &options) {
  buildModelGraphPipeline(pm, options.allowUnsupported);
  CUDACodegenOptions codegen;
  codegen.chip = options.chip;
  codegen.toolkit = options.toolkit;
  codegen.blockSize = options.blockSize;
  codegen.emulate = options.emulate;
  codegen.library = options.library;
  codegen.matmulPrecision = options.matmulPrecision;
  buildCUDACodegenPipeline(pm, codegen);
}

/// Puts the PEFT adapter saved in `dir` (its config, and the names of its
/// tensors; the config of PEFT's converted form where one was written, for
/// inits that change the base weights) on the module as
/// kAdapterManifestAttr, for the manifest.
static LogicalResult recordAdapter(ModuleOp module, StringRef dir) {
  SmallString<256> config(dir), tensors(dir);
  llvm::sys::path::append(config, "adapter_config.json");
  llvm::sys::path::append(tensors, "adapter_model.safetensors");
  auto configText = llvm::MemoryBuffer::getFile(config);
  auto tensorsFile = llvm::MemoryBuffer::getFile(tensors);
  if (!configText || !tensorsFile)
    return emitError(module.getLoc())
           << "cannot read back the adapter saved in " << dir;
  llvm::Expected<llvm::json::Value> parsed =
      llvm::json::parse((*configText)->getBuffer());
  auto header =
      mlir::qopt::readSafetensors((*tensorsFile)->getBuffer(), tensors);
  if (!parsed || !header) {
    std::string why = !parsed ? llvm::toString(parsed.takeError())
                              : llvm::toString(header.takeError());
    if (!parsed && !header)
      llvm::consumeError(header.takeError());
    return emitError(module.getLoc())
           << "the adapter saved in " << dir << " is malformed: " << why;
  }
  llvm::json::Array names;
  for (const auto &entry : *header)
    names.push_back(entry.first);
  llvm::json::Object adapter{{"config", std::move(*parsed)},
                             {"tensors", std::move(names)}};
  SmallString<256> converted(dir);
  llvm::sys::path::append(converted, "converted", "adapter_config.json");
  if (auto text = llvm::MemoryBuffer::getFile(converted)) {
    llvm::Expected<llvm::json::Value> config =
        llvm::json::parse((*text)->getBuffer());
    if (!config)
      return emitError(module.getLoc())
             << "the adapter saved in " << dir
             << " is malformed: " << llvm::toString(config.takeError());
    adapter["converted_config"] = std::move(*config);
  }
  std::string text;
  llvm::raw_string_ostream(text) << llvm::json::Value(std::move(adapter));
  module->setAttr(mlir::qopt::kAdapterManifestAttr,
                  StringAttr::get(module.getContext(), text));
  return success();
}

/// For every LoRA-GA qopt.lora whose factors are its initial ones
/// (`qopt.initial_factors`) and read straight from the entry's parameter
/// arguments, a copy of those arguments named `<param>.initial`, frozen.
/// (PiSSA, OLoRA and LoftQ adapters save plainly: PEFT recomputes their
/// residual from the original weights.)
/// Whether a pass of `pipeline` reads activation statistics (the module's
/// qopt.calibration_stats when not given a file).
static bool readsActivationStats(StringRef pipeline) {
  for (const std::string &part : mlir::qopt::splitPipeline(pipeline)) {
    StringRef name = mlir::qopt::pipelinePassName(part);
    if (name == "qopt-smooth" || (name == "qopt-insert-fake-quant" &&
                                  StringRef(part).contains("static")))
      return true;
  }
  return false;
}

static void keepInitialFactors(ModuleOp module) {
  using mlir::qopt::QOptDialect;
  StringRef paramAttr = QOptDialect::ParamAttrHelper::getNameStr();
  llvm::DenseSet<Value> kept;
  module.walk([&](mlir::qopt::LoRAOp lora) {
    auto init = lora->getAttrOfType<StringAttr>("qopt.residual_init");
    if (!lora->hasAttr("qopt.initial_factors") || !init ||
        init.getValue() != "lora_ga")
      return;
    for (Value factor : {lora.getLoraA(), lora.getLoraB()}) {
      if (!kept.insert(factor).second)
        continue;
      auto arg = dyn_cast<BlockArgument>(factor);
      auto func = arg ? dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp())
                      : func::FuncOp();
      if (!func)
        continue;
      auto name =
          func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), paramAttr);
      if (!name)
        continue;
      NamedAttrList attrs(func.getArgAttrDict(arg.getArgNumber()));
      attrs.set(paramAttr,
                StringAttr::get(module.getContext(), name.str() + ".initial"));
      attrs.erase(QOptDialect::TrainableAttrHelper::getNameStr());
      // Before the random key, which stays last.
      unsigned at = func.getNumArguments();
      if (at &&
          func.getArgAttr(at - 1, QOptDialect::RngKeyAttrHelper::getNameStr()))
        --at;
      (void)func.insertArgument(at, factor.getType(),
                                attrs.getDictionary(module.getContext()),
                                func.getLoc());
    }
  });
}

/// Calibration probes run on this machine's CPU whatever the model's
/// target.
static mlir::qopt::CPUTargetOptions
probeTarget(const mlir::qopt::CPUTargetOptions &target) {
  mlir::qopt::CPUTargetOptions probe = target;
  probe.cuda = {};
  return probe;
}

LogicalResult mlir::qopt::compileModelForCPU(ModuleOp module,
                                             const ModelCompileOptions &options,
                                             const CPUTargetOptions &target) {
  auto start = std::chrono::steady_clock::now();
  PassManager front(module.getContext());
  // The export needs to know where each layer's input and output lie in
  // the ONNX graph: recorded between raising and conversion.
  ONNXExportRecord exportRecord;
  bool exporting = !options.exportONNXPath.empty();
  if (exporting) {
    if (options.train || !options.loraSlotsPath.empty())
      return emitError(module.getLoc())
             << "--export-onnx writes an inference model: it excludes "
                "--train and --lora-slots";
    PassManager raise(module.getContext());
    raise.addPass(createQOptRaiseONNXPass());
    if (failed(raise.run(module)))
      return failure();
    exportRecord = recordONNXExport(module);
    ConvertONNXToQOptPassOptions onnx;
    onnx.allowUnsupported = options.allowUnsupported;
    front.addPass(createConvertONNXToQOptPass(onnx));
  } else {
    buildONNXFrontEndPipeline(front, options.allowUnsupported);
  }
  // A checkpoint's weights first: calibration and adapters see them.
  if (!options.weightsPath.empty()) {
    QOptLoadWeightsPassOptions load;
    load.weights = options.weightsPath;
    front.addPass(createQOptLoadWeightsPass(load));
  }
  if (failed(front.run(module)))
    return failure();
  // Calibration runs probes in a folder removed afterwards.
  SmallString<256> workDir;
  llvm::scope_exit removeWorkDir([&] {
    if (!workDir.empty())
      llvm::sys::fs::remove_directories(workDir);
  });
  auto makeWorkDir = [&]() -> LogicalResult {
    if (!workDir.empty())
      return success();
    if (std::error_code ec =
            llvm::sys::fs::createUniqueDirectory("qopt-calibration", workDir))
      return emitError(module.getLoc())
             << "cannot create a temporary folder: " << ec.message();
    return success();
  };
  // The passes named in --graph-passes read external weights from the
  // model's folder.
  if (!options.graphPasses.empty() && !target.modelDir.empty())
    module->setAttr(kModelDirAttr,
                    StringAttr::get(module.getContext(), target.modelDir));
  // Outlier passes rewrite the float weights, so the leading ones of
  // --graph-passes run before quantization and adapters; the rest after.
  auto [outlierPasses, laterPasses] = splitOutlierPasses(options.graphPasses);
  // --quantize-activations with static scales reads statistics too.
  bool staticActivations =
      StringRef(options.quantizeActivations).contains("static");
  if (!outlierPasses.empty()) {
    // They change the layers' inputs and weights: an adapter trained on the
    // original model would read other inputs, and one saved from here would
    // not fit the original model in PEFT. Fresh adapters trained here are
    // fine (QuaRot / SmoothQuant + LoRA fine-tuning): they live in the
    // rewritten model, which keeps them (save_checkpoint), but have no PEFT
    // form for the original one.
    if (!options.adapterDir.empty() || !options.loraSlotsPath.empty() ||
        !options.saveAdapterDir.empty() ||
        (options.train && options.loraConfigPath.empty()))
      return emitError(module.getLoc())
             << "--graph-passes '" << outlierPasses
             << "' rewrites the model's weights and layer inputs before "
                "adapters: it cannot be combined with --adapter, "
                "--lora-slots or --save-adapter, nor --train without fresh "
                "adapters (--lora-config or a recipe's)";
    // Statistics are of the model as imported: a pass that reads them must
    // come before any pass that changes the inputs they describe.
    SmallVector<std::string> leading = splitPipeline(outlierPasses);
    bool changed = false;
    for (const std::string &part : leading) {
      if (changed && pipelinePassName(part) == "qopt-smooth" &&
          !StringRef(part).contains("stats="))
        return emitError(module.getLoc())
               << "--graph-passes: qopt-smooth after qopt-rotate or "
                  "qopt-svdquant would read statistics of the inputs "
                  "before they changed: smooth first";
      if (pipelinePassName(part) != "qopt-smooth")
        changed = true;
    }
    bool staticLater =
        llvm::any_of(splitPipeline(laterPasses), [](const std::string &part) {
          return readsActivationStats(part) &&
                 !StringRef(part).contains("activation-stats=");
        });
    staticLater |= staticActivations;
    if (!options.calibrationDataPath.empty() && staticLater)
      return emitError(module.getLoc())
             << "--graph-passes: static activation scales after '"
             << outlierPasses
             << "' would come from statistics of the model before it "
                "(--calibration-data calibrates the imported model); use "
                "dynamic scales there, or give them their own statistics "
                "file (activation-stats=)";
  }
  // Passes that read activation statistics get them from the calibration
  // data: a .qstats file as qopt-calibrate writes it, or samples (.npz,
  // .jsonl) that a probe of the model (as imported) runs on.
  bool statsWanted =
      !options.calibrationDataPath.empty() &&
      (readsActivationStats(options.graphPasses) || staticActivations);
  if (statsWanted) {
    std::string statsPath = options.calibrationDataPath;
    if (!StringRef(statsPath).ends_with(".qstats")) {
      if (!options.statsCalibrator)
        return emitError(module.getLoc())
               << "--calibration-data " << statsPath
               << ": calibration needs the runtime, which this tool cannot "
                  "run (give a .qstats file from qopt-calibrate)";
      if (failed(makeWorkDir()))
        return failure();
      SmallString<256> path(workDir);
      llvm::sys::path::append(path, "stats.qstats");
      if (failed(options.statsCalibrator(module, statsPath,
                                         options.calibrationBatchSize,
                                         probeTarget(target), workDir, path)))
        return failure();
      statsPath = path.str().str();
      if (options.timing)
        llvm::errs() << llvm::format(
            "qoptc: %-28s %8.3f s\n", "calibration (statistics)",
            std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                          start)
                .count());
    }
    module->setAttr(kCalibrationStatsAttr,
                    StringAttr::get(module.getContext(), statsPath));
  }
  PassManager quantizer(module.getContext());
  if (!outlierPasses.empty()) {
    std::string message;
    llvm::raw_string_ostream os(message);
    if (failed(parsePassPipeline(outlierPasses, quantizer, os)))
      return emitError(module.getLoc())
             << "--graph-passes '" << options.graphPasses
             << "': " << StringRef(message).trim();
  }
  if (!options.quantizeSpec.empty()) {
    QOptQuantizeWeightsPassOptions quantize;
    if (std::optional<std::string> why = quantizeWeightsOptions(
            options.quantizeSpec, options.quantizeModules, quantize))
      return emitError(module.getLoc())
             << "--quantize '" << options.quantizeSpec << "': " << *why;
    quantize.modelDir = target.modelDir;
    quantize.budgetBits = options.budgetBits;
    quantize.fisher = options.budgetFisher;
    quantizer.addPass(createQOptQuantizeWeightsPass(quantize));
  }
  if (!options.quantizeActivations.empty()) {
    if (std::optional<std::string> why =
            checkActivationSpec(options.quantizeActivations))
      return emitError(module.getLoc())
             << "--quantize-activations '" << options.quantizeActivations
             << "': " << *why;
    quantizer.addPass(createQOptInsertFakeQuantPass(activationQuantOptions(
        options.quantizeActivations, options.quantizeModules)));
  }
  if (failed(quantizer.run(module)))
    return failure();
  PassManager pm(module.getContext());
  bool calibrated = false;
  // Adapters: fresh ones as a PEFT config describes them, or a trained
  // PEFT adapter; merged into the base weights when asked.
  for (auto [path, slots] :
       {std::pair<StringRef, bool>{options.loraConfigPath, false},
        {options.loraSlotsPath, true}}) {
    if (path.empty())
      continue;
    std::string text;
    if (!slots && !options.loraConfigJson.empty()) {
      text = options.loraConfigJson; // a recipe's adapter
    } else {
      auto file = llvm::MemoryBuffer::getFile(path);
      if (!file)
        return emitError(module.getLoc())
               << "cannot read " << path << ": " << file.getError().message();
      text = (*file)->getBuffer().str();
    }
    llvm::Expected<PeftLoraConfig> config = parsePeftLoraConfig(text);
    if (!config)
      return emitError(module.getLoc())
             << path << ": " << llvm::toString(config.takeError());
    std::string calibrationState;
    std::string init = StringRef(config->initLoraWeights).lower();
    if (!slots && (init == "eva" || init == "lora_ga" || init == "lora-sb")) {
      if (options.calibrationDataPath.empty())
        return emitError(module.getLoc())
               << path << ": init_lora_weights \"" << init
               << "\" needs calibration data: --calibration-data calib.npz";
      if (failed(makeWorkDir()))
        return failure();
      SmallString<256> statePath(workDir);
      llvm::sys::path::append(statePath, init + ".safetensors");
      if (!options.calibrator)
        return emitError(module.getLoc())
               << path << ": init_lora_weights \"" << init
               << "\" needs calibration, which this tool cannot run (qoptc "
                  "--calibration-data)";
      if (failed(options.calibrator(
              module, *config, options.calibrationDataPath,
              options.calibrationBatchSize, options.calibrationMaxPasses,
              probeTarget(target), workDir, statePath)))
        return failure();
      calibrationState = statePath.str().str();
      calibrated = true;
      if (options.timing)
        llvm::errs() << llvm::format(
            "qoptc: %-28s %8.3f s\n",
            init == "eva"       ? "calibration (EVA)"
            : init == "lora_ga" ? "calibration (LoRA-GA)"
                                : "calibration (LoRA-SB)",
            std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                          start)
                .count());
    }
    pm.addPass(createQOptInsertLoRAPass(*config, target.modelDir, 0, slots,
                                        calibrationState));
  }
  if (!options.calibrationDataPath.empty() && !calibrated && !statsWanted)
    return emitError(module.getLoc())
           << "--calibration-data is only read for an adapter config with "
              "init_lora_weights \"eva\", \"lora_ga\" or \"lora-sb\" "
              "(--lora-config) or for graph passes that read activation "
              "statistics (qopt-smooth, qopt-insert-fake-quant with static "
              "scales)";
  if (!options.adapterDir.empty()) {
    QOptLoadAdapterPassOptions load;
    load.adapter = options.adapterDir;
    load.modelDir = target.modelDir;
    load.trainable = options.train;
    pm.addPass(createQOptLoadAdapterPass(load));
  }
  if (!options.saveAdapterDir.empty()) {
    QOptSaveAdapterPassOptions save;
    save.adapter = options.saveAdapterDir;
    save.modelDir = target.modelDir;
    pm.addPass(createQOptSaveAdapterPass(save));
  }
  // A train step keeps its adapter's PEFT config and tensor names in the
  // manifest, so that the runtime can save the trained adapter in PEFT's
  // format (Model.save_adapter).
  SmallString<256> adapterDir;
  bool hasAdapter =
      !options.adapterDir.empty() || !options.loraConfigPath.empty();
  // (Not after outlier passes: the adapter has no PEFT form there.)
  if (options.train && hasAdapter && outlierPasses.empty()) {
    if (workDir.empty())
      if (std::error_code ec =
              llvm::sys::fs::createUniqueDirectory("qopt-train", workDir))
        return emitError(module.getLoc())
               << "cannot create a temporary folder: " << ec.message();
    adapterDir = workDir;
    llvm::sys::path::append(adapterDir, "adapter");
    QOptSaveAdapterPassOptions save;
    save.adapter = adapterDir.str().str();
    save.modelDir = target.modelDir;
    save.ifExpressible = true;
    pm.addPass(createQOptSaveAdapterPass(save));
  }
  if (options.mergeAdapter) {
    QOptMergeLoRAPassOptions merge;
    merge.modelDir = target.modelDir;
    merge.requantize = options.requantizeMerged;
    pm.addPass(createQOptMergeLoRAPass(merge));
  }
  if (!laterPasses.empty()) {
    std::string message;
    llvm::raw_string_ostream os(message);
    if (failed(parsePassPipeline(laterPasses, pm, os)))
      return emitError(module.getLoc())
             << "--graph-passes '" << options.graphPasses
             << "': " << StringRef(message).trim();
  }
  // QDQ weights become the layers' quantized N×K weights; their data is
  // read from the model's folder.
  QOptRelayoutQuantizedWeightsPassOptions relayout;
  relayout.modelDir = target.modelDir;
  pm.addPass(createQOptRelayoutQuantizedWeightsPass(relayout));
  if (exporting) {
    if (failed(pm.run(module)))
      return failure();
    ONNXExportOptions exportOptions;
    exportOptions.modelPath = options.modelPath;
    exportOptions.modelDir = target.modelDir;
    exportOptions.outPath = options.exportONNXPath;
    exportOptions.contrib = options.exportContrib;
    exportOptions.int8Activations = target.int8Activations;
    if (failed(exportONNX(module, exportRecord, exportOptions)))
      return failure();
    if (target.outputPath.empty())
      return success();
    pm.clear();
  }
  buildGraphPipeline(pm);
  if (failed(pm.run(module)))
    return failure();
  module->removeAttr(kModelDirAttr);
  module->removeAttr(kCalibrationStatsAttr);
  // (Nothing was saved for an adapter without a PEFT form.)
  SmallString<256> savedConfig(adapterDir);
  llvm::sys::path::append(savedConfig, "adapter_config.json");
  if (!adapterDir.empty() && llvm::sys::fs::exists(savedConfig) &&
      failed(recordAdapter(module, adapterDir)))
    return failure();
  if (options.timing)
    llvm::errs() << llvm::format(
        "qoptc: %-28s %8.3f s\n", "graph passes",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  if (!options.dumpGraphIR.empty()) {
    std::error_code ec;
    llvm::raw_fd_ostream os(options.dumpGraphIR, ec);
    // Weights computed by passes are resource blobs: never megabytes of
    // hex in a debugging dump.
    if (!ec)
      module.print(os, OpPrintingFlags().elideLargeResourceString(4096));
  }
  if (options.train) {
    // PEFT's converted form of an init that changed the base weights
    // (LoRA-GA) needs the initial factors when the trained adapter is
    // saved: the library keeps them as frozen parameters
    // `<name>.initial`, which no entry reads.
    keepInitialFactors(module);
    // The train step is built on the lowered model (every op in linalg /
    // tensor form, which is what the gradient rules cover), whose adapters
    // drop their inputs as PEFT's lora_dropout does in training.
    PassManager train(module.getContext());
    // For the CUDA kernel library, attention and the norms stay whole:
    // their gradients are the library's fused backward kernels
    // (qopt.attention_grad, which recomputes the probabilities instead of
    // keeping them; qopt.norm_grad, a warp per row).
    LibraryLowering library;
    library.keepAttention = library.keepNorms =
        target.cuda.enabled && !target.cuda.kernelLibrary.empty();
    buildLowerToLinalgPipeline(train, /*trainingDropout=*/true, library);
    train.addPass(createQOptBuildTrainStepPass(options.trainStep));
    if (failed(train.run(module)))
      return failure();
    if (options.timing)
      llvm::errs() << llvm::format("qoptc: %-28s %8.3f s\n", "train step",
                                   std::chrono::duration<double>(
                                       std::chrono::steady_clock::now() - start)
                                       .count());
  }
  return compileForCPU(module, target);
}

void mlir::qopt::registerQOptPipelines() {
  PassPipelineRegistration<CPUPipelineOptions>(
      "qopt-lower-to-cpu",
      "Lower imported ONNX / QOpt graph IR to the LLVM dialect for the CPU",
      buildQOptCPUPipeline);
  registerCPUCodegenPipeline();
  PassPipelineRegistration<CUDAPipelineOptions>(
      "qopt-lower-to-cuda",
      "Lower imported ONNX / QOpt graph IR to host code in the LLVM dialect "
      "that launches GPU kernels (PTX in a gpu.binary; qoptc --target cuda "
      "compiles it to cubins)",
      buildQOptCUDAPipeline);
  registerCUDACodegenPipeline();
}
