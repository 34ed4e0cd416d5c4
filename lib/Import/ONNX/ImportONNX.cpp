//===- ImportONNX.cpp - ONNX ModelProto to MLIR ---------------------------===//
//
// A thin importer: it maps the model's structure (types, initializers, graph
// inputs and outputs, nodes) onto qopt.param / func.func / onnx.node and
// checks everything a malformed file can get wrong. What each operator means
// is left to the conversion patterns.
//
//===----------------------------------------------------------------------===//

#include "qopt/Import/ONNX/ImportONNX.h"

#include "ONNXProtoUtils.h"
#include "qopt/Dialect/ONNX/IR/ONNX.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Support/ONNXSchemas.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Tools/mlir-translate/Translation.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/ManagedStatic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

#include "onnx/onnx_pb.h"

#include <limits>

using namespace mlir;
using namespace mlir::qopt;
using namespace ::qopt::onnx_import;

namespace {

/// The oldest and newest IR versions this importer reads.
constexpr int64_t kMinIRVersion = 3;
constexpr int64_t kMaxIRVersion = 14;

class ONNXImporter {
public:
  ONNXImporter(MLIRContext *context, const ONNXImportOptions &options,
               StringRef modelPath, const llvm::MemoryBuffer &buffer)
      : context(context), options(options), modelPath(modelPath),
        buffer(buffer), builder(context),
        fileLoc(FileLineColLoc::get(context, modelPath, 0, 0)) {}

  OwningOpRef<ModuleOp> run();

private:
  InFlightDiagnostic error() { return mlir::emitError(fileLoc); }

  LogicalResult parse();
  LogicalResult checkVersions();
  FailureOr<Type> convertElementType(int32_t dataType, StringRef what);
  FailureOr<Type> convertType(const onnx::TypeProto &type, StringRef what);
  FailureOr<RankedTensorType> tensorTypeOf(const onnx::TensorProto &tensor,
                                           StringRef what);
  LogicalResult collectValueTypes();
  LogicalResult importInitializer(const onnx::TensorProto &tensor);
  FailureOr<Attribute> importTensorData(const onnx::TensorProto &tensor,
                                        RankedTensorType type, StringRef what,
                                        bool allowReference);
  FailureOr<Attribute> importExternalData(const onnx::TensorProto &tensor,
                                          RankedTensorType type,
                                          uint64_t expectedBytes,
                                          StringRef what);
  FailureOr<Attribute> convertAttribute(const onnx::AttributeProto &attr,
                                        StringRef nodeDesc);
  LogicalResult importNode(const onnx::NodeProto &node, int64_t index);
  LogicalResult checkSchema(const onnx::NodeProto &node, StringRef nodeDesc,
                            int64_t opset);
  FailureOr<Value> lookup(StringRef name, StringRef nodeDesc);

  MLIRContext *context;
  const ONNXImportOptions &options;
  StringRef modelPath;
  const llvm::MemoryBuffer &buffer;
  OpBuilder builder;
  Location fileLoc;

  onnx::ModelProto model;
  llvm::StringMap<int64_t> opsets;
  llvm::StringMap<Type> valueTypes;
  /// Where each initializer's raw bytes lie in a binary file. Those that
  /// are imported as references to the file have no raw data left in
  /// `model` (parse() drops them).
  llvm::StringMap<std::pair<uint64_t, uint64_t>> rawDataRanges;
  llvm::StringSet<> usedDimNames;

  ModuleOp module;
  func::FuncOp func;
  llvm::StringMap<Value> values;
  llvm::StringMap<ParamOp> params;
  Value noneValue;
};

} // namespace

//===----------------------------------------------------------------------===//
// Parsing and versions
//===----------------------------------------------------------------------===//

LogicalResult ONNXImporter::parse() {
  StringRef bytes = buffer.getBuffer();
  StringRef trimmed = bytes.ltrim();
  bool textual = modelPath.ends_with(".onnxtext") || trimmed.starts_with("<");
  std::string message;
  if (textual) {
    if (!::qopt::onnx_import::parseModelText(bytes.str(), model, message))
      return error() << "cannot parse ONNX text: " << message;
    return success();
  }
  if (bytes.empty())
    return error() << "empty file: not an ONNX model";
  // A mapped file's pages are released as they are parsed: the proto holds
  // its own copy of every weight until parse() drops it below.
  if (!::qopt::onnx_import::parseModelBinary(
          bytes.data(), bytes.size(), model, message,
          buffer.getBufferKind() == llvm::MemoryBuffer::MemoryBuffer_MMap))
    return error() << message;
  std::vector<::qopt::onnx_import::RawDataRange> ranges;
  if (!::qopt::onnx_import::findInitializerRawData(
          reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), ranges,
          message))
    return error() << message;
  for (auto &range : ranges)
    rawDataRanges[range.name] = {range.offset, range.length};
  // A large initializer is imported as a reference to its bytes in the
  // file: drop the proto's copy of them now, or the file, the proto and
  // shape inference's copy of the proto would each hold every weight.
  if (!model.has_graph()) // mutable_graph() would add an empty one
    return success();
  for (onnx::TensorProto &t : *model.mutable_graph()->mutable_initializer()) {
    auto range = rawDataRanges.find(t.name());
    if (t.has_raw_data() && range != rawDataRanges.end() &&
        range->second.second == t.raw_data().size() &&
        static_cast<int64_t>(t.raw_data().size()) > options.inlineLimitBytes)
      delete t.release_raw_data(); // frees the bytes (clear() keeps them)
  }
  return success();
}

