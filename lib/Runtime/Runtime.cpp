//===- Runtime.cpp - Load and run models compiled by qoptc ----------------===//
//
// A model is model.so (entry `qopt_run_checked`, manifest `qopt_manifest`)
// plus the safetensors weights file its manifest names. The weights are
// memory-mapped read-only and handed to the entry as memref descriptors;
// inputs likewise, without copies. Outputs come back as buffers the model
// allocated, which the caller then owns.
//
//===----------------------------------------------------------------------===//

#include "qopt/Runtime/Runtime.h"

#include "Json.h"
#include "ModelFile.h"
#include "qopt/Support/CompiledModel.h"
#include "qopt/Support/DenseMath.h"
#include "qopt/Support/PeftConfig.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

using qopt::runtime::json::Value;

namespace {
thread_local std::string lastError;

int fail(std::string message) {
  lastError = std::move(message);
  return 1;
}

namespace cm = qopt::compiled_model;
namespace key = qopt::compiled_model::manifest;

// The format header numbers dtypes as the C API does.
static_assert(QOPT_DTYPE_F32 == 1 && QOPT_DTYPE_BOOL == 13 &&
                  sizeof(cm::kDTypes) / sizeof(cm::kDTypes[0]) == 13,
              "qopt_dtype and qopt/Support/CompiledModel.h disagree");

struct TensorSpec {
  std::string name;
  qopt_dtype dtype = QOPT_DTYPE_INVALID;
  std::vector<int64_t> shape;        // -1: dynamic
  std::vector<std::string> dimNames; // "" where unnamed
};

struct ParamSpec {
  TensorSpec tensor;
  uint64_t offset = 0, length = 0;
  qopt_param_role role = QOPT_PARAM_FROZEN;
  /// Mutable parameters: the runtime's own copy (aligned_alloc), which a
  /// run's update replaces; null for frozen ones (in the mapped file). A
  /// CUDA model's parameters, frozen ones too: their copies in its pool.
  char *owned = nullptr;
};

std::string shapeString(const int64_t *shape, size_t rank,
                        const std::vector<std::string> *names = nullptr) {
  std::string s = "[";
  for (size_t i = 0; i < rank; ++i) {
    if (i)
      s += ", ";
    if (shape[i] >= 0)
      s += std::to_string(shape[i]);
    else if (names && i < names->size() && !(*names)[i].empty())
      s += (*names)[i];
    else
      s += "?";
  }
  return s + "]";
}

/// Reads one tensor description of the manifest.
bool readSpec(const Value &v, TensorSpec &spec, std::string &error) {
  const Value *name = v.get(key::kName), *dtype = v.get(key::kDType),
              *shape = v.get(key::kShape), *dims = v.get(key::kDims);
  if (v.kind != Value::Object || !name || name->kind != Value::String ||
      !dtype || dtype->kind != Value::String || !shape ||
      shape->kind != Value::Array) {
    error = "a tensor entry lacks its name, dtype or shape";
    return false;
  }
  spec.name = name->string;
  spec.dtype = qopt_dtype_from_name(dtype->string.c_str());
  if (spec.dtype == QOPT_DTYPE_INVALID) {
    error = "'" + spec.name + "' has unknown dtype '" + dtype->string + "'";
    return false;
  }
  if (shape->array.size() > QOPT_MAX_RANK) {
    error = "'" + spec.name + "' has too many dimensions";
    return false;
  }
  for (const Value &d : shape->array) {
    if (d.kind != Value::Number || !d.isInteger || d.integer < -1) {
      error = "'" + spec.name + "' has a malformed shape";
      return false;
    }
    spec.shape.push_back(d.integer);
  }
  spec.dimNames.assign(spec.shape.size(), "");
  if (dims && dims->kind == Value::Array)
    for (size_t i = 0; i < dims->array.size() && i < spec.shape.size(); ++i)
      if (dims->array[i].kind == Value::String)
        spec.dimNames[i] = dims->array[i].string;
  return true;
}

/// A memref descriptor: allocated, aligned, offset, sizes[r], strides[r].
std::vector<int64_t> descriptor(void *data, const int64_t *shape, size_t rank) {
  std::vector<int64_t> d(3 + 2 * rank);
  d[0] = d[1] = static_cast<int64_t>(reinterpret_cast<intptr_t>(data));
  d[2] = 0;
  int64_t stride = 1;
  for (size_t i = rank; i-- > 0;) {
    d[3 + i] = shape[i];
    d[3 + rank + i] = stride;
    stride *= shape[i];
  }
  return d;
}

/// Whether the memref described by `d` is its allocation itself: no offset,
/// row-major contiguous, the aligned pointer the allocated one (so the
/// buffer can be handed out and later freed).
bool isPlainArray(const int64_t *d, size_t rank) {
  if (d[2] != 0 || d[0] != d[1])
    return false;
  int64_t stride = 1;
  for (size_t k = rank; k-- > 0;) {
    if (d[3 + k] != 1 && d[3 + rank + k] != stride)
      return false;
    stride *= d[3 + k];
  }
  return true;
}

/// Copies the elements of the memref described by `d` (allocated, aligned,
/// offset, sizes[rank], strides[rank]) row-major and contiguous into `out`.
void gatherDense(const int64_t *d, size_t rank, size_t elementSize, char *out) {
  const char *base = reinterpret_cast<const char *>(d[1]) + d[2] * elementSize;
  int64_t count = 1;
  for (size_t k = 0; k < rank; ++k)
    count *= d[3 + k];
  std::vector<int64_t> index(rank, 0);
  for (int64_t e = 0; e < count; ++e) {
    int64_t off = 0;
    for (size_t k = 0; k < rank; ++k)
      off += index[k] * d[3 + rank + k];
    std::memcpy(out + e * elementSize, base + off * elementSize, elementSize);
    for (size_t k = rank; k-- > 0;) {
      if (++index[k] < d[3 + k])
        break;
      index[k] = 0;
    }
  }
}

/// numel of `shape`, or -1 when its byte size would overflow.
int64_t checkedBytes(const int64_t *shape, size_t rank, size_t elementSize) {
  __int128 bytes = elementSize;
  for (size_t i = 0; i < rank; ++i) {
    bytes *= shape[i];
    if (bytes > (static_cast<__int128>(1) << 62))
      return -1;
  }
  return static_cast<int64_t>(bytes);
}
} // namespace

struct qopt_model {
  void *library = nullptr;
  /// A model compiled for CUDA: its buffers (parameters, inputs, results)
  /// live in the CUDA host library's memory pool (managed memory the host
  /// can read after the run's synchronization).
  bool cuda = false;
  /// The manifest's PTX architecture number (80 for sm_80) and cubins.
  int cudaPTXArch = 0;
  std::string cudaArchs;
  void *(*cudaAlloc)(size_t) = nullptr;
  void (*cudaFree)(void *) = nullptr;
  int (*cudaSynchronize)() = nullptr;
  const char *(*cudaDeviceName)() = nullptr;
  void (*cudaPoolInfo)(size_t *, size_t *) = nullptr;
  void (*cudaPrefetch)(const void *, size_t) = nullptr; // (optional)
  /// CUDA graphs (optional, all or none): see kCUDAPeakResetSymbol.
  void (*cudaPeakReset)() = nullptr;
  size_t (*cudaPeakBytes)() = nullptr;
  int (*cudaCaptureBegin)(size_t) = nullptr;
  void *(*cudaCaptureEnd)(int) = nullptr;
  int (*cudaGraphLaunch)(void *) = nullptr;
  void (*cudaGraphDestroy)(void *) = nullptr;
  int (*cudaCopy)(void *, const void *, size_t) = nullptr;
  /// Whether runs of entries marked cuda_graph are captured and replayed
  /// (the driver can, and QOPT_CUDA_GRAPHS is not 0).
  bool cudaGraphs = false;
  /// A buffer where the model's code reads it: the host heap, or the pool.
  void *allocate(size_t bytes) {
    return cuda ? cudaAlloc(bytes)
                : std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  }
  void release(void *p) {
    if (cuda && cudaFree)
      cudaFree(p);
    else
      std::free(p);
  }
  void (*setThreads)(int) = nullptr;
  const char *(*cpuName)() = nullptr;
  const char *(*cpuPath)() = nullptr;
  const char *(*f32Path)() = nullptr;
  void (*loopCounts)(int64_t *, int64_t *) = nullptr;
  void (*releaseConstant)(const void *, int64_t) = nullptr;
  std::string cpuKernels;
  std::string manifestText;
  std::vector<TensorSpec> inputs;
  std::vector<ParamSpec> params;
  void *weights = nullptr;
  size_t weightsSize = 0;
  std::vector<std::vector<int64_t>> paramDescriptors;
  /// The entry points (one, "forward", unless the manifest lists several);
  /// all take the inputs, the parameters and the key.
  struct Entry {
    std::string name;
    std::string symbol;
    int (*fn)(void **, const char **) = nullptr;
    std::vector<TensorSpec> outputs;
    /// Indices (into params) of the parameters the results after the
    /// outputs update.
    std::vector<size_t> updates;
    /// Its host code touches only host memory: its launches may be
    /// captured once per input shapes and replayed (a CUDA model).
    bool graph = false;
  };
  std::vector<Entry> entries;
  /// A CUDA entry's graph: the input shapes it was captured for (or that
  /// the last run had), the pool use of that run, and once captured, the
  /// graph, the pool buffers it reads (inputs, then the random key and the
  /// status word where the model takes them) and their descriptors, the
  /// captured run's result descriptors and the parameter buffers it read.
  struct Graph {
    std::vector<std::vector<int64_t>> shapes;
    bool measured = false, refused = false;
    size_t peak = 0;
    void *exec = nullptr;
    std::vector<void *> buffers;
    std::vector<std::vector<int64_t>> descriptors;
    std::vector<int64_t> results;
    std::vector<size_t> offsets; // where each result's descriptor starts
    std::vector<int64_t> params;
  };
  std::vector<Graph> graphs; // per entry
  /// Gives entry `i`'s graph and its buffers back (the shapes it was for
  /// are kept: the next run of those shapes captures again).
  void dropGraph(size_t i) {
    Graph &g = graphs[i];
    if (g.exec)
      cudaGraphDestroy(g.exec);
    for (void *p : g.buffers)
      release(p);
    g.exec = nullptr;
    g.buffers.clear();
    g.descriptors.clear();
    g.results.clear();
    g.offsets.clear();
    g.params.clear();
    g.measured = false;
  }
  /// The random key [seed, counter] and its descriptor, when the model
  /// takes one.
  bool usesRNG = false;
  int64_t rngKey[2] = {0, 0};
  std::vector<int64_t> rngDescriptor;
  /// Range checks the model makes on the device (manifest `checks`): when
  /// there are any, every entry takes a status word last and the run failed
  /// with checks[s - 1] when it holds s != 0 afterwards.
  std::vector<std::string> deviceChecks;
  /// Runs of a model with state (updates, a random key) change the model:
  /// they, and reads and writes of its state, take turns. Runs of other
  /// models only read it and may overlap.
  std::mutex stateMutex;
  /// Run-time adapter slots: module, rank, indices of lora_a and lora_b.
  struct LoraSlot {
    std::string module;
    int64_t rank = 0;
    size_t a = 0, b = 0;
  };
  std::vector<LoraSlot> loraSlots;
  /// An entry updates parameters (a train step).
  bool updatesParameters() const {
    return std::any_of(entries.begin(), entries.end(),
                       [](const Entry &e) { return !e.updates.empty(); });
  }
  bool hasState() const {
    return usesRNG || !loraSlots.empty() || updatesParameters();
  }

