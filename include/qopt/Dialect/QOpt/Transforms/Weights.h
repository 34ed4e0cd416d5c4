//===- Weights.h - Reading and creating weights at compile time -*- C++ -*-===//
//
// Passes that rewrite weights (LoRA merging and initialisation, smoothing
// and rotation folding, quantization, relayout) read a parameter's bytes,
// compute on them with the plain C++ helpers (qopt/Support/DenseMath.h,
// QuantFormats.h) and put the result in a new parameter. New parameters
// hold `dense_resource` data: a blob outside the IR's attribute storage,
// backed by an unlinked temporary file (so the operating system can page
// it out: a pass holds no more than the tensors it is rewriting), written
// by the target into the model's weights file. IR text never spells their
// elements: printing writes a resource blob, which `qoptc --dump-graph-ir`
// and qopt-opt's `--mlir-elide-resource-strings-if-larger` elide.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_DIALECT_QOPT_TRANSFORMS_WEIGHTS_H
#define QOPT_DIALECT_QOPT_TRANSFORMS_WEIGHTS_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Support/DenseMath.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MemoryBuffer.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlir::qopt {

/// The dense-math kind of a float element type (f16, bf16, f32, f64).
std::optional<::qopt::dense::FloatKind> getFloatKind(Type type);

/// The raw little-endian bytes of inline parameter data: a non-splat
/// `DenseElementsAttr` of byte-sized elements or a `dense_resource` blob;
/// nullopt otherwise (splats, bit-packed booleans, elided blobs).
std::optional<ArrayRef<char>> getRawBytes(ElementsAttr data);

/// Float elements (inline, splat or a resource blob) as an f32 matrix: the
/// leading dimensions are the rows, the last one the columns; nullopt for
/// other element types or data that cannot be read (elided blobs).
std::optional<::qopt::dense::Matrix> getFloatMatrix(ElementsAttr data);

/// The module attribute holding the model's folder, which `qoptc` sets for
/// the passes of `--graph-passes`: WeightReaders without a folder use it.
constexpr StringLiteral kModelDirAttr = "qopt.model_dir";

/// The module attribute naming the activation statistics (a .qstats file)
/// that `qoptc --calibration-data` computed or was given, for the passes
/// of `--graph-passes` that read them without a file of their own.
constexpr StringLiteral kCalibrationStatsAttr = "qopt.calibration_stats";

/// Reads parameters' values at compile time, from inline elements,
/// `dense_resource` blobs, or `#qopt.external` byte ranges of files in
/// `modelDir` (the folder relative locations start from; when empty, the
/// module's `qopt.model_dir`, else the working directory).
class WeightReader {
public:
  explicit WeightReader(StringRef modelDir) : modelDir(modelDir.str()) {}

  /// The elements of the float parameter `param` as an f32 matrix: its
  /// leading dimensions are the rows, the last one the columns (a 1-D
  /// parameter is one row). On failure (no data, not a float, a file that
  /// cannot be read) an error naming the parameter is emitted at `user`.
  FailureOr<::qopt::dense::Matrix> readMatrix(ParamOp param, Operation *user);

  /// The raw little-endian bytes of `param`, whose elements are whole bytes
  /// (integers or floats of 8, 16, … bits). Errors as for readMatrix.
  FailureOr<std::vector<char>> readBytes(ParamOp param, Operation *user);

  /// The float value of `value` at compile time: a parameter read, a float
  /// constant, or a 2-D transpose of either (raising transposes MatMul's
  /// K x N weights), as a matrix. Otherwise fails with `why` set to the
  /// reason ("is not a parameter with data or a constant", "is a transpose
  /// that is not 2-D"), or with an error emitted at `user` (a parameter
  /// whose data cannot be read). The ops read on the way are appended to
  /// `visited` when given.
  FailureOr<::qopt::dense::Matrix>
  evaluate(Value value, SymbolTable &symbols, Operation *user, std::string &why,
           SmallVectorImpl<Operation *> *visited = nullptr);

private:
  /// The `#qopt.external` byte range of `param`, `size` bytes long.
  FailureOr<std::unique_ptr<llvm::MemoryBuffer>>
  readExternal(ParamOp param, ExternalDataAttr external, size_t size,
               Operation *user);

  std::string modelDir;
};