LogicalResult ONNXImporter::checkVersions() {
  int64_t ir = model.ir_version();
  if (ir < kMinIRVersion || ir > kMaxIRVersion)
    return error() << "ONNX IR version " << ir << " is not supported (this "
                   << "importer reads IR versions " << kMinIRVersion << " to "
                   << kMaxIRVersion << ")";
  if (!model.has_graph())
    return error() << "the model has no graph";
  for (const auto &opset : model.opset_import()) {
    std::string domain = opset.domain();
    if (domain == "ai.onnx")
      domain = "";
    opsets[domain] = opset.version();
  }
  auto it = opsets.find("");
  if (it == opsets.end())
    return error() << "the model imports no opset of the default ONNX domain";
  if (it->second < 1)
    return error() << "invalid default-domain opset " << it->second;
  if (it->second > ::qopt::onnx_schema::maxOpset())
    return error() << "default-domain opset " << it->second
                   << " is newer than any this importer knows (the newest is "
                   << ::qopt::onnx_schema::maxOpset() << ", from "
                   << ::qopt::onnx_schema::source() << ")";
  if (model.graph().output_size() == 0)
    return error() << "the graph has no outputs";
  return success();
}

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

FailureOr<Type> ONNXImporter::convertElementType(int32_t dataType,
                                                 StringRef what) {
  Builder b(context);
  auto unsignedInt = [&](unsigned width) {
    return IntegerType::get(context, width, IntegerType::Unsigned);
  };
  switch (dataType) {
  case kFloat:
    return Type(b.getF32Type());
  case kUInt8:
    return Type(unsignedInt(8));
  case kInt8:
    return Type(b.getIntegerType(8));
  case kUInt16:
    return Type(unsignedInt(16));
  case kInt16:
    return Type(b.getIntegerType(16));
  case kInt32:
    return Type(b.getIntegerType(32));
  case kInt64:
    return Type(b.getIntegerType(64));
  case kBool:
    return Type(b.getI1Type());
  case kFloat16:
    return Type(b.getF16Type());
  case kDouble:
    return Type(b.getF64Type());
  case kUInt32:
    return Type(unsignedInt(32));
  case kUInt64:
    return Type(unsignedInt(64));
  case kComplex64:
    return Type(ComplexType::get(b.getF32Type()));
  case kComplex128:
    return Type(ComplexType::get(b.getF64Type()));
  case kBFloat16:
    return Type(b.getBF16Type());
  case kFloat8E4M3FN:
    return Type(b.getType<Float8E4M3FNType>());
  case kFloat8E4M3FNUZ:
    return Type(b.getType<Float8E4M3FNUZType>());
  case kFloat8E5M2:
    return Type(b.getType<Float8E5M2Type>());
  case kFloat8E5M2FNUZ:
    return Type(b.getType<Float8E5M2FNUZType>());
  case kUInt4:
    return Type(unsignedInt(4));
  case kInt4:
    return Type(b.getIntegerType(4));
  case kFloat4E2M1:
    return Type(b.getType<Float4E2M1FNType>());
  case kFloat8E8M0:
    return Type(b.getType<Float8E8M0FNUType>());
  case kString:
    return error() << what << " has element type STRING, which is not "
                   << "supported";
  default:
    return error() << what << " has unknown ONNX element type " << dataType;
  }
}

FailureOr<Type> ONNXImporter::convertType(const onnx::TypeProto &type,
                                          StringRef what) {
  if (!type.has_tensor_type())
    return error() << what << " is not a tensor (sequence, map, optional "
                   << "and sparse values are not supported)";
  const auto &tensor = type.tensor_type();
  FailureOr<Type> element = convertElementType(tensor.elem_type(), what);
  if (failed(element))
    return failure();
  if (!tensor.has_shape())
    return Type(UnrankedTensorType::get(*element));
  SmallVector<int64_t> shape;
  for (const auto &dim : tensor.shape().dim()) {
    if (dim.has_dim_value()) {
      if (dim.dim_value() < 0)
        return error() << what << " has negative dimension " << dim.dim_value();
      shape.push_back(dim.dim_value());
      continue;
    }
    if (dim.has_dim_param()) {
      auto pinned = options.dimSizes.find(dim.dim_param());
      if (pinned != options.dimSizes.end()) {
        usedDimNames.insert(dim.dim_param());
        shape.push_back(pinned->second);
        continue;
      }
    }
    shape.push_back(ShapedType::kDynamic);
  }
  return Type(RankedTensorType::get(shape, *element));
}