  ~qopt_model() {
    for (size_t i = 0; i < graphs.size(); ++i)
      dropGraph(i);
    for (ParamSpec &p : params)
      release(p.owned);
    // A CUDA model's pool, kernels and context go back to the driver.
    if (cuda && library)
      if (auto shutdown = reinterpret_cast<void (*)()>(
              dlsym(library, cm::kCUDAShutdownSymbol)))
        shutdown();
    if (weights && releaseConstant)
      releaseConstant(weights, int64_t(weightsSize));
    if (weights)
      munmap(weights, weightsSize);
    if (library)
      dlclose(library);
  }
};

extern "C" {

const char *qopt_last_error(void) { return lastError.c_str(); }

const char *qopt_dtype_name(qopt_dtype dtype) {
  const cm::DType *d = cm::findDType(static_cast<int>(dtype));
  return d ? d->name : "invalid";
}

size_t qopt_dtype_size(qopt_dtype dtype) {
  const cm::DType *d = cm::findDType(static_cast<int>(dtype));
  return d ? d->bytes : 0;
}

qopt_dtype qopt_dtype_from_name(const char *name) {
  const cm::DType *d = name ? cm::findDType(name) : nullptr;
  return d ? static_cast<qopt_dtype>(d->code) : QOPT_DTYPE_INVALID;
}

/// Whether this machine has the instruction-set extension `feature` (one
/// of kCPUFeatures). QOPT_RUNTIME_CPU_FEATURES, a comma-separated list,
/// stands in for the detected set: it emulates an older CPU (tests use it).
static bool machineHas(const std::string &feature) {
  if (const char *list = std::getenv("QOPT_RUNTIME_CPU_FEATURES")) {
    std::string all = std::string(",") + list + ",";
    return all.find("," + feature + ",") != std::string::npos;
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  const std::pair<const char *, bool> detected[] = {
      {"sse4.2", __builtin_cpu_supports("sse4.2")},
      {"avx", __builtin_cpu_supports("avx")},
      {"avx2", __builtin_cpu_supports("avx2")},
      {"fma", __builtin_cpu_supports("fma")},
      {"f16c", __builtin_cpu_supports("f16c")},
      {"bmi", __builtin_cpu_supports("bmi")},
      {"bmi2", __builtin_cpu_supports("bmi2")},
      {"avx512f", __builtin_cpu_supports("avx512f")},
      {"avx512bw", __builtin_cpu_supports("avx512bw")},
      {"avx512dq", __builtin_cpu_supports("avx512dq")},
      {"avx512vl", __builtin_cpu_supports("avx512vl")},
      {"avx512cd", __builtin_cpu_supports("avx512cd")},
      {"avx512vnni", __builtin_cpu_supports("avx512vnni")},
      {"avx512bf16", __builtin_cpu_supports("avx512bf16")},
      {"avx512fp16", __builtin_cpu_supports("avx512fp16")},
  };
  static_assert(sizeof(detected) / sizeof(detected[0]) ==
                    sizeof(cm::kCPUFeatures) / sizeof(cm::kCPUFeatures[0]),
                "every feature the compiler may list is checked");
  for (const auto &[name, has] : detected)
    if (feature == name)
      return has;
#endif
  return false; // unknown here: treat as missing
}

/// Refuses a model whose code uses instructions this CPU lacks (it would
/// die of SIGILL in the middle of a run).
static int checkCPUFeatures(const Value &root, const std::string &path) {
  const Value *features = root.get(key::kCPUFeatures);
  if (!features) // models from before the list was recorded
    return 0;
  if (features->kind != Value::Array)
    return fail(path + ": malformed manifest ('" + key::kCPUFeatures +
                "' is not a list)");
  std::string missing;
  for (const Value &f : features->array) {
    if (f.kind != Value::String)
      return fail(path + ": malformed manifest ('" + key::kCPUFeatures +
                  "' holds a non-string)");
    if (!machineHas(f.string))
      missing += (missing.empty() ? "" : ", ") + f.string;
  }
  if (missing.empty())
    return 0;
  const Value *cpu = root.get(key::kCPU);
  std::string cpuName =
      cpu && cpu->kind == Value::String ? cpu->string : "unknown";
  return fail(path + ": compiled for CPU '" + cpuName + "' and uses " +
              missing +
              ", which this machine lacks; recompile it here (qoptc --cpu "
              "host) or for a CPU this machine has (e.g. --cpu x86-64-v2)");
}

static int loadManifest(qopt_model &m, const std::string &path) {
  Value root;
  std::string error;
  if (!qopt::runtime::json::parse(m.manifestText.data(), m.manifestText.size(),
                                  root, error))
    return fail(path + ": the embedded manifest is not valid JSON: " + error);
  const Value *format = root.get(key::kFormat),
              *abi = root.get(key::kABIVersion);
  if (!format || format->kind != Value::String ||
      format->string != key::kFormatValue)
    return fail(path + ": not a qopt model (manifest format)");
  if (!abi || !abi->isInteger || abi->integer != cm::kABIVersion)
    return fail(path + ": manifest ABI version is not " +
                std::to_string(cm::kABIVersion) +
                "; recompile the model with this qopt");
  const Value *target = root.get(key::kTarget);
  if (!target || target->kind != Value::String ||
      (target->string != key::kCPU && target->string != key::kCUDA))
    return fail(path + ": malformed manifest: unknown target");
  if (target->string == key::kCUDA) {
    const Value *cuda = root.get(key::kCUDA);
    const Value *archs = cuda ? cuda->get(key::kArchs) : nullptr;
    const Value *ptx = cuda ? cuda->get(key::kPTX) : nullptr;
    if (!archs || archs->kind != Value::Array || !ptx ||
        ptx->kind != Value::String || ptx->string.rfind("sm_", 0) != 0)
      return fail(path + ": malformed manifest: a CUDA model without its "
                         "architectures");
    m.cuda = true;
    m.cudaPTXArch = std::atoi(ptx->string.c_str() + 3);
    for (const Value &a : archs->array)
      if (a.kind == Value::String)
        m.cudaArchs += (m.cudaArchs.empty() ? "" : ", ") + a.string;
  }
  if (int rc = checkCPUFeatures(root, path))
    return rc;
  auto readList = [&](const char *key, std::vector<TensorSpec> &out) -> bool {
    const Value *list = root.get(key);
    if (!list || list->kind != Value::Array) {
      error = std::string("no '") + key + "' list";
      return false;
    }
    for (const Value &v : list->array) {
      out.emplace_back();
      if (!readSpec(v, out.back(), error))
        return false;
    }
    return true;
  };
  std::vector<TensorSpec> params;
  m.entries.emplace_back();
  m.entries[0].name = "forward";
  m.entries[0].symbol = cm::kEntrySymbol;
  if (!readList(key::kInputs, m.inputs) ||
      !readList(key::kOutputs, m.entries[0].outputs) ||
      !readList(key::kParameters, params))
    return fail(path + ": malformed manifest: " + error);
  const Value *list = root.get(key::kParameters);
  for (size_t i = 0; i < params.size(); ++i) {
    const Value *offset = list->array[i].get(key::kOffset),
                *length = list->array[i].get(key::kLength);
    if (!offset || !offset->isInteger || offset->integer < 0 || !length ||
        !length->isInteger || length->integer < 0)
      return fail(path + ": malformed manifest: parameter '" + params[i].name +
                  "' lacks its offset or length");
    for (int64_t d : params[i].shape)
      if (d < 0)
        return fail(path + ": malformed manifest: parameter '" +
                    params[i].name + "' has a dynamic shape");
    ParamSpec p;
    p.tensor = params[i];
    p.offset = static_cast<uint64_t>(offset->integer);
    p.length = static_cast<uint64_t>(length->integer);
    const Value *role = list->array[i].get(key::kRole);
    if (!role || role->kind != Value::String)
      return fail(path + ": malformed manifest: parameter '" + params[i].name +
                  "' has no role");
    if (role->string == key::kTrainable)
      p.role = QOPT_PARAM_TRAINABLE;
    else if (role->string == key::kState)
      p.role = QOPT_PARAM_STATE;
    else if (role->string != key::kFrozen)
      return fail(path + ": malformed manifest: parameter '" + params[i].name +
                  "' has unknown role '" + role->string + "'");
    int64_t bytes = checkedBytes(p.tensor.shape.data(), p.tensor.shape.size(),
                                 qopt_dtype_size(p.tensor.dtype));
    if (bytes < 0 || static_cast<uint64_t>(bytes) != p.length)
      return fail(path + ": malformed manifest: parameter '" + p.tensor.name +
                  "' has " + std::to_string(p.length) + " bytes for shape " +
                  shapeString(p.tensor.shape.data(), p.tensor.shape.size()));
    m.params.push_back(std::move(p));
  }
  const Value *updates = root.get(key::kUpdates);
  const Value *rng = root.get(key::kRNGKey);
  if (!updates || updates->kind != Value::Array || !rng ||
      rng->kind != Value::Bool)
    return fail(path + ": malformed manifest: no 'updates' list or "
                       "'rng_key' flag");
  auto readUpdates = [&](const Value &list, std::vector<size_t> &out) {
    for (const Value &name : list.array) {
      auto it = std::find_if(
          m.params.begin(), m.params.end(), [&](const ParamSpec &p) {
            return name.kind == Value::String && p.tensor.name == name.string;
          });
      if (it == m.params.end() || it->role == QOPT_PARAM_FROZEN)
        return false;
      out.push_back(static_cast<size_t>(it - m.params.begin()));
    }
    return true;
  };
  if (!readUpdates(*updates, m.entries[0].updates))
    return fail(path + ": malformed manifest: an update names no mutable "
                       "parameter");
  // Further entry points: name, symbol, outputs and updates each.
  if (const Value *list = root.get(key::kEntries)) {
    if (list->kind != Value::Array || list->array.empty())
      return fail(path + ": malformed manifest: 'entries' is not a list");
    for (size_t i = 0; i < list->array.size(); ++i) {
      const Value &v = list->array[i];
      const Value *name = v.get(key::kName), *symbol = v.get(key::kSymbol),
                  *outs = v.get(key::kOutputs), *ups = v.get(key::kUpdates);
      if (!name || name->kind != Value::String || !symbol ||
          symbol->kind != Value::String || !outs ||
          outs->kind != Value::Array || !ups || ups->kind != Value::Array ||
          (i == 0 && symbol->string != cm::kEntrySymbol))
        return fail(path + ": malformed manifest: entry #" + std::to_string(i) +
                    " lacks its name, symbol, outputs or updates");
      const Value *graph = v.get(key::kCUDAGraph);
      if (i == 0) {
        m.entries[0].name = name->string;
        m.entries[0].graph =
            graph && graph->kind == Value::Bool && graph->boolean;
        continue;
      }
      qopt_model::Entry e;
      e.name = name->string;
      e.symbol = symbol->string;
      e.graph = graph && graph->kind == Value::Bool && graph->boolean;
      for (const Value &o : outs->array) {
        e.outputs.emplace_back();
        if (!readSpec(o, e.outputs.back(), error))
          return fail(path + ": malformed manifest: entry '" + e.name +
                      "': " + error);
      }
      if (!readUpdates(*ups, e.updates))
        return fail(path + ": malformed manifest: an update of entry '" +
                    e.name + "' names no mutable parameter");
      m.entries.push_back(std::move(e));
    }
  }
  m.usesRNG = rng->boolean;
  if (const Value *graph = root.get(key::kCUDAGraph))
    m.entries[0].graph = graph->kind == Value::Bool && graph->boolean;
  if (const Value *checks = root.get(key::kChecks)) {
    if (checks->kind != Value::Array || checks->array.empty())
      return fail(path + ": malformed manifest: 'checks' is not a list of "
                         "messages");
    for (const Value &message : checks->array) {
      if (message.kind != Value::String)
        return fail(path + ": malformed manifest: 'checks' is not a list of "
                           "messages");
      m.deviceChecks.push_back(message.string);
    }
  }
  if (const Value *slots = root.get(key::kLoraSlots)) {
    if (slots->kind != Value::Array)
      return fail(path + ": malformed manifest: 'lora_slots' is not a list");
    // The parameter `name` names, if it is a mutable 2-D f32 one.
    auto slotParam = [&](const Value *name) -> const ParamSpec * {
      auto it = std::find_if(m.params.begin(), m.params.end(),
                             [&](const ParamSpec &p) {
                               return name && name->kind == Value::String &&
                                      p.tensor.name == name->string;
                             });
      if (it == m.params.end() || it->role == QOPT_PARAM_FROZEN ||
          it->tensor.dtype != QOPT_DTYPE_F32 || it->tensor.shape.size() != 2)
        return nullptr;
      return &*it;
    };
    for (const Value &v : slots->array) {
      const Value *module = v.get(key::kModule), *rank = v.get(key::kRank);
      const ParamSpec *a = slotParam(v.get(key::kLoraA)),
                      *b = slotParam(v.get(key::kLoraB));
      if (!module || module->kind != Value::String || !rank ||
          !rank->isInteger || rank->integer <= 0 || !a || !b ||
          a->tensor.shape[0] != rank->integer ||
          b->tensor.shape[1] != rank->integer)
        return fail(path + ": malformed manifest: a LoRA slot is not a "
                           "module with f32 mutable lora_a / lora_b "
                           "parameters of its rank");
      m.loraSlots.push_back({module->string, rank->integer,
                             static_cast<size_t>(a - m.params.data()),
                             static_cast<size_t>(b - m.params.data())});
    }
  }

  // The weights file, next to the library.
  const Value *weights = root.get(key::kWeights);
  const Value *file = weights ? weights->get(key::kFile) : nullptr;
  const Value *id = weights ? weights->get(key::kId) : nullptr;
  const Value *size = weights ? weights->get(key::kSize) : nullptr;
  if (!file || file->kind != Value::String || !id ||
      id->kind != Value::String || !size || !size->isInteger)
    return fail(path + ": malformed manifest: no weights entry");
  if (file->string.empty() || file->string.find('/') != std::string::npos ||
      file->string == "." || file->string == "..")
    return fail(path + ": malformed manifest: weights file '" + file->string +
                "' is not a plain file name");
  std::string folder = path.substr(0, path.find_last_of('/') + 1);
  std::string weightsPath = folder + file->string;
  int fd = open(weightsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail("cannot open the weights file '" + weightsPath +
                "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fail("'" + weightsPath + "' is not a regular file");
  }
  if (static_cast<int64_t>(st.st_size) != size->integer) {
    close(fd);
    return fail("'" + weightsPath + "' holds " + std::to_string(st.st_size) +
                " bytes but the model expects " +
                std::to_string(size->integer) +
                ": it belongs to another compilation");
  }
  m.weightsSize = static_cast<size_t>(st.st_size);
  if (m.weightsSize) {
    m.weights = mmap(nullptr, m.weightsSize, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m.weights == MAP_FAILED) {
      m.weights = nullptr;
      close(fd);
      return fail("cannot map '" + weightsPath + "': " + std::strerror(errno));
    }
  }
  close(fd);
  // The safetensors header must carry this compilation's id.
  const char *bytes = static_cast<const char *>(m.weights);
  uint64_t headerSize = 0;
  if (m.weightsSize >= 8)
    std::memcpy(&headerSize, bytes, 8);
  Value header;
  if (m.weightsSize < 8 || headerSize > m.weightsSize - 8 ||
      !qopt::runtime::json::parse(bytes + 8, headerSize, header, error))
    return fail("'" + weightsPath + "' is not a safetensors file");
  const Value *meta = header.get("__metadata__");
  const Value *fileId = meta ? meta->get(cm::kWeightsIdKey) : nullptr;
  if (!fileId || fileId->kind != Value::String || fileId->string != id->string)
    return fail("'" + weightsPath +
                "' was not written for this model.so (compilation ids "
                "differ); keep the files qoptc wrote together");
  for (ParamSpec &p : m.params) {
    if (p.offset > m.weightsSize || p.length > m.weightsSize - p.offset)
      return fail("parameter '" + p.tensor.name + "' lies outside '" +
                  weightsPath + "'");
    size_t align = qopt_dtype_size(p.tensor.dtype);
    if (p.offset % align)
      return fail("parameter '" + p.tensor.name + "' is misaligned in '" +
                  weightsPath + "'");
    char *data = const_cast<char *>(bytes) + p.offset;
    // Mutable: a private copy the model's updates replace (a CUDA model's
    // parameters are all copied into its pool by initCUDA instead).
    if (p.role != QOPT_PARAM_FROZEN && !m.cuda) {
      p.owned = static_cast<char *>(
          std::aligned_alloc(64, (p.length + 63) / 64 * 64 + 64));
      if (!p.owned)
        return fail("out of memory for parameter '" + p.tensor.name + "'");
      std::memcpy(p.owned, data, p.length);
      data = p.owned;
    }
    m.paramDescriptors.push_back(
        descriptor(data, p.tensor.shape.data(), p.tensor.shape.size()));
  }
  if (m.usesRNG) {
    int64_t two = 2;
    m.rngDescriptor = descriptor(m.rngKey, &two, 1);
  }
  return 0;
}

/// Opens the GPU through the model's CUDA host library and copies every
/// parameter into its memory pool (the kernels cannot read the mapped
/// file). Failures leave the model to be destroyed.
static int initCUDA(qopt_model &m, const char *path) {
  auto init = reinterpret_cast<int (*)(int, const char *, char *, size_t)>(
      dlsym(m.library, cm::kCUDAInitSymbol));
  m.cudaAlloc = reinterpret_cast<void *(*)(size_t)>(
      dlsym(m.library, cm::kCUDAAllocSymbol));
  m.cudaFree =
      reinterpret_cast<void (*)(void *)>(dlsym(m.library, cm::kCUDAFreeSymbol));
  m.cudaSynchronize =
      reinterpret_cast<int (*)()>(dlsym(m.library, cm::kCUDASynchronizeSymbol));
  m.cudaDeviceName = reinterpret_cast<const char *(*)()>(
      dlsym(m.library, cm::kCUDADeviceNameSymbol));
  m.cudaPoolInfo = reinterpret_cast<void (*)(size_t *, size_t *)>(
      dlsym(m.library, cm::kCUDAPoolInfoSymbol));
  m.cudaPrefetch = reinterpret_cast<void (*)(const void *, size_t)>(
      dlsym(m.library, cm::kCUDAPrefetchSymbol));
  if (!init || !m.cudaAlloc || !m.cudaFree || !m.cudaSynchronize ||
      !m.cudaDeviceName)
    return fail(std::string("'") + path +
                "' says it is a CUDA model but lacks the CUDA host library");
  char error[1024] = "";
  if (init(m.cudaPTXArch, m.cudaArchs.c_str(), error, sizeof(error)))
    return fail(std::string(path) + ": " + error);
  auto bind = [&](auto &fn, const char *name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
        dlsym(m.library, name));
    return fn != nullptr;
  };
  int (*supported)() = nullptr;
  bool graphs = bind(m.cudaPeakReset, cm::kCUDAPeakResetSymbol) &
                bind(m.cudaPeakBytes, cm::kCUDAPeakBytesSymbol) &
                bind(supported, cm::kCUDAGraphsSupportedSymbol) &
                bind(m.cudaCaptureBegin, cm::kCUDACaptureBeginSymbol) &
                bind(m.cudaCaptureEnd, cm::kCUDACaptureEndSymbol) &
                bind(m.cudaGraphLaunch, cm::kCUDAGraphLaunchSymbol) &
                bind(m.cudaGraphDestroy, cm::kCUDAGraphDestroySymbol) &
                bind(m.cudaCopy, cm::kCUDACopySymbol);
  const char *env = std::getenv("QOPT_CUDA_GRAPHS");
  m.cudaGraphs = graphs && supported() && !(env && std::strcmp(env, "0") == 0);
  m.graphs.resize(m.entries.size());
  for (size_t i = 0; i < m.params.size(); ++i) {
    ParamSpec &p = m.params[i];
    std::vector<int64_t> &desc = m.paramDescriptors[i];
    const char *host =
        reinterpret_cast<const char *>(static_cast<intptr_t>(desc[1]));
    char *device = static_cast<char *>(m.cudaAlloc(p.length));
    if (!device)
      return fail(std::string(path) + ": out of GPU memory for parameter '" +
                  p.tensor.name + "' (" + std::to_string(p.length) +
                  " bytes; QOPT_CUDA_POOL_BYTES sets the pool's size)");
    std::memcpy(device, host, p.length);
    if (m.cudaPrefetch) // to the GPU now, not page by page in the first run
      m.cudaPrefetch(device, p.length);
    p.owned = device;
    desc[0] = desc[1] =
        static_cast<int64_t>(reinterpret_cast<intptr_t>(device));
  }
  return 0;
}

int qopt_model_load(const char *path, qopt_model **model) {
  return qopt_model_load_device(path, nullptr, model);
}

const char *qopt_model_device(const qopt_model *m) {
  return m->cuda ? key::kCUDA : key::kCPU;
}

const char *qopt_model_gpu_name(const qopt_model *m) {
  return m->cuda && m->cudaDeviceName ? m->cudaDeviceName() : "";
}

int qopt_model_gpu_memory(const qopt_model *m, size_t *inUse,
                          size_t *capacity) {
  if (!m->cuda || !m->cudaPoolInfo)
    return 1;
  size_t available = 0;
  m->cudaPoolInfo(&available, capacity);
  *inUse = *capacity - available;
  return 0;
}

int qopt_model_load_device(const char *path, const char *device,
                           qopt_model **model) {
  if (!path || !model)
    return fail("qopt_model_load: null argument");
  if (device && std::strcmp(device, key::kCPU) &&
      std::strcmp(device, key::kCUDA))
    return fail(std::string("unknown device '") + device + "' (cpu or cuda)");
  // Models allocate their intermediate buffers with aligned_alloc on every
  // run. By default glibc maps large blocks fresh each time and returns
  // freed heap tops to the kernel, so each run page-faults and zeroes
  // hundreds of megabytes; keep them in the heap instead (measured: ~10% of
  // a GPT-2 small run). Process-wide, once.
  static bool tuned = [] {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)tuned;
  *model = nullptr;
  std::string file = path;
  if (file.find('/') == std::string::npos)
    file = "./" + file; // dlopen would search the library path otherwise
  auto m = std::make_unique<qopt_model>();
  // The file, its manifest and the weights are checked before the dynamic
  // loader maps anything.
  std::string error;
  if (!qopt::runtime::readModelFile(file, m->manifestText, error))
    return fail(error);
  if (int rc = loadManifest(*m, file))
    return rc;
  if (device && std::strcmp(device, qopt_model_device(m.get())))
    return fail(std::string("'") + path + "' was compiled for " +
                qopt_model_device(m.get()) + ", not " + device +
                " (qoptc --target " + device + ")");
  m->library = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!m->library)
    return fail(std::string("cannot load '") + path + "': " + dlerror());
  const char *manifest =
      static_cast<const char *>(dlsym(m->library, cm::kManifestSymbol));
  bool found = true;
  for (qopt_model::Entry &e : m->entries) {
    e.fn = reinterpret_cast<int (*)(void **, const char **)>(
        dlsym(m->library, e.symbol.c_str()));
    found &= e.fn != nullptr;
  }
  m->setThreads =
      reinterpret_cast<void (*)(int)>(dlsym(m->library, cm::kSetThreadsSymbol));
  // Absent from models linked before the quantized kernels existed.
  m->cpuName = reinterpret_cast<const char *(*)()>(
      dlsym(m->library, cm::kCPUNameSymbol));
  m->cpuPath = reinterpret_cast<const char *(*)()>(
      dlsym(m->library, cm::kCPUPathSymbol));
  m->f32Path = reinterpret_cast<const char *(*)()>(
      dlsym(m->library, cm::kF32PathSymbol));
  m->loopCounts = reinterpret_cast<void (*)(int64_t *, int64_t *)>(
      dlsym(m->library, cm::kLoopCountsSymbol));
  // The weights mapping is read-only for the model's life: its products
  // may keep packed copies of the weights (freed at release). Not for a
  // model that updates parameters (a train step): its backward reads each
  // frozen weight transposed too, and two packed copies of the base would
  // undo its memory savings.
  auto registerConstant = reinterpret_cast<void (*)(const void *, int64_t)>(
      dlsym(m->library, cm::kRegisterConstantSymbol));
  m->releaseConstant = reinterpret_cast<void (*)(const void *, int64_t)>(
      dlsym(m->library, cm::kReleaseConstantSymbol));
  if (m->weights && !m->updatesParameters() && registerConstant &&
      m->releaseConstant)
    registerConstant(m->weights, int64_t(m->weightsSize));
  else
    m->releaseConstant = nullptr;
  if (!manifest || !found || m->manifestText != manifest)
    return fail(std::string("'") + path +
                "' is not a model compiled by qoptc (no qopt_run_checked, "
                "or a manifest that differs from the file's)");
  if (m->cuda)
    if (int rc = initCUDA(*m, path))
      return rc;
  *model = m.release();
  return 0;
}

void qopt_model_destroy(qopt_model *model) { delete model; }

size_t qopt_model_num_inputs(const qopt_model *m) { return m->inputs.size(); }
size_t qopt_model_num_outputs(const qopt_model *m) {
  return m->entries[0].outputs.size();
}
size_t qopt_model_num_entries(const qopt_model *m) { return m->entries.size(); }
const char *qopt_model_entry_name(const qopt_model *m, size_t entry) {
  return entry < m->entries.size() ? m->entries[entry].name.c_str() : nullptr;
}
size_t qopt_model_entry_num_outputs(const qopt_model *m, size_t entry) {
  return entry < m->entries.size() ? m->entries[entry].outputs.size() : 0;
}
size_t qopt_model_num_parameters(const qopt_model *m) {
  return m->params.size();
}
const char *qopt_model_manifest(const qopt_model *m) {
  return m->manifestText.c_str();
}

static int fillInfo(const TensorSpec &spec, qopt_tensor_info *info) {
  info->name = spec.name.c_str();
  info->dtype = spec.dtype;
  info->rank = static_cast<int32_t>(spec.shape.size());
  for (size_t i = 0; i < spec.shape.size(); ++i) {
    info->shape[i] = spec.shape[i];
    info->dim_names[i] =
        spec.dimNames[i].empty() ? nullptr : spec.dimNames[i].c_str();
  }
  return 0;
}

int qopt_model_input_info(const qopt_model *m, size_t i,
                          qopt_tensor_info *info) {
  if (i >= m->inputs.size())
    return fail("input index " + std::to_string(i) + " out of range");
  return fillInfo(m->inputs[i], info);
}

int qopt_model_output_info(const qopt_model *m, size_t i,
                           qopt_tensor_info *info) {
  return qopt_model_entry_output_info(m, 0, i, info);
}

int qopt_model_entry_output_info(const qopt_model *m, size_t entry, size_t i,
                                 qopt_tensor_info *info) {
  if (entry >= m->entries.size())
    return fail("entry index " + std::to_string(entry) + " out of range");
  const std::vector<TensorSpec> &outputs = m->entries[entry].outputs;
  if (i >= outputs.size())
    return fail("output index " + std::to_string(i) + " out of range");
  return fillInfo(outputs[i], info);
}

int qopt_model_parameter_info(const qopt_model *m, size_t i,
                              qopt_tensor_info *info, qopt_param_role *role) {
  if (i >= m->params.size())
    return fail("parameter index " + std::to_string(i) + " out of range");
  if (role)
    *role = m->params[i].role;
  return fillInfo(m->params[i].tensor, info);
}

static ParamSpec *findParam(const qopt_model *m, const char *name) {
  for (const ParamSpec &p : m->params)
    if (name && p.tensor.name == name)
      return const_cast<ParamSpec *>(&p);
  fail(std::string("the model has no parameter '") + (name ? name : "") + "'");
  return nullptr;
}

int qopt_model_get_parameter(const qopt_model *m, const char *name,
                             qopt_tensor *view) {
  auto *model = const_cast<qopt_model *>(m);
  std::lock_guard<std::mutex> lock(model->stateMutex);
  ParamSpec *p = findParam(m, name);
  if (!p)
    return 1;
  size_t index = static_cast<size_t>(p - m->params.data());
  view->dtype = p->tensor.dtype;
  view->rank = static_cast<int32_t>(p->tensor.shape.size());
  for (size_t k = 0; k < p->tensor.shape.size(); ++k)
    view->shape[k] = p->tensor.shape[k];
  view->data = reinterpret_cast<void *>(
      static_cast<intptr_t>(m->paramDescriptors[index][1]));
  return 0;
}

int qopt_model_set_parameter(qopt_model *m, const char *name,
                             const qopt_tensor *value) {
  std::lock_guard<std::mutex> lock(m->stateMutex);
  ParamSpec *p = findParam(m, name);
  if (!p)
    return 1;
  std::string what = "parameter '" + p->tensor.name + "'";
  if (p->role == QOPT_PARAM_FROZEN)
    return fail(what + " is frozen (read-only); only trainable and state "
                       "parameters can be set");
  const std::vector<int64_t> &shape = p->tensor.shape;
  if (value->dtype != p->tensor.dtype)
    return fail(what + ": expected " + qopt_dtype_name(p->tensor.dtype) +
                ", got " + qopt_dtype_name(value->dtype));
  if (value->rank < 0 || static_cast<size_t>(value->rank) != shape.size() ||
      !std::equal(shape.begin(), shape.end(), value->shape))
    return fail(what + ": expected shape " +
                shapeString(shape.data(), shape.size()) + ", got " +
                shapeString(value->shape, std::clamp<int32_t>(value->rank, 0,
                                                              QOPT_MAX_RANK)));
  if (p->length && !value->data)
    return fail(what + ": no data");
  if (value->data != p->owned) // a view from qopt_model_get_parameter
    std::memcpy(p->owned, value->data, p->length);
  return 0;
}

int qopt_model_uses_rng(const qopt_model *m) { return m->usesRNG ? 1 : 0; }

void qopt_model_get_rng(const qopt_model *m, int64_t *seed, int64_t *counter) {
  std::lock_guard<std::mutex> lock(const_cast<qopt_model *>(m)->stateMutex);
  if (seed)
    *seed = m->rngKey[0];
  if (counter)
    *counter = m->rngKey[1];
}

void qopt_model_set_rng(qopt_model *m, int64_t seed, int64_t counter) {
  std::lock_guard<std::mutex> lock(m->stateMutex);
  m->rngKey[0] = seed;
  m->rngKey[1] = counter;
}

//===----------------------------------------------------------------------===//
// Run-time adapter slots
//===----------------------------------------------------------------------===//

size_t qopt_model_num_lora_slots(const qopt_model *m) {
  return m->loraSlots.size();
}

int qopt_model_lora_slot(const qopt_model *m, size_t i, const char **module,
                         int64_t *rank) {
  if (i >= m->loraSlots.size())
    return fail("LoRA slot index " + std::to_string(i) + " out of range");
  if (module)
    *module = m->loraSlots[i].module.c_str();
  if (rank)
    *rank = m->loraSlots[i].rank;
  return 0;
}

static bool readWholeFile(const std::string &path, std::string &out) {
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    return fail("cannot read " + path + ": " + std::strerror(errno)), false;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0)
    out.append(buffer, n);
  bool ok = !std::ferror(f);
  std::fclose(f);
  if (!ok)
    fail("cannot read " + path);
  return ok;
}

