//===- QOptDialect.cpp - QOpt dialect, attributes and types ---------------===//

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"

using namespace mlir;
using namespace mlir::qopt;

#include "qopt/Dialect/QOpt/IR/QOptOpsDialect.cpp.inc"

#include "qopt/Dialect/QOpt/IR/QOptEnums.cpp.inc"

#include "qopt/Dialect/QOpt/IR/QOptAttrInterfaces.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "qopt/Dialect/QOpt/IR/QOptAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "qopt/Dialect/QOpt/IR/QOptOpsTypes.cpp.inc"

void QOptDialect::initialize() {
  registerAttributes();
  registerTypes();
  addOperations<
#define GET_OP_LIST
#include "qopt/Dialect/QOpt/IR/QOptOps.cpp.inc"
      >();
}

void QOptDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "qopt/Dialect/QOpt/IR/QOptAttrs.cpp.inc"
      >();
}

void QOptDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "qopt/Dialect/QOpt/IR/QOptOpsTypes.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// IntFormatAttr
//===----------------------------------------------------------------------===//

LogicalResult
IntFormatAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                      unsigned bits, bool isSigned, bool zeroPoint) {
  if (bits < 2 || bits > 8)
    return emitError() << "integer format has " << bits
                       << " bits; supported widths are 2 to 8";
  return success();
}

int64_t IntFormatAttr::getQMin() const {
  return ::qopt::intFormatMin(getBits(), getIsSigned());
}

int64_t IntFormatAttr::getQMax() const {
  return ::qopt::intFormatMax(getBits(), getIsSigned());
}

unsigned IntFormatAttr::getStorageBits() const { return getBits(); }
bool IntFormatAttr::hasZeroPoint() const { return getZeroPoint(); }
double IntFormatAttr::getMaxRepresentable() const {
  return static_cast<double>(getQMax());
}

// #qopt.int<bits (, unsigned)? (, zero_point)?>
Attribute IntFormatAttr::parse(AsmParser &parser, Type) {
  unsigned bits = 0;
  bool isSigned = true, zeroPoint = false;
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess() || parser.parseInteger(bits))
    return {};
  while (succeeded(parser.parseOptionalComma())) {
    StringRef keyword;
    SMLoc kwLoc = parser.getCurrentLocation();
    if (parser.parseKeyword(&keyword))
      return {};
    if (keyword == "unsigned")
      isSigned = false;
    else if (keyword == "signed")
      isSigned = true;
    else if (keyword == "zero_point")
      zeroPoint = true;
    else {
      parser.emitError(kwLoc) << "expected 'signed', 'unsigned' or "
                                 "'zero_point', got '"
                              << keyword << "'";
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, parser.getContext(),
                    bits, isSigned, zeroPoint);
}

void IntFormatAttr::print(AsmPrinter &printer) const {
  printer << "<" << getBits();
  if (!getIsSigned())
    printer << ", unsigned";
  if (getZeroPoint())
    printer << ", zero_point";
  printer << ">";
}

//===----------------------------------------------------------------------===//
// Codebook formats (NF4, bitsandbytes' FP4 and 8-bit dynamic) / FloatFormatAttr
//===----------------------------------------------------------------------===//

unsigned NF4FormatAttr::getStorageBits() const { return 4; }
double NF4FormatAttr::getMaxRepresentable() const { return 1.0; }
unsigned BnbFP4FormatAttr::getStorageBits() const { return 4; }
double BnbFP4FormatAttr::getMaxRepresentable() const { return 1.0; }
unsigned Dynamic8FormatAttr::getStorageBits() const { return 8; }
double Dynamic8FormatAttr::getMaxRepresentable() const { return 1.0; }

LogicalResult
FloatFormatAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        Type type) {
  if (!isa<Float8E4M3FNType, Float8E5M2Type, Float4E2M1FNType>(type))
    return emitError() << "float format must be f8E4M3FN, f8E5M2 or "
                          "f4E2M1FN, got "
                       << type;
  return success();
}

