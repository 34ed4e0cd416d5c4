//===- ONNXProtoUtils.h - libonnx calls that may throw ----------*- C++ -*-===//
//
// libonnx's text parser and shape inference report errors by throwing; the
// rest of the project is built without exceptions. These wrappers live in a
// translation unit compiled with -fexceptions and turn every exception into
// an error string.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_LIB_IMPORT_ONNX_ONNXPROTOUTILS_H
#define QOPT_LIB_IMPORT_ONNX_ONNXPROTOUTILS_H

#include <cstdint>
#include <string>
#include <vector>

namespace onnx {
class ModelProto;
class NodeProto;
} // namespace onnx

namespace qopt::onnx_import {

// TensorProto.DataType values (onnx.proto); libonnx 1.12's enum stops
// before the float8 and int4 types, so the numbers are spelled out.
enum ONNXDataType : int32_t {
  kFloat = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kComplex64 = 14,
  kComplex128 = 15,
  kBFloat16 = 16,
  kFloat8E4M3FN = 17,
  kFloat8E4M3FNUZ = 18,
  kFloat8E5M2 = 19,
  kFloat8E5M2FNUZ = 20,
  kUInt4 = 21,
  kInt4 = 22,
  kFloat4E2M1 = 23,
  kFloat8E8M0 = 24,
};

/// Parses ONNX's text format (`<ir_version: 8, …> graph (…) => (…) {…}`).
bool parseModelText(const std::string &text, onnx::ModelProto &model,
                    std::string &error);

/// Parses a binary ModelProto of any size up to 2 GiB. `releaseMapped`:
/// the bytes are a read-only mapping of the file, whose pages may be given
/// back to the kernel once parsed (never for bytes in ordinary memory: that
/// would zero them).
bool parseModelBinary(const void *data, size_t size, onnx::ModelProto &model,
                      std::string &error, bool releaseMapped = false);

/// Runs ONNX shape inference, filling value_info where it can. Failures
/// (unknown operator versions, inconsistent shapes) leave the model as it
/// was and are reported in `error`.
bool inferShapes(onnx::ModelProto &model, std::string &error);

/// NodeProto.metadata_props (field 9, ONNX 1.16+), e.g. torch's
/// `pkg.torch.onnx.name_scopes`. libonnx 1.12 predates the field, so it is
/// read from the unknown fields protobuf keeps.
std::vector<std::pair<std::string, std::string>>
nodeMetadata(const onnx::NodeProto &node);

/// Where the raw_data of each graph initializer lies in a serialized
/// ModelProto: found by walking the wire format, so large initializers can
/// be referenced in place instead of copied.
struct RawDataRange {
  std::string name;
  uint64_t offset = 0, length = 0;
};
bool findInitializerRawData(const uint8_t *data, size_t size,
                            std::vector<RawDataRange> &ranges,
                            std::string &error);

} // namespace qopt::onnx_import

#endif // QOPT_LIB_IMPORT_ONNX_ONNXPROTOUTILS_H