int qopt_model_load_adapter(qopt_model *m, const char *dirArg) {
  if (m->loraSlots.empty())
    return fail("the model has no LoRA slots (compile it with qoptc "
                "--lora-slots)");
  if (!dirArg || !*dirArg)
    return fail("qopt_model_load_adapter: no adapter folder given");
  std::string dir = dirArg;
  std::string configPath = dir + "/adapter_config.json",
              weightsPath = dir + "/adapter_model.safetensors";
  std::string configText, weights, error;
  if (!readWholeFile(configPath, configText))
    return 1;
  Value config;
  if (!qopt::runtime::json::parse(configText.data(), configText.size(), config,
                                  error) ||
      config.kind != Value::Object)
    return fail(configPath + ": not a JSON object" +
                (error.empty() ? "" : ": " + error));
  // LoraConfig keys: what the slots use, what does not change inference,
  // and anything else, which must be unset.
  double alpha = 8;
  bool rslora = false;
  // alpha_pattern: PEFT's get_pattern_key takes the first key (in document
  // order) for which re.match(rf"(.*\.)?({key})$", module) matches.
  std::vector<std::pair<std::regex, double>> alphaPattern;
  // Keys about the selection (the slots are fixed) or training.
  static const char *const kIgnored[] = {"r",
                                         "target_modules",
                                         "exclude_modules",
                                         "layers_to_transform",
                                         "layers_pattern",
                                         "rank_pattern",
                                         "lora_dropout"};
  for (const auto &[k, v] : config.object) {
    auto unset = [&v = v] {
      return v.kind == Value::Null || (v.kind == Value::Bool && !v.boolean) ||
             (v.kind == Value::String && v.string.empty()) ||
             (v.kind == Value::Array && v.array.empty()) ||
             (v.kind == Value::Object && v.object.empty());
    };
    std::string what = configPath + ": '" + k + "'";
    if (k == "peft_type") {
      if (v.kind != Value::String || v.string != "LORA")
        return fail(what + " is not LORA: only LoRA adapters fit the slots");
    } else if (k == "lora_alpha") {
      if (v.kind != Value::Number)
        return fail(what + " is not a number");
      alpha = v.number;
    } else if (k == "use_rslora") {
      rslora = v.kind == Value::Bool && v.boolean;
    } else if (k == "bias") {
      if (v.kind != Value::String || v.string != "none")
        return fail(what + " is not \"none\": slots hold no biases");
    } else if (k == "use_dora") {
      if (!unset())
        return fail(what + ": DoRA adapters do not fit LoRA slots; compile "
                           "them in with qoptc --adapter");
    } else if (k == "init_lora_weights") {
      if (v.kind == Value::String &&
          !qopt::peft::initKeepsBaseWeights(v.string.c_str()))
        return fail(what + " is '" + v.string +
                    "': such an adapter applies to the residual base weights "
                    "of its initialisation, not to this model's");
    } else if (k == "eva_config") {
      // How EVA found A from calibration data: nothing the slots compute.
    } else if (k == "alpha_pattern") {
      if (unset())
        continue;
      if (v.kind != Value::Object)
        return fail(what + " is not an object of regular expressions and "
                           "alphas");
      for (const auto &[key, value] : v.object) {
        if (value.kind != Value::Number || !(value.number > 0))
          return fail(what + ": the alpha of '" + key +
                      "' is not a positive number");
        try {
          alphaPattern.emplace_back(
              std::regex("(.*\\.)?(" + key + ")", std::regex::ECMAScript),
              value.number);
        } catch (const std::regex_error &e) {
          return fail(what + ": '" + key +
                      "' is not a regular expression the slots can read (" +
                      e.what() + ")");
        }
      }
    } else if (std::find(std::begin(kIgnored), std::end(kIgnored), k) ==
                   std::end(kIgnored) &&
               !qopt::peft::isInformationalKey(k.c_str()) && !unset()) {
      return fail(what + " is set, and the adapter slots do not support it");
    }
  }
  if (!readWholeFile(weightsPath, weights))
    return 1;
  uint64_t headerSize = 0;
  if (weights.size() < 8 || (std::memcpy(&headerSize, weights.data(), 8),
                             headerSize) > weights.size() - 8)
    return fail(weightsPath + ": not a safetensors file");
  Value header;
  if (!qopt::runtime::json::parse(weights.data() + 8, headerSize, header,
                                  error) ||
      header.kind != Value::Object)
    return fail(weightsPath + ": the header is not a JSON object" +
                (error.empty() ? "" : ": " + error));
  const char *data = weights.data() + 8 + headerSize;
  size_t dataSize = weights.size() - 8 - headerSize;
  // The new slot contents, all checked before any is written.
  struct Fill {
    std::vector<float> a, b;
  };
  std::vector<Fill> fills(m->loraSlots.size());
  for (size_t i = 0; i < m->loraSlots.size(); ++i) {
    const auto &slot = m->loraSlots[i];
    fills[i].a.assign(m->params[slot.a].length / 4, 0.0f);
    fills[i].b.assign(m->params[slot.b].length / 4, 0.0f);
  }
  struct Factor {
    std::vector<int64_t> shape;
    std::vector<float> values; // decoded to f32
  };
  std::map<std::string, Factor> as, bs;
  for (const auto &[name, v] : header.object) {
    if (name == "__metadata__")
      continue;
    std::string what = weightsPath + ": tensor '" + name + "'";
    const Value *dtype = v.get("dtype"), *shape = v.get("shape"),
                *offsets = v.get("data_offsets");
    if (!dtype || dtype->kind != Value::String || !shape ||
        shape->kind != Value::Array || shape->array.size() != 2 || !offsets ||
        offsets->kind != Value::Array || offsets->array.size() != 2)
      return fail(what + ": not a 2-D tensor entry (LoRA slots take "
                         "lora_A / lora_B weights)");
    std::string prefix = "base_model.model.", module = name;
    Factor f;
    namespace dense = qopt::dense;
    dense::FloatKind kind;
    if (dtype->string == "F32")
      kind = dense::FloatKind::F32;
    else if (dtype->string == "F16")
      kind = dense::FloatKind::F16;
    else if (dtype->string == "BF16")
      kind = dense::FloatKind::BF16;
    else
      return fail(what + ": dtype " + dtype->string +
                  " is not F32, F16 or BF16");
    size_t elem = dense::floatKindBytes(kind);
    int64_t count = 1;
    for (const Value &d : shape->array) {
      if (!d.isInteger || d.integer < 1 ||
          static_cast<uint64_t>(d.integer) > dataSize ||
          static_cast<uint64_t>(count) * static_cast<uint64_t>(d.integer) >
              dataSize)
        return fail(what + ": bad shape");
      f.shape.push_back(d.integer);
      count *= d.integer;
    }
    const Value &begin = offsets->array[0], &end = offsets->array[1];
    if (!begin.isInteger || !end.isInteger || begin.integer < 0 ||
        end.integer < begin.integer ||
        static_cast<uint64_t>(end.integer) > dataSize ||
        end.integer - begin.integer != count * static_cast<int64_t>(elem))
      return fail(what + ": data_offsets do not fit the file or its shape");
    f.values.resize(count);
    dense::decodeFloats(kind, data + begin.integer, count, f.values.data());
    bool isA = false, isB = false;
    auto strip = [&](const std::string &suffix) {
      if (module.size() > suffix.size() &&
          module.compare(module.size() - suffix.size(), suffix.size(),
                         suffix) == 0) {
        module.resize(module.size() - suffix.size());
        return true;
      }
      return false;
    };
    if (module.compare(0, prefix.size(), prefix) == 0)
      module = module.substr(prefix.size());
    else
      return fail(what + " is not a PEFT adapter weight");
    isA = strip(".lora_A.weight");
    isB = !isA && strip(".lora_B.weight");
    if (!isA && !isB)
      return fail(what + " is neither lora_A nor lora_B (DoRA magnitudes "
                         "and other adapters do not fit the slots)");
    (isA ? as : bs)[module] = f;
  }
  for (const auto &[module, a] : as) {
    auto slot = std::find_if(
        m->loraSlots.begin(), m->loraSlots.end(),
        [&](const qopt_model::LoraSlot &s) { return s.module == module; });
    if (slot == m->loraSlots.end()) {
      std::string names;
      for (const auto &s : m->loraSlots)
        names += (names.empty() ? "" : ", ") + s.module;
      return fail("the adapter adapts module '" + module +
                  "', which has no LoRA slot (slots: " + names + ")");
    }
    auto b = bs.find(module);
    if (b == bs.end())
      return fail("module '" + module +
                  "': lora_A.weight without "
                  "lora_B.weight");
    const std::vector<int64_t> &sa = m->params[slot->a].tensor.shape,
                               &sb = m->params[slot->b].tensor.shape;
    int64_t r = a.shape[0], in = sa[1], out = sb[0];
    if (r > slot->rank)
      return fail("module '" + module + "': the adapter's rank " +
                  std::to_string(r) + " exceeds its slot's rank " +
                  std::to_string(slot->rank));
    if (a.shape[1] != in || b->second.shape != std::vector<int64_t>{out, r})
      return fail("module '" + module + "': factors of shape " +
                  shapeString(a.shape.data(), 2) + " and " +
                  shapeString(b->second.shape.data(), 2) +
                  " do not fit the layer (" + std::to_string(out) + " x " +
                  std::to_string(in) + ")");
    double moduleAlpha = alpha;
    for (const auto &[regex, value] : alphaPattern)
      if (std::regex_match(module, regex)) {
        moduleAlpha = value;
        break;
      }
    double scale = rslora ? moduleAlpha / std::sqrt(static_cast<double>(r))
                          : moduleAlpha / static_cast<double>(r);
    Fill &fill = fills[slot - m->loraSlots.begin()];
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < in; ++j)
        fill.a[i * in + j] = a.values[i * in + j];
    for (int64_t i = 0; i < out; ++i)
      for (int64_t j = 0; j < r; ++j)
        fill.b[i * slot->rank + j] =
            static_cast<float>(scale * b->second.values[i * r + j]);
  }
  for (const auto &[module, b] : bs)
    if (!as.count(module))
      return fail("module '" + module +
                  "': lora_B.weight without "
                  "lora_A.weight");
  std::lock_guard<std::mutex> lock(m->stateMutex);
  for (size_t i = 0; i < m->loraSlots.size(); ++i) {
    const auto &slot = m->loraSlots[i];
    std::memcpy(m->params[slot.a].owned, fills[i].a.data(),
                m->params[slot.a].length);
    std::memcpy(m->params[slot.b].owned, fills[i].b.data(),
                m->params[slot.b].length);
  }
  return 0;
}

