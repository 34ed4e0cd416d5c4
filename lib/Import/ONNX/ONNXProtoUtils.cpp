//===- ONNXProtoUtils.cpp - libonnx calls that may throw ------------------===//
//
// Compiled with -fexceptions (see CMakeLists.txt). No MLIR here.
//
//===----------------------------------------------------------------------===//

#include "ONNXProtoUtils.h"

#include "onnx/defs/parser.h"
#include "onnx/onnx_pb.h"
#include "onnx/shape_inference/implementation.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream.h>
#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>

#include <sys/mman.h>
#include <unistd.h>

namespace {
/// The model's bytes in chunks of 1 MiB. With `release` (the bytes are a
/// read-only mapping of the file), the pages the parser has moved past are
/// given back to the kernel (read again, they come back from the page
/// cache): the ModelProto copies every weight, and the file need not stay
/// resident beside that copy.
class ChunkedInput : public google::protobuf::io::ZeroCopyInputStream {
public:
  ChunkedInput(const uint8_t *data, int64_t size, bool release)
      : data(data), size(size), release(release) {}
  bool Next(const void **out, int *n) override {
    if (pos >= size)
      return false;
    // The parser is done with everything before the last chunk (BackUp
    // goes back within it at most).
    if (release)
      dropBefore(pos - kChunk);
    *n = static_cast<int>(std::min(kChunk, size - pos));
    *out = data + pos;
    pos += *n;
    return true;
  }
  void BackUp(int count) override { pos -= count; }
  bool Skip(int count) override {
    if (count > size - pos) {
      pos = size;
      return false;
    }
    pos += count;
    return true;
  }
  int64_t ByteCount() const override { return pos; }

private:
  void dropBefore(int64_t end) {
    if (end <= dropped)
      return;
    uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    uintptr_t from =
        (reinterpret_cast<uintptr_t>(data) + dropped + page - 1) & ~(page - 1);
    uintptr_t to = (reinterpret_cast<uintptr_t>(data) + end) & ~(page - 1);
    if (to > from)
      madvise(reinterpret_cast<void *>(from), to - from, MADV_DONTNEED);
    dropped = end;
  }
  static constexpr int64_t kChunk = int64_t(1) << 20;
  const uint8_t *data;
  int64_t size, pos = 0, dropped = 0;
  bool release;
};
} // namespace

namespace qopt::onnx_import {

bool parseModelText(const std::string &text, onnx::ModelProto &model,
                    std::string &error) {
  try {
    onnx::OnnxParser parser(text.c_str());
    onnx::Common::Status status = parser.Parse(model);
    if (!status.IsOK()) {
      error = status.ErrorMessage();
      return false;
    }
    return true;
  } catch (const std::exception &e) {
    error = e.what();
  } catch (...) {
    error = "unknown error in the ONNX text parser";
  }
  return false;
}

bool parseModelBinary(const void *data, size_t size, onnx::ModelProto &model,
                      std::string &error, bool releaseMapped) {
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    error = "file is larger than 2 GiB: protobuf cannot hold it; store the "
            "weights as external data";
    return false;
  }
  ChunkedInput input(static_cast<const uint8_t *>(data),
                     static_cast<int64_t>(size), releaseMapped);
  google::protobuf::io::CodedInputStream stream(&input);
  stream.SetTotalBytesLimit(std::numeric_limits<int>::max());
  stream.SetRecursionLimit(256);
  try {
    if (!model.ParseFromCodedStream(&stream) ||
        !stream.ConsumedEntireMessage()) {
      error = "not a valid ONNX ModelProto (protobuf parsing failed: the "
              "file is truncated or corrupted)";
      return false;
    }
    return true;
  } catch (const std::exception &e) {
    error = e.what();
  } catch (...) {
    error = "unknown error while parsing protobuf";
  }
  return false;
}

