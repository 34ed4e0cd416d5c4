//===- qopt-run.cpp - Run a compiled model on .npy files ------------------===//
//
//   qopt-run model.so --input input_ids=x.npy [--input …] --output-dir out/
//
// Loads the model with the runtime's C API (no MLIR, no LLVM), checks and
// passes the inputs, writes each output as out/<name>.npy and prints a line
// per output. Exit status 1 with a message on any error.
//
//===----------------------------------------------------------------------===//

#include "qopt/Runtime/NpyDType.h"
#include "qopt/Support/Npy.h"

#include "qopt/Runtime/Runtime.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {
int fail(const std::string &message) {
  std::fprintf(stderr, "qopt-run: error: %s\n", message.c_str());
  return 1;
}

using qopt::npy::descrOf;
using qopt::npy::dtypeOf;

std::string shapeString(const int64_t *shape, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// A file name for output `name` (ONNX names may hold '/', ':' …).
std::string fileNameFor(const std::string &name) {
  std::string s;
  for (char c : name)
    s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '.')
             ? c
             : '_';
  if (s.empty() || s[0] == '.')
    s = "_" + s;
  return s;
}

void usage() {
  std::printf(
      "usage: qopt-run MODEL.so [options]\n"
      "  --input NAME=FILE.npy  an input by name (repeat); or FILE.npy for "
      "the\n"
      "                         inputs in order\n"
      "  --output-dir DIR       write each output as DIR/<name>.npy\n"
      "  --threads N            threads for the kernels (default: all cores)\n"
      "  --adapter DIR          load a PEFT LoRA adapter into the model's\n"
      "                         run-time slots (qoptc --lora-slots) first\n"
      "  --repeat N             run N times and print the mean latency of all\n"
      "                         but the first\n"
      "  --info                 print the model's inputs and outputs and exit\n"
      "  --device cpu|cuda      refuse a model compiled for another device\n"
      "                         (qoptc --target); a CUDA model runs on GPU\n"
      "                         $QOPT_CUDA_DEVICE (default 0)\n"
      "  --verbose              print the CPU, the kernels chosen for it and\n"
      "                         the threads (to stderr) before running, and\n"
      "                         after it how many loop nests ran on the\n"
      "                         thread pool and on the calling thread\n"
      "  --help                 this text\n");
}
} // namespace