int qopt_model_unload_adapter(qopt_model *m) {
  std::lock_guard<std::mutex> lock(m->stateMutex);
  for (const auto &slot : m->loraSlots) {
    std::memset(m->params[slot.a].owned, 0, m->params[slot.a].length);
    std::memset(m->params[slot.b].owned, 0, m->params[slot.b].length);
  }
  return 0;
}

const char *qopt_model_cpu_kernels(qopt_model *m) {
  std::string name = m->cpuName ? m->cpuName() : "";
  m->cpuKernels =
      "cpu: " + (name.empty() ? std::string("unknown") : name) +
      "\nquantized-product kernels: " +
      (m->cpuPath ? m->cpuPath() : "not in this model") +
      "\nf32-product kernels: " + (m->f32Path ? m->f32Path() : "openblas") +
      "\n";
  return m->cpuKernels.c_str();
}

int qopt_model_loop_counts(qopt_model *m, int64_t *pooled, int64_t *on_caller) {
  *pooled = *on_caller = 0;
  if (m->loopCounts)
    m->loopCounts(pooled, on_caller);
  return 0;
}

int qopt_model_set_num_threads(qopt_model *m, int n) {
  if (m->setThreads)
    m->setThreads(n);
  return 0;
}

int qopt_model_run(qopt_model *m, const qopt_tensor *inputs, size_t numInputs,
                   qopt_tensor *outputs, size_t numOutputs) {
  return qopt_model_run_entry(m, 0, inputs, numInputs, outputs, numOutputs);
}