/// Creates `qopt.param @name : type = dense_resource<…>` after the last
/// parameter of the module `symbols` belongs to, with bytes written by
/// `fill` (`byteSize(type)` of them, zero-initialised) straight into the
/// file-backed blob. A taken name gets a `_N` suffix. Returns null after
/// emitting an error at `loc` when no temporary file can be made.
ParamOp createParam(SymbolTable &symbols, Location loc, StringRef name,
                    RankedTensorType type, bool trainable,
                    function_ref<void(MutableArrayRef<char>)> fill);

/// createParam for a float parameter whose elements are `values` (as many
/// as `type` has), converted to the element type rounding to nearest even.
ParamOp createFloatParam(SymbolTable &symbols, Location loc, StringRef name,
                         RankedTensorType type, ArrayRef<float> values,
                         bool trainable = false);

/// One tensor of a safetensors file, any dtype: its bytes in the file.
struct SafetensorsEntry {
  std::string dtype;
  SmallVector<int64_t> shape;
  int64_t count = 1;
  StringRef bytes;
};

/// Every tensor of the safetensors file in `bytes` (named `path` in
/// messages), checked against its header: known dtype, sane shape, data
/// inside the file and of the size shape and dtype give. Little-endian hosts.
llvm::Expected<std::map<std::string, SafetensorsEntry>>
readSafetensors(StringRef bytes, StringRef path);

/// The dense-math kind of a safetensors float dtype (F16, BF16, F32, F64).
std::optional<::qopt::dense::FloatKind> safetensorsFloatKind(StringRef dtype);

/// A quantized N×K weight as passes build it: codes, scales, and what the
/// format adds, for createQuantizedWeight to store.
struct QuantizedWeight {
  QuantFormatAttrInterface format;
  GranularityAttrInterface granularity;
  int64_t n = 0, k = 0;
  /// n·k codes, row-major, each in its low `format` bits.
  std::vector<uint8_t> codes;
  /// The granularity's scales (f32) and their shape.
  std::vector<float> scales;
  SmallVector<int64_t> scaleShape;
  /// One per scale when the format has zero points.
  std::vector<uint8_t> zeroPoints;
  /// QLoRA's double quantization (1-D scales): `scales` stored instead as
  /// 8-bit dynamic codes per block of `nestedBlock`, their absmax, and the
  /// offset (the mean the codes were centred on).
  bool doubleQuantized = false;
  std::vector<uint8_t> scaleCodes;
  std::vector<float> nestedAbsmax;
  float offset = 0.0f;
  int64_t nestedBlock = 256;
  /// MXFP4: `scaleCodes` hold the scales' E8M0 codes (one per scale),
  /// stored as a parameter of bytes read as f8E8M0FNU.
  bool e8m0Scales = false;
  /// NVFP4: `scaleCodes` hold E4M3 codes of the scales over `globalScale`,
  /// a nested per-tensor quantized tensor.
  bool e4m3Scales = false;
  float globalScale = 1.0f;
  /// PEQA: the (f32) scales are a trainable parameter.
  bool trainableScales = false;
  /// The scales' parameter suffix (bitsandbytes says "absmax").
  std::string scaleSuffix = ".scales";
};

/// How to quantize an N×K weight: qopt-quantize-weights' options.
struct QuantizeSpec {
  /// nf4, fp4, int2/4/8, fp8-e4m3, fp8-e5m2, mxfp4, nvfp4.
  std::string format;
  int64_t block = 0; // nf4 / fp4: elements per absmax (0: 64)
  bool doubleQuant = false;
  int64_t group = 0; // intK: input features per scale (0: per channel)
  bool asym = false;
  bool mse = false;        // intK: MSE-optimal clipping
  bool perChannel = false; // fp8: per output channel (else per tensor)

  /// K of an `intK` format, 0 for the others.
  unsigned intBits() const {
    unsigned bits = 0;
    llvm::StringRef f(format);
    return f.consume_front("int") && !f.getAsInteger(10, bits) ? bits : 0;
  }
};

/// Checks `spec`'s format and the options it combines; the message says
/// what is wrong.
std::optional<std::string> checkQuantizeSpec(const QuantizeSpec &spec);

/// Checks an activation quantizer spec of qopt-insert-fake-quant's
/// `activations` option (`int8:per-token`, `int4:per-token`,
/// `int8:per-tensor,static`, …); the message says what is wrong.
std::optional<std::string> checkActivationSpec(llvm::StringRef text);

