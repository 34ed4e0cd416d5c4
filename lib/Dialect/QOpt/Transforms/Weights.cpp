//===- Weights.cpp - Reading and creating weights at compile time ---------===//

#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

std::optional<dense::FloatKind> mlir::qopt::getFloatKind(Type type) {
  if (type.isF16())
    return dense::FloatKind::F16;
  if (type.isBF16())
    return dense::FloatKind::BF16;
  if (type.isF32())
    return dense::FloatKind::F32;
  if (type.isF64())
    return dense::FloatKind::F64;
  return std::nullopt;
}

std::optional<ArrayRef<char>> mlir::qopt::getRawBytes(ElementsAttr data) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(data)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt; // elided when printed
    return blob->getData();
  }
  auto elements = dyn_cast<DenseElementsAttr>(data);
  if (!elements || elements.isSplat() ||
      elements.getElementType().isInteger(1) ||
      elements.getElementType().getIntOrFloatBitWidth() % 8)
    return std::nullopt;
  return elements.getRawData();
}

/// A zero matrix shaped like `type`: its leading dimensions are the rows,
/// the last one the columns.
static dense::Matrix matrixShapedLike(ShapedType type) {
  int64_t cols = type.getRank() ? type.getShape().back() : 1;
  int64_t rows = cols ? type.getNumElements() / cols : 0;
  return dense::Matrix(rows, cols);
}

std::optional<dense::Matrix> mlir::qopt::getFloatMatrix(ElementsAttr data) {
  auto type = cast<ShapedType>(data.getType());
  std::optional<dense::FloatKind> kind = getFloatKind(type.getElementType());
  if (!kind)
    return std::nullopt;
  dense::Matrix matrix = matrixShapedLike(type);
  if (auto elements = dyn_cast<DenseElementsAttr>(data);
      elements && elements.isSplat()) {
    std::fill(matrix.data.begin(), matrix.data.end(),
              float(elements.getSplatValue<APFloat>().convertToDouble()));
    return matrix;
  }
  std::optional<ArrayRef<char>> raw = getRawBytes(data);
  size_t count = matrix.data.size();
  if (!raw || raw->size() != count * dense::floatKindBytes(*kind))
    return std::nullopt;
  dense::decodeFloats(*kind, raw->data(), count, matrix.data.data());
  return matrix;
}

FailureOr<dense::Matrix> WeightReader::readMatrix(ParamOp param,
                                                  Operation *user) {
  RankedTensorType type = param.getTensorType();
  auto fail = [&]() {
    return user->emitError() << "parameter @" << param.getSymName() << " ";
  };
  std::optional<dense::FloatKind> kind = getFloatKind(type.getElementType());
  if (!kind)
    return fail() << "has element type " << type.getElementType()
                  << ", not a float type this pass computes with",
           failure();
  std::optional<Attribute> init = param.getInitialValue();
  if (!init)
    return fail() << "has no data (it is given at run time)", failure();
  if (auto data = dyn_cast<ElementsAttr>(*init)) {
    if (std::optional<dense::Matrix> matrix = getFloatMatrix(data))
      return *matrix;
    return fail() << "has data this pass cannot read (an elided resource?)",
           failure();
  }
  dense::Matrix matrix = matrixShapedLike(type);
  size_t count = matrix.data.size();
  auto buffer = readExternal(param, cast<ExternalDataAttr>(*init),
                             count * dense::floatKindBytes(*kind), user);
  if (failed(buffer))
    return failure();
  dense::decodeFloats(*kind, (*buffer)->getBufferStart(), count,
                      matrix.data.data());
  return matrix;
}