LogicalResult ONNXImporter::collectValueTypes() {
  auto record = [&](const onnx::ValueInfoProto &info,
                    StringRef kind) -> LogicalResult {
    if (!info.has_type())
      return success();
    FailureOr<Type> type =
        convertType(info.type(), (kind + " '" + info.name() + "'").str());
    if (failed(type))
      return failure();
    valueTypes[info.name()] = *type;
    return success();
  };
  const onnx::GraphProto &graph = model.graph();
  for (const auto &info : graph.value_info())
    if (failed(record(info, "value")))
      return failure();
  for (const auto &info : graph.input())
    if (failed(record(info, "graph input")))
      return failure();
  for (const auto &info : graph.output())
    if (failed(record(info, "graph output")))
      return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Initializers
//===----------------------------------------------------------------------===//

/// Bytes that `numel` elements of `type` take in ONNX's raw_data (sub-byte
/// types are packed two to a byte).
static uint64_t rawBytes(Type elementType, uint64_t numel) {
  unsigned bits = isa<ComplexType>(elementType)
                      ? 2 * cast<ComplexType>(elementType)
                                .getElementType()
                                .getIntOrFloatBitWidth()
                      : elementType.getIntOrFloatBitWidth();
  if (bits == 1) // bool: one byte each
    bits = 8;
  return (numel * bits + 7) / 8;
}

/// Builds a DenseElementsAttr of `type` from little-endian raw bytes.
static FailureOr<Attribute> denseFromRaw(RankedTensorType type,
                                         ArrayRef<char> raw) {
  Type element = type.getElementType();
  int64_t numel = type.getNumElements();
  if (element.isInteger(1)) {
    SmallVector<bool> values(numel);
    for (int64_t i = 0; i < numel; ++i)
      values[i] = raw[i] != 0;
    return Attribute(DenseElementsAttr::get(type, values));
  }
  unsigned bits = element.getIntOrFloatBitWidth();
  if (bits % 8 == 0 && !isa<ComplexType>(element)) {
    bool detectedSplat = false;
    if (!DenseElementsAttr::isValidRawBuffer(type, raw, detectedSplat))
      return failure();
    return Attribute(DenseElementsAttr::getFromRawBuffer(type, raw));
  }
  if (bits == 4) { // int4 / uint4 / fp4: low nibble first
    SmallVector<APInt> values;
    values.reserve(numel);
    for (int64_t i = 0; i < numel; ++i) {
      uint8_t byte = static_cast<uint8_t>(raw[i / 2]);
      values.emplace_back(4, (i % 2) ? (byte >> 4) : (byte & 0xf));
    }
    if (isa<FloatType>(element)) {
      SmallVector<APFloat> floats;
      for (const APInt &v : values)
        floats.emplace_back(cast<FloatType>(element).getFloatSemantics(), v);
      return Attribute(DenseElementsAttr::get(type, floats));
    }
    return Attribute(DenseElementsAttr::get(type, values));
  }
  return failure();
}

FailureOr<Attribute>
ONNXImporter::importExternalData(const onnx::TensorProto &tensor,
                                 RankedTensorType type, uint64_t expectedBytes,
                                 StringRef what) {
  std::string location;
  uint64_t offset = 0;
  std::optional<uint64_t> length;
  for (const auto &entry : tensor.external_data()) {
    const std::string &key = entry.key();
    if (key == "location") {
      location = entry.value();
    } else if (key == "offset" || key == "length") {
      uint64_t value;
      if (StringRef(entry.value()).getAsInteger(10, value))
        return error() << what << ": external data " << key << " '"
                       << entry.value() << "' is not a number";
      if (key == "offset")
        offset = value;
      else
        length = value;
    }
  }
  if (location.empty())
    return error() << what << ": external data has no location";
  if (modelPath.empty() || modelPath == "-" || modelPath == "<stdin>")
    return error() << what << ": external data '" << location
                   << "' needs the model's folder; read the model from a "
                   << "file, not standard input";
  if (llvm::sys::path::is_absolute(location))
    return error() << what << ": external data location '" << location
                   << "' is absolute; it must be relative to the model's "
                   << "folder";
  for (StringRef part : llvm::make_range(llvm::sys::path::begin(location),
                                         llvm::sys::path::end(location)))
    if (part == "..")
      return error() << what << ": external data location '" << location
                     << "' leaves the model's folder through '..'";
  // Resolve symlinks: the file must really lie inside the model's folder.
  SmallString<256> folder(modelPath);
  llvm::sys::path::remove_filename(folder);
  if (folder.empty())
    folder = ".";
  SmallString<256> realFolder, realFile, path(folder);
  llvm::sys::path::append(path, location);
  if (llvm::sys::fs::real_path(folder, realFolder))
    return error() << what << ": cannot resolve the model's folder '" << folder
                   << "'";
  if (std::error_code ec = llvm::sys::fs::real_path(path, realFile))
    return error() << what << ": external data file '" << location
                   << "' cannot be opened: " << ec.message();
  StringRef realFileRef = realFile;
  if (!realFileRef.starts_with(realFolder) ||
      realFileRef.size() <= realFolder.size() ||
      !llvm::sys::path::is_separator(realFileRef[realFolder.size()]))
    return error() << what << ": external data '" << location
                   << "' resolves to '" << realFile
                   << "', outside the model's folder (through a link)";
  llvm::sys::fs::file_status status;
  if (llvm::sys::fs::status(realFile, status) ||
      !llvm::sys::fs::is_regular_file(status))
    return error() << what << ": external data '" << location
                   << "' is not a regular file";
  uint64_t fileSize = status.getSize();
  uint64_t available = offset <= fileSize ? fileSize - offset : 0;
  if (offset > fileSize)
    return error() << what << ": external data offset " << offset
                   << " is past the end of '" << location << "' (" << fileSize
                   << " bytes)";
  if (length && *length != expectedBytes)
    return error() << what << ": external data length " << *length
                   << " does not match " << type << " (" << expectedBytes
                   << " bytes)";
  if (available < expectedBytes)
    return error() << what << ": '" << location << "' holds " << available
                   << " bytes from offset " << offset << " but " << type
                   << " needs " << expectedBytes;
  return Attribute(
      ExternalDataAttr::get(context, location, offset, expectedBytes));
}

/// Typed-field data (float_data, int32_data, …) as a DenseElementsAttr.
static FailureOr<Attribute> denseFromTypedFields(const onnx::TensorProto &t,
                                                 RankedTensorType type) {
  Type element = type.getElementType();
  int64_t numel = type.getNumElements();
  auto check = [&](int64_t count) { return count == numel; };
  if (element.isF32()) {
    if (!check(t.float_data_size()))
      return failure();
    return Attribute(DenseElementsAttr::get(
        type, ArrayRef<float>(t.float_data().data(), t.float_data_size())));
  }
  if (element.isF64()) {
    if (!check(t.double_data_size()))
      return failure();
    return Attribute(DenseElementsAttr::get(
        type, ArrayRef<double>(t.double_data().data(), t.double_data_size())));
  }
  if (element.isInteger(64) && !element.isUnsignedInteger()) {
    if (!check(t.int64_data_size()))
      return failure();
    return Attribute(DenseElementsAttr::get(
        type, ArrayRef<int64_t>(t.int64_data().data(), t.int64_data_size())));
  }
  if (element.isUnsignedInteger(32) || element.isUnsignedInteger(64)) {
    if (!check(t.uint64_data_size()))
      return failure();
    SmallVector<APInt> values;
    for (uint64_t v : t.uint64_data())
      values.emplace_back(element.getIntOrFloatBitWidth(), v);
    return Attribute(DenseElementsAttr::get(type, values));
  }
  // Everything else narrower than 32 bits travels in int32_data: integers
  // (sign- or zero-extended), bool, and float16/bfloat16/float8 bit patterns.
  unsigned bits = element.getIntOrFloatBitWidth();
  if (bits <= 32 && !isa<ComplexType>(element)) {
    // Sub-byte types pack two elements per int32 entry.
    int64_t expected = bits == 4 ? (numel + 1) / 2 : numel;
    if (!check(t.int32_data_size()) && t.int32_data_size() != expected)
      return failure();
    SmallVector<APInt> values;
    for (int64_t i = 0; i < numel; ++i) {
      uint32_t v =
          bits == 4
              ? static_cast<uint32_t>(t.int32_data(i / 2) >> (4 * (i % 2)))
              : static_cast<uint32_t>(t.int32_data(i));
      values.emplace_back(bits,
                          v & (bits == 32 ? 0xffffffffu : ((1u << bits) - 1)));
    }
    if (auto f = dyn_cast<FloatType>(element)) {
      SmallVector<APFloat> floats;
      for (const APInt &v : values)
        floats.emplace_back(f.getFloatSemantics(), v);
      return Attribute(DenseElementsAttr::get(type, floats));
    }
    if (element.isInteger(1)) {
      SmallVector<bool> flags;
      for (const APInt &v : values)
        flags.push_back(!v.isZero());
      return Attribute(DenseElementsAttr::get(type, flags));
    }
    return Attribute(DenseElementsAttr::get(type, values));
  }
  return failure();
}

FailureOr<Attribute>
ONNXImporter::importTensorData(const onnx::TensorProto &tensor,
                               RankedTensorType type, StringRef what,
                               bool allowReference) {
  if (isa<ComplexType>(type.getElementType()))
    return error() << what << " holds complex numbers, which are not "
                   << "supported";
  uint64_t numel = static_cast<uint64_t>(type.getNumElements());
  uint64_t expected = rawBytes(type.getElementType(), numel);
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL)
    return importExternalData(tensor, type, expected, what);
  // An initializer whose bytes parse() left in the file: a reference.
  auto range = rawDataRanges.find(tensor.name());
  if (allowReference && !tensor.has_raw_data() &&
      range != rawDataRanges.end()) {
    if (range->second.second != expected)
      return error() << what << " has " << range->second.second
                     << " bytes of raw data but " << type << " needs "
                     << expected;
    return Attribute(ExternalDataAttr::get(context,
                                           llvm::sys::path::filename(modelPath),
                                           range->second.first, expected));
  }
  if (tensor.has_raw_data()) {
    const std::string &raw = tensor.raw_data();
    if (raw.size() != expected)
      return error() << what << " has " << raw.size()
                     << " bytes of raw data but " << type << " needs "
                     << expected;
    FailureOr<Attribute> dense =
        denseFromRaw(type, ArrayRef<char>(raw.data(), raw.size()));
    if (failed(dense))
      return error() << what << ": cannot read raw data of " << type;
    return dense;
  }
  if (numel == 0)
    return Attribute(DenseElementsAttr::get(type, ArrayRef<Attribute>()));
  FailureOr<Attribute> dense = denseFromTypedFields(tensor, type);
  if (failed(dense))
    return error() << what << " holds no data or the wrong number of "
                   << "elements for " << type;
  return dense;
}