/// Where the results' descriptors start in the results array of `e`
/// (outputs, then parameter updates), and its length in `words`.
static std::vector<size_t>
resultLayout(const qopt_model *m, const qopt_model::Entry &e, size_t &words) {
  std::vector<size_t> offsets;
  words = 0;
  for (const TensorSpec &spec : e.outputs) {
    offsets.push_back(words);
    words += 3 + 2 * spec.shape.size();
  }
  for (size_t index : e.updates) {
    offsets.push_back(words);
    words += 3 + 2 * m->params[index].tensor.shape.size();
  }
  return offsets;
}

/// The message of a device check's status `code` (manifest `checks`).
static std::string deviceCheckMessage(const qopt_model *m, int32_t code) {
  if (code > 0 && static_cast<size_t>(code) <= m->deviceChecks.size())
    return m->deviceChecks[code - 1];
  return "a run-time check failed (status " + std::to_string(code) + ")";
}

/// `out` as a dense copy of the result `d` describes, in a buffer the
/// caller can free().
static void copyOut(const TensorSpec &spec, const int64_t *d,
                    qopt_tensor &out) {
  size_t rank = spec.shape.size();
  out.dtype = spec.dtype;
  out.rank = static_cast<int32_t>(rank);
  size_t elementSize = qopt_dtype_size(spec.dtype);
  int64_t count = 1;
  for (size_t k = 0; k < rank; ++k)
    count *= out.shape[k] = d[3 + k];
  size_t bytes = static_cast<size_t>(count) * elementSize;
  char *copy = static_cast<char *>(std::malloc(bytes ? bytes : 1));
  gatherDense(d, rank, elementSize, copy);
  out.data = copy;
}