FailureOr<std::unique_ptr<llvm::MemoryBuffer>>
WeightReader::readExternal(ParamOp param, ExternalDataAttr external,
                           size_t size, Operation *user) {
  // Without a folder, the one the compiler recorded on the module.
  SmallString<256> path(modelDir);
  if (path.empty())
    if (auto module = param->getParentOfType<ModuleOp>())
      if (auto dir = module->getAttrOfType<StringAttr>(kModelDirAttr))
        path = dir.getValue();
  llvm::sys::path::append(path, external.getLocation());
  // A slice past the end of the file would read as zeros.
  uint64_t fileSize = 0;
  if (!llvm::sys::fs::file_size(path, fileSize) &&
      fileSize < external.getOffset() + size)
    return user->emitError()
               << "parameter @" << param.getSymName() << " cannot be read: '"
               << path << "' is shorter than the parameter",
           failure();
  auto buffer = llvm::MemoryBuffer::getFileSlice(
      path, external.getLength(), external.getOffset(), /*IsVolatile=*/false);
  if (!buffer)
    return user->emitError()
               << "parameter @" << param.getSymName() << " cannot be read: '"
               << path << "': " << buffer.getError().message(),
           failure();
  if ((*buffer)->getBufferSize() != size)
    return user->emitError()
               << "parameter @" << param.getSymName() << " cannot be read: '"
               << path << "' is shorter than the parameter",
           failure();
  return std::move(*buffer);
}

FailureOr<std::vector<char>> WeightReader::readBytes(ParamOp param,
                                                     Operation *user) {
  RankedTensorType type = param.getTensorType();
  auto fail = [&]() {
    return user->emitError() << "parameter @" << param.getSymName() << " ";
  };
  Type element = type.getElementType();
  if (!element.isIntOrFloat() || element.getIntOrFloatBitWidth() % 8)
    return fail() << "has element type " << element
                  << ", not whole bytes per element",
           failure();
  size_t size = type.getNumElements() * (element.getIntOrFloatBitWidth() / 8);
  std::optional<Attribute> init = param.getInitialValue();
  if (!init)
    return fail() << "has no data (it is given at run time)", failure();
  if (auto data = dyn_cast<ElementsAttr>(*init)) {
    if (auto elements = dyn_cast<DenseElementsAttr>(data);
        elements && elements.isSplat()) {
      ArrayRef<char> one = elements.getRawData();
      std::vector<char> bytes(size);
      for (size_t i = 0; i < size; i += one.size())
        std::copy(one.begin(), one.end(), bytes.begin() + i);
      return bytes;
    }
    std::optional<ArrayRef<char>> raw = getRawBytes(data);
    if (!raw || raw->size() != size)
      return fail() << "has data this pass cannot read (an elided resource?)",
             failure();
    return std::vector<char>(raw->begin(), raw->end());
  }
  auto buffer = readExternal(param, cast<ExternalDataAttr>(*init), size, user);
  if (failed(buffer))
    return failure();
  return std::vector<char>((*buffer)->getBufferStart(),
                           (*buffer)->getBufferEnd());
}

/// `size` zeroed bytes in an unlinked temporary file, mapped read-write:
/// dirty pages go to the file instead of staying in memory.
static FailureOr<AsmResourceBlob> allocateFileBlob(size_t size, Location loc) {
  if (size == 0)
    return HeapAsmResourceBlob::allocate(0, alignof(std::max_align_t));
  int fd;
  SmallString<128> path;
  if (std::error_code ec =
          llvm::sys::fs::createTemporaryFile("qopt-weight", "bin", fd, path))
    return emitError(loc) << "cannot create a temporary file for a new "
                             "weight: "
                          << ec.message(),
           failure();
  llvm::sys::fs::remove(path); // the mapping keeps the file alive
  llvm::scope_exit closeFile(
      [&] { llvm::sys::Process::SafelyCloseFileDescriptor(fd); });
  if (std::error_code ec = llvm::sys::fs::resize_file(fd, size))
    return emitError(loc) << "cannot make a " << size
                          << "-byte temporary file for a new weight: "
                          << ec.message(),
           failure();
  std::error_code ec;
  auto region = std::make_unique<llvm::sys::fs::mapped_file_region>(
      llvm::sys::fs::convertFDToNativeFile(fd),
      llvm::sys::fs::mapped_file_region::readwrite, size, 0, ec);
  if (ec)
    return emitError(loc) << "cannot map a temporary file for a new weight: "
                          << ec.message(),
           failure();
  char *data = region->data();
  return AsmResourceBlob(
      ArrayRef<char>(data, size), /*dataAlignment=*/64,
      [region = std::move(region)](void *, size_t, size_t) mutable {
        region.reset();
      },
      /*dataIsMutable=*/true);
}