/// The static tensor type of an initializer or tensor attribute, with its
/// size checked: a corrupted file must not make us allocate exabytes.
FailureOr<RankedTensorType>
ONNXImporter::tensorTypeOf(const onnx::TensorProto &tensor, StringRef what) {
  FailureOr<Type> element = convertElementType(tensor.data_type(), what);
  if (failed(element))
    return failure();
  SmallVector<int64_t> shape;
  uint64_t numel = 1;
  constexpr uint64_t kMaxElements = uint64_t(1) << 48;
  for (int64_t d : tensor.dims()) {
    if (d < 0)
      return error() << what << " has negative dimension " << d;
    if (d != 0 && numel > kMaxElements / static_cast<uint64_t>(d))
      return error() << what << " has more than 2^48 elements";
    numel *= static_cast<uint64_t>(d);
    shape.push_back(d);
  }
  return RankedTensorType::get(shape, *element);
}

LogicalResult ONNXImporter::importInitializer(const onnx::TensorProto &tensor) {
  std::string what = "initializer '" + tensor.name() + "'";
  if (tensor.name().empty())
    return error() << "an initializer has no name";
  if (params.count(tensor.name()))
    return error() << what << " is defined twice";
  FailureOr<RankedTensorType> type = tensorTypeOf(tensor, what);
  if (failed(type))
    return failure();
  FailureOr<Attribute> data =
      importTensorData(tensor, *type, what, /*allowReference=*/true);
  if (failed(data))
    return failure();
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPoint(func);
  auto param =
      ParamOp::create(builder, fileLoc, builder.getStringAttr(tensor.name()),
                      TypeAttr::get(*type), UnitAttr(), UnitAttr(), *data);
  params[tensor.name()] = param;
  return success();
}

