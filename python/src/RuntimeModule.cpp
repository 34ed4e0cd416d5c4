//===- RuntimeModule.cpp - Python binding of the runtime C API ------------===//
//
// qopt._runtime: the C API (include/qopt/Runtime/Runtime.h) for numpy
// arrays. Inputs are read in place (the Python layer makes them contiguous
// and of the model's dtype); outputs are the model's own buffers, handed to
// numpy with a capsule that frees them.
//
//===----------------------------------------------------------------------===//

#include "qopt/Runtime/Runtime.h"
#include "qopt/Support/QuantFormats.h"

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace nb = nanobind;

namespace {
using Array = nb::ndarray<nb::numpy, nb::c_contig, nb::device::cpu>;

/// (dtype code, bits) for numpy, per runtime dtype.
nb::dlpack::dtype dlpackOf(qopt_dtype dtype) {
  switch (dtype) {
  case QOPT_DTYPE_F32:
    return nb::dtype<float>();
  case QOPT_DTYPE_F64:
    return nb::dtype<double>();
  case QOPT_DTYPE_F16:
    return {static_cast<uint8_t>(nb::dlpack::dtype_code::Float), 16, 1};
  case QOPT_DTYPE_BF16:
    return {static_cast<uint8_t>(nb::dlpack::dtype_code::Bfloat), 16, 1};
  case QOPT_DTYPE_I8:
    return nb::dtype<int8_t>();
  case QOPT_DTYPE_I16:
    return nb::dtype<int16_t>();
  case QOPT_DTYPE_I32:
    return nb::dtype<int32_t>();
  case QOPT_DTYPE_I64:
    return nb::dtype<int64_t>();
  case QOPT_DTYPE_U8:
    return nb::dtype<uint8_t>();
  case QOPT_DTYPE_U16:
    return nb::dtype<uint16_t>();
  case QOPT_DTYPE_U32:
    return nb::dtype<uint32_t>();
  case QOPT_DTYPE_U64:
    return nb::dtype<uint64_t>();
  case QOPT_DTYPE_BOOL:
    return nb::dtype<bool>();
  default:
    return {};
  }
}

qopt_dtype fromDlpack(nb::dlpack::dtype t) {
  for (int d = QOPT_DTYPE_F32; d <= QOPT_DTYPE_BOOL; ++d)
    if (dlpackOf(static_cast<qopt_dtype>(d)) == t)
      return static_cast<qopt_dtype>(d);
  return QOPT_DTYPE_INVALID;
}

/// (name, dtype name, shape with None for dynamic, dimension names).
using Info = std::tuple<std::string, std::string, nb::list, nb::list>;

Info toInfo(const qopt_tensor_info &t) {
  nb::list shape, names;
  for (int d = 0; d < t.rank; ++d) {
    shape.append(t.shape[d] >= 0 ? nb::object(nb::int_(t.shape[d]))
                                 : nb::none());
    names.append(t.dim_names[d] ? nb::object(nb::str(t.dim_names[d]))
                                : nb::none());
  }
  return {t.name, qopt_dtype_name(t.dtype), shape, names};
}

class Model {
public:
  Model(const std::string &path, const std::optional<std::string> &device) {
    if (qopt_model_load_device(path.c_str(), device ? device->c_str() : nullptr,
                               &model))
      throw std::runtime_error(qopt_last_error());
  }
  std::string device() const { return qopt_model_device(model); }
  std::string gpuName() const { return qopt_model_gpu_name(model); }
  ~Model() { qopt_model_destroy(model); }
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;

  std::vector<Info> inputs() const {
    std::vector<Info> out;
    for (size_t i = 0; i < qopt_model_num_inputs(model); ++i) {
      qopt_tensor_info t;
      qopt_model_input_info(model, i, &t);
      out.push_back(toInfo(t));
    }
    return out;
  }
  std::vector<Info> outputs(size_t entry) const {
    std::vector<Info> out;
    for (size_t i = 0; i < qopt_model_entry_num_outputs(model, entry); ++i) {
      qopt_tensor_info t;
      qopt_model_entry_output_info(model, entry, i, &t);
      out.push_back(toInfo(t));
    }
    return out;
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < qopt_model_num_entries(model); ++i)
      out.push_back(qopt_model_entry_name(model, i));
    return out;
  }
  std::string manifest() const { return qopt_model_manifest(model); }