ParamOp
mlir::qopt::createParam(SymbolTable &symbols, Location loc, StringRef name,
                        RankedTensorType type, bool trainable,
                        function_ref<void(MutableArrayRef<char>)> fill) {
  FailureOr<uint64_t> bytes = getStoredByteSize(type);
  if (failed(bytes)) {
    emitError(loc) << "a new parameter of type " << type
                   << " is too large to address";
    return {};
  }
  FailureOr<AsmResourceBlob> blob = allocateFileBlob(*bytes, loc);
  if (failed(blob))
    return {};
  fill(blob->getMutableData());
  auto data = DenseResourceElementsAttr::get(type, name, std::move(*blob));

  auto module = cast<ModuleOp>(symbols.getOp());
  OpBuilder b(module.getContext());
  ParamOp last;
  for (ParamOp param : module.getOps<ParamOp>())
    last = param;
  if (last)
    b.setInsertionPointAfter(last);
  else
    b.setInsertionPointToStart(module.getBody());
  auto param = ParamOp::create(b, loc, name, type, trainable, data);
  symbols.insert(param); // renames on a clash
  return param;
}

ParamOp mlir::qopt::createFloatParam(SymbolTable &symbols, Location loc,
                                     StringRef name, RankedTensorType type,
                                     ArrayRef<float> values, bool trainable) {
  std::optional<dense::FloatKind> kind = getFloatKind(type.getElementType());
  assert(kind && "createFloatParam needs a float element type");
  assert(int64_t(values.size()) == type.getNumElements() &&
         "createFloatParam: wrong number of values");
  return createParam(
      symbols, loc, name, type, trainable, [&](MutableArrayRef<char> bytes) {
        dense::encodeFloats(*kind, values.data(), values.size(), bytes.data());
      });
}

static int64_t dtypeBytes(StringRef dtype) {
  return llvm::StringSwitch<int64_t>(dtype)
      .Cases({"F64", "I64", "U64"}, 8)
      .Cases({"F32", "I32", "U32"}, 4)
      .Cases({"F16", "BF16", "I16", "U16"}, 2)
      .Cases({"U8", "I8", "BOOL", "F8_E4M3", "F8_E5M2"}, 1)
      .Default(0);
}

std::optional<dense::FloatKind>
mlir::qopt::safetensorsFloatKind(StringRef dtype) {
  return llvm::StringSwitch<std::optional<dense::FloatKind>>(dtype)
      .Case("F32", dense::FloatKind::F32)
      .Case("F16", dense::FloatKind::F16)
      .Case("BF16", dense::FloatKind::BF16)
      .Case("F64", dense::FloatKind::F64)
      .Default(std::nullopt);
}

