//===- Stats.cpp - Activation statistics of every linear layer -----------===//
//
// qopt-calibrate and `qoptc --calibration-data calib.npz` for the outlier
// passes: a probe of the model returns every selected linear layer's input;
// run over the calibration samples, it gives each layer's per-channel
// absmax (SmoothQuant's max|X|, static activation scales) and optionally a
// minibatch of its input rows, written to a `.qstats` file (safetensors).
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Pipelines/Pipelines.h"
#include "qopt/Runtime/NpyDType.h"
#include "qopt/Support/DenseMath.h"
#include "qopt/Support/Npy.h"

#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cmath>
#include <cstring>

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;
namespace npy = ::qopt::npy;

namespace {

struct ModelDeleter {
  void operator()(qopt_model *m) const { qopt_model_destroy(m); }
};
using ModelPtr = std::unique_ptr<qopt_model, ModelDeleter>;

/// One run of the probe: a sample range and its input arrays.
struct Batch {
  int64_t first = 0, count = 0;
  /// One array per model input, first dimension `count`.
  std::vector<const npy::Array *> arrays;
  /// Row offset of the batch in each array (npz slices), in samples.
  int64_t offset = 0;
  /// 1 for each (sample, token) the attention mask keeps; empty: all.
  std::vector<char> keep;
  /// How messages name the batch ("line 3" of a .jsonl).
  std::string where;
};

/// Whether element `i` of a mask array is nonzero, whatever its dtype: some
/// byte of it is, a float's sign bit aside (-0 is zero).
bool nonzeroAt(const npy::Array &a, size_t i) {
  qopt_dtype dtype = npy::dtypeOf(a.descr);
  size_t size = qopt_dtype_size(dtype);
  const unsigned char *p =
      reinterpret_cast<const unsigned char *>(a.data.data()) + i * size;
  bool isFloat = dtype == QOPT_DTYPE_F16 || dtype == QOPT_DTYPE_BF16 ||
                 dtype == QOPT_DTYPE_F32 || dtype == QOPT_DTYPE_F64;
  for (size_t b = 0; b < size; ++b) {
    unsigned char byte = p[b];
    if (isFloat && b + 1 == size)
      byte &= 0x7F; // little-endian: the sign is the last byte's top bit
    if (byte)
      return true;
  }
  return false;
}

/// Appends the nested JSON list `v` (rank `rank`) to `out` as `dtype`
/// elements and its sizes to `shape` after its leading sample dimension;
/// false with `why` on a ragged list or a wrong element.
bool flattenJson(const llvm::json::Value &v, int64_t rank, size_t depth,
                 qopt_dtype dtype, std::vector<int64_t> &shape,
                 std::vector<char> &out, std::string &why) {
  if (int64_t(depth) == rank) {
    if (v.getAsArray())
      return why = "is nested deeper than the input (rank " +
                   std::to_string(rank) + " without the sample dimension)",
             false;
    char bytes[8] = {};
    if (dtype == QOPT_DTYPE_F32 || dtype == QOPT_DTYPE_F64) {
      std::optional<double> d = v.getAsNumber();
      if (!d)
        return why = "holds a non-number", false;
      if (dtype == QOPT_DTYPE_F32) {
        float f = float(*d);
        std::memcpy(bytes, &f, 4);
      } else {
        std::memcpy(bytes, &*d, 8);
      }
    } else if (dtype == QOPT_DTYPE_BOOL) {
      std::optional<bool> b = v.getAsBoolean();
      std::optional<int64_t> i = v.getAsInteger();
      if (!b && !i)
        return why = "holds a non-boolean", false;
      bytes[0] = b ? char(*b) : char(*i != 0);
    } else {
      std::optional<int64_t> i = v.getAsInteger();
      if (!i)
        return why = "holds a non-integer", false;
      std::memcpy(bytes, &*i, qopt_dtype_size(dtype)); // little-endian
    }
    out.insert(out.end(), bytes, bytes + qopt_dtype_size(dtype));
    return true;
  }
  const llvm::json::Array *list = v.getAsArray();
  if (!list)
    return why = "is not a list of rank " + std::to_string(rank), false;
  if (shape.size() <= depth + 1)
    shape.push_back(int64_t(list->size()));
  else if (shape[depth + 1] != int64_t(list->size()))
    return why = "is ragged (lists of different lengths)", false;
  for (const llvm::json::Value &e : *list)
    if (!flattenJson(e, rank, depth + 1, dtype, shape, out, why))
      return false;
  return true;
}

/// A bar on stderr when it is a terminal, redrawn in place.
class Progress {
public:
  Progress(StringRef tool, size_t total, bool enabled)
      : tool(tool), total(total),
        enabled(enabled && llvm::sys::Process::StandardErrIsDisplayed()) {}
  void update(size_t done) {
    if (!enabled)
      return;
    size_t width = 30, filled = total ? done * width / total : width;
    llvm::errs() << "\r" << tool << ": [" << std::string(filled, '#')
                 << std::string(width - filled, ' ') << "] " << done << "/"
                 << total << " batches";
    if (done == total)
      llvm::errs() << "\n";
    llvm::errs().flush();
  }

private:
  std::string tool;
  size_t total;
  bool enabled;
};

} // namespace