unsigned FloatFormatAttr::getStorageBits() const {
  return cast<FloatType>(getType()).getWidth();
}

double FloatFormatAttr::getMaxRepresentable() const {
  return llvm::APFloat::getLargest(
             cast<FloatType>(getType()).getFloatSemantics())
      .convertToDouble();
}

//===----------------------------------------------------------------------===//
// Granularities
//===----------------------------------------------------------------------===//

static int64_t ceilDivDim(int64_t dim, int64_t size) {
  return ShapedType::isDynamic(dim) ? ShapedType::kDynamic
                                    : int64_t(llvm::divideCeil(dim, size));
}

FailureOr<SmallVector<int64_t>>
PerTensorAttr::getScaleShape(ArrayRef<int64_t> shape,
                             function_ref<InFlightDiagnostic()>) const {
  return SmallVector<int64_t>{};
}

LogicalResult
PerChannelAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                       int64_t axis) {
  if (axis < 0)
    return emitError() << "per_channel axis must be non-negative, got " << axis;
  return success();
}

/// Checks that `axis` indexes into `shape`.
static LogicalResult checkAxis(StringRef what, int64_t axis,
                               ArrayRef<int64_t> shape,
                               function_ref<InFlightDiagnostic()> emitError) {
  if (axis < static_cast<int64_t>(shape.size()))
    return success();
  if (emitError)
    emitError() << what << " axis " << axis << " is out of range for rank "
                << shape.size();
  return failure();
}

FailureOr<SmallVector<int64_t>> PerChannelAttr::getScaleShape(
    ArrayRef<int64_t> shape,
    function_ref<InFlightDiagnostic()> emitError) const {
  if (failed(checkAxis("per_channel", getAxis(), shape, emitError)))
    return failure();
  return SmallVector<int64_t>{shape[getAxis()]};
}

LogicalResult PerGroupAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   int64_t axis, int64_t size) {
  if (axis < 0)
    return emitError() << "per_group axis must be non-negative, got " << axis;
  if (size < 1)
    return emitError() << "per_group size must be positive, got " << size;
  return success();
}

FailureOr<SmallVector<int64_t>> PerGroupAttr::getScaleShape(
    ArrayRef<int64_t> shape,
    function_ref<InFlightDiagnostic()> emitError) const {
  if (failed(checkAxis("per_group", getAxis(), shape, emitError)))
    return failure();
  SmallVector<int64_t> result(shape);
  result[getAxis()] = ceilDivDim(shape[getAxis()], getSize());
  return result;
}

LogicalResult PerBlockAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   int64_t size) {
  if (size < 1)
    return emitError() << "per_block size must be positive, got " << size;
  return success();
}

FailureOr<SmallVector<int64_t>>
PerBlockAttr::getScaleShape(ArrayRef<int64_t> shape,
                            function_ref<InFlightDiagnostic()>) const {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (ShapedType::isDynamic(d))
      return SmallVector<int64_t>{ShapedType::kDynamic};
    numel *= d;
  }
  return SmallVector<int64_t>{ceilDivDim(numel, getSize())};
}

FailureOr<SmallVector<int64_t>> PerTokenAttr::getScaleShape(
    ArrayRef<int64_t> shape,
    function_ref<InFlightDiagnostic()> emitError) const {
  if (shape.empty()) {
    if (emitError)
      emitError() << "per_token needs a tensor of rank 1 or more";
    return failure();
  }
  return SmallVector<int64_t>(shape.drop_back());
}

//===----------------------------------------------------------------------===//
// ExternalDataAttr
//===----------------------------------------------------------------------===//