llvm::Expected<std::map<std::string, SafetensorsEntry>>
mlir::qopt::readSafetensors(StringRef bytes, StringRef path) {
  auto fail = [&](const Twine &why) {
    return llvm::createStringError(path + ": " + why);
  };
  if (bytes.size() < 8)
    return fail("too short for a safetensors file");
  uint64_t headerSize;
  std::memcpy(&headerSize, bytes.data(), 8); // little-endian hosts only
  if (headerSize > bytes.size() - 8)
    return fail("the header length exceeds the file");
  llvm::Expected<llvm::json::Value> header =
      llvm::json::parse(bytes.substr(8, headerSize));
  if (!header)
    return fail("the header is not JSON: " +
                llvm::toString(header.takeError()));
  auto *entries = header->getAsObject();
  if (!entries)
    return fail("the header is not a JSON object");
  StringRef data = bytes.substr(8 + headerSize);
  std::map<std::string, SafetensorsEntry> tensors;
  for (const auto &[name, value] : *entries) {
    if (name == "__metadata__")
      continue;
    auto bad = [&](const Twine &why) {
      return fail("tensor '" + StringRef(name) + "': " + why);
    };
    auto *o = value.getAsObject();
    std::optional<StringRef> dtype = o ? o->getString("dtype") : std::nullopt;
    const llvm::json::Array *shape = o ? o->getArray("shape") : nullptr;
    const llvm::json::Array *offsets =
        o ? o->getArray("data_offsets") : nullptr;
    if (!dtype || !shape || !offsets || offsets->size() != 2)
      return bad("needs dtype, shape and data_offsets");
    SafetensorsEntry t;
    t.dtype = dtype->str();
    int64_t width = dtypeBytes(*dtype);
    if (!width)
      return bad("unknown dtype " + *dtype);
    for (const llvm::json::Value &d : *shape) {
      std::optional<int64_t> size = d.getAsInteger();
      if (!size || *size < 0 || (*size && t.count > (int64_t(1) << 40) / *size))
        return bad("bad shape");
      t.shape.push_back(*size);
      t.count *= *size;
    }
    std::optional<int64_t> begin = (*offsets)[0].getAsInteger(),
                           end = (*offsets)[1].getAsInteger();
    if (!begin || !end || *begin < 0 || *end < *begin ||
        uint64_t(*end) > data.size())
      return bad("data_offsets lie outside the file");
    if (*end - *begin != t.count * width)
      return bad("data_offsets do not match its shape and dtype");
    t.bytes = data.substr(*begin, *end - *begin);
    tensors[name.str()] = std::move(t);
  }
  return tensors;
}