LogicalResult mlir::qopt::computeActivationStats(
    ModuleOp module, StringRef dataPath, const ActivationStatsOptions &options,
    const CPUTargetOptions &target, StringRef workDir, StringRef statsPath) {
  Location loc = module.getLoc();
  auto start = std::chrono::steady_clock::now();
  auto fail = [&](const Twine &message) -> LogicalResult {
    return emitError(loc) << options.optionName << " " << dataPath << ": "
                          << message;
  };
  if (options.batchSize < 1)
    return emitError(loc) << options.batchSizeOption
                          << " must be at least 1, got " << options.batchSize;
  if (options.keepRows < 0)
    return emitError(loc) << "--keep-rows must be at least 0, got "
                          << options.keepRows;

  // The layers: every named linear layer (the output head included), or
  // the selection.
  std::vector<LinearLayer> layers = collectLinearLayers(module);
  std::optional<LoraTargets> selected;
  if (!options.modules.empty()) {
    llvm::Expected<LoraTargets> s =
        selectWeightLayers(options.modules, {}, layers);
    if (!s)
      return emitError(loc) << "--modules: " << llvm::toString(s.takeError());
    selected = std::move(*s);
  }
  std::vector<std::string> names;
  for (const LinearLayer &layer : layers)
    if (!layer.name.empty() && (!selected || selected->matches(layer.name)) &&
        !llvm::is_contained(names, layer.name))
      names.push_back(layer.name);
  if (names.empty())
    return emitError(loc) << "no named linear layer to calibrate"
                          << (selected ? " matches --modules" : "")
                          << " (qoptc --list-modules prints them)";

  // The probe: the model up to the layers, returning their inputs.
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
  CPUTargetOptions probeTarget = target;
  llvm::SmallString<256> probePath(workDir);
  llvm::sys::path::append(probePath, "stats-probe.so");
  probeTarget.outputPath = probePath.str().str();
  probeTarget.timing = false;
  probeTarget.dumpLLVMIR.clear();
  if (failed(compileForCPU(*probe, probeTarget)))
    return failure();
  qopt_model *raw = nullptr;
  if (qopt_model_load(probeTarget.outputPath.c_str(), &raw) != 0)
    return emitError(loc) << "cannot load the calibration probe: "
                          << qopt_last_error();
  ModelPtr model(raw);

  size_t numInputs = qopt_model_num_inputs(model.get());
  std::vector<qopt_tensor_info> infos(numInputs);
  std::vector<std::string> inputNames;
  for (size_t i = 0; i < numInputs; ++i) {
    qopt_model_input_info(model.get(), i, &infos[i]);
    inputNames.push_back(infos[i].name);
  }
  auto checkArray = [&](StringRef name, const npy::Array &array,
                        size_t i) -> std::optional<std::string> {
    if (npy::dtypeOf(array.descr) != infos[i].dtype ||
        int64_t(array.shape.size()) != infos[i].rank)
      return "'" + name.str() + "' is " + npy::formatShape(array.shape) +
             " of '" + array.descr + "'; the model input is rank " +
             std::to_string(infos[i].rank) + " of " +
             qopt_dtype_name(infos[i].dtype);
    return std::nullopt;
  };
  auto unknown = [&](StringRef name) {
    return "'" + name.str() + "' is not an input of the model (its inputs: " +
           llvm::join(inputNames, ", ") + ")";
  };

  // The samples, as batches over the arrays of an .npz (first dimension:
  // samples) or one sample per line of a .jsonl (each line an object of
  // the inputs without their sample dimension, so lengths may differ).
  std::vector<std::pair<std::string, npy::Array>> arrays;
  std::vector<std::vector<npy::Array>> lines;
  std::vector<size_t> lineNumbers;
  std::vector<Batch> batches;
  std::string why;
  auto maskOf = [&](const std::vector<const npy::Array *> &feeds, int64_t lo,
                    int64_t count, std::vector<char> &keep) {
    auto it = llvm::find(inputNames, "attention_mask");
    if (it == inputNames.end())
      return;
    const npy::Array &m = *feeds[it - inputNames.begin()];
    if (m.shape.size() != 2)
      return;
    int64_t tokens = m.shape[1];
    keep.resize(size_t(count * tokens));
    for (int64_t j = 0; j < count * tokens; ++j)
      keep[size_t(j)] = nonzeroAt(m, size_t(lo * tokens + j));
  };
  if (dataPath.ends_with(".jsonl")) {
    auto file = llvm::MemoryBuffer::getFile(dataPath);
    if (!file)
      return fail(file.getError().message());
    SmallVector<StringRef> text;
    (*file)->getBuffer().split(text, '\n', -1, /*KeepEmpty=*/true);
    for (auto [index, line] : llvm::enumerate(text)) {
      if (line.trim().empty())
        continue;
      std::string where = "line " + std::to_string(index + 1);
      llvm::Expected<llvm::json::Value> value = llvm::json::parse(line);
      if (!value)
        return fail(where + ": " + llvm::toString(value.takeError()));
      const llvm::json::Object *object = value->getAsObject();
      if (!object)
        return fail(where + ": not a JSON object of the model's inputs");
      std::vector<npy::Array> sample(numInputs);
      std::vector<char> seen(numInputs, 0);
      for (const auto &[key, v] : *object) {
        auto it = llvm::find(inputNames, key.str());
        if (it == inputNames.end())
          return fail(where + ": " + unknown(key));
        size_t i = it - inputNames.begin();
        npy::Array &a = sample[i];
        const char *descr = npy::descrOf(infos[i].dtype);
        if (!descr)
          return fail(where + ": input '" + key.str() + "' is " +
                      qopt_dtype_name(infos[i].dtype) +
                      ", which JSON lines cannot give");
        a.descr = descr;
        a.shape = {1};
        if (!flattenJson(v, infos[i].rank - 1, 0, infos[i].dtype, a.shape,
                         a.data, why))
          return fail(where + ": '" + key.str() + "' " + why);
        if (int64_t(a.shape.size()) != infos[i].rank)
          return fail(where + ": '" + key.str() + "' is an empty list where " +
                      "the input has rank " + std::to_string(infos[i].rank) +
                      " (with the sample dimension)");
        seen[i] = 1;
      }
      for (size_t i = 0; i < numInputs; ++i)
        if (!seen[i])
          return fail(where + ": no '" + inputNames[i] +
                      "' for the model's input");
      lines.push_back(std::move(sample));
      lineNumbers.push_back(index + 1);
    }
    for (size_t l = 0; l < lines.size(); ++l) {
      Batch b;
      b.first = int64_t(l);
      b.count = 1;
      b.where = "line " + std::to_string(lineNumbers[l]);
      for (const npy::Array &a : lines[l])
        b.arrays.push_back(&a);
      maskOf(b.arrays, 0, 1, b.keep);
      batches.push_back(std::move(b));
    }
  } else {
    if (!npy::readNpz(dataPath.str(), arrays, why))
      return fail(why);
    std::vector<const npy::Array *> feeds(numInputs);
    int64_t samples = -1;
    for (const auto &[name, array] : arrays) {
      auto it = llvm::find(inputNames, name);
      if (it == inputNames.end()) {
        if (name == "labels") // a training set's; not an input here
          continue;
        return fail("array " + unknown(name));
      }
      if (array.shape.empty())
        return fail("array '" + name +
                    "' is a scalar; the first dimension counts samples");
      if (samples >= 0 && array.shape[0] != samples)
        return fail("array '" + name + "' has " +
                    std::to_string(array.shape[0]) + " samples, the others " +
                    std::to_string(samples));
      samples = array.shape[0];
      size_t i = it - inputNames.begin();
      if (std::optional<std::string> bad = checkArray(name, array, i))
        return fail("array " + *bad);
      feeds[i] = &array;
    }
    for (size_t i = 0; i < numInputs; ++i)
      if (!feeds[i])
        return fail("no array '" + inputNames[i] + "' for the model's input");
    for (int64_t lo = 0; lo < samples; lo += options.batchSize) {
      Batch b;
      b.first = b.offset = lo;
      b.count = std::min(samples, lo + options.batchSize) - lo;
      b.arrays = feeds;
      maskOf(feeds, lo, b.count, b.keep);
      batches.push_back(std::move(b));
    }
  }
  if (batches.empty())
    return fail("holds no samples");

  // Per layer: the absmax of each input channel over every kept token, and
  // the first keepRows kept rows.
  size_t numOutputs = qopt_model_num_outputs(model.get());
  if (numOutputs != names.size())
    return emitError(loc) << "the calibration probe returns " << numOutputs
                          << " tensors for " << names.size() << " layers";
  std::vector<std::vector<float>> absmax(names.size());
  std::vector<std::vector<float>> rows(names.size());
  std::vector<int64_t> width(names.size(), -1), keptRows(names.size(), 0);
  int64_t samples = 0, tokens = 0;
  Progress progress(options.toolName, batches.size(), options.progress);
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const Batch &b = batches[bi];
    std::string range = !b.where.empty()
                            ? b.where
                            : "calibration samples " + std::to_string(b.first) +
                                  ".." + std::to_string(b.first + b.count - 1);
    std::vector<qopt_tensor> in(numInputs);
    for (size_t i = 0; i < numInputs; ++i) {
      const npy::Array &a = *b.arrays[i];
      qopt_tensor &t = in[i];
      t.dtype = infos[i].dtype;
      t.rank = infos[i].rank;
      size_t rowBytes = a.data.size() / size_t(a.shape[0]);
      for (int32_t d = 0; d < t.rank; ++d)
        t.shape[d] = d == 0 ? b.count : a.shape[d];
      t.data = const_cast<char *>(a.data.data()) + size_t(b.offset) * rowBytes;
    }
    std::vector<qopt_tensor> out(numOutputs);
    if (qopt_model_run(model.get(), in.data(), numInputs, out.data(),
                       numOutputs) != 0)
      return fail(range + ": " + qopt_last_error());
    llvm::scope_exit freeAll([&] {
      for (qopt_tensor &t : out)
        qopt_tensor_free(&t);
    });
    int64_t kept = -1;
    for (size_t l = 0; l < numOutputs; ++l) {
      qopt_tensor &t = out[l];
      int64_t numel = 1;
      for (int32_t d = 0; d < t.rank; ++d)
        numel *= t.shape[d];
      int64_t cols = t.rank ? t.shape[t.rank - 1] : 1;
      int64_t n = cols ? numel / cols : 0;
      std::optional<dense::FloatKind> kind;
      if (t.dtype == QOPT_DTYPE_F32)
        kind = dense::FloatKind::F32;
      else if (t.dtype == QOPT_DTYPE_F16)
        kind = dense::FloatKind::F16;
      else if (t.dtype == QOPT_DTYPE_BF16)
        kind = dense::FloatKind::BF16;
      else if (t.dtype == QOPT_DTYPE_F64)
        kind = dense::FloatKind::F64;
      if (!kind)
        return fail("module '" + names[l] + "' takes " +
                    qopt_dtype_name(t.dtype) + " inputs, not floats");
      bool masked = !b.keep.empty() && n == int64_t(b.keep.size());
      std::vector<float> x(static_cast<size_t>(numel));
      dense::decodeFloats(*kind, t.data, size_t(numel), x.data());
      if (width[l] < 0) {
        width[l] = cols;
        absmax[l].assign(size_t(cols), 0.0f);
      } else if (width[l] != cols) {
        return fail(range + ": module '" + names[l] + "' sees " +
                    std::to_string(cols) + " features, before " +
                    std::to_string(width[l]));
      }
      int64_t keptHere = 0;
      for (int64_t r = 0; r < n; ++r) {
        if (masked && !b.keep[size_t(r)])
          continue;
        ++keptHere;
        const float *row = &x[size_t(r * cols)];
        for (int64_t c = 0; c < cols; ++c) {
          if (!std::isfinite(row[c]))
            return fail(range + ": module '" + names[l] +
                        "' sees a non-finite input");
          absmax[l][size_t(c)] =
              std::max(absmax[l][size_t(c)], std::fabs(row[c]));
        }
        if (int64_t(rows[l].size()) < options.keepRows * cols)
          rows[l].insert(rows[l].end(), row, row + cols);
      }
      kept = std::max(kept, keptHere);
      keptRows[l] += keptHere;
    }
    samples += b.count;
    tokens += std::max<int64_t>(kept, 0);
    progress.update(bi + 1);
  }

  for (size_t l = 0; l < names.size(); ++l)
    if (keptRows[l] == 0)
      return fail("module '" + names[l] +
                  "' saw no token: the attention_mask keeps none");
  // Fisher diagonals from a gradient probe over the same samples.
  std::vector<std::string> fisherNames;
  std::vector<dense::Matrix> fisher;
  if (options.fisher) {
    if (!lines.empty())
      return fail("Fisher diagonals need an .npz (with labels, or input ids "
                  "and an attention mask): the gradient probe runs batches "
                  "of one shape");
    if (failed(computeFisherDiagonals(module, names, options.optionName,
                                      dataPath, options.batchSize, target,
                                      workDir, fisherNames, fisher)))
      return failure();
  }
  // The file: safetensors, with what it was computed from in the metadata.
  std::vector<SafetensorsF32> tensors;
  for (size_t l = 0; l < fisherNames.size(); ++l)
    tensors.push_back({fisherNames[l] + ".weight",
                       {fisher[l].rows, fisher[l].cols},
                       &fisher[l].data});
  for (size_t l = 0; l < names.size(); ++l) {
    tensors.push_back({names[l] + ".input_absmax", {width[l]}, &absmax[l]});
    if (options.keepRows > 0)
      tensors.push_back(
          {names[l] + ".input_rows",
           {int64_t(rows[l].size()) / std::max<int64_t>(width[l], 1), width[l]},
           &rows[l]});
  }
  std::vector<std::pair<std::string, std::string>> metadata = {
      {"format", "qopt-stats"},
      {"version", "1"},
      {"data", llvm::sys::path::filename(dataPath).str()},
      {"samples", std::to_string(samples)},
      {"tokens", std::to_string(tokens)}};
  std::error_code ec;
  // Written whole or not at all: a temporary file renamed into place.
  llvm::SmallString<256> partial(statsPath);
  partial += ".partial";
  {
    llvm::raw_fd_ostream os(partial, ec);
    if (!ec) {
      os << encodeF32Safetensors(tensors, metadata);
      os.close();
      if (os.has_error()) {
        ec = os.error();
        os.clear_error();
      }
    }
  }
  if (!ec)
    ec = llvm::sys::fs::rename(partial, statsPath);
  if (ec) {
    llvm::sys::fs::remove(partial);
    return emitError(loc) << "cannot write " << statsPath << ": "
                          << ec.message();
  }
  if (options.summary)
    llvm::errs() << options.toolName << ": " << names.size() << " layers over "
                 << samples << " samples (" << tokens << " tokens) in "
                 << llvm::format("%.1f",
                                 std::chrono::duration<double>(
                                     std::chrono::steady_clock::now() - start)
                                     .count())
                 << " s -> " << statsPath << "\n";
  return success();
}