/// Captures a run of entry `index` into its graph: the inputs (then the
/// random key and the status word) in pool buffers the graph keeps, the
/// run's own buffers in an arena a quarter larger than the measured run
/// used. False (the shapes are then run without a graph) when there is no
/// room, or the driver or the run's host code refuses.
static bool captureGraph(qopt_model *m, size_t index, const qopt_tensor *inputs,
                         const std::vector<int64_t> &bytes) {
  qopt_model::Graph &g = m->graphs[index];
  const qopt_model::Entry &e = m->entries[index];
  auto refuse = [&] {
    m->dropGraph(index);
    g.refused = true;
    return false;
  };
  auto buffer = [&](size_t n, const int64_t *shape, size_t rank) {
    void *p = m->cudaAlloc(n);
    if (!p)
      return false;
    g.buffers.push_back(p);
    g.descriptors.push_back(descriptor(p, shape, rank));
    return true;
  };
  for (size_t i = 0; i < m->inputs.size(); ++i)
    if (!buffer(static_cast<size_t>(bytes[i]), inputs[i].shape,
                static_cast<size_t>(inputs[i].rank)))
      return refuse();
  int64_t two = 2, one = 1;
  if (m->usesRNG && !buffer(sizeof(m->rngKey), &two, 1))
    return refuse();
  if (!m->deviceChecks.empty()) {
    if (!buffer(sizeof(int32_t), &one, 1))
      return refuse();
    *static_cast<int32_t *>(g.buffers.back()) = 0;
  }
  size_t words = 0;
  g.offsets = resultLayout(m, e, words);
  g.results.assign(words + 1, 0);
  std::vector<void *> args;
  if (!g.offsets.empty())
    args.push_back(g.results.data());
  for (size_t i = 0; i < m->inputs.size(); ++i)
    args.push_back(g.descriptors[i].data());
  for (auto &d : m->paramDescriptors)
    args.push_back(d.data());
  for (size_t i = m->inputs.size(); i < g.descriptors.size(); ++i)
    args.push_back(g.descriptors[i].data());
  size_t arena = g.peak + g.peak / 4 + 65536;
  if (m->cudaCaptureBegin(arena))
    return refuse();
  const char *message = nullptr;
  int rc = e.fn(args.data(), &message);
  g.exec = m->cudaCaptureEnd(rc == 0);
  if (!g.exec)
    return refuse();
  g.params.clear();
  for (auto &d : m->paramDescriptors)
    g.params.push_back(d[1]);
  return true;
}

