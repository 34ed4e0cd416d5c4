//===- ONNXSchemas.h - ONNX operator schemas, for checking nodes -*- C++
//-*-===//
//
// Every version of every default-domain ONNX operator (generated from the
// `onnx` package by scripts/gen-onnx-schemas.py): how many inputs and
// outputs a node may have and which attributes, of which types, it may or
// must carry. The importer checks each node against the schema in force at
// the model's opset; the conversion checks hand-written IR the same way.
// Plain C++, no MLIR.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_ONNXSCHEMAS_H
#define QOPT_SUPPORT_ONNXSCHEMAS_H

#include <cstdint>
#include <string>
#include <string_view>

namespace qopt::onnx_schema {

/// onnx.AttributeProto.AttributeType values.
enum class AttrType : uint8_t {
  Undefined = 0,
  Float = 1,
  Int = 2,
  String = 3,
  Tensor = 4,
  Graph = 5,
  Floats = 6,
  Ints = 7,
  Strings = 8,
  Tensors = 9,
  Graphs = 10,
  SparseTensor = 11,
  SparseTensors = 12,
  TypeProto = 13,
  TypeProtos = 14,
};

/// "INT", "FLOATS", …: how ONNX spells a type.
const char *attrTypeName(AttrType type);

struct Attribute {
  const char *name;
  AttrType type;
  bool required;
};

struct Schema {
  const char *name;
  int sinceVersion;
  bool deprecated; // removed from this version on
  int minInputs, maxInputs, minOutputs, maxOutputs;
  unsigned firstAttribute, numAttributes;

  const Attribute *attributes() const;
  /// The attribute named `name`, or null.
  const Attribute *attribute(std::string_view name) const;
};

/// The schema of default-domain operator `op` in force at `opset` (the
/// newest version not newer than the opset), or null when the operator does
/// not exist there (unknown, or introduced later).
const Schema *lookup(std::string_view op, int64_t opset);

/// Operators onnxruntime registers in the default domain outside the ONNX
/// standard (SimplifiedLayerNormalization; LayerNormalization before opset
/// 17), which its tools write into models: accepted without a schema (the
/// conversion's handlers check them).
bool isRuntimeExtension(std::string_view op, int64_t opset);

/// The newest default-domain opset the table knows.
int64_t maxOpset();

/// Where the table comes from ("onnx 1.23.2").
const char *source();

/// Checks a node's shape against its schema: `error` is empty when the
/// counts fit, else says what does not ("takes 2 inputs, has 1"). Inputs
/// count up to the last present one (trailing omitted optional inputs may
/// be left out).
std::string checkCounts(const Schema &schema, int numInputs, int numOutputs);

} // namespace qopt::onnx_schema

#endif // QOPT_SUPPORT_ONNXSCHEMAS_H