//===----------------------------------------------------------------------===//
// Nodes
//===----------------------------------------------------------------------===//

FailureOr<Value> ONNXImporter::lookup(StringRef name, StringRef nodeDesc) {
  if (name.empty()) {
    if (!noneValue) {
      OpBuilder::InsertionGuard guard(builder);
      builder.setInsertionPointToStart(&func.getBody().front());
      noneValue = ONNXNoneOp::create(builder, fileLoc, builder.getNoneType());
    }
    return noneValue;
  }
  auto it = values.find(name);
  if (it != values.end())
    return it->second;
  auto param = params.find(name);
  if (param != params.end()) {
    OpBuilder::InsertionGuard guard(builder);
    builder.setInsertionPointToStart(&func.getBody().front());
    Value loaded = LoadParamOp::create(
        builder, fileLoc, param->second.getTensorType(),
        FlatSymbolRefAttr::get(param->second.getSymNameAttr()));
    values[name] = loaded;
    return loaded;
  }
  return error() << nodeDesc << " reads '" << name
                 << "', which no earlier node, graph input or initializer "
                 << "defines";
}

FailureOr<Attribute>
ONNXImporter::convertAttribute(const onnx::AttributeProto &attr,
                               StringRef nodeDesc) {
  Builder b(context);
  std::string what = (nodeDesc + ": attribute '" + attr.name() + "'").str();
  if (!attr.ref_attr_name().empty())
    return error() << what << " refers to a function attribute; ONNX "
                   << "functions are not supported";
  switch (attr.type()) {
  case onnx::AttributeProto::FLOAT:
    return Attribute(b.getF32FloatAttr(attr.f()));
  case onnx::AttributeProto::INT:
    return Attribute(b.getI64IntegerAttr(attr.i()));
  case onnx::AttributeProto::STRING:
    return Attribute(b.getStringAttr(attr.s()));
  case onnx::AttributeProto::FLOATS:
    return Attribute(b.getDenseF32ArrayAttr(
        ArrayRef<float>(attr.floats().data(), attr.floats_size())));
  case onnx::AttributeProto::INTS:
    return Attribute(b.getDenseI64ArrayAttr(
        ArrayRef<int64_t>(attr.ints().data(), attr.ints_size())));
  case onnx::AttributeProto::STRINGS: {
    SmallVector<Attribute> strings;
    for (const std::string &s : attr.strings())
      strings.push_back(b.getStringAttr(s));
    return Attribute(b.getArrayAttr(strings));
  }
  case onnx::AttributeProto::TENSOR: {
    const onnx::TensorProto &tensor = attr.t();
    FailureOr<RankedTensorType> type = tensorTypeOf(tensor, what);
    if (failed(type))
      return failure();
    // Constant tensors inside nodes have no stable file offset: inline.
    return importTensorData(tensor, *type, what, /*allowReference=*/false);
  }
  case onnx::AttributeProto::GRAPH:
  case onnx::AttributeProto::GRAPHS:
    if (options.allowUnsupported)
      return Attribute(b.getStringAttr("<subgraph not imported>"));
    return error() << what << " holds a subgraph: control flow (If, Loop, "
                   << "Scan) is not supported";
  default:
    return error() << what << " has unsupported attribute type "
                   << static_cast<int>(attr.type());
  }
}

