//===- Calibration.cpp - Run a probe of the model on calibration data -----===//

#include "Calibration.h"

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Pipelines/Pipelines.h"
#include "qopt/Runtime/NpyDType.h"
#include "qopt/Support/Eva.h"
#include "qopt/Support/Npy.h"
#include "qopt/Target/CPU/Pipeline.h"
#include "qopt/Training/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;
namespace eva = ::qopt::eva;
namespace npy = ::qopt::npy;

namespace {

using ::qopt::npy::dtypeOf;

/// Element `i` of an integer or bool array, or nullopt for other dtypes.
std::optional<int64_t> intAt(const npy::Array &a, size_t i) {
  const char *p = a.data.data();
  switch (dtypeOf(a.descr)) {
  case QOPT_DTYPE_BOOL:
  case QOPT_DTYPE_U8:
    return int64_t(reinterpret_cast<const uint8_t *>(p)[i]);
  case QOPT_DTYPE_I8:
    return int64_t(reinterpret_cast<const int8_t *>(p)[i]);
  case QOPT_DTYPE_I32: {
    int32_t v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
  case QOPT_DTYPE_I64: {
    int64_t v;
    std::memcpy(&v, p + 8 * i, 8);
    return v;
  }
  default:
    return std::nullopt;
  }
}

struct ModelDeleter {
  void operator()(qopt_model *m) const { qopt_model_destroy(m); }
};
using ModelPtr = std::unique_ptr<qopt_model, ModelDeleter>;

/// Compiles the probe `probe` (graph IR) to `workDir`/`fileName` with the
/// model's target options and loads it.
FailureOr<ModelPtr> compileProbe(ModuleOp probe, const CPUTargetOptions &target,
                                 StringRef workDir, StringRef fileName,
                                 Location loc) {
  CPUTargetOptions probeTarget = target;
  llvm::SmallString<256> probePath(workDir);
  llvm::sys::path::append(probePath, fileName);
  probeTarget.outputPath = probePath.str().str();
  probeTarget.timing = false;
  probeTarget.dumpLLVMIR.clear();
  if (failed(compileForCPU(probe, probeTarget)))
    return failure();
  qopt_model *raw = nullptr;
  if (qopt_model_load(probeTarget.outputPath.c_str(), &raw) != 0)
    return emitError(loc) << "cannot load the calibration probe: "
                          << qopt_last_error();
  return ModelPtr(raw);
}

/// Writes per-module matrices to the safetensors file `statePath`.
LogicalResult writeState(StringRef statePath, ArrayRef<std::string> names,
                         ArrayRef<dense::Matrix> matrices, Location loc) {
  std::vector<SafetensorsF32> state;
  for (auto [name, m] : llvm::zip(names, matrices))
    state.push_back({name, {m.rows, m.cols}, &m.data});
  std::error_code ec;
  llvm::raw_fd_ostream os(statePath, ec);
  if (!ec) {
    os << encodeF32Safetensors(state);
    os.close();
    if (os.has_error()) {
      ec = os.error();
      os.clear_error();
    }
  }
  if (ec)
    return emitError(loc) << "cannot write " << statePath << ": "
                          << ec.message();
  return success();
}

} // namespace

LogicalResult
mlir::qopt::computeEvaState(ModuleOp module, const PeftLoraConfig &config,
                            StringRef dataPath, int64_t batchSize,
                            int64_t maxPasses, const CPUTargetOptions &target,
                            StringRef workDir, StringRef statePath) {
  Location loc = module.getLoc();
  auto fail = [&](const Twine &message) -> LogicalResult {
    return emitError(loc) << "--calibration-data " << dataPath << ": "
                          << message;
  };
  if (maxPasses < 1)
    return emitError(loc) << "--calibration-max-passes must be at least 1, "
                             "got "
                          << maxPasses;
  if (batchSize < 1)
    return emitError(loc) << "--calibration-batch-size must be at least 1, "
                             "got "
                          << batchSize;

  // The layers EVA initialises: those the adapter config targets.
  std::vector<LinearLayer> layers = collectLinearLayers(module);
  llvm::Expected<LoraTargets> targets =
      LoraTargets::create(config.selection, layers);
  if (!targets)
    return emitError(loc) << "qopt-insert-lora: "
                          << llvm::toString(targets.takeError());
  std::vector<std::string> names;
  std::vector<eva::Layer> evaLayers;
  for (const LinearLayer &layer : layers)
    if (!layer.name.empty() && targets->matches(layer.name) &&
        llvm::find(names, layer.name) == names.end()) {
      names.push_back(layer.name);
      evaLayers.push_back({layer.name, targets->rankFor(layer.name)});
    }
  if (names.empty())
    return fail("the adapter config's target_modules match no linear layer "
                "(qoptc --list-modules prints them)");

  std::vector<std::pair<std::string, npy::Array>> arrays;
  std::string why;
  if (!npy::readNpz(dataPath.str(), arrays, why))
    return fail(why);

  // The probe: the model up to the targeted layers, returning their inputs.
  OwningOpRef<ModuleOp> probe = module.clone();
  PassManager pm(module.getContext());
  QOptExposeLayerInputsPassOptions expose;
  expose.modules.assign(names.begin(), names.end());
  pm.addPass(createQOptExposeLayerInputsPass(expose));
  QOptRelayoutQuantizedWeightsPassOptions relayout;
  relayout.modelDir = target.modelDir;
  pm.addPass(createQOptRelayoutQuantizedWeightsPass(relayout));
  buildGraphPipeline(pm);
  if (failed(pm.run(*probe)))
    return failure();
  FailureOr<ModelPtr> compiled =
      compileProbe(*probe, target, workDir, "probe.so", loc);
  if (failed(compiled))
    return failure();
  ModelPtr model = std::move(*compiled);

  // Arrays for the model's inputs, an attention mask and labels.
  size_t numInputs = qopt_model_num_inputs(model.get());
  std::vector<const npy::Array *> feeds(numInputs);
  std::vector<qopt_tensor_info> infos(numInputs);
  std::vector<std::string> inputNames;
  for (size_t i = 0; i < numInputs; ++i) {
    qopt_model_input_info(model.get(), i, &infos[i]);
    inputNames.push_back(infos[i].name);
  }
  const npy::Array *labels = nullptr, *mask = nullptr;
  int64_t samples = -1;
  for (const auto &[name, array] : arrays) {
    auto input = llvm::find(inputNames, name);
    if (input == inputNames.end() && name != "labels")
      return fail("array '" + name +
                  "' is not an input of the model (its "
                  "inputs: " +
                  llvm::join(inputNames, ", ") + "; 'labels' masks tokens)");
    if (array.shape.empty())
      return fail("array '" + name +
                  "' is a scalar; the first dimension "
                  "counts samples");
    if (samples >= 0 && array.shape[0] != samples)
      return fail("array '" + name + "' has " + std::to_string(array.shape[0]) +
                  " samples, the others " + std::to_string(samples));
    samples = array.shape[0];
    if (name == "labels")
      labels = &array;
    if (name == "attention_mask")
      mask = &array;
    if (input == inputNames.end())
      continue;
    size_t i = input - inputNames.begin();
    if (dtypeOf(array.descr) != infos[i].dtype ||
        int64_t(array.shape.size()) != infos[i].rank)
      return fail("array '" + name + "' is " + npy::formatShape(array.shape) +
                  " of '" + array.descr + "'; the model input is rank " +
                  std::to_string(infos[i].rank) + " of " +
                  qopt_dtype_name(infos[i].dtype));
    feeds[i] = &array;
  }
  for (size_t i = 0; i < numInputs; ++i)
    if (!feeds[i])
      return fail("no array '" + inputNames[i] + "' for the model's input");
  if (samples <= 0)
    return fail("holds no samples");
  const npy::Array *labelMask = config.eva.useLabelMask ? labels : nullptr;
  int64_t tokens = -1;
  for (const npy::Array *m : {mask, labelMask}) {
    if (!m)
      continue;
    qopt_dtype dtype = dtypeOf(m->descr);
    bool integer = dtype == QOPT_DTYPE_BOOL || dtype == QOPT_DTYPE_U8 ||
                   dtype == QOPT_DTYPE_I8 || dtype == QOPT_DTYPE_I32 ||
                   dtype == QOPT_DTYPE_I64;
    if (m->shape.size() != 2 || !integer ||
        (tokens >= 0 && m->shape[1] != tokens))
      return fail(std::string("array '") +
                  (m == mask ? "attention_mask" : "labels") +
                  "' must be an integer array of samples × tokens (as "
                  "long as the other mask)");
    tokens = m->shape[1];
  }
  size_t numBatches = size_t((samples + batchSize - 1) / batchSize);
  size_t numOutputs = qopt_model_num_outputs(model.get());
  if (numOutputs != names.size())
    return emitError(loc) << "the calibration probe returns " << numOutputs
                          << " tensors for " << names.size() << " layers";

  auto run = [&](size_t index, std::vector<dense::Matrix> &inputs,
                 std::string &error) {
    int64_t lo = int64_t(index) * batchSize,
            hi = std::min(samples, lo + batchSize), count = hi - lo;
    std::vector<qopt_tensor> in(numInputs);
    for (size_t i = 0; i < numInputs; ++i) {
      const npy::Array &a = *feeds[i];
      qopt_tensor &t = in[i];
      t.dtype = infos[i].dtype;
      t.rank = infos[i].rank;
      size_t rowBytes = a.data.size() / size_t(samples);
      for (int32_t d = 0; d < t.rank; ++d)
        t.shape[d] = d == 0 ? count : a.shape[d];
      t.data = const_cast<char *>(a.data.data()) + size_t(lo) * rowBytes;
    }
    std::vector<qopt_tensor> out(numOutputs);
    if (qopt_model_run(model.get(), in.data(), numInputs, out.data(),
                       numOutputs) != 0) {
      error = "calibration samples " + std::to_string(lo) + ".." +
              std::to_string(hi - 1) + ": " + qopt_last_error();
      return false;
    }
    // Tokens padding or labels leave out (PEFT's language-modelling
    // default), row-major over samples × tokens.
    std::vector<char> keep;
    if (tokens >= 0) {
      keep.assign(size_t(count * tokens), 1);
      for (int64_t s = 0; s < count; ++s)
        for (int64_t k = 0; k < tokens; ++k) {
          size_t at = size_t((lo + s) * tokens + k);
          char &kp = keep[size_t(s * tokens + k)];
          if (mask)
            kp = kp && *intAt(*mask, at) != 0;
          if (labelMask)
            kp = kp && *intAt(*labelMask, at) != config.eva.labelMaskValue;
        }
    }
    bool ok = true;
    inputs.assign(numOutputs, dense::Matrix());
    for (size_t l = 0; l < numOutputs && ok; ++l) {
      qopt_tensor &t = out[l];
      int64_t numel = 1;
      for (int32_t d = 0; d < t.rank; ++d)
        numel *= t.shape[d];
      int64_t cols = t.rank ? t.shape[t.rank - 1] : 1;
      int64_t rows = cols ? numel / cols : 0;
      std::optional<dense::FloatKind> kind;
      switch (t.dtype) {
      case QOPT_DTYPE_F32:
        kind = dense::FloatKind::F32;
        break;
      case QOPT_DTYPE_F16:
        kind = dense::FloatKind::F16;
        break;
      case QOPT_DTYPE_BF16:
        kind = dense::FloatKind::BF16;
        break;
      case QOPT_DTYPE_F64:
        kind = dense::FloatKind::F64;
        break;
      default:
        break;
      }
      if (!kind) {
        error = "module '" + names[l] + "' takes " + qopt_dtype_name(t.dtype) +
                " inputs, not floats";
        ok = false;
        break;
      }
      if (tokens >= 0 && rows != count * tokens) {
        error = "module '" + names[l] + "' sees " + std::to_string(rows) +
                " rows for " + std::to_string(count) +
                " samples, not one per token of the attention mask / labels";
        ok = false;
        break;
      }
      dense::Matrix all(rows, cols);
      dense::decodeFloats(*kind, t.data, size_t(numel), all.data.data());
      if (!std::all_of(all.data.begin(), all.data.end(),
                       [](float v) { return std::isfinite(v); })) {
        error = "module '" + names[l] + "' sees non-finite inputs on " +
                "calibration samples " + std::to_string(lo) + ".." +
                std::to_string(hi - 1);
        ok = false;
        break;
      }
      if (tokens < 0) {
        inputs[l] = std::move(all);
        continue;
      }
      int64_t kept = 0;
      for (char k : keep)
        kept += k;
      dense::Matrix m(kept, cols);
      for (int64_t r = 0, o = 0; r < rows; ++r)
        if (keep[r])
          std::memcpy(&m.at(o++, 0), &all.at(r, 0), size_t(cols) * 4);
      inputs[l] = std::move(m);
    }
    for (qopt_tensor &t : out)
      qopt_tensor_free(&t);
    return ok;
  };

  eva::Options options;
  options.rho = config.eva.rho;
  options.tau = config.eva.tau;
  options.whiten = config.eva.whiten;
  options.maxEpochs = maxPasses;
  eva::Result result;
  if (!eva::compute(evaLayers, numBatches, options, run, result, why))
    return fail("EVA: " + why);
  return writeState(statePath, names, result.components, loc);
}

/// The causal-LM loss's gradient with respect to the weight of each layer
/// `selected` accepts (each an f32 matrix, else an error naming `what`),
/// from a probe compiled in `workDir`, over the batches of `batchSize`
/// samples of the .npz `dataPath`: its mean over the batches, or with
/// `squared` the mean of its elementwise square (an empirical Fisher
/// diagonal). `names` and `out` get the layers and their matrices.
static LogicalResult
gradientMoments(ModuleOp module, function_ref<bool(StringRef)> selected,
                StringRef what, StringRef optionName, StringRef dataPath,
                int64_t batchSize, bool squared, const CPUTargetOptions &target,
                StringRef workDir, std::vector<std::string> &names,
                std::vector<dense::Matrix> &out) {
  Location loc = module.getLoc();
  auto fail = [&](const Twine &message) -> LogicalResult {
    return emitError(loc) << optionName << " " << dataPath << ": " << message;
  };
  if (batchSize < 1)
    return emitError(loc) << "--calibration-batch-size must be at least 1, "
                             "got "
                          << batchSize;
  std::vector<std::pair<std::string, npy::Array>> arrays;
  std::string why;
  if (!npy::readNpz(dataPath.str(), arrays, why))
    return fail(why);

  // The probe: every targeted weight W becomes W + D, D a trainable zero
  // parameter of W's shape (out × in, whatever the export's layout), whose
  // gradient is the loss's gradient with respect to W.
  OwningOpRef<ModuleOp> probe = module.clone();
  std::vector<LinearLayer> layers = collectLinearLayers(*probe);
  SymbolTable symbols(*probe);
  for (const LinearLayer &layer : layers) {
    if (layer.name.empty() || !selected(layer.name) ||
        llvm::is_contained(names, layer.name))
      continue;
    auto linear = dyn_cast<LinearOp>(layer.op);
    auto type = linear
                    ? dyn_cast<RankedTensorType>(linear.getWeight().getType())
                    : RankedTensorType();
    if (!type || !type.getElementType().isF32() || !type.hasStaticShape())
      return layer.op->emitError()
             << what << " needs the gradient of module '" << layer.name
             << "''s weight, which must be a float32 matrix (PEFT refuses "
                "quantized layers too)";
    ParamOp delta = createFloatParam(
        symbols, linear.getLoc(), layer.name + ".loraga_delta", type,
        std::vector<float>(type.getNumElements(), 0.0f), /*trainable=*/true);
    if (!delta)
      return failure();
    OpBuilder builder(linear);
    Value d =
        LoadParamOp::create(builder, linear.getLoc(), type, delta.getSymName());
    linear.getWeightMutable().assign(
        arith::AddFOp::create(builder, linear.getLoc(), linear.getWeight(), d));
    names.push_back(layer.name);
  }
  if (names.empty())
    return fail("no linear layer is selected (qoptc --list-modules prints "
                "them)");
  PassManager pm(module.getContext());
  QOptRelayoutQuantizedWeightsPassOptions relayout;
  relayout.modelDir = target.modelDir;
  pm.addPass(createQOptRelayoutQuantizedWeightsPass(relayout));
  buildGraphPipeline(pm);
  buildLowerToLinalgPipeline(pm);
  QOptBuildTrainStepPassOptions step;
  step.entry = "gradients";
  step.loss = "causal-lm";
  pm.addPass(createQOptBuildTrainStepPass(step));
  if (failed(pm.run(*probe)))
    return failure();
  FailureOr<ModelPtr> compiled =
      compileProbe(*probe, target, workDir, "loraga-probe.so", loc);
  if (failed(compiled))
    return failure();
  ModelPtr model = std::move(*compiled);

  // The inputs: the model's, and labels (from the data, else the ids with
  // -100 where the attention mask is 0, as transformers' causal-LM
  // training sets them).
  size_t numInputs = qopt_model_num_inputs(model.get());
  std::vector<qopt_tensor_info> infos(numInputs);
  std::vector<const npy::Array *> feeds(numInputs);
  std::vector<std::string> inputNames;
  int64_t samples = -1;
  for (size_t i = 0; i < numInputs; ++i) {
    qopt_model_input_info(model.get(), i, &infos[i]);
    inputNames.push_back(infos[i].name);
  }
  const npy::Array *ids = nullptr, *mask = nullptr;
  for (const auto &[name, array] : arrays) {
    auto input = llvm::find(inputNames, name);
    if (input == inputNames.end())
      return fail("array '" + name +
                  "' is not an input of the model (its "
                  "inputs: " +
                  llvm::join(inputNames, ", ") + ")");
    size_t i = input - inputNames.begin();
    if (array.shape.empty() || dtypeOf(array.descr) != infos[i].dtype ||
        int64_t(array.shape.size()) != infos[i].rank)
      return fail("array '" + name + "' is " + npy::formatShape(array.shape) +
                  " of '" + array.descr + "'; the model input is rank " +
                  std::to_string(infos[i].rank) + " of " +
                  qopt_dtype_name(infos[i].dtype));
    if (samples >= 0 && array.shape[0] != samples)
      return fail("array '" + name + "' has " + std::to_string(array.shape[0]) +
                  " samples, the others " + std::to_string(samples));
    samples = array.shape[0];
    feeds[i] = &array;
    if (name == "input_ids")
      ids = &array;
    if (name == "attention_mask")
      mask = &array;
  }
  size_t labelsIndex = llvm::find(inputNames, "labels") - inputNames.begin();
  for (size_t i = 0; i < numInputs; ++i)
    if (!feeds[i] && !(i == labelsIndex && ids && ids->shape.size() == 2 &&
                       dtypeOf(ids->descr) == QOPT_DTYPE_I64))
      return fail("no array '" + inputNames[i] + "' for the model's input");
  if (samples <= 0)
    return fail("holds no samples");

  size_t entry = 0, numEntries = qopt_model_num_entries(model.get());
  while (entry < numEntries &&
         StringRef(qopt_model_entry_name(model.get(), entry)) != "gradients")
    ++entry;
  size_t numOutputs = qopt_model_entry_num_outputs(model.get(), entry);
  std::vector<int64_t> slot(numOutputs, -1);
  for (size_t o = 0; o < numOutputs; ++o) {
    qopt_tensor_info info;
    qopt_model_entry_output_info(model.get(), entry, o, &info);
    StringRef out = info.name;
    if (out.consume_front("grad.") && out.consume_back(".loraga_delta"))
      if (auto it = llvm::find(names, out.str()); it != names.end())
        slot[o] = it - names.begin();
  }
  std::vector<dense::Matrix> sums(names.size());
  int64_t batches = 0;
  std::vector<int64_t> labels;
  for (int64_t lo = 0; lo < samples; lo += batchSize, ++batches) {
    int64_t count = std::min(samples, lo + batchSize) - lo;
    std::vector<qopt_tensor> in(numInputs);
    for (size_t i = 0; i < numInputs; ++i) {
      qopt_tensor &t = in[i];
      t.dtype = infos[i].dtype;
      t.rank = infos[i].rank;
      const npy::Array &a = feeds[i] ? *feeds[i] : *ids;
      size_t rowBytes = a.data.size() / size_t(samples);
      for (int32_t d = 0; d < t.rank; ++d)
        t.shape[d] = d == 0 ? count : a.shape[d];
      t.data = const_cast<char *>(a.data.data()) + size_t(lo) * rowBytes;
      if (!feeds[i]) {
        int64_t tokens = a.shape[1];
        labels.assign(size_t(count * tokens), 0);
        for (int64_t j = 0; j < count * tokens; ++j) {
          size_t at = size_t(lo * tokens + j);
          bool masked = mask && *intAt(*mask, at) == 0;
          labels[j] = masked ? -100 : *intAt(a, at);
        }
        t.data = labels.data();
      }
    }
    std::vector<qopt_tensor> out(numOutputs);
    if (qopt_model_run_entry(model.get(), entry, in.data(), numInputs,
                             out.data(), numOutputs) != 0)
      return fail("calibration samples " + std::to_string(lo) + ".." +
                  std::to_string(lo + count - 1) + ": " + qopt_last_error());
    bool finite = true;
    for (size_t o = 0; o < numOutputs; ++o) {
      if (slot[o] >= 0) {
        qopt_tensor &t = out[o];
        dense::Matrix &sum = sums[slot[o]];
        if (sum.data.empty())
          sum = dense::Matrix(t.shape[0], t.shape[1]);
        const float *g = static_cast<const float *>(t.data);
        for (size_t j = 0; j < sum.data.size(); ++j) {
          sum.data[j] += squared ? g[j] * g[j] : g[j];
          finite = finite && std::isfinite(g[j]);
        }
      }
      qopt_tensor_free(&out[o]);
    }
    if (!finite)
      return fail("the loss's gradient is not finite on calibration samples " +
                  std::to_string(lo) + ".." + std::to_string(lo + count - 1) +
                  " (no label counted?)");
  }
  // PEFT's estimate_gradients: the gradient summed over the train steps'
  // backward passes, divided by their count.
  for (dense::Matrix &sum : sums)
    for (float &v : sum.data)
      v = float(double(v) / double(batches));
  out = std::move(sums);
  return success();
}

LogicalResult
mlir::qopt::computeLoraGaState(ModuleOp module, const PeftLoraConfig &config,
                               StringRef dataPath, int64_t batchSize,
                               const CPUTargetOptions &target,
                               StringRef workDir, StringRef statePath) {
  if (batchSize < 1)
    return emitError(module.getLoc())
           << "--calibration-batch-size must be at least 1, got " << batchSize;
  std::vector<LinearLayer> layers = collectLinearLayers(module);
  llvm::Expected<LoraTargets> targets =
      LoraTargets::create(config.selection, layers);
  if (!targets)
    return emitError(module.getLoc())
           << "qopt-insert-lora: " << llvm::toString(targets.takeError());
  std::vector<std::string> names;
  std::vector<dense::Matrix> means;
  StringRef what = StringRef(config.initLoraWeights).lower() == "lora_ga"
                       ? "LoRA-GA"
                       : "LoRA-SB";
  if (failed(gradientMoments(
          module, [&](StringRef name) { return targets->matches(name); }, what,
          "--calibration-data", dataPath, batchSize, /*squared=*/false, target,
          workDir, names, means)))
    return failure();
  return writeState(statePath, names, means, module.getLoc());
}

LogicalResult mlir::qopt::computeFisherDiagonals(
    ModuleOp module, ArrayRef<std::string> modules, StringRef optionName,
    StringRef dataPath, int64_t batchSize, const CPUTargetOptions &target,
    StringRef workDir, std::vector<std::string> &names,
    std::vector<dense::Matrix> &diagonals) {
  return gradientMoments(
      module,
      [&](StringRef name) { return llvm::is_contained(modules, name.str()); },
      "the Fisher diagonal", optionName, dataPath, batchSize,
      /*squared=*/true, target, workDir, names, diagonals);
}

LogicalResult mlir::qopt::computeCalibrationState(
    ModuleOp module, const PeftLoraConfig &config, StringRef dataPath,
    int64_t batchSize, int64_t maxPasses, const CPUTargetOptions &target,
    StringRef workDir, StringRef statePath) {
  // LoRA-GA and LoRA-SB both start from the estimated gradient.
  std::string init = StringRef(config.initLoraWeights).lower();
  if (init == "lora_ga" || init == "lora-sb")
    return computeLoraGaState(module, config, dataPath, batchSize, target,
                              workDir, statePath);
  return computeEvaState(module, config, dataPath, batchSize, maxPasses, target,
                         workDir, statePath);
}