/// replayGraph's answer when the driver would not launch the graph: the
/// graph is gone and the run is to be made without one.
constexpr int kNotReplayed = -1;

/// Runs entry `index` by replaying its graph: the inputs copied into its
/// buffers, the outputs copied out of the captured results, and the
/// parameter updates copied into the parameters' buffers (which the graph
/// reads), on the GPU; nothing changes when a device check fails.
static int replayGraph(qopt_model *m, size_t index, const qopt_tensor *inputs,
                       const std::vector<int64_t> &bytes, qopt_tensor *outputs,
                       size_t numOutputs) {
  qopt_model::Graph &g = m->graphs[index];
  const qopt_model::Entry &e = m->entries[index];
  size_t next = 0;
  for (; next < m->inputs.size(); ++next) {
    size_t n = static_cast<size_t>(bytes[next]);
    if (n)
      std::memcpy(g.buffers[next], inputs[next].data, n);
    if (m->cudaPrefetch)
      m->cudaPrefetch(g.buffers[next], n);
  }
  if (m->usesRNG)
    std::memcpy(g.buffers[next++], m->rngKey, sizeof(m->rngKey));
  const int32_t *status = m->deviceChecks.empty()
                              ? nullptr
                              : static_cast<int32_t *>(g.buffers[next]);
  if (m->cudaGraphLaunch(g.exec)) {
    // (Nothing ran: these shapes go on without a graph.)
    m->dropGraph(index);
    g.refused = true;
    return kNotReplayed;
  }
  if (int rc = m->cudaSynchronize()) {
    m->dropGraph(index);
    return fail("the model stopped: CUDA: a kernel of the captured run "
                "failed (CUDA error " +
                std::to_string(rc) + ")");
  }
  if (status && *status)
    return fail("the model stopped: " + deviceCheckMessage(m, *status));
  const std::vector<size_t> &offsets = g.offsets;
  for (size_t i = 0; i < numOutputs; ++i)
    copyOut(e.outputs[i], g.results.data() + offsets[i], outputs[i]);
  // The new parameter values, into the buffers the graph reads: plain
  // arrays on the GPU, strided ones by the host once those are done.
  std::vector<size_t> strided;
  bool copied = false;
  for (size_t u = 0; u < e.updates.size(); ++u) {
    ParamSpec &p = m->params[e.updates[u]];
    const int64_t *d = g.results.data() + offsets[numOutputs + u];
    size_t elementSize = qopt_dtype_size(p.tensor.dtype);
    if (!isPlainArray(d, p.tensor.shape.size())) {
      strided.push_back(u);
      continue;
    }
    const char *from =
        reinterpret_cast<const char *>(d[1]) + d[2] * elementSize;
    if (int rc = m->cudaCopy(p.owned, from, p.length)) {
      m->cudaSynchronize();
      m->dropGraph(index);
      return fail("CUDA: cannot copy the new value of parameter '" +
                  p.tensor.name + "' (CUDA error " + std::to_string(rc) +
                  "): the parameters before it in the step's updates have "
                  "their new values, the others not");
    }
    copied = true;
  }
  if (copied)
    m->cudaSynchronize();
  for (size_t u : strided) {
    ParamSpec &p = m->params[e.updates[u]];
    gatherDense(g.results.data() + offsets[numOutputs + u],
                p.tensor.shape.size(), qopt_dtype_size(p.tensor.dtype),
                p.owned);
  }
  if (m->usesRNG)
    ++m->rngKey[1];
  return 0;
}