  /// (name, dtype, shape, dim names, role) per parameter.
  std::vector<
      std::tuple<std::string, std::string, nb::list, nb::list, std::string>>
  parameters() const {
    std::vector<
        std::tuple<std::string, std::string, nb::list, nb::list, std::string>>
        out;
    for (size_t i = 0; i < qopt_model_num_parameters(model); ++i) {
      qopt_tensor_info t;
      qopt_param_role role;
      qopt_model_parameter_info(model, i, &t, &role);
      auto [name, dtype, shape, dims] = toInfo(t);
      out.emplace_back(name, dtype, shape, dims,
                       role == QOPT_PARAM_TRAINABLE ? "trainable"
                       : role == QOPT_PARAM_STATE   ? "state"
                                                    : "frozen");
    }
    return out;
  }

  /// A copy of the parameter's current value.
  nb::object getParameter(const std::string &name) const {
    qopt_tensor view;
    if (qopt_model_get_parameter(model, name.c_str(), &view))
      throw nb::key_error(qopt_last_error());
    size_t bytes = qopt_dtype_size(view.dtype);
    std::vector<size_t> shape(view.shape, view.shape + view.rank);
    for (size_t d : shape)
      bytes *= d;
    void *copy = std::malloc(bytes ? bytes : 1);
    std::memcpy(copy, view.data, bytes);
    nb::capsule owner(copy, [](void *p) noexcept { std::free(p); });
    return Array(copy, shape.size(), shape.data(), owner, nullptr,
                 dlpackOf(view.dtype))
        .cast();
  }

  void setParameter(const std::string &name, Array a) {
    if (a.ndim() > QOPT_MAX_RANK)
      throw nb::value_error("value has too many dimensions");
    qopt_tensor value;
    value.dtype = fromDlpack(a.dtype());
    value.rank = static_cast<int32_t>(a.ndim());
    for (size_t d = 0; d < a.ndim(); ++d)
      value.shape[d] = static_cast<int64_t>(a.shape(d));
    value.data = const_cast<void *>(a.data());
    if (qopt_model_set_parameter(model, name.c_str(), &value))
      throw nb::value_error(qopt_last_error());
  }

  void loadAdapter(const std::string &dir) {
    if (qopt_model_load_adapter(model, dir.c_str()))
      throw nb::value_error(qopt_last_error());
  }
  void unloadAdapter() { qopt_model_unload_adapter(model); }
  std::vector<std::pair<std::string, int64_t>> loraSlots() const {
    std::vector<std::pair<std::string, int64_t>> slots;
    for (size_t i = 0; i < qopt_model_num_lora_slots(model); ++i) {
      const char *module;
      int64_t rank;
      qopt_model_lora_slot(model, i, &module, &rank);
      slots.push_back({module, rank});
    }
    return slots;
  }

  bool usesRNG() const { return qopt_model_uses_rng(model); }
  std::pair<int64_t, int64_t> getRNG() const {
    int64_t seed, counter;
    qopt_model_get_rng(model, &seed, &counter);
    return {seed, counter};
  }
  void setRNG(int64_t seed, int64_t counter) {
    qopt_model_set_rng(model, seed, counter);
  }
  void setNumThreads(int n) { qopt_model_set_num_threads(model, n); }