LogicalResult
ExternalDataAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                         StringRef location, uint64_t offset, uint64_t length) {
  if (location.empty())
    return emitError() << "external data needs a file name";
  if (llvm::sys::path::is_absolute(location, llvm::sys::path::Style::posix) ||
      llvm::sys::path::is_absolute(location, llvm::sys::path::Style::windows))
    return emitError() << "external data location '" << location
                       << "' is absolute; it must be relative to the "
                          "model's folder";
  for (StringRef part : llvm::make_range(
           llvm::sys::path::begin(location, llvm::sys::path::Style::posix),
           llvm::sys::path::end(location)))
    if (part == "..")
      return emitError() << "external data location '" << location
                         << "' leaves the model's folder through '..'";
  if (offset > UINT64_MAX - length)
    return emitError() << "external data range overflows: offset " << offset
                       << " + length " << length;
  return success();
}

//===----------------------------------------------------------------------===//
// QTensorType
//===----------------------------------------------------------------------===//

LogicalResult QTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  ArrayRef<int64_t> shape,
                                  QuantFormatAttrInterface format,
                                  GranularityAttrInterface granularity,
                                  Type scaleType, bool offset) {
  if (shape.empty())
    return emitError() << "quantized tensor must have rank 1 or more";
  FailureOr<SmallVector<int64_t>> scaleShape =
      granularity.getScaleShape(shape, emitError);
  if (failed(scaleShape))
    return failure();
  if (auto nested = dyn_cast<QTensorType>(scaleType)) {
    if (nested.getShape() != ArrayRef<int64_t>(*scaleShape))
      return emitError() << "double-quantized scales have shape ["
                         << nested.getShape() << "] but " << granularity
                         << " needs [" << *scaleShape << "]";
    if (format.hasZeroPoint())
      return emitError() << "double quantization of scales is not "
                            "supported together with zero points";
  } else if (!isa<Float32Type, Float16Type, BFloat16Type, Float8E8M0FNUType,
                  Float8E4M3FNType>(scaleType)) {
    return emitError() << "scales must be f32, f16, bf16, f8E8M0FNU, "
                          "f8E4M3FN or a !qopt.qtensor (double "
                          "quantization), got "
                       << scaleType;
  }
  if (isa<Float8E8M0FNUType>(scaleType) && !isa<FloatFormatAttr>(format))
    return emitError() << "f8E8M0FNU (power-of-two) scales are only "
                          "supported with #qopt.float formats (MX)";
  return success();
}

Type QTensorType::parse(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<int64_t> shape;
  Attribute format, granularity;
  Type scaleType;
  bool offset = false;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                /*withTrailingX=*/false) ||
      parser.parseComma() || parser.parseAttribute(format) ||
      parser.parseComma() || parser.parseAttribute(granularity) ||
      parser.parseComma() || parser.parseKeyword("scales") ||
      parser.parseEqual() || parser.parseType(scaleType))
    return {};
  if (succeeded(parser.parseOptionalComma())) {
    if (parser.parseKeyword("offset"))
      return {};
    offset = true;
  }
  if (parser.parseGreater())
    return {};
  auto formatIface = dyn_cast<QuantFormatAttrInterface>(format);
  if (!formatIface) {
    parser.emitError(loc) << "expected a quantization format (#qopt.int, "
                             "#qopt.nf4, #qopt.bnb_fp4, #qopt.dynamic8, "
                             "#qopt.float), got "
                          << format;
    return {};
  }
  auto granularityIface = dyn_cast<GranularityAttrInterface>(granularity);
  if (!granularityIface) {
    parser.emitError(loc) << "expected a granularity (#qopt.per_tensor, "
                             "#qopt.per_channel, #qopt.per_group, "
                             "#qopt.per_block, #qopt.per_token), got "
                          << granularity;
    return {};
  }
  return getChecked([&] { return parser.emitError(loc); }, parser.getContext(),
                    shape, formatIface, granularityIface, scaleType, offset);
}

void QTensorType::print(AsmPrinter &printer) const {
  printer << "<";
  printer.printDimensionList(getShape());
  printer << ", " << getFormat() << ", " << getGranularity()
          << ", scales = " << getScaleType();
  if (getOffset())
    printer << ", offset";
  printer << ">";
}