int qopt_model_run_entry(qopt_model *m, size_t entry, const qopt_tensor *inputs,
                         size_t numInputs, qopt_tensor *outputs,
                         size_t numOutputs) {
  if (entry >= m->entries.size())
    return fail("entry index " + std::to_string(entry) + " out of range (" +
                std::to_string(m->entries.size()) + " entries)");
  const qopt_model::Entry &e = m->entries[entry];
  std::unique_lock<std::mutex> lock(m->stateMutex, std::defer_lock);
  // A CUDA model's runs share its stream and pool: one at a time.
  if (m->hasState() || m->cuda)
    lock.lock();
  if (numInputs != m->inputs.size())
    return fail("the model takes " + std::to_string(m->inputs.size()) +
                " inputs, got " + std::to_string(numInputs));
  if (numOutputs != e.outputs.size())
    return fail("the model has " + std::to_string(e.outputs.size()) +
                " outputs, room for " + std::to_string(numOutputs) + " given");
  // Check every input against the manifest; named dimensions must agree.
  std::map<std::string, std::pair<int64_t, std::string>> dimValues;
  // A CUDA model's inputs, copied into its pool for the run.
  struct PoolBuffer {
    void *p;
    qopt_model *m;
    PoolBuffer(void *p, qopt_model *m) : p(p), m(m) {}
    PoolBuffer(PoolBuffer &&o) noexcept : p(o.p), m(o.m) { o.p = nullptr; }
    ~PoolBuffer() {
      if (p)
        m->release(p);
    }
  };
  std::vector<PoolBuffer> deviceInputs;
  std::vector<std::vector<int64_t>> descriptors;
  std::vector<int64_t> inputBytes;
  for (size_t i = 0; i < numInputs; ++i) {
    const TensorSpec &spec = m->inputs[i];
    const qopt_tensor &t = inputs[i];
    std::string what = "input '" + spec.name + "'";
    if (t.dtype != spec.dtype)
      return fail(what + ": expected " + qopt_dtype_name(spec.dtype) +
                  ", got " + qopt_dtype_name(t.dtype));
    if (t.rank < 0 || static_cast<size_t>(t.rank) != spec.shape.size())
      return fail(
          what + ": expected shape " +
          shapeString(spec.shape.data(), spec.shape.size(), &spec.dimNames) +
          ", got " + shapeString(t.shape, t.rank < 0 ? 0 : t.rank));
    for (size_t d = 0; d < spec.shape.size(); ++d) {
      if (t.shape[d] < 0)
        return fail(what + ": negative size in shape " +
                    shapeString(t.shape, t.rank));
      if (spec.shape[d] >= 0 && t.shape[d] != spec.shape[d])
        return fail(
            what + ": expected shape " +
            shapeString(spec.shape.data(), spec.shape.size(), &spec.dimNames) +
            ", got " + shapeString(t.shape, t.rank) + " (dimension " +
            std::to_string(d) + ")");
      const std::string &dimName = spec.dimNames[d];
      if (spec.shape[d] < 0 && !dimName.empty()) {
        auto [it, inserted] =
            dimValues.insert({dimName, {t.shape[d], spec.name}});
        if (!inserted && it->second.first != t.shape[d])
          return fail("dimension '" + dimName + "' is " +
                      std::to_string(it->second.first) + " in input '" +
                      it->second.second + "' but " +
                      std::to_string(t.shape[d]) + " in " + what);
      }
    }
    int64_t bytes = checkedBytes(t.shape, t.rank, qopt_dtype_size(spec.dtype));
    if (bytes < 0)
      return fail(what + ": shape " + shapeString(t.shape, t.rank) +
                  " is too large");
    if (bytes > 0 && !t.data)
      return fail(what + ": no data");
    inputBytes.push_back(bytes);
  }

  // A CUDA entry whose host code touches only host memory replays as a
  // CUDA graph: a run measures the pool it needs, the next run of the same
  // input shapes is captured, and later runs of those shapes copy their
  // inputs into the captured buffers and replay it.
  bool measure = false;
  if (m->cuda && m->cudaGraphs && e.graph) {
    qopt_model::Graph &g = m->graphs[entry];
    std::vector<std::vector<int64_t>> shapes;
    for (size_t i = 0; i < numInputs; ++i)
      shapes.emplace_back(inputs[i].shape, inputs[i].shape + inputs[i].rank);
    // (A parameter's buffer replaced since: the graph reads the old one.)
    bool moved = false;
    for (size_t i = 0; g.exec && i < m->params.size(); ++i)
      moved |= m->paramDescriptors[i][1] != g.params[i];
    if (g.exec && (moved || shapes != g.shapes))
      m->dropGraph(entry);
    if (shapes != g.shapes) {
      g.shapes = std::move(shapes);
      g.measured = g.refused = false;
    }
    if (g.exec || (g.measured && !g.refused &&
                   captureGraph(m, entry, inputs, inputBytes))) {
      int rc = replayGraph(m, entry, inputs, inputBytes, outputs, numOutputs);
      if (rc != kNotReplayed)
        return rc;
    }
    measure = !g.refused;
  }

  for (size_t i = 0; i < numInputs; ++i) {
    const qopt_tensor &t = inputs[i];
    size_t bytes = static_cast<size_t>(inputBytes[i]);
    void *data = t.data;
    if (m->cuda) {
      // The kernels read the pool, not the caller's memory.
      data = m->cudaAlloc(bytes);
      if (!data)
        return fail("input '" + m->inputs[i].name + "': out of GPU memory (" +
                    std::to_string(bytes) +
                    " bytes; QOPT_CUDA_POOL_BYTES sets the pool's size)");
      deviceInputs.emplace_back(data, m);
      if (bytes)
        std::memcpy(data, t.data, bytes);
      if (m->cudaPrefetch)
        m->cudaPrefetch(data, bytes);
    }
    descriptors.push_back(descriptor(data, t.shape, t.rank));
  }

  // Results first: one descriptor per output, then one per parameter
  // update, back to back.
  size_t resultWords = 0;
  std::vector<size_t> resultOffsets = resultLayout(m, e, resultWords);
  std::vector<int64_t> results(resultWords + 1, 0);
  std::vector<void *> args;
  if (!resultOffsets.empty())
    args.push_back(results.data());
  for (auto &d : descriptors)
    args.push_back(d.data());
  for (auto &d : m->paramDescriptors)
    args.push_back(d.data());
  std::vector<int64_t> deviceKey;
  if (m->usesRNG && m->cuda) {
    // Kernels read the key too: a copy in the pool.
    void *key = m->cudaAlloc(sizeof(m->rngKey));
    if (!key)
      return fail("out of GPU memory for the random key");
    deviceInputs.emplace_back(key, m);
    std::memcpy(key, m->rngKey, sizeof(m->rngKey));
    int64_t two = 2;
    deviceKey = descriptor(key, &two, 1);
    args.push_back(deviceKey.data());
  } else if (m->usesRNG) {
    args.push_back(m->rngDescriptor.data());
  }
  // The device checks' status word (the entry zeroes it), in the pool for
  // a CUDA model.
  int32_t *status = nullptr;
  std::vector<int64_t> statusDescriptor;
  if (!m->deviceChecks.empty()) {
    status = static_cast<int32_t *>(m->allocate(sizeof(int32_t)));
    if (!status)
      return fail("out of memory for the run's status word");
    *status = 0; // (the entry zeroes it too, first; a failed launch may not)
    deviceInputs.emplace_back(status, m);
    int64_t one = 1;
    statusDescriptor = descriptor(status, &one, 1);
    args.push_back(statusDescriptor.data());
  }
  const char *checkMessage = nullptr;
  if (measure)
    m->cudaPeakReset();
  int failed = e.fn(args.data(), &checkMessage);
  // Out of pool memory where CUDA graphs hold some: they go (and do not
  // come back for their shapes), and the run is made again (a failed run
  // changed nothing).
  if (failed && m->cuda && checkMessage &&
      std::strstr(checkMessage, "out of memory")) {
    m->cudaSynchronize();
    bool dropped = false;
    for (size_t i = 0; i < m->graphs.size(); ++i)
      if (m->graphs[i].exec) {
        m->dropGraph(i);
        m->graphs[i].refused = dropped = true;
      }
    if (dropped) {
      std::fill(results.begin(), results.end(), 0);
      checkMessage = nullptr;
      if (measure)
        m->cudaPeakReset();
      failed = e.fn(args.data(), &checkMessage);
    }
  }
  if (failed) {
    std::string message =
        std::string("the model stopped: ") +
        (checkMessage ? checkMessage : "a run-time check failed");
    // Kernels queued before the failure may still use the buffers the run
    // gave back: wait for them before anything reuses the memory.
    if (m->cuda)
      m->cudaSynchronize();
    // An index found out of range on the device came first: the failure
    // after it may be its consequence.
    if (status && *status)
      message = "the model stopped: " + deviceCheckMessage(m, *status);
    return fail(message);
  }
  if (status) {
    // (A CUDA entry waits for its kernels before it returns.)
    if (int32_t code = *status) {
      // A check failed on the device: the results are dropped, the
      // parameters keep their values.
      std::vector<char *> buffers;
      for (size_t offset : resultOffsets)
        buffers.push_back(reinterpret_cast<char *>(results[offset]));
      std::sort(buffers.begin(), buffers.end());
      buffers.erase(std::unique(buffers.begin(), buffers.end()), buffers.end());
      for (char *p : buffers)
        m->release(p);
      return fail("the model stopped: " + deviceCheckMessage(m, code));
    }
  }
  if (measure) {
    m->graphs[entry].peak = m->cudaPeakBytes();
    m->graphs[entry].measured = true;
  }
  // The next run draws new random numbers; setting the key back replays.
  if (m->usesRNG)
    ++m->rngKey[1];

  // Every output buffer is the model's own allocation (the compiler copies
  // when a result would alias an input or constant); hand it over, copying
  // only when it is not a plain dense array, or when an earlier output
  // already took the same allocation (a graph output that is another one,
  // or a view of it). Allocations no output owns are freed at the end.
  std::vector<char *> owned, unowned;
  auto isOwned = [&](char *p) {
    return std::find(owned.begin(), owned.end(), p) != owned.end();
  };
  for (size_t i = 0; i < numOutputs; ++i) {
    const TensorSpec &spec = e.outputs[i];
    const int64_t *d = results.data() + resultOffsets[i];
    size_t rank = spec.shape.size();
    qopt_tensor &out = outputs[i];
    char *allocated = reinterpret_cast<char *>(d[0]);
    if (isPlainArray(d, rank) && !isOwned(allocated) && !m->cuda) {
      out.dtype = spec.dtype;
      out.rank = static_cast<int32_t>(rank);
      for (size_t k = 0; k < rank; ++k)
        out.shape[k] = d[3 + k];
      out.data = allocated;
      owned.push_back(allocated);
      continue;
    }
    // Copy into a fresh buffer the caller can free() (always for a CUDA
    // model: its buffers belong to the pool).
    copyOut(spec, d, out);
    unowned.push_back(allocated);
  }
  // New values of mutable parameters: the runtime takes the buffer in place
  // of the old one (copying only when an output took it, or when it is not
  // a plain array).
  for (size_t u = 0; u < e.updates.size(); ++u) {
    ParamSpec &p = m->params[e.updates[u]];
    const int64_t *d = results.data() + resultOffsets[numOutputs + u];
    size_t rank = p.tensor.shape.size(); // static: the result's sizes
    char *allocated = reinterpret_cast<char *>(d[0]);
    char *taken = allocated;
    if (!isPlainArray(d, rank) || isOwned(allocated)) {
      // A strided or shared result: gather it into a fresh copy (into the
      // old buffer when no memory is left for one).
      size_t elementSize = qopt_dtype_size(p.tensor.dtype);
      taken = static_cast<char *>(m->allocate(p.length));
      if (!taken) {
        taken = p.owned;
        p.owned = nullptr;
      }
      gatherDense(d, rank, elementSize, taken);
      unowned.push_back(allocated);
    } else {
      owned.push_back(allocated);
    }
    m->release(p.owned);
    p.owned = taken;
    std::vector<int64_t> &desc = m->paramDescriptors[e.updates[u]];
    desc[0] = desc[1] = static_cast<int64_t>(reinterpret_cast<intptr_t>(taken));
  }
  std::sort(unowned.begin(), unowned.end());
  unowned.erase(std::unique(unowned.begin(), unowned.end()), unowned.end());
  for (char *p : unowned)
    if (!isOwned(p))
      m->release(p);
  return 0;
}

void qopt_tensor_free(qopt_tensor *t) {
  if (t) {
    std::free(t->data);
    t->data = nullptr;
  }
}

} // extern "C"