  nb::list run(std::vector<Array> arrays, size_t entry) {
    std::vector<qopt_tensor> inputs(arrays.size());
    for (size_t i = 0; i < arrays.size(); ++i) {
      const Array &a = arrays[i];
      if (a.ndim() > QOPT_MAX_RANK)
        throw nb::value_error("input has too many dimensions");
      inputs[i].dtype = fromDlpack(a.dtype());
      if (inputs[i].dtype == QOPT_DTYPE_INVALID)
        throw nb::type_error(("input #" + std::to_string(i) +
                              " has a dtype the runtime does not support")
                                 .c_str());
      inputs[i].rank = static_cast<int32_t>(a.ndim());
      for (size_t d = 0; d < a.ndim(); ++d)
        inputs[i].shape[d] = static_cast<int64_t>(a.shape(d));
      inputs[i].data = const_cast<void *>(a.data());
    }
    std::vector<qopt_tensor> outputs(
        qopt_model_entry_num_outputs(model, entry));
    int rc;
    {
      nb::gil_scoped_release release; // runs may take seconds
      rc = qopt_model_run_entry(model, entry, inputs.data(), inputs.size(),
                                outputs.data(), outputs.size());
    }
    if (rc)
      throw nb::value_error(qopt_last_error());
    nb::list result;
    for (qopt_tensor &t : outputs) {
      void *data = t.data;
      nb::capsule owner(data, [](void *p) noexcept { std::free(p); });
      std::vector<size_t> shape(t.shape, t.shape + t.rank);
      result.append(Array(data, shape.size(), shape.data(), owner, nullptr,
                          dlpackOf(t.dtype))
                        .cast());
    }
    return result;
  }

private:
  qopt_model *model = nullptr;
};
/// A new 1-D numpy array of `n` elements of T, and its data to fill.
template <typename T> std::pair<nb::object, T *> newArray(size_t n) {
  void *data = std::malloc(n ? n * sizeof(T) : 1);
  nb::capsule owner(data, [](void *p) noexcept { std::free(p); });
  size_t shape[1] = {n};
  return {Array(data, 1, shape, owner, nullptr, nb::dtype<T>()).cast(),
          static_cast<T *>(data)};
}

using F32 =
    nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using U8 =
    nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

/// bitsandbytes' blockwise formats (qopt.quantize / qopt.dequantize): the
/// Support codecs of each.
struct BlockwiseFormat {
  const char *name;
  void (*quantize)(const float *, int64_t, int64_t, uint8_t *, float *);
  void (*dequantize)(const uint8_t *, const float *, int64_t, int64_t, float *);
  const float *table;
  size_t tableSize;
};

const BlockwiseFormat &blockwiseFormat(const std::string &name) {
  static const BlockwiseFormat formats[] = {
      {"nf4", qopt::nf4QuantizeBlockwise, qopt::nf4DequantizeBlockwise,
       qopt::nf4CodeTable().data(), 16},
      {"fp4", qopt::fp4QuantizeBlockwise, qopt::fp4DequantizeBlockwise,
       qopt::fp4CodeTable().data(), 16},
      {"int8-dynamic", qopt::dynamicQuantizeBlockwise,
       qopt::dynamicDequantizeBlockwise, qopt::dynamicCodeTable().data(), 256}};
  for (const BlockwiseFormat &f : formats)
    if (name == f.name)
      return f;
  throw nb::value_error(("unknown blockwise format '" + name + "'").c_str());
}

/// (codes, one per element, unpacked; absmax per block) of `x`.
std::pair<nb::object, nb::object>
quantizeBlockwise(F32 x, const std::string &format, int64_t blocksize) {
  const BlockwiseFormat &f = blockwiseFormat(format);
  if (blocksize <= 0)
    throw nb::value_error("block_size must be positive");
  auto n = static_cast<int64_t>(x.shape(0));
  auto [codes, c] = newArray<uint8_t>(n);
  auto [absmax, a] = newArray<float>((n + blocksize - 1) / blocksize);
  f.quantize(x.data(), n, blocksize, c, a);
  return {codes, absmax};
}

nb::object dequantizeBlockwise(U8 codes, F32 absmax, const std::string &format,
                               int64_t blocksize) {
  const BlockwiseFormat &f = blockwiseFormat(format);
  auto n = static_cast<int64_t>(codes.shape(0));
  if (blocksize <= 0 ||
      static_cast<int64_t>(absmax.shape(0)) != (n + blocksize - 1) / blocksize)
    throw nb::value_error("absmax must hold one value per block of block_size");
  auto [out, o] = newArray<float>(n);
  f.dequantize(codes.data(), absmax.data(), n, blocksize, o);
  return out;
}