/// The node against its operator's schema at the model's opset: the
/// operator exists there, input and output counts, attribute names and
/// types, required attributes.
LogicalResult ONNXImporter::checkSchema(const onnx::NodeProto &node,
                                        StringRef nodeDesc, int64_t opset) {
  namespace schema = ::qopt::onnx_schema;
  auto nodeError = [&]() -> InFlightDiagnostic {
    InFlightDiagnostic diag = error();
    diag << nodeDesc << ", opset " << opset << ": ";
    return diag;
  };
  const schema::Schema *op = schema::lookup(node.op_type(), opset);
  if (!op && schema::isRuntimeExtension(node.op_type(), opset))
    return success();
  if (!op) {
    if (const schema::Schema *later =
            schema::lookup(node.op_type(), schema::maxOpset()))
      return nodeError() << "operator '" << node.op_type()
                         << "' does not exist before opset "
                         << later->sinceVersion;
    return nodeError() << "'" << node.op_type()
                       << "' is not an operator of the default ONNX domain";
  }
  if (op->deprecated)
    return nodeError() << "operator '" << node.op_type()
                       << "' was removed in opset " << op->sinceVersion;
  std::string counts =
      schema::checkCounts(*op, node.input_size(), node.output_size());
  if (!counts.empty())
    return nodeError() << node.op_type() << " " << counts;
  for (const auto &attr : node.attribute()) {
    const schema::Attribute *expected = op->attribute(attr.name());
    if (!expected) {
      std::string known;
      for (unsigned i = 0; i < op->numAttributes; ++i)
        known += (i ? ", " : "") + std::string(op->attributes()[i].name);
      return nodeError() << node.op_type() << " has no attribute '"
                         << attr.name() << "' ("
                         << (known.empty() ? "it takes none"
                                           : "it takes: " + known)
                         << ")";
    }
    if (attr.type() != static_cast<int>(expected->type))
      return nodeError() << "attribute '" << attr.name() << "' must be "
                         << schema::attrTypeName(expected->type) << ", not "
                         << schema::attrTypeName(
                                static_cast<schema::AttrType>(attr.type()));
  }
  for (unsigned i = 0; i < op->numAttributes; ++i) {
    const schema::Attribute &a = op->attributes()[i];
    if (a.required &&
        llvm::none_of(node.attribute(), [&](const onnx::AttributeProto &p) {
          return p.name() == a.name;
        }))
      return nodeError() << "required attribute '" << a.name << "' is missing";
  }
  return success();
}

LogicalResult ONNXImporter::importNode(const onnx::NodeProto &node,
                                       int64_t index) {
  std::string domain = node.domain() == "ai.onnx" ? "" : node.domain();
  std::string name = node.name().empty()
                         ? node.op_type() + "_" + std::to_string(index)
                         : node.name();
  std::string nodeDesc = "node '" + name + "' (" +
                         (domain.empty() ? "" : domain + ".") + node.op_type() +
                         ")";
  if (node.op_type().empty())
    return error() << "node '" << name << "' has no op_type";
  auto opset = opsets.find(domain);
  if (opset == opsets.end())
    return error() << nodeDesc << " is in domain '" << domain
                   << "', which the model does not import (opset_import)";
  static const llvm::StringSet<> kKnownDomains = {"", "com.microsoft"};
  if (!kKnownDomains.contains(domain) && !options.allowUnsupported)
    return error() << nodeDesc << ", opset " << opset->second << ": domain '"
                   << domain << "' is not supported; "
                   << "--allow-unsupported imports it as an opaque node";

  llvm::StringSet<> seen;
  for (const auto &attr : node.attribute())
    if (!seen.insert(attr.name()).second)
      return error() << nodeDesc << " has attribute '" << attr.name()
                     << "' twice";
  if (domain.empty() && failed(checkSchema(node, nodeDesc, opset->second)))
    return failure();

  SmallVector<Value> inputs;
  for (const std::string &input : node.input()) {
    FailureOr<Value> value = lookup(input, nodeDesc);
    if (failed(value))
      return failure();
    inputs.push_back(*value);
  }
  SmallVector<Type> resultTypes;
  for (const std::string &output : node.output()) {
    if (output.empty()) {
      resultTypes.push_back(builder.getNoneType());
      continue;
    }
    if (values.count(output) || params.count(output))
      return error() << nodeDesc << " defines '" << output
                     << "', which is already defined";
    auto type = valueTypes.find(output);
    if (type == valueTypes.end())
      return error() << nodeDesc << ", opset " << opset->second
                     << ": the type of output '" << output
                     << "' is unknown (the model has no value_info for it "
                     << "and shape inference could not derive it)";
    resultTypes.push_back(type->second);
  }

  SmallVector<NamedAttribute> attributes;
  for (const auto &attr : node.attribute()) {
    FailureOr<Attribute> value = convertAttribute(attr, nodeDesc);
    if (failed(value))
      return failure();
    attributes.emplace_back(builder.getStringAttr(attr.name()), *value);
  }
  DictionaryAttr metadata;
  auto props = ::qopt::onnx_import::nodeMetadata(node);
  if (!props.empty()) {
    SmallVector<NamedAttribute> entries;
    for (const auto &[key, value] : props)
      entries.emplace_back(builder.getStringAttr(key),
                           builder.getStringAttr(value));
    metadata = builder.getDictionaryAttr(entries);
  }

  Location loc = NameLoc::get(builder.getStringAttr(name), fileLoc);
  auto op = ONNXNodeOp::create(
      builder, loc, resultTypes, builder.getStringAttr(node.op_type()),
      builder.getStringAttr(domain), builder.getI64IntegerAttr(opset->second),
      builder.getDictionaryAttr(attributes), metadata, inputs);
  for (auto [output, result] : llvm::zip(node.output(), op.getResults()))
    if (!output.empty())
      values[output] = result;
  return success();
}

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

