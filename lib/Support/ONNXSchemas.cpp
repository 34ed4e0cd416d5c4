//===- ONNXSchemas.cpp - ONNX operator schemas ----------------------------===//

#include "qopt/Support/ONNXSchemas.h"

#include <algorithm>
#include <cstring>

using namespace qopt::onnx_schema;

namespace {
#define QOPT_ONNX_ATTRIBUTES
constexpr Attribute kAttributes[] = {
#include "ONNXSchemas.inc"
};
#undef QOPT_ONNX_ATTRIBUTES
#define QOPT_ONNX_SCHEMAS
// Sorted by (name, since version).
constexpr Schema kSchemas[] = {
#include "ONNXSchemas.inc"
};
#undef QOPT_ONNX_SCHEMAS
} // namespace

const char *qopt::onnx_schema::attrTypeName(AttrType type) {
  switch (type) {
  case AttrType::Float:
    return "FLOAT";
  case AttrType::Int:
    return "INT";
  case AttrType::String:
    return "STRING";
  case AttrType::Tensor:
    return "TENSOR";
  case AttrType::Graph:
    return "GRAPH";
  case AttrType::Floats:
    return "FLOATS";
  case AttrType::Ints:
    return "INTS";
  case AttrType::Strings:
    return "STRINGS";
  case AttrType::Tensors:
    return "TENSORS";
  case AttrType::Graphs:
    return "GRAPHS";
  case AttrType::SparseTensor:
    return "SPARSE_TENSOR";
  case AttrType::SparseTensors:
    return "SPARSE_TENSORS";
  case AttrType::TypeProto:
    return "TYPE_PROTO";
  case AttrType::TypeProtos:
    return "TYPE_PROTOS";
  case AttrType::Undefined:
    break;
  }
  return "UNDEFINED";
}

const Attribute *Schema::attributes() const {
  return kAttributes + firstAttribute;
}

const Attribute *Schema::attribute(std::string_view name) const {
  for (unsigned i = 0; i < numAttributes; ++i)
    if (name == attributes()[i].name)
      return attributes() + i;
  return nullptr;
}

const Schema *qopt::onnx_schema::lookup(std::string_view op, int64_t opset) {
  const Schema *begin = std::begin(kSchemas), *end = std::end(kSchemas);
  const Schema *it = std::lower_bound(
      begin, end, op,
      [](const Schema &s, std::string_view name) { return s.name < name; });
  const Schema *best = nullptr;
  for (; it != end && it->name == op; ++it)
    if (it->sinceVersion <= opset)
      best = it;
  return best;
}

bool qopt::onnx_schema::isRuntimeExtension(std::string_view op, int64_t opset) {
  return op == "SimplifiedLayerNormalization" ||
         (op == "LayerNormalization" && opset < 17);
}

int64_t qopt::onnx_schema::maxOpset() { return QOPT_ONNX_MAX_OPSET; }

const char *qopt::onnx_schema::source() { return QOPT_ONNX_SCHEMAS_SOURCE; }

std::string qopt::onnx_schema::checkCounts(const Schema &schema, int numInputs,
                                           int numOutputs) {
  auto range = [](int lo, int hi) {
    if (lo == hi)
      return std::to_string(lo);
    if (hi >= (1 << 30))
      return "at least " + std::to_string(lo);
    return std::to_string(lo) + " to " + std::to_string(hi);
  };
  if (numInputs < schema.minInputs || numInputs > schema.maxInputs)
    return "takes " + range(schema.minInputs, schema.maxInputs) +
           " inputs, has " + std::to_string(numInputs);
  if (numOutputs < schema.minOutputs || numOutputs > schema.maxOutputs)
    return "produces " + range(schema.minOutputs, schema.maxOutputs) +
           " outputs, has " + std::to_string(numOutputs);
  return {};
}