/// QLoRA's double quantization of `absmax`: (codes, nested absmax, offset).
nb::tuple doubleQuantize(F32 absmax, int64_t blocksize) {
  if (blocksize <= 0)
    throw nb::value_error("the nested block size must be positive");
  auto n = static_cast<int64_t>(absmax.shape(0));
  auto [codes, c] = newArray<uint8_t>(n);
  auto [nested, a] = newArray<float>((n + blocksize - 1) / blocksize);
  float offset = qopt::doubleQuantizeAbsmax(absmax.data(), n, blocksize, c, a);
  return nb::make_tuple(codes, nested, offset);
}

/// Integer quantization of a rows × cols matrix per group of columns:
/// (codes packed per row little-endian, scales, zero points or None).
nb::tuple quantizeInt(F32 x, int64_t rows, int64_t cols, int64_t group,
                      unsigned bits, bool asym, bool mse) {
  if (rows <= 0 || cols <= 0 || int64_t(x.shape(0)) != rows * cols)
    throw nb::value_error("the array does not have rows x cols elements");
  if (group <= 0)
    throw nb::value_error("group_size must be positive");
  if (bits < 2 || bits > 8)
    throw nb::value_error("integer formats have 2 to 8 bits");
  int64_t groups = (cols + group - 1) / group;
  std::vector<uint8_t> codes(rows * cols);
  auto [scales, s] = newArray<float>(rows * groups);
  nb::object zeroPoints = nb::none();
  uint8_t *z = nullptr;
  if (asym) {
    auto [zp, zd] = newArray<uint8_t>(rows * groups);
    zeroPoints = zp;
    z = zd;
  }
  qopt::intQuantizeGroups(x.data(), rows, cols, group, bits, asym,
                          mse ? qopt::ClipSearch::MSE
                              : qopt::ClipSearch::MinMax,
                          codes.data(), s, z);
  int64_t rowBytes = qopt::packedRowBytes(cols, bits);
  auto [packed, p] = newArray<uint8_t>(rows * rowBytes);
  for (int64_t r = 0; r < rows; ++r)
    qopt::packBits(codes.data() + r * cols, cols, bits, p + r * rowBytes);
  return nb::make_tuple(packed, scales, zeroPoints);
}

qopt::SmallFloatKind smallFloatKind(const std::string &name) {
  if (name == "f8e4m3")
    return qopt::SmallFloatKind::F8E4M3FN;
  if (name == "f8e5m2")
    return qopt::SmallFloatKind::F8E5M2;
  if (name == "f4e2m1")
    return qopt::SmallFloatKind::F4E2M1FN;
  if (name == "f8e8m0")
    return qopt::SmallFloatKind::F8E8M0FNU;
  throw nb::value_error(("unknown small float '" + name + "'").c_str());
}

/// FP8 with one scale per row of a rows × cols matrix: (codes, scales).
nb::tuple quantizeFloat(F32 x, int64_t rows, int64_t cols,
                        const std::string &kind) {
  if (rows <= 0 || cols <= 0 || int64_t(x.shape(0)) != rows * cols)
    throw nb::value_error("the array does not have rows x cols elements");
  auto [codes, c] = newArray<uint8_t>(rows * cols);
  auto [scales, s] = newArray<float>(rows);
  qopt::floatQuantizeRows(smallFloatKind(kind), x.data(), rows, cols, c, s);
  return nb::make_tuple(codes, scales);
}