Value mlir::qopt::createQuantizedWeight(SymbolTable &symbols, Operation *user,
                                        StringRef prefix,
                                        const QuantizedWeight &w) {
  MLIRContext *ctx = user->getContext();
  Location loc = user->getLoc();
  OpBuilder b(user);
  Type f32 = Float32Type::get(ctx), i8 = IntegerType::get(ctx, 8);
  auto load = [&](ParamOp p) -> Value {
    if (!p)
      return {};
    return LoadParamOp::create(b, loc, p.getTensorType(), p.getSymName());
  };
  auto bytes = [&](StringRef name, ArrayRef<int64_t> shape,
                   ArrayRef<uint8_t> values) {
    return load(
        createParam(symbols, loc, name, RankedTensorType::get(shape, i8), false,
                    [&](MutableArrayRef<char> out) {
                      std::memcpy(out.data(), values.data(), values.size());
                    }));
  };
  // Scales, plain or double-quantized.
  Type scaleType = f32;
  Value scales;
  std::string scaleName = prefix.str() + w.scaleSuffix;
  if (w.doubleQuantized) {
    int64_t blocks = w.scaleCodes.size();
    Value codes = bytes(scaleName, {blocks}, w.scaleCodes);
    Value nested = load(createFloatParam(
        symbols, loc, prefix.str() + ".nested_absmax",
        RankedTensorType::get({int64_t(w.nestedAbsmax.size())}, f32),
        w.nestedAbsmax));
    if (!codes || !nested)
      return {};
    auto nestedType = QTensorType::get(
        ctx, {blocks}, Dynamic8FormatAttr::get(ctx),
        PerBlockAttr::get(ctx, w.nestedBlock), f32, /*offset=*/true);
    Value offset = arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(RankedTensorType::get({}, f32), w.offset));
    scales =
        AssembleOp::create(b, loc, nestedType, codes, nested, Value(), offset);
    scaleType = nestedType;
  } else if (w.e4m3Scales) {
    Value codes = bytes(scaleName, w.scaleShape, w.scaleCodes);
    Value global = load(createFloatParam(
        symbols, loc, prefix.str() + ".global_scale",
        RankedTensorType::get({}, f32), ArrayRef<float>(w.globalScale)));
    if (!codes || !global)
      return {};
    auto nestedType =
        QTensorType::get(ctx, w.scaleShape,
                         FloatFormatAttr::get(ctx, Float8E4M3FNType::get(ctx)),
                         PerTensorAttr::get(ctx), f32, /*offset=*/false);
    scales =
        AssembleOp::create(b, loc, nestedType, codes, global, Value(), Value());
    scaleType = nestedType;
  } else if (w.e8m0Scales) {
    // Bytes on disk (the runtime maps integer parameters), read as E8M0.
    Value codes = bytes(scaleName, w.scaleShape, w.scaleCodes);
    if (!codes)
      return {};
    scaleType = Float8E8M0FNUType::get(ctx);
    scales = arith::BitcastOp::create(
        b, loc, RankedTensorType::get(w.scaleShape, scaleType), codes);
  } else {
    scales = load(createFloatParam(symbols, loc, scaleName,
                                   RankedTensorType::get(w.scaleShape, f32),
                                   w.scales, w.trainableScales));
  }
  Value zeroPoints;
  if (w.format.hasZeroPoint())
    zeroPoints =
        bytes(prefix.str() + ".zero_points", w.scaleShape, w.zeroPoints);
  // The codes, packed per row.
  unsigned bits = w.format.getStorageBits();
  int64_t rowBytes = ::qopt::packedRowBytes(w.k, bits);
  Value data = load(createParam(
      symbols, loc, prefix, RankedTensorType::get({w.n, rowBytes}, i8), false,
      [&](MutableArrayRef<char> out) {
        for (int64_t r = 0; r < w.n; ++r)
          ::qopt::packBits(w.codes.data() + r * w.k, w.k, bits,
                           reinterpret_cast<uint8_t *>(out.data()) +
                               r * rowBytes);
      }));
  if (!scales || !data || (w.format.hasZeroPoint() && !zeroPoints))
    return {};
  auto type = QTensorType::get(ctx, {w.n, w.k}, w.format, w.granularity,
                               scaleType, /*offset=*/false);
  return AssembleOp::create(b, loc, type, data, scales, zeroPoints, Value());
}

llvm::StringSet<> mlir::qopt::paramNames(ModuleOp module) {
  llvm::StringSet<> names;
  for (ParamOp p : module.getOps<ParamOp>())
    names.insert(p.getSymName());
  return names;
}

void mlir::qopt::restoreParamNames(ModuleOp module,
                                   const llvm::StringSet<> &before,
                                   SymbolTable &symbols) {
  SmallVector<std::pair<ParamOp, StringRef>> wanted;
  for (ParamOp p : module.getOps<ParamOp>()) {
    StringRef name = p.getSymName();
    auto [base, number] = name.rsplit('_');
    if (before.contains(name) || number.empty() ||
        !llvm::all_of(number, llvm::isDigit))
      continue;
    wanted.push_back({p, base});
  }
  for (auto [p, base] : wanted)
    if (!symbols.lookup(base))
      (void)symbols.rename(p, StringAttr::get(module.getContext(), base));
}

FailureOr<dense::Matrix> mlir::qopt::evaluateOrError(
    WeightReader &reader, Value value, SymbolTable &symbols, Operation *op,
    StringRef pass, StringRef what, SmallVectorImpl<Operation *> *visited) {
  std::string why;
  FailureOr<dense::Matrix> m =
      reader.evaluate(value, symbols, op, why, visited);
  if (failed(m) && !why.empty())
    return op->emitError() << pass << ": the " << what << " " << why;
  return m;
}