/// Parses `qoptc --quantize`'s SPEC (`nf4:block=64,double-quant`,
/// `int4:group=128,asym,clip=mse`, `fp8-e4m3:per-channel`, `mxfp4`, …) and
/// checks it; the message says what is wrong.
std::optional<std::string> parseQuantizeSpec(llvm::StringRef text,
                                             QuantizeSpec &spec);

/// `w` quantized as `spec` says (checkQuantizeSpec must accept it).
QuantizedWeight quantizeMatrix(MLIRContext *ctx, const QuantizeSpec &spec,
                               const ::qopt::dense::Matrix &w);

/// The float values `w` stands for, as the CPU lowering dequantizes them.
::qopt::dense::Matrix dequantizeMatrix(const QuantizedWeight &w);

/// The stored bits of `w`: codes packed per row, scales (f32, or their
/// 8-bit codes with the nested absmax and offset), zero points.
double storedBits(const QuantizedWeight &w);

/// One way to store a layer under a memory budget.
struct BudgetChoice {
  double cost;  // stored bits
  double error; // the error it leaves (smaller is better)
};

/// Picks one choice per layer for the least total error with a total cost
/// within `budget` (bits): from each layer's cheapest choice, the upgrade
/// that saves the most error per bit is taken while it fits (a greedy
/// multiple-choice knapsack over each layer's lower convex hull of (cost,
/// error)). Returns the index of each layer's choice, or nullopt when even
/// the cheapest choices exceed the budget.
std::optional<std::vector<size_t>>
chooseUnderBudget(llvm::ArrayRef<std::vector<BudgetChoice>> layers,
                  double budget);

/// The spec that quantizes a weight again into the layout of `type` (what
/// qopt-quantize-weights or qopt-load-weights made; integer ranges
/// min–max), or a message naming what has no quantizer.
FailureOr<QuantizeSpec> specOfType(QTensorType type, std::string &why);

/// The float value of the quantized weight `q` at compile time: a
/// `qopt.assemble` of parameters (scales possibly nested, read through a
/// bitcast, or with a constant offset), rank 1 or 2, expanded as the CPU
/// lowering would. Fails as WeightReader::evaluate does.
FailureOr<::qopt::dense::Matrix>
dequantizeKnown(WeightReader &reader, Value q, SymbolTable &symbols,
                Operation *user, std::string &why,
                SmallVectorImpl<Operation *> *visited = nullptr);

/// Stores `w` as frozen parameters `<prefix>` (the codes packed per row,
/// little-endian), `<prefix><scaleSuffix>` (and `.zero_points`,
/// `.nested_absmax`), read before `user`, and returns their
/// `qopt.assemble`: the `!qopt.qtensor` value. Null after an error.
Value createQuantizedWeight(SymbolTable &symbols, Operation *user,
                            StringRef prefix, const QuantizedWeight &w);

/// The names of `module`'s parameters, to give restoreParamNames.
llvm::StringSet<> paramNames(ModuleOp module);

/// Gives each parameter created since `before` (paramNames then) whose name
/// took SymbolTable's clash suffix ("_N") the name it asked for, where that
/// is free now (the parameter it replaced was erased).
void restoreParamNames(ModuleOp module, const llvm::StringSet<> &before,
                       SymbolTable &symbols);

/// reader.evaluate(value, …) with its reason, when it has one, reported at
/// `op` as "<pass>: the <what> <reason>".
FailureOr<::qopt::dense::Matrix>
evaluateOrError(WeightReader &reader, Value value, SymbolTable &symbols,
                Operation *op, StringRef pass, StringRef what,
                SmallVectorImpl<Operation *> *visited = nullptr);

/// Gives `op`'s float operand `operand` new values: a new parameter of its
/// type named `preferred` (with a clash suffix while the old one exists;
/// restoreParamNames gives it the name later), read just before `op`. The
/// old value's producer goes to `maybeDead`. Fails after an error.
LogicalResult replaceWithParam(SymbolTable &symbols, Operation *op,
                               OpOperand &operand, ArrayRef<float> values,
                               StringRef preferred,
                               SmallVectorImpl<Operation *> &maybeDead);

/// Erases the ops of `maybeDead` nothing reads, then the producers that
/// leaves unread, recursively (an op may be listed more than once), then
/// the parameters of `symbols` whose last reads it erased (others nothing
/// reads are left alone).
void eraseDeadOps(SmallVectorImpl<Operation *> &maybeDead,
                  SymbolTable &symbols);

} // namespace mlir::qopt

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_WEIGHTS_H