/// MXFP4 / NVFP4 of a rows × cols matrix: (E2M1 codes packed per row, low
/// nibble first; scale codes; NVFP4's global scale or None).
nb::tuple quantizeFP4(F32 x, int64_t rows, int64_t cols, bool nvfp4) {
  if (rows <= 0 || cols <= 0 || int64_t(x.shape(0)) != rows * cols)
    throw nb::value_error("the array does not have rows x cols elements");
  int64_t block = nvfp4 ? qopt::kNVFP4Block : qopt::kMXFP4Block;
  int64_t groups = (cols + block - 1) / block;
  std::vector<uint8_t> codes(rows * cols);
  auto [scales, s] = newArray<uint8_t>(rows * groups);
  nb::object global = nb::none();
  if (nvfp4)
    global =
        nb::float_(qopt::nvfp4Quantize(x.data(), rows, cols, codes.data(), s));
  else
    qopt::mxfp4Quantize(x.data(), rows, cols, codes.data(), s);
  int64_t rowBytes = qopt::packedRowBytes(cols, 4);
  auto [packed, p] = newArray<uint8_t>(rows * rowBytes);
  for (int64_t r = 0; r < rows; ++r)
    qopt::packBits(codes.data() + r * cols, cols, 4, p + r * rowBytes);
  return nb::make_tuple(packed, scales, global);
}

/// Every code of a small float decoded (NaN codes as NaN).
nb::object smallFloatTable(const std::string &kind) {
  qopt::SmallFloatKind k = smallFloatKind(kind);
  size_t n = size_t(1) << qopt::smallFloatBits(k);
  auto [table, t] = newArray<float>(n);
  for (size_t c = 0; c < n; ++c)
    t[c] = qopt::smallFloatDecode(k, static_cast<uint8_t>(c));
  return table;
}

nb::object codeTable(const std::string &format) {
  const BlockwiseFormat &f = blockwiseFormat(format);
  auto [table, t] = newArray<float>(f.tableSize);
  std::copy(f.table, f.table + f.tableSize, t);
  return table;
}
} // namespace

NB_MODULE(_runtime, m) {
  m.def("_quantize_blockwise", &quantizeBlockwise, nb::arg("x"),
        nb::arg("format"), nb::arg("blocksize"));
  m.def("_dequantize_blockwise", &dequantizeBlockwise, nb::arg("codes"),
        nb::arg("absmax"), nb::arg("format"), nb::arg("blocksize"));
  m.def("_double_quantize", &doubleQuantize, nb::arg("absmax"),
        nb::arg("blocksize"));
  m.def("_quantize_int", &quantizeInt, nb::arg("x"), nb::arg("rows"),
        nb::arg("cols"), nb::arg("group"), nb::arg("bits"), nb::arg("asym"),
        nb::arg("mse"));
  m.def("_code_table", &codeTable, nb::arg("format"));
  m.def("_quantize_float", &quantizeFloat, nb::arg("x"), nb::arg("rows"),
        nb::arg("cols"), nb::arg("kind"));
  m.def("_quantize_fp4", &quantizeFP4, nb::arg("x"), nb::arg("rows"),
        nb::arg("cols"), nb::arg("nvfp4"));
  m.def("_small_float_table", &smallFloatTable, nb::arg("kind"));
  m.doc() = "qopt runtime: load and run models compiled by qoptc";
  nb::class_<Model>(m, "Model")
      .def(nb::init<const std::string &, const std::optional<std::string> &>(),
           nb::arg("path"), nb::arg("device") = nb::none())
      .def("device", &Model::device)
      .def("gpu_name", &Model::gpuName)
      .def("inputs", &Model::inputs)
      .def("outputs", &Model::outputs, nb::arg("entry") = 0)
      .def("entries", &Model::entries)
      .def("manifest", &Model::manifest)
      .def("parameters", &Model::parameters)
      .def("get_parameter", &Model::getParameter, nb::arg("name"))
      .def("set_parameter", &Model::setParameter, nb::arg("name"),
           nb::arg("value"))
      .def("load_adapter", &Model::loadAdapter, nb::arg("dir"))
      .def("unload_adapter", &Model::unloadAdapter)
      .def("lora_slots", &Model::loraSlots)
      .def("uses_rng", &Model::usesRNG)
      .def("get_rng", &Model::getRNG)
      .def("set_rng", &Model::setRNG, nb::arg("seed"), nb::arg("counter"))
      .def("set_num_threads", &Model::setNumThreads, nb::arg("n"))
      .def("run", &Model::run, nb::arg("inputs"), nb::arg("entry") = 0);
}