SmallVector<int64_t> QTensorType::getScaleShape() const {
  // Verified at construction.
  return *getGranularity().getScaleShape(getShape(), nullptr);
}

RankedTensorType QTensorType::getDataType() const {
  SmallVector<int64_t> shape(getShape());
  int64_t &last = shape.back();
  if (!ShapedType::isDynamic(last))
    last = ::qopt::packedRowBytes(last, getFormat().getStorageBits());
  return RankedTensorType::get(shape, IntegerType::get(getContext(), 8));
}

Type QTensorType::getScalesType() const {
  if (auto nested = dyn_cast<QTensorType>(getScaleType()))
    return nested;
  return RankedTensorType::get(getScaleShape(), getScaleType());
}

RankedTensorType QTensorType::getZeroPointsType() const {
  if (!getFormat().hasZeroPoint())
    return {};
  return RankedTensorType::get(getScaleShape(),
                               IntegerType::get(getContext(), 8));
}

RankedTensorType QTensorType::getOffsetType() const {
  if (!getOffset())
    return {};
  return RankedTensorType::get({}, Float32Type::get(getContext()));
}

//===----------------------------------------------------------------------===//
// Discardable attributes on function arguments and results
//===----------------------------------------------------------------------===//

/// The attributes the dialect declares (discardableAttrs in ODS), with the
/// types their helpers promise: the target trusts them.
static LogicalResult verifyBoundaryAttribute(Operation *op, NamedAttribute attr,
                                             bool isArgument) {
  StringRef name = attr.getName().getValue();
  Attribute value = attr.getValue();
  auto wrongType = [&](StringRef expected) {
    return op->emitError() << "'" << name << "' must be " << expected
                           << ", got " << value;
  };
  if (name == QOptDialect::NameAttrHelper::getNameStr())
    return isa<StringAttr>(value) ? success() : wrongType("a string");
  if (name == QOptDialect::DimNamesAttrHelper::getNameStr()) {
    auto array = dyn_cast<ArrayAttr>(value);
    if (!array || !llvm::all_of(array, llvm::IsaPred<StringAttr>))
      return wrongType("an array of strings");
    return success();
  }
  // On an argument: the parameter passed; on a result: the parameter whose
  // new value it is (qopt.store_param).
  if (name == QOptDialect::ParamAttrHelper::getNameStr())
    return isa<StringAttr>(value) ? success() : wrongType("a string");
  if (isArgument) {
    if (name == QOptDialect::TrainableAttrHelper::getNameStr() ||
        name == QOptDialect::StateAttrHelper::getNameStr() ||
        name == QOptDialect::RngKeyAttrHelper::getNameStr() ||
        name == QOptDialect::CheckStatusAttrHelper::getNameStr())
      return isa<UnitAttr>(value) ? success() : wrongType("a unit attribute");
    if (name == QOptDialect::ExternalAttrHelper::getNameStr())
      return isa<ExternalDataAttr>(value) ? success()
                                          : wrongType("#qopt.external data");
    if (name == QOptDialect::InlineAttrHelper::getNameStr())
      return isa<DenseElementsAttr, DenseResourceElementsAttr>(value)
                 ? success()
                 : wrongType("dense or dense_resource elements");
  }
  return op->emitError() << "'" << name << "' is not "
                         << (isArgument ? "an argument" : "a result")
                         << " attribute of the qopt dialect";
}

LogicalResult QOptDialect::verifyRegionArgAttribute(Operation *op, unsigned,
                                                    unsigned,
                                                    NamedAttribute attr) {
  return verifyBoundaryAttribute(op, attr, /*isArgument=*/true);
}

LogicalResult QOptDialect::verifyRegionResultAttribute(Operation *op, unsigned,
                                                       unsigned,
                                                       NamedAttribute attr) {
  return verifyBoundaryAttribute(op, attr, /*isArgument=*/false);
}