LogicalResult
mlir::qopt::replaceWithParam(SymbolTable &symbols, Operation *op,
                             OpOperand &operand, ArrayRef<float> values,
                             StringRef preferred,
                             SmallVectorImpl<Operation *> &maybeDead) {
  Value old = operand.get();
  auto type = cast<RankedTensorType>(old.getType());
  ParamOp param =
      createFloatParam(symbols, op->getLoc(), preferred, type, values);
  if (!param)
    return failure();
  OpBuilder b(op);
  operand.assign(
      LoadParamOp::create(b, op->getLoc(), type, param.getSymName()));
  if (Operation *def = old.getDefiningOp())
    maybeDead.push_back(def);
  return success();
}

void mlir::qopt::eraseDeadOps(SmallVectorImpl<Operation *> &maybeDead,
                              SymbolTable &symbols) {
  SmallVector<StringAttr> unread;
  while (!maybeDead.empty()) {
    Operation *op = maybeDead.pop_back_val();
    if (!isOpTriviallyDead(op))
      continue;
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp())
        maybeDead.push_back(def);
    if (auto load = dyn_cast<LoadParamOp>(op))
      unread.push_back(load.getNameAttr().getAttr());
    op->erase();
    llvm::erase(maybeDead, op);
  }
  for (StringAttr name : unread)
    if (auto param = symbols.lookup<ParamOp>(name);
        param && SymbolTable::symbolKnownUseEmpty(param, symbols.getOp()))
      symbols.erase(param);
}