OwningOpRef<ModuleOp> ONNXImporter::run() {
  if (failed(parse()) || failed(checkVersions()) || failed(collectValueTypes()))
    return {};
  // Fill in missing intermediate types with ONNX shape inference (which
  // replaces the model: take references into it only after this).
  llvm::StringSet<> initializerNames;
  for (const auto &init : model.graph().initializer())
    initializerNames.insert(init.name());
  bool missing = false;
  for (const auto &node : model.graph().node())
    for (const std::string &output : node.output())
      missing |= !output.empty() && !valueTypes.count(output);
  if (missing) {
    std::string message;
    if (::qopt::onnx_import::inferShapes(model, message)) {
      valueTypes.clear();
      if (failed(collectValueTypes()))
        return {};
    }
  }

  const onnx::GraphProto &graph = model.graph();

  OwningOpRef<ModuleOp> owned = ModuleOp::create(fileLoc);
  module = *owned;
  Builder b(context);
  SmallVector<NamedAttribute> opsetAttrs;
  // The default domain is spelled "ai.onnx": MLIR dictionaries cannot have
  // an empty key.
  for (auto &entry : opsets)
    opsetAttrs.emplace_back(
        b.getStringAttr(entry.getKey().empty() ? "ai.onnx" : entry.getKey()),
        b.getI64IntegerAttr(entry.getValue()));
  MLIRContext *ctx = b.getContext();
  ONNXDialect::IrVersionAttrHelper(ctx).setAttr(
      module, b.getI64IntegerAttr(model.ir_version()));
  ONNXDialect::OpsetImportAttrHelper(ctx).setAttr(
      module, b.getDictionaryAttr(opsetAttrs));
  if (!model.producer_name().empty())
    ONNXDialect::ProducerAttrHelper(ctx).setAttr(
        module, b.getStringAttr(model.producer_name() + " " +
                                model.producer_version()));

  // Signature: graph inputs that are not initializers (IR < 4 lists
  // initializers among the inputs too).
  SmallVector<Type> argTypes, resultTypes;
  SmallVector<const onnx::ValueInfoProto *> inputs;
  for (const auto &input : graph.input()) {
    if (initializerNames.contains(input.name()))
      continue;
    auto type = valueTypes.find(input.name());
    if (input.name().empty() || type == valueTypes.end()) {
      error() << "graph input '" << input.name() << "' has no tensor type";
      return {};
    }
    inputs.push_back(&input);
    argTypes.push_back(type->second);
  }
  for (const auto &output : graph.output()) {
    auto type = valueTypes.find(output.name());
    if (type == valueTypes.end()) {
      error() << "graph output '" << output.name() << "' has no tensor type";
      return {};
    }
    resultTypes.push_back(type->second);
  }
  for (auto &entry : options.dimSizes)
    if (!usedDimNames.contains(entry.getKey())) {
      error() << "--dim names '" << entry.getKey()
              << "', which no dimension of the model uses";
      return {};
    }

  // Function name: the graph's role, unique among the parameters' names.
  std::string funcName = "main";
  while (initializerNames.contains(funcName))
    funcName = "_" + funcName;
  builder.setInsertionPointToEnd(module.getBody());
  func = func::FuncOp::create(builder, fileLoc, funcName,
                              builder.getFunctionType(argTypes, resultTypes));
  Block *entry = func.addEntryBlock();
  // The names of dynamic dimensions ("batch", "seq"), so that the runtime
  // can check that inputs agree on them; "" where a dimension has none.
  auto dimNames = [&](const onnx::ValueInfoProto &info) -> ArrayAttr {
    const auto &type = info.type();
    if (!type.has_tensor_type() || !type.tensor_type().has_shape())
      return {};
    SmallVector<Attribute> names;
    bool any = false;
    for (const auto &dim : type.tensor_type().shape().dim()) {
      bool dynamic = dim.has_dim_param() && !dim.has_dim_value() &&
                     !options.dimSizes.contains(dim.dim_param());
      names.push_back(b.getStringAttr(dynamic ? dim.dim_param() : ""));
      any |= dynamic;
    }
    return any ? b.getArrayAttr(names) : ArrayAttr();
  };
  for (auto [i, input] : llvm::enumerate(inputs)) {
    func.setArgAttr(i, QOptDialect::NameAttrHelper::getNameStr(),
                    b.getStringAttr(input->name()));
    if (ArrayAttr dims = dimNames(*input))
      func.setArgAttr(i, QOptDialect::DimNamesAttrHelper::getNameStr(), dims);
    values[input->name()] = entry->getArgument(i);
  }
  for (auto [i, output] : llvm::enumerate(graph.output())) {
    func.setResultAttr(i, QOptDialect::NameAttrHelper::getNameStr(),
                       b.getStringAttr(output.name()));
    if (ArrayAttr dims = dimNames(output))
      func.setResultAttr(i, QOptDialect::DimNamesAttrHelper::getNameStr(),
                         dims);
  }

  for (const auto &init : graph.initializer())
    if (failed(importInitializer(init)))
      return {};
  if (graph.sparse_initializer_size()) {
    error() << "sparse initializers are not supported";
    return {};
  }

  builder.setInsertionPointToEnd(entry);
  for (auto [index, node] : llvm::enumerate(graph.node()))
    if (failed(importNode(node, index)))
      return {};

  SmallVector<Value> results;
  for (const auto &output : graph.output()) {
    FailureOr<Value> value =
        lookup(output.name(), "graph output '" + output.name() + "'");
    if (failed(value))
      return {};
    if (value->getType() != valueTypes[output.name()]) {
      error() << "graph output '" << output.name() << "' is declared "
              << valueTypes[output.name()] << " but its producer has type "
              << value->getType();
      return {};
    }
    results.push_back(*value);
  }
  func::ReturnOp::create(builder, fileLoc, results);
  return owned;
}