bool inferShapes(onnx::ModelProto &model, std::string &error) {
  // With data propagation first: exports without constant folding compute
  // Reshape targets from Shape / Gather / Concat chains, whose ranks only
  // it recovers (and raising needs ranked activations). Without it if that
  // fails.
  for (bool propagate : {true, false}) {
    onnx::ModelProto copy = model;
    try {
      onnx::ShapeInferenceOptions options(/*check_type_val=*/false,
                                          /*strict_mode_val=*/0, propagate);
      onnx::shape_inference::InferShapes(
          copy, onnx::OpSchemaRegistry::Instance(), options);
      model = std::move(copy);
      return true;
    } catch (const std::exception &e) {
      error = e.what();
    } catch (...) {
      error = "unknown error in ONNX shape inference";
    }
  }
  return false;
}

std::vector<std::pair<std::string, std::string>>
nodeMetadata(const onnx::NodeProto &node) {
  std::vector<std::pair<std::string, std::string>> result;
  const google::protobuf::UnknownFieldSet &unknown =
      node.GetReflection()->GetUnknownFields(node);
  for (int i = 0; i < unknown.field_count(); ++i) {
    const google::protobuf::UnknownField &field = unknown.field(i);
    if (field.number() != 9 ||
        field.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED)
      continue;
    onnx::StringStringEntryProto entry;
    if (entry.ParseFromString(field.length_delimited()))
      result.emplace_back(entry.key(), entry.value());
  }
  return result;
}

namespace {
/// A bounds-checked reader of protobuf wire format.
struct WireReader {
  const uint8_t *begin, *pos, *end;

  bool varint(uint64_t &value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end)
        return false;
      uint8_t byte = *pos++;
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80))
        return true;
    }
    return false;
  }

  /// Reads a field key; on a length-delimited field also its extent.
  bool field(uint32_t &number, uint32_t &wireType, const uint8_t *&payload,
             uint64_t &length) {
    uint64_t key;
    if (!varint(key))
      return false;
    number = static_cast<uint32_t>(key >> 3);
    wireType = static_cast<uint32_t>(key & 7);
    switch (wireType) {
    case 0: { // varint
      uint64_t ignored;
      return varint(ignored);
    }
    case 1: // 64-bit
      if (end - pos < 8)
        return false;
      pos += 8;
      return true;
    case 5: // 32-bit
      if (end - pos < 4)
        return false;
      pos += 4;
      return true;
    case 2: // length-delimited
      if (!varint(length) || length > static_cast<uint64_t>(end - pos))
        return false;
      payload = pos;
      pos += length;
      return true;
    default: // groups are not used by ONNX
      return false;
    }
  }
};
} // namespace

bool findInitializerRawData(const uint8_t *data, size_t size,
                            std::vector<RawDataRange> &ranges,
                            std::string &error) {
  // ModelProto.graph = 7; GraphProto.initializer = 5; TensorProto.name = 8,
  // TensorProto.raw_data = 9.
  WireReader model{data, data, data + size};
  while (model.pos < model.end) {
    uint32_t number, wireType;
    const uint8_t *graphData = nullptr;
    uint64_t graphLength = 0;
    if (!model.field(number, wireType, graphData, graphLength)) {
      error = "malformed protobuf in the model";
      return false;
    }
    if (number != 7 || wireType != 2)
      continue;
    WireReader graph{data, graphData, graphData + graphLength};
    while (graph.pos < graph.end) {
      const uint8_t *tensorData = nullptr;
      uint64_t tensorLength = 0;
      if (!graph.field(number, wireType, tensorData, tensorLength)) {
        error = "malformed protobuf in the graph";
        return false;
      }
      if (number != 5 || wireType != 2)
        continue;
      WireReader tensor{data, tensorData, tensorData + tensorLength};
      RawDataRange range;
      bool hasRaw = false;
      while (tensor.pos < tensor.end) {
        const uint8_t *payload = nullptr;
        uint64_t length = 0;
        if (!tensor.field(number, wireType, payload, length)) {
          error = "malformed protobuf in an initializer";
          return false;
        }
        if (wireType != 2)
          continue;
        if (number == 8)
          range.name.assign(reinterpret_cast<const char *>(payload), length);
        else if (number == 9) {
          range.offset = static_cast<uint64_t>(payload - data);
          range.length = length;
          hasRaw = true;
        }
      }
      if (hasRaw)
        ranges.push_back(std::move(range));
    }
  }
  return true;
}

} // namespace qopt::onnx_import
