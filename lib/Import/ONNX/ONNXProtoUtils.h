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