bool mlir::qopt::parseDimSpec(StringRef spec, ONNXImportOptions &options,
                              std::string &error) {
  auto [name, size] = spec.split('=');
  int64_t value;
  if (name.empty() || size.getAsInteger(10, value) || value < 0) {
    error =
        ("--dim expects NAME=SIZE with a non-negative size, got '" + spec + "'")
            .str();
    return false;
  }
  options.dimSizes[name] = value;
  return true;
}

OwningOpRef<ModuleOp>
mlir::qopt::importONNXModel(llvm::SourceMgr &sourceMgr, MLIRContext *context,
                            const ONNXImportOptions &options) {
  context->loadDialect<ONNXDialect, QOptDialect, func::FuncDialect>();
  const llvm::MemoryBuffer *buffer =
      sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
  ONNXImporter importer(context, options, buffer->getBufferIdentifier(),
                        *buffer);
  return importer.run();
}

//===----------------------------------------------------------------------===//
// Registration
//===----------------------------------------------------------------------===//

namespace {
struct ImportONNXCLOptions {
  llvm::cl::list<std::string> dims{
      "dim",
      llvm::cl::desc("Pin a symbolic ONNX dimension, e.g. --dim seq=128 "
                     "(repeat or separate with commas)"),
      llvm::cl::value_desc("name=size"), llvm::cl::CommaSeparated};
  llvm::cl::opt<bool> allowUnsupported{
      "allow-unsupported",
      llvm::cl::desc("Import nodes of unsupported domains and subgraph "
                     "attributes as opaque onnx.node ops")};
  llvm::cl::opt<int64_t> inlineLimit{
      "inline-limit",
      llvm::cl::desc("Store initializers up to this many bytes inline; "
                     "larger ones are referenced in their file"),
      llvm::cl::init(256)};
};
llvm::ManagedStatic<ImportONNXCLOptions> clOptions;
} // namespace

void mlir::qopt::registerImportONNXTranslation() {
  *clOptions; // construct the options before the command line is parsed
  static TranslateToMLIRRegistration registration(
      "import-onnx", "Import an ONNX model (binary or text format)",
      [](llvm::SourceMgr &sourceMgr,
         MLIRContext *context) -> OwningOpRef<Operation *> {
        ONNXImportOptions options;
        options.allowUnsupported = clOptions->allowUnsupported;
        options.inlineLimitBytes = clOptions->inlineLimit;
        for (const std::string &spec : clOptions->dims) {
          std::string message;
          if (!parseDimSpec(spec, options, message)) {
            mlir::emitError(UnknownLoc::get(context)) << message;
            return nullptr;
          }
        }
        return OwningOpRef<Operation *>(
            importONNXModel(sourceMgr, context, options).release());
      },
      [](DialectRegistry &registry) {
        registry.insert<ONNXDialect, QOptDialect, func::FuncDialect>();
      });
}