FailureOr<dense::Matrix>
WeightReader::evaluate(Value value, SymbolTable &symbols, Operation *user,
                       std::string &why,
                       SmallVectorImpl<Operation *> *visited) {
  Operation *def = value.getDefiningOp();
  if (def && visited)
    visited->push_back(def);
  if (auto load = dyn_cast_if_present<LoadParamOp>(def)) {
    auto param = symbols.lookup<ParamOp>(load.getName());
    if (!param)
      return user->emitError() << "no qopt.param @" << load.getName();
    return readMatrix(param, user);
  }
  if (auto transpose = dyn_cast_if_present<linalg::TransposeOp>(def)) {
    if (transpose.getPermutation() != ArrayRef<int64_t>{1, 0}) {
      why = "is a transpose that is not 2-D";
      return failure();
    }
    FailureOr<dense::Matrix> input =
        evaluate(transpose.getInput(), symbols, user, why, visited);
    if (failed(input))
      return failure();
    return dense::transpose(*input);
  }
  // RandLoRA's factors (qopt-insert-lora, qopt-load-adapter): computed from
  // the shared bases and the layer's scalings.
  if (auto scale = dyn_cast_if_present<RandLoRAScaleOp>(def)) {
    FailureOr<dense::Matrix> basis =
        evaluate(scale.getBasis(), symbols, user, why, visited);
    if (failed(basis))
      return failure();
    FailureOr<dense::Matrix> lambda =
        evaluate(scale.getLambda(), symbols, user, why, visited);
    if (failed(lambda))
      return failure();
    FailureOr<dense::Matrix> gamma =
        evaluate(scale.getGamma(), symbols, user, why, visited);
    if (failed(gamma))
      return failure();
    int64_t r = lambda->rows, nb = lambda->cols, m = gamma->cols;
    dense::Matrix y(r * nb, m);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t j = 0; j < m; ++j)
          y.at(i * nb + b, j) =
              lambda->at(i, b) * basis->at(i, j) * gamma->at(b, j);
    return y;
  }
  if (auto flatten = dyn_cast_if_present<RandLoRAFlattenOp>(def)) {
    FailureOr<dense::Matrix> basis =
        evaluate(flatten.getBasis(), symbols, user, why, visited);
    if (failed(basis))
      return failure();
    ArrayRef<int64_t> in = flatten.getBasis().getType().getShape();
    int64_t n = flatten.getType().getDimSize(0), r = in[2],
            nb = flatten.getType().getDimSize(1) / r;
    dense::Matrix y(n, nb * r);
    for (int64_t p = 0; p < n; ++p)
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t i = 0; i < r; ++i)
          y.at(p, b * r + i) = basis->at(p * in[1] + b, i);
    return y;
  }
  // A narrower tensor widened element by element (qopt-svdquant's 16-bit
  // factors): the values read are already f32.
  if (auto generic = dyn_cast_if_present<linalg::GenericOp>(def)) {
    Block &body = generic.getRegion().front();
    auto ext = dyn_cast<arith::ExtFOp>(&body.front());
    if (generic.getNumDpsInputs() == 1 && generic.getNumDpsInits() == 1 &&
        body.getOperations().size() == 2 && ext &&
        ext.getIn() == body.getArgument(0) &&
        cast<linalg::YieldOp>(body.back()).getOperand(0) == ext.getResult() &&
        llvm::all_of(generic.getIndexingMapsArray(),
                     [](AffineMap m) { return m.isIdentity(); }))
      return evaluate(generic.getDpsInputs()[0], symbols, user, why, visited);
  }
  // W + scale·(B·A), the merged weight L4Q quantizes (qopt-insert-lsq):
  // 2-D matmuls, element-wise adds and products, and fills.
  if (auto fill = dyn_cast_if_present<linalg::FillOp>(def)) {
    auto type = dyn_cast<RankedTensorType>(fill.getResult(0).getType());
    auto value = fill.getInputs()[0].getDefiningOp<arith::ConstantOp>();
    auto number = value ? dyn_cast<FloatAttr>(value.getValue()) : nullptr;
    if (!type || type.getRank() != 2 || !type.hasStaticShape() || !number) {
      why = "is a fill this pass cannot evaluate";
      return failure();
    }
    dense::Matrix m = matrixShapedLike(type);
    std::fill(m.data.begin(), m.data.end(), float(number.getValueAsDouble()));
    return m;
  }
  if (auto matmul = dyn_cast_if_present<linalg::MatmulOp>(def)) {
    if (!matmul.hasPureTensorSemantics() ||
        matmul.getIndexingMapsArray() !=
            linalg::MatmulOp::getDefaultIndexingMaps(def->getContext())) {
      why = "is a matmul this pass cannot evaluate";
      return failure();
    }
    FailureOr<dense::Matrix> a =
        evaluate(matmul.getInputs()[0], symbols, user, why, visited);
    if (failed(a))
      return failure();
    FailureOr<dense::Matrix> b =
        evaluate(matmul.getInputs()[1], symbols, user, why, visited);
    if (failed(b))
      return failure();
    FailureOr<dense::Matrix> c =
        evaluate(matmul.getOutputs()[0], symbols, user, why, visited);
    if (failed(c))
      return failure();
    dense::gemm(false, false, 1.0f, *a, *b, 1.0f, *c);
    return c;
  }
  if (isa_and_present<linalg::AddOp, linalg::MulOp>(def)) {
    auto linalgOp = cast<linalg::LinalgOp>(def);
    FailureOr<dense::Matrix> x =
        evaluate(linalgOp.getDpsInputs()[0], symbols, user, why, visited);
    if (failed(x))
      return failure();
    FailureOr<dense::Matrix> y =
        evaluate(linalgOp.getDpsInputs()[1], symbols, user, why, visited);
    if (failed(y))
      return failure();
    if (x->rows != y->rows || x->cols != y->cols) {
      why = "is an element-wise op on different shapes";
      return failure();
    }
    bool add = isa<linalg::AddOp>(def);
    for (size_t i = 0; i < x->data.size(); ++i)
      x->data[i] = add ? x->data[i] + y->data[i] : x->data[i] * y->data[i];
    return x;
  }
  auto constant = dyn_cast_if_present<arith::ConstantOp>(def);
  auto elements =
      constant ? dyn_cast<ElementsAttr>(constant.getValue()) : nullptr;
  std::optional<dense::Matrix> matrix =
      elements ? getFloatMatrix(elements) : std::nullopt;
  if (!matrix) {
    why = "is not a parameter with data or a constant";
    return failure();
  }
  return *matrix;
}