int main(int argc, char **argv) {
  std::string modelPath, outputDir, adapterDir, device;
  std::vector<std::pair<std::string, std::string>> namedInputs;
  std::vector<std::string> positional;
  int threads = 0, repeat = 1;
  bool info = false, verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char *flag) -> const char * {
      size_t n = std::strlen(flag);
      if (arg.compare(0, n, flag) == 0 && arg.size() > n && arg[n] == '=')
        return argv[i] + n + 1;
      if (arg == flag && i + 1 < argc)
        return argv[++i];
      return nullptr;
    };
    auto number = [&](const char *text, int &out) {
      char *end;
      long v = std::strtol(text, &end, 10);
      if (*text == 0 || *end != 0 || v < 0 || v > 1000000)
        return false;
      out = static_cast<int>(v);
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    }
    if (arg == "--info") {
      info = true;
    } else if (arg == "--verbose") {
      verbose = true;
    } else if (const char *v = value("--input")) {
      std::string spec = v;
      size_t eq = spec.find('=');
      if (eq == std::string::npos)
        positional.push_back(spec);
      else
        namedInputs.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
    } else if (const char *v = value("--device")) {
      device = v;
      if (device != "cpu" && device != "cuda")
        return fail("--device expects cpu or cuda, got '" + device + "'");
    } else if (const char *v = value("--adapter")) {
      adapterDir = v;
    } else if (const char *v = value("--output-dir")) {
      outputDir = v;
    } else if (const char *v = value("--threads")) {
      if (!number(v, threads))
        return fail("--threads expects a non-negative integer, got '" +
                    std::string(v) + "'");
    } else if (const char *v = value("--repeat")) {
      if (!number(v, repeat) || repeat < 1)
        return fail("--repeat expects a positive integer, got '" +
                    std::string(v) + "'");
    } else if (!arg.empty() && arg[0] == '-') {
      return fail("unknown option '" + arg + "' (see --help)");
    } else if (modelPath.empty()) {
      modelPath = arg;
    } else {
      positional.push_back(arg);
    }
  }
  if (modelPath.empty()) {
    usage();
    return 1;
  }

  qopt_model *model;
  if (qopt_model_load_device(modelPath.c_str(),
                             device.empty() ? nullptr : device.c_str(), &model))
    return fail(qopt_last_error());
  struct Guard {
    qopt_model *m;
    ~Guard() { qopt_model_destroy(m); }
  } guard{model};
  if (verbose) {
    std::fprintf(stderr, "%s", qopt_model_cpu_kernels(model));
    size_t used, capacity;
    if (!qopt_model_gpu_memory(model, &used, &capacity))
      std::fprintf(stderr,
                   "gpu: %s\ngpu pool after loading: %zu of %zu bytes in use\n",
                   qopt_model_gpu_name(model), used, capacity);
    if (threads > 0)
      std::fprintf(stderr, "threads: %d\n", threads);
    else
      std::fprintf(stderr, "threads: all cores\n");
  }
  size_t numInputs = qopt_model_num_inputs(model);
  size_t numOutputs = qopt_model_num_outputs(model);
  std::vector<qopt_tensor_info> inputInfo(numInputs), outputInfo(numOutputs);
  for (size_t i = 0; i < numInputs; ++i)
    qopt_model_input_info(model, i, &inputInfo[i]);
  for (size_t i = 0; i < numOutputs; ++i)
    qopt_model_output_info(model, i, &outputInfo[i]);
  auto describe = [](const qopt_tensor_info &t) {
    std::string s =
        std::string(t.name) + ": " + qopt_dtype_name(t.dtype) + " [";
    for (int d = 0; d < t.rank; ++d) {
      s += d ? ", " : "";
      s += t.shape[d] >= 0 ? std::to_string(t.shape[d])
                           : (t.dim_names[d] ? t.dim_names[d] : "?");
    }
    return s + "]";
  };
  if (info) {
    for (auto &t : inputInfo)
      std::printf("input %s\n", describe(t).c_str());
    for (auto &t : outputInfo)
      std::printf("output %s\n", describe(t).c_str());
    std::printf("parameters %zu\n", qopt_model_num_parameters(model));
    for (size_t i = 0; i < qopt_model_num_lora_slots(model); ++i) {
      const char *module;
      int64_t rank;
      qopt_model_lora_slot(model, i, &module, &rank);
      std::printf("lora slot %s: rank %lld\n", module,
                  static_cast<long long>(rank));
    }
    return 0;
  }
  if (!adapterDir.empty() && qopt_model_load_adapter(model, adapterDir.c_str()))
    return fail(qopt_last_error());

  // Inputs: by name, or in order.
  std::vector<std::string> files(numInputs);
  if (!positional.empty() && !namedInputs.empty())
    return fail("give inputs either all by name or all in order");
  if (!positional.empty()) {
    if (positional.size() != numInputs)
      return fail("the model takes " + std::to_string(numInputs) + " inputs, " +
                  std::to_string(positional.size()) + " given");
    files = positional;
  }
  for (auto &[name, file] : namedInputs) {
    size_t i = 0;
    while (i < numInputs && name != inputInfo[i].name)
      ++i;
    if (i == numInputs) {
      std::string known;
      for (auto &t : inputInfo)
        known += (known.empty() ? "" : ", ") + std::string(t.name);
      return fail("the model has no input '" + name + "' (inputs: " + known +
                  ")");
    }
    if (!files[i].empty())
      return fail("input '" + name + "' given twice");
    files[i] = file;
  }
  std::vector<qopt::npy::Array> arrays(numInputs);
  std::vector<qopt_tensor> inputs(numInputs);
  for (size_t i = 0; i < numInputs; ++i) {
    if (files[i].empty())
      return fail("missing input " + describe(inputInfo[i]) + " (--input " +
                  inputInfo[i].name + "=FILE.npy)");
    std::string error;
    if (!qopt::npy::read(files[i], arrays[i], error))
      return fail(files[i] + ": " + error);
    qopt_tensor &t = inputs[i];
    t.dtype = dtypeOf(arrays[i].descr);
    if (t.dtype == QOPT_DTYPE_INVALID)
      return fail(files[i] + ": dtype '" + arrays[i].descr +
                  "' is not supported");
    if (arrays[i].shape.size() > QOPT_MAX_RANK)
      return fail(files[i] + ": too many dimensions");
    t.rank = static_cast<int32_t>(arrays[i].shape.size());
    for (int d = 0; d < t.rank; ++d)
      t.shape[d] = arrays[i].shape[d];
    t.data = arrays[i].data.data();
  }

  qopt_model_set_num_threads(model, threads);
  std::vector<qopt_tensor> outputs(numOutputs);
  double total = 0; // over the runs after the first (warm-up) one
  for (int r = 0; r < repeat; ++r) {
    if (r)
      for (auto &t : outputs)
        qopt_tensor_free(&t);
    auto start = std::chrono::steady_clock::now();
    if (qopt_model_run(model, inputs.data(), numInputs, outputs.data(),
                       numOutputs))
      return fail(qopt_last_error());
    if (r)
      total += std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                             start)
                   .count();
  }
  if (!outputDir.empty())
    mkdir(outputDir.c_str(), 0777); // exists already is fine
  int rc = 0;
  for (size_t i = 0; i < numOutputs; ++i) {
    qopt_tensor &t = outputs[i];
    std::printf("%s: %s %s", outputInfo[i].name, qopt_dtype_name(t.dtype),
                shapeString(t.shape, t.rank).c_str());
    if (!outputDir.empty()) {
      const char *descr = descrOf(t.dtype);
      qopt::npy::Array array;
      array.descr = descr ? descr : "";
      array.shape.assign(t.shape, t.shape + t.rank);
      size_t bytes = qopt_dtype_size(t.dtype);
      for (int d = 0; d < t.rank; ++d)
        bytes *= static_cast<size_t>(t.shape[d]);
      array.data.assign(static_cast<char *>(t.data),
                        static_cast<char *>(t.data) + bytes);
      std::string path =
          outputDir + "/" + fileNameFor(outputInfo[i].name) + ".npy";
      std::string error;
      if (!descr)
        rc = fail(std::string("output '") + outputInfo[i].name + "': " +
                  qopt_dtype_name(t.dtype) + " cannot be written as .npy");
      else if (!qopt::npy::write(path, array, error))
        rc = fail(path + ": " + error);
      else
        std::printf(" -> %s", path.c_str());
    }
    std::printf("\n");
    qopt_tensor_free(&t);
  }
  if (repeat > 1)
    std::printf("mean latency over %d runs (after the first): %.3f ms\n",
                repeat - 1, 1e3 * total / (repeat - 1));
  if (verbose) {
    int64_t pooled, onCaller;
    size_t used, capacity;
    if (!qopt_model_gpu_memory(model, &used, &capacity))
      std::fprintf(stderr, "gpu pool after the runs: %zu of %zu bytes in use\n",
                   used, capacity);
    qopt_model_loop_counts(model, &pooled, &onCaller);
    std::fprintf(stderr,
                 "loop nests run: %lld on the thread pool, %lld on the "
                 "calling thread\n",
                 static_cast<long long>(pooled),
                 static_cast<long long>(onCaller));
  }
  return rc;
}
