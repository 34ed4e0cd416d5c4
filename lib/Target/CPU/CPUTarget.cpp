//===- CPUTarget.cpp - Compile a model to a CPU shared library ------------===//

#include "qopt/Target/CPU/CPUTarget.h"

#include "qopt/Config.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/CompiledModel.h"
#include "qopt/Support/LibraryTrailer.h"
#include "qopt/Target/CPU/Pipeline.h"
#include "qopt/Target/CUDA/CUDABinary.h"
#include "qopt/Target/CUDA/Pipeline.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/Timer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <unistd.h>

#include <chrono>
#include <random>

using namespace mlir;
using namespace mlir::qopt;

namespace {

namespace cm = ::qopt::compiled_model;
namespace key = ::qopt::compiled_model::manifest;
using DTypeNames = cm::DType;

/// The element type's entry in the compiled-model dtype table, if the
/// runtime can pass it.
std::optional<DTypeNames> dtypeOf(Type type) {
  const cm::DType *d = nullptr;
  if (isa<FloatType>(type))
    d = cm::findDType(type.isBF16() ? cm::ElementKind::BFloat
                                    : cm::ElementKind::Float,
                      type.getIntOrFloatBitWidth());
  else if (auto integer = dyn_cast<IntegerType>(type))
    d = cm::findDType(integer.getWidth() == 1 ? cm::ElementKind::Bool
                      : integer.isUnsigned()  ? cm::ElementKind::Unsigned
                                              : cm::ElementKind::Signed,
                      integer.getWidth());
  if (!d)
    return std::nullopt;
  return *d;
}

struct Parameter {
  std::string name;
  RankedTensorType type;
  DTypeNames dtype;
  ExternalDataAttr data;   // bytes in a file, or
  ElementsAttr inlineData; // values in the IR (small unsigned tensors) or a
                           // resource blob (weights computed by passes)
  uint64_t fileOffset = 0; // in the weights file
  const char *role = cm::manifest::kFrozen; // or kTrainable / kState
  uint64_t length() const {
    return data ? data.getLength() : inlineData.getNumElements() * dtype.bytes;
  }
};

/// One step's wall time, printed with --time.
class StepTimer {
public:
  explicit StepTimer(bool enabled) : enabled(enabled) {}
  void step(StringRef name) {
    auto now = std::chrono::steady_clock::now();
    if (enabled)
      llvm::errs() << llvm::format(
          "qoptc: %-28s %8.3f s\n", name.str().c_str(),
          std::chrono::duration<double>(now - last).count());
    last = now;
  }

private:
  bool enabled;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
};

/// A file written under a temporary name and renamed into place at the
/// end, so that a failed compilation leaves nothing behind.
struct PendingFile {
  std::string temp, final;
};

class CPUCompiler {
public:
  CPUCompiler(ModuleOp module, const CPUTargetOptions &options)
      : module(module), options(options), timer(options.timing) {}
  ~CPUCompiler() {
    for (PendingFile &file : pending)
      llvm::sys::fs::remove(file.temp);
  }
  LogicalResult run();

private:
  InFlightDiagnostic error() { return mlir::emitError(module.getLoc()); }
  LogicalResult runCodegenPipeline();
  LogicalResult collectSignature();
  LogicalResult writeWeights(StringRef path);
  llvm::json::Value manifest();
  std::unique_ptr<llvm::TargetMachine> createTargetMachine();
  LogicalResult emitObject(llvm::TargetMachine &machine, StringRef path,
                           const std::string &manifestText);
  LogicalResult link(StringRef object, StringRef output);
  LogicalResult appendTrailer(StringRef library);
  /// Kernels for a GPU (not emulated on the CPU).
  bool cudaDevice() const {
    return options.cuda.enabled && !options.cuda.emulate;
  }
  FailureOr<std::string> reserve(StringRef finalPath);

  ModuleOp module;
  const CPUTargetOptions &options;
  StepTimer timer;
  /// The entry points: the first is the default (kEntrySymbol); all take
  /// the same arguments.
  struct Entry {
    func::FuncOp func;
    std::string name;
    unsigned numOutputs = 0;
    /// The parameters the results after the outputs update, in order.
    SmallVector<std::string> updates;
  };
  LogicalResult collectResults(Entry &e);
  /// Whether `t` can cross the entry's boundary (what the runtime passes).
  LogicalResult checkBoundaryType(Type t, const Twine &what);
  SmallVector<Entry> entries;
  func::FuncOp entry;
  unsigned numInputs = 0;
  bool hasRNGKey = false;
  SmallVector<Parameter> params;
  std::string weightsId;
  uint64_t weightsSize = 0;
  std::string cpuName;
  /// The kCPUFeatures the generated code may use (the manifest lists them).
  SmallVector<std::string> cpuFeatures;
  SmallVector<PendingFile> pending;
  /// ptxas's resource report of the embedded kernels (CUDA models).
  std::string ptxasReportPath;
};
} // namespace

static constexpr StringLiteral kEntryName = "qopt_entry";

LogicalResult CPUCompiler::runCodegenPipeline() {
  PassManager pm(module.getContext());
  if (options.cuda.enabled) {
    CUDACodegenOptions codegen;
    codegen.chip = options.cuda.archs.empty() ? std::string("sm_80")
                                              : options.cuda.archs.front();
    codegen.toolkit = options.cuda.toolkit;
    codegen.blockSize = options.cuda.blockSize;
    codegen.emulate = options.cuda.emulate;
    codegen.library = !options.cuda.kernelLibrary.empty();
    // (qoptc checked the name.)
    codegen.matmulPrecision = parseMatmulPrecision(options.cuda.matmulPrecision)
                                  .value_or(MatmulPrecision::Highest);
    buildCUDACodegenPipeline(pm, codegen);
    if (failed(pm.run(module)))
      return failure();
    timer.step("lower to LLVM dialect + PTX");
    if (options.cuda.emulate)
      return success();
    CUDABinaryOptions binary;
    binary.toolkit = options.cuda.toolkit;
    binary.archs = options.cuda.archs;
    binary.reportPath = ptxasReportPath;
    if (failed(compilePTXToFatbin(module, binary)))
      return failure();
    timer.step("ptxas + fatbinary");
    return success();
  }
  CPUCodegenOptions codegen;
  codegen.blas = options.blas;
  codegen.parallel = options.parallel;
  codegen.int8Activations = options.int8Activations;
  buildCPUCodegenPipeline(pm, codegen);
  if (failed(pm.run(module)))
    return failure();
  timer.step("lower to LLVM dialect");
  return success();
}

LogicalResult CPUCompiler::collectSignature() {
  for (auto func : module.getOps<func::FuncOp>())
    if (func.isPublic() && !func.isExternal())
      entries.push_back({func, func.getSymName().str()});
  if (entries.empty())
    return error() << "the model has no entry function";
  entry = entries.front().func;
  // Entries beyond the first take the first one's arguments.
  for (Entry &e : llvm::drop_begin(entries)) {
    if (e.func.getFunctionType().getInputs() !=
        entry.getFunctionType().getInputs())
      return error() << "entry @" << e.name << " takes other arguments than @"
                     << entry.getSymName()
                     << ": every entry must take the same inputs and "
                        "parameters";
    for (unsigned i = 0; i < entry.getNumArguments(); ++i)
      if (e.func.getArgAttrDict(i) != entry.getArgAttrDict(i))
        return error() << "entry @" << e.name << "'s argument #" << i
                       << " is not @" << entry.getSymName() << "'s";
    if (!llvm::all_of(e.name,
                      [](char c) { return llvm::isAlnum(c) || c == '_'; }))
      return error() << "entry @" << e.name
                     << ": names of entries are letters, digits and '_'";
  }
  FunctionType type = entry.getFunctionType();
  // Arguments: inputs, parameters, then the random key if the model uses
  // one. Results: outputs, then new values of mutable parameters.
  for (unsigned i = 0; i < type.getNumInputs(); ++i) {
    auto name = entry.getArgAttrOfType<StringAttr>(
        i, QOptDialect::ParamAttrHelper::getNameStr());
    if (entry.getArgAttr(i, QOptDialect::RngKeyAttrHelper::getNameStr())) {
      if (i + 1 != type.getNumInputs() ||
          type.getInput(i) !=
              RankedTensorType::get({2},
                                    IntegerType::get(module.getContext(), 64)))
        return error() << "the random key must be the last entry argument, "
                          "a tensor<2xi64>";
      hasRNGKey = true;
      continue;
    }
    if (!name) {
      if (!params.empty())
        return error() << "entry argument #" << i << " follows the parameters";
      if (failed(checkBoundaryType(type.getInput(i), "input #" + Twine(i))))
        return failure();
      ++numInputs;
      continue;
    }
    if (failed(checkBoundaryType(type.getInput(i),
                                 "parameter '" + name.str() + "'")))
      return failure();
    auto data = entry.getArgAttrOfType<ExternalDataAttr>(
        i, QOptDialect::ExternalAttrHelper::getNameStr());
    auto inlineData = entry.getArgAttrOfType<ElementsAttr>(
        i, QOptDialect::InlineAttrHelper::getNameStr());
    if (!data && !inlineData)
      return error() << "parameter '" << name.getValue()
                     << "' has no data: compiled models need a value for "
                        "every parameter";
    auto tensorType = cast<RankedTensorType>(type.getInput(i));
    params.push_back({name.str(), tensorType,
                      *dtypeOf(tensorType.getElementType()), data, inlineData});
    if (entry.getArgAttr(i, QOptDialect::TrainableAttrHelper::getNameStr()))
      params.back().role = cm::manifest::kTrainable;
    else if (entry.getArgAttr(i, QOptDialect::StateAttrHelper::getNameStr()))
      params.back().role = cm::manifest::kState;
    if (tensorType.getElementType().isInteger(1))
      continue;
    if (tensorType.getElementTypeBitWidth() % 8)
      return error() << "parameter '" << name.getValue() << "' of type "
                     << tensorType << " is stored by reference in sub-byte "
                     << "form, which compiled models cannot map yet";
  }
  for (Entry &e : entries)
    if (failed(collectResults(e)))
      return failure();
  return success();
}

LogicalResult CPUCompiler::checkBoundaryType(Type t, const Twine &what) {
  auto tensor = dyn_cast<RankedTensorType>(t);
  if (!tensor || !dtypeOf(tensor.getElementType()))
    return error() << what << " has type " << t
                   << ", which compiled models cannot pass (ranked tensors "
                      "of float, integer or bool elements only)";
  if (tensor.getRank() > 16)
    return error() << what << " has rank " << tensor.getRank()
                   << "; compiled models support at most 16";
  return success();
}

LogicalResult CPUCompiler::collectResults(Entry &e) {
  FunctionType type = e.func.getFunctionType();
  for (unsigned i = 0; i < type.getNumResults(); ++i) {
    if (auto param = e.func.getResultAttrOfType<StringAttr>(
            i, QOptDialect::ParamAttrHelper::getNameStr())) {
      auto it = llvm::find_if(params, [&](const Parameter &p) {
        return p.name == param.getValue();
      });
      if (it == params.end() || it->role == cm::manifest::kFrozen ||
          it->type != type.getResult(i))
        return error() << "result #" << i << " updates parameter '"
                       << param.getValue()
                       << "', which is not a mutable parameter of that type "
                          "passed to the entry";
      e.updates.push_back(param.str());
      continue;
    }
    if (!e.updates.empty())
      return error() << "output #" << i << " follows the parameter updates";
    if (failed(checkBoundaryType(type.getResult(i), "output #" + Twine(i))))
      return failure();
    ++e.numOutputs;
  }
  return success();
}

/// The weights in safetensors format: header, then every tensor at an
/// offset aligned to its element size (widest elements first, so no
/// padding between tensors is needed), data starting 64-byte aligned.
LogicalResult CPUCompiler::writeWeights(StringRef path) {
  std::random_device random;
  weightsId = llvm::formatv("{0:x8}{1:x8}", random(), random()).str();
  SmallVector<Parameter *> order;
  for (Parameter &p : params)
    order.push_back(&p);
  std::stable_sort(order.begin(), order.end(), [](Parameter *a, Parameter *b) {
    return a->dtype.bytes > b->dtype.bytes;
  });
  llvm::json::Object header;
  header["__metadata__"] = llvm::json::Object{
      {key::kFormat, cm::kWeightsFormatValue}, {cm::kWeightsIdKey, weightsId}};
  uint64_t offset = 0;
  for (Parameter *p : order) {
    llvm::json::Array shape;
    for (int64_t d : p->type.getShape())
      shape.push_back(d);
    header[p->name] = llvm::json::Object{
        {"dtype", p->dtype.safetensors},
        {"shape", std::move(shape)},
        {"data_offsets", llvm::json::Array{offset, offset + p->length()}}};
    p->fileOffset = offset;
    offset += p->length();
  }
  std::string headerText;
  llvm::raw_string_ostream(headerText) << llvm::json::Value(std::move(header));
  // Pad with spaces (allowed by the format) to a 64-byte boundary.
  while ((8 + headerText.size()) % 64)
    headerText.push_back(' ');
  uint64_t dataStart = 8 + headerText.size();

  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec)
    return error() << "cannot write '" << path << "': " << ec.message();
  uint64_t headerSize = headerText.size();
  char sizeBytes[8];
  for (int i = 0; i < 8; ++i)
    sizeBytes[i] = static_cast<char>((headerSize >> (8 * i)) & 0xff);
  os.write(sizeBytes, 8);
  os << headerText;
  for (Parameter *p : order) {
    if (auto resource =
            dyn_cast_if_present<DenseResourceElementsAttr>(p->inlineData)) {
      std::optional<ArrayRef<char>> raw = getRawBytes(resource);
      if (!raw || raw->size() != p->length())
        return error() << "parameter '" << p->name
                       << "' has no data (its resource blob was elided)";
      os.write(raw->data(), raw->size());
      p->fileOffset += dataStart;
      continue;
    }
    if (auto elements = dyn_cast_if_present<DenseElementsAttr>(p->inlineData);
        elements && elements.getElementType().isInteger(1)) {
      // Booleans are bit-packed in the attribute, a byte each in the file.
      for (bool v : elements.getValues<bool>())
        os << char(v ? 1 : 0);
      p->fileOffset += dataStart;
      continue;
    }
    if (auto elements = dyn_cast_if_present<DenseElementsAttr>(p->inlineData)) {
      // Byte-sized elements: the raw data is the array (a splat holds one).
      ArrayRef<char> raw = elements.getRawData();
      for (int64_t e = 0,
                   n = elements.isSplat() ? elements.getNumElements() : 1;
           e < n; ++e)
        os.write(raw.data(), raw.size());
      p->fileOffset += dataStart;
      continue;
    }
    SmallString<256> file(options.modelDir);
    llvm::sys::path::append(file, p->data.getLocation());
    auto buffer = llvm::MemoryBuffer::getFileSlice(file, p->data.getLength(),
                                                   p->data.getOffset(),
                                                   /*IsVolatile=*/false);
    if (!buffer)
      return error() << "parameter '" << p->name << "': cannot read "
                     << p->data.getLength() << " bytes at offset "
                     << p->data.getOffset() << " of '" << file
                     << "': " << buffer.getError().message();
    if ((*buffer)->getBufferSize() != p->data.getLength())
      return error() << "parameter '" << p->name << "': '" << file
                     << "' is shorter than the model says";
    os << (*buffer)->getBuffer();
    p->fileOffset += dataStart;
  }
  os.close();
  if (os.has_error())
    return error() << "cannot write '" << path << "': " << os.error().message();
  weightsSize = dataStart + offset;
  timer.step("write weights");
  return success();
}

static llvm::json::Value tensorInfo(StringRef name, RankedTensorType type,
                                    DictionaryAttr attrs) {
  llvm::json::Array shape, dims;
  ArrayAttr names = attrs ? attrs.getAs<ArrayAttr>(
                                QOptDialect::DimNamesAttrHelper::getNameStr())
                          : nullptr;
  bool named = false;
  for (auto [i, d] : llvm::enumerate(type.getShape())) {
    shape.push_back(ShapedType::isDynamic(d) ? int64_t(-1) : d);
    StringRef dimName;
    if (names && i < names.size())
      if (auto s = dyn_cast<StringAttr>(names[i]))
        dimName = s.getValue();
    named |= !dimName.empty() && ShapedType::isDynamic(d);
    dims.push_back(ShapedType::isDynamic(d) ? dimName.str() : "");
  }
  llvm::json::Object info{{key::kName, name.str()},
                          {key::kDType, dtypeOf(type.getElementType())->name},
                          {key::kShape, std::move(shape)}};
  if (named)
    info[key::kDims] = std::move(dims);
  return info;
}

llvm::json::Value CPUCompiler::manifest() {
  FunctionType type = entry.getFunctionType();
  auto nameOf = [](DictionaryAttr attrs, unsigned i, StringRef kind) {
    if (attrs)
      if (auto name = attrs.getAs<StringAttr>(
              QOptDialect::NameAttrHelper::getNameStr()))
        return name.str();
    return (kind + Twine(i)).str();
  };
  llvm::json::Array inputs, outputs, parameters;
  for (unsigned i = 0; i < numInputs; ++i)
    inputs.push_back(tensorInfo(nameOf(entry.getArgAttrDict(i), i, "input"),
                                cast<RankedTensorType>(type.getInput(i)),
                                entry.getArgAttrDict(i)));
  auto outputsOf = [&](const Entry &e) {
    llvm::json::Array list;
    func::FuncOp f = e.func;
    for (unsigned i = 0; i < e.numOutputs; ++i)
      list.push_back(
          tensorInfo(nameOf(f.getResultAttrDict(i), i, "output"),
                     cast<RankedTensorType>(f.getFunctionType().getResult(i)),
                     f.getResultAttrDict(i)));
    return list;
  };
  outputs = outputsOf(entries.front());
  // Further entry points (a train step's eval step and gradients).
  llvm::json::Array entryList;
  if (entries.size() > 1 || entries.front().name != "main")
    for (auto [i, e] : llvm::enumerate(entries))
      entryList.push_back(llvm::json::Object{
          {key::kName, e.name},
          {key::kSymbol, i ? std::string(cm::kEntrySymbol) + "_" + e.name
                           : std::string(cm::kEntrySymbol)},
          {key::kOutputs, outputsOf(e)},
          {key::kUpdates, llvm::json::Array(e.updates)}});
  for (const Parameter &p : params) {
    llvm::json::Object info =
        *tensorInfo(p.name, p.type, nullptr).getAsObject();
    info[key::kOffset] = p.fileOffset;
    info[key::kLength] = p.length();
    info[key::kRole] = p.role;
    parameters.push_back(std::move(info));
  }
  // Run-time adapter slots, as qopt-insert-lora listed them.
  llvm::json::Array loraSlots;
  if (auto slots =
          QOptDialect::LoraSlotsAttrHelper(module.getContext()).getAttr(module))
    for (auto slot : slots.getAsRange<DictionaryAttr>())
      loraSlots.push_back(llvm::json::Object{
          {key::kModule, slot.getAs<StringAttr>("module").str()},
          {key::kRank, slot.getAs<IntegerAttr>("rank").getInt()},
          {key::kLoraA, slot.getAs<StringAttr>("lora_a").str()},
          {key::kLoraB, slot.getAs<StringAttr>("lora_b").str()}});
  std::string weightsFile = llvm::sys::path::filename(options.outputPath).str();
  weightsFile = llvm::sys::path::stem(weightsFile).str() + ".safetensors";
  llvm::json::Object result{
      {key::kFormat, key::kFormatValue},
      {key::kABIVersion, cm::kABIVersion},
      {key::kQOptVersion, QOPT_VERSION},
      {key::kTarget, cudaDevice() ? key::kCUDA : key::kCPU},
      {key::kCPU, cpuName},
      {key::kCPUFeatures, llvm::json::Array(cpuFeatures)},
      {key::kEntry, cm::kEntrySymbol},
      {key::kWeights, llvm::json::Object{{key::kFile, weightsFile},
                                         {key::kId, weightsId},
                                         {key::kSize, weightsSize}}},
      {key::kInputs, std::move(inputs)},
      {key::kOutputs, std::move(outputs)},
      {key::kParameters, std::move(parameters)},
      {key::kUpdates, llvm::json::Array(entries.front().updates)},
      {key::kRNGKey, hasRNGKey},
      {key::kLoraSlots, std::move(loraSlots)}};
  if (!entryList.empty())
    result[key::kEntries] = std::move(entryList);
  if (cudaDevice())
    result[key::kCUDA] =
        llvm::json::Object{{key::kArchs, llvm::json::Array(options.cuda.archs)},
                           {key::kPTX, options.cuda.archs.front()}};
  if (auto adapter = module->getAttrOfType<StringAttr>(kAdapterManifestAttr)) {
    if (llvm::Expected<llvm::json::Value> parsed =
            llvm::json::parse(adapter.getValue()))
      result["adapter"] = std::move(*parsed);
    else
      llvm::consumeError(parsed.takeError());
  }
  return result;
}

std::unique_ptr<llvm::TargetMachine> CPUCompiler::createTargetMachine() {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getProcessTriple());
  std::string message;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, message);
  if (!target) {
    error() << "no LLVM target for " << triple.str() << ": " << message;
    return nullptr;
  }
  std::string features;
  if (options.cpu == "host") {
    cpuName = llvm::sys::getHostCPUName().str();
    llvm::SubtargetFeatures list;
    for (auto &feature : llvm::sys::getHostCPUFeatures())
      list.AddFeature(feature.getKey(), feature.getValue());
    features = list.getString();
  } else {
    cpuName = options.cpu;
    if (!target->createMCSubtargetInfo(triple, cpuName, "")
             ->isCPUStringValid(cpuName)) {
      error() << "--cpu: '" << cpuName << "' is not a CPU LLVM knows for "
              << triple.str();
      return nullptr;
    }
  }
  llvm::CodeGenOptLevel level =
      options.optLevel >= 3   ? llvm::CodeGenOptLevel::Aggressive
      : options.optLevel == 2 ? llvm::CodeGenOptLevel::Default
      : options.optLevel == 1 ? llvm::CodeGenOptLevel::Less
                              : llvm::CodeGenOptLevel::None;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpuName, features, llvm::TargetOptions(), llvm::Reloc::PIC_,
      std::nullopt, level));
  if (machine && triple.isX86()) {
    const llvm::MCSubtargetInfo *info = machine->getMCSubtargetInfo();
    for (const char *feature : cm::kCPUFeatures)
      if (info->checkFeatures((Twine("+") + feature).str()))
        cpuFeatures.push_back(feature);
  }
  return machine;
}

/// `void qopt_run_packed(void **args)`: the entry with every argument behind
/// one pointer array (results first), so the runtime can call models of any
/// signature without generating code.
static void addPackedEntry(llvm::Module &llvmModule, llvm::Function *ciface,
                           StringRef suffix) {
  llvm::LLVMContext &ctx = llvmModule.getContext();
  auto *ptrType = llvm::PointerType::get(ctx, 0);
  auto *fnType =
      llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {ptrType}, false);
  auto *packed =
      llvm::Function::Create(fnType, llvm::GlobalValue::ExternalLinkage,
                             cm::kPackedEntrySymbol + suffix, llvmModule);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", packed));
  SmallVector<llvm::Value *> args;
  for (unsigned i = 0; i < ciface->arg_size(); ++i) {
    llvm::Value *slot = b.CreateConstGEP1_64(ptrType, packed->getArg(0), i);
    args.push_back(b.CreateLoad(ptrType, slot));
  }
  b.CreateCall(ciface, args);
  b.CreateRetVoid();

  // `int qopt_run_checked(void **args, const char **message)`: the entry the
  // runtime calls; a failed run-time check (an index out of range, shapes
  // that do not broadcast) returns 1 with its message instead of running on.
  auto *intType = llvm::Type::getInt32Ty(ctx);
  auto *guardType =
      llvm::FunctionType::get(intType, {ptrType, ptrType, ptrType}, false);
  llvm::FunctionCallee guard =
      llvmModule.getOrInsertFunction(cm::kRunGuardedSymbol, guardType);
  auto *checked = llvm::Function::Create(
      llvm::FunctionType::get(intType, {ptrType, ptrType}, false),
      llvm::GlobalValue::ExternalLinkage, cm::kEntrySymbol + suffix,
      llvmModule);
  llvm::IRBuilder<> cb(llvm::BasicBlock::Create(ctx, "entry", checked));
  cb.CreateRet(
      cb.CreateCall(guard, {packed, checked->getArg(0), checked->getArg(1)}));
}

/// Buffers go through the kernel library's allocator, which frees a run's
/// buffers when a run-time check stops it (the code never resumes to free
/// them). The functions keep the allocation-function attributes LLVM knows
/// aligned_alloc / free by, so its optimizations still see them as such.
static void routeAllocations(llvm::Module &llvmModule) {
  llvm::LLVMContext &ctx = llvmModule.getContext();
  using llvm::Attribute;
  using llvm::MemoryEffects;
  if (llvm::Function *alloc = llvmModule.getFunction("aligned_alloc")) {
    alloc->setName(cm::kAlignedAllocSymbol);
    alloc->addFnAttr(Attribute::get(ctx, Attribute::AllocKind,
                                    uint64_t(llvm::AllocFnKind::Alloc |
                                             llvm::AllocFnKind::Uninitialized |
                                             llvm::AllocFnKind::Aligned)));
    alloc->addFnAttr("alloc-family", "qopt");
    alloc->addFnAttr(Attribute::getWithAllocSizeArgs(ctx, 1, {}));
    alloc->addFnAttr(Attribute::NoUnwind);
    alloc->addFnAttr(Attribute::WillReturn);
    alloc->setMemoryEffects(MemoryEffects::inaccessibleMemOnly());
    alloc->addParamAttr(0, Attribute::AllocAlign);
    alloc->addRetAttr(Attribute::NoAlias);
  }
  if (llvm::Function *release = llvmModule.getFunction("free")) {
    release->setName(cm::kFreeSymbol);
    release->addFnAttr(Attribute::get(ctx, Attribute::AllocKind,
                                      uint64_t(llvm::AllocFnKind::Free)));
    release->addFnAttr("alloc-family", "qopt");
    release->addFnAttr(Attribute::NoUnwind);
    release->addFnAttr(Attribute::WillReturn);
    release->setMemoryEffects(MemoryEffects::inaccessibleOrArgMemOnly());
    release->addParamAttr(0, Attribute::AllocatedPointer);
    release->addParamAttr(
        0, Attribute::getWithCaptureInfo(ctx, llvm::CaptureInfo::none()));
  }
}

LogicalResult CPUCompiler::emitObject(llvm::TargetMachine &machine,
                                      StringRef path,
                                      const std::string &manifestText) {
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, llvmContext, "qopt_model");
  if (!llvmModule)
    return error() << "translation to LLVM IR failed";
  llvmModule->setTargetTriple(machine.getTargetTriple());
  llvmModule->setDataLayout(machine.createDataLayout());
  for (auto [i, e] : llvm::enumerate(entries)) {
    std::string suffix = i ? "_" + e.name : "";
    llvm::Function *ciface =
        llvmModule->getFunction(("_mlir_ciface_" + kEntryName + suffix).str());
    if (!ciface)
      return error() << "the lowered module lacks its C interface entry";
    addPackedEntry(*llvmModule, ciface, suffix);
  }
  routeAllocations(*llvmModule);
  // The manifest travels inside the library, so model.so alone says what it
  // needs.
  auto *text = llvm::ConstantDataArray::getString(llvmContext, manifestText);
  new llvm::GlobalVariable(*llvmModule, text->getType(), /*isConstant=*/true,
                           llvm::GlobalValue::ExternalLinkage, text,
                           cm::kManifestSymbol);
  if (llvm::verifyModule(*llvmModule, &llvm::errs()))
    return error() << "internal error: invalid LLVM IR";
  timer.step("translate to LLVM IR");
  if (llvm::Error err = makeOptimizingTransformer(options.optLevel, 0,
                                                  &machine)(llvmModule.get()))
    return error() << "LLVM optimization failed: "
                   << llvm::toString(std::move(err));
  timer.step("optimize LLVM IR");
  if (!options.dumpLLVMIR.empty()) {
    std::error_code ec;
    llvm::raw_fd_ostream os(options.dumpLLVMIR, ec);
    if (!ec)
      llvmModule->print(os, nullptr);
  }
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return error() << "cannot write '" << path << "': " << ec.message();
  llvm::legacy::PassManager codegen;
  if (machine.addPassesToEmitFile(codegen, os, nullptr,
                                  llvm::CodeGenFileType::ObjectFile))
    return error() << "LLVM cannot emit object files for " << cpuName;
  codegen.run(*llvmModule);
  os.close();
  if (os.has_error())
    return error() << "cannot write '" << path << "': " << os.error().message();
  timer.step("emit object code");
  return success();
}

LogicalResult CPUCompiler::link(StringRef object, StringRef output) {
  auto linker = llvm::sys::findProgramByName(options.linker);
  if (!linker)
    return error() << "cannot find the linker driver '" << options.linker
                   << "' (install g++, or pass --linker)";
  if (!llvm::sys::fs::exists(options.kernelsLibrary))
    return error() << "cannot find the CPU kernel library '"
                   << options.kernelsLibrary << "' (pass --kernels-lib)";
  if (cudaDevice() && !llvm::sys::fs::exists(options.cuda.hostLibrary))
    return error() << "cannot find the CUDA host library '"
                   << options.cuda.hostLibrary << "'";
  StringRef cudaHost = cudaDevice() ? StringRef(options.cuda.hostLibrary) : "";
  // The kernel library's fatbin: nothing references it by a strong symbol.
  bool library = cudaDevice() && !options.cuda.kernelLibrary.empty();
  SmallVector<StringRef> args = {
      *linker, "-shared", "-o", output, object,
      library ? "-Wl,--whole-archive" : "",
      library ? StringRef(options.cuda.kernelLibrary) : "",
      library ? "-Wl,--no-whole-archive" : "", cudaHost, options.kernelsLibrary,
      cudaDevice() ? "-ldl" : "", "-lopenblas", "-lm", "-Wl,-z,noexecstack",
      // The model's calls into its own kernel
      // library bind to it, not to another
      // model's that a host loaded RTLD_GLOBAL
      // (whose pool and packed weights they
      // would share).
      "-Wl,-Bsymbolic", "-Wl,--no-undefined"};
  llvm::erase(args, StringRef());
  std::string message;
  SmallString<128> log;
  int fd;
  if (llvm::sys::fs::createTemporaryFile("qoptc-link", "log", fd, log))
    return error() << "cannot create a temporary file";
  ::close(fd);
  llvm::scope_exit removeLog([&] { llvm::sys::fs::remove(log); });
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log),
                                          StringRef(log)};
  int rc = llvm::sys::ExecuteAndWait(*linker, args, std::nullopt, redirects, 0,
                                     0, &message);
  if (rc != 0) {
    auto text = llvm::MemoryBuffer::getFile(log);
    return error() << "linking '" << output << "' failed"
                   << (message.empty() ? "" : ": ") << message << "\n"
                   << (text ? (*text)->getBuffer() : "");
  }
  timer.step("link");
  return success();
}

/// The checksum trailer the runtime checks before loading the library.
LogicalResult CPUCompiler::appendTrailer(StringRef library) {
  auto buffer = llvm::MemoryBuffer::getFile(library, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return error() << "cannot read back '" << library
                   << "': " << buffer.getError().message();
  unsigned char trailer[::qopt::trailer::kSize];
  ::qopt::trailer::make(
      reinterpret_cast<const unsigned char *>((*buffer)->getBufferStart()),
      (*buffer)->getBufferSize(), trailer);
  buffer->reset();
  std::error_code ec;
  llvm::raw_fd_ostream os(library, ec, llvm::sys::fs::OF_Append);
  if (!ec)
    os.write(reinterpret_cast<const char *>(trailer), sizeof(trailer));
  os.close();
  if (ec || os.has_error())
    return error() << "cannot write '" << library << "'";
  return success();
}

FailureOr<std::string> CPUCompiler::reserve(StringRef finalPath) {
  SmallString<256> temp;
  int fd;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueFile(finalPath + ".tmp-%%%%%%", fd, temp))
    return (error() << "cannot write beside '" << finalPath
                    << "': " << ec.message(),
            failure());
  ::close(fd);
  pending.push_back({temp.str().str(), finalPath.str()});
  return temp.str().str();
}

LogicalResult CPUCompiler::run() {
  if (failed(collectSignature()))
    return failure();

  StringRef output = options.outputPath;
  SmallString<256> stem(output);
  llvm::sys::path::replace_extension(stem, "");
  std::string weightsPath = (stem + ".safetensors").str();
  std::string manifestPath = (stem + ".json").str();
  if (weightsPath == output || manifestPath == output)
    return error() << "-o '" << output
                   << "' would be overwritten by its weights or manifest";
  FailureOr<std::string> weightsTemp = reserve(weightsPath);
  FailureOr<std::string> manifestTemp = reserve(manifestPath);
  FailureOr<std::string> objectTemp = reserve(output.str() + ".o");
  FailureOr<std::string> libraryTemp = reserve(output);
  if (failed(weightsTemp) || failed(manifestTemp) || failed(objectTemp) ||
      failed(libraryTemp))
    return failure();
  pending[2].final.clear(); // the object file is never kept
  if (cudaDevice()) {
    FailureOr<std::string> report = reserve((stem + ".ptxas.txt").str());
    if (failed(report))
      return failure();
    ptxasReportPath = *report;
  }
  if (failed(writeWeights(*weightsTemp)))
    return failure();

  for (auto [i, e] : llvm::enumerate(entries)) {
    e.func.setSymName(i ? (kEntryName + "_" + e.name).str() : kEntryName.str());
    e.func->setAttr("llvm.emit_c_interface",
                    UnitAttr::get(module.getContext()));
  }
  // The manifest names the CPU the code is generated for.
  std::unique_ptr<llvm::TargetMachine> machine = createTargetMachine();
  if (!machine)
    return failure();
  llvm::json::Value manifestValue = manifest();
  // The manifest has what the signature's attributes said; LLVM IR would
  // not know them.
  for (Entry &e : entries) {
    for (unsigned i = 0; i < e.func.getNumArguments(); ++i) {
      BoolAttr writable =
          e.func.getArgAttrOfType<BoolAttr>(i, "bufferization.writable");
      e.func.setArgAttrs(i, ArrayRef<NamedAttribute>{});
      if (writable)
        e.func.setArgAttr(i, "bufferization.writable", writable);
    }
    for (unsigned i = 0; i < e.func.getNumResults(); ++i)
      e.func.setResultAttrs(i, ArrayRef<NamedAttribute>{});
  }
  if (failed(runCodegenPipeline()))
    return failure();
  // Checks made on the device (qopt-device-checks): the entries take the
  // status word last, and the runtime reports these messages.
  QOptDialect::DeviceChecksAttrHelper deviceChecks(module.getContext());
  if (ArrayAttr checks = deviceChecks.getAttr(module)) {
    llvm::json::Array messages;
    for (auto message : checks.getAsRange<StringAttr>())
      messages.push_back(message.str());
    (*manifestValue.getAsObject())[cm::manifest::kChecks] = std::move(messages);
    deviceChecks.removeAttr(module);
    // (The status argument's marker means nothing to LLVM.)
    StringRef marker = QOptDialect::CheckStatusAttrHelper::getNameStr();
    module.walk([&](LLVM::LLVMFuncOp func) {
      for (unsigned i = 0; i < func.getNumArguments(); ++i)
        func.removeArgAttr(i, marker);
    });
  }
  // Entries whose launches may replay as a CUDA graph (qopt-gpu-host-sync).
  QOptDialect::CudaGraphsAttrHelper cudaGraphs(module.getContext());
  if (ArrayAttr graphs = cudaGraphs.getAttr(module)) {
    if (cudaDevice()) {
      llvm::StringSet<> names;
      for (auto ref : graphs.getAsRange<FlatSymbolRefAttr>())
        names.insert(ref.getValue());
      llvm::json::Object &top = *manifestValue.getAsObject();
      top[cm::manifest::kCUDAGraph] = names.contains(kEntryName);
      if (llvm::json::Array *list = top.getArray(cm::manifest::kEntries))
        for (auto [i, item] : llvm::enumerate(*list))
          (*item.getAsObject())[cm::manifest::kCUDAGraph] =
              names.contains(i ? (kEntryName + "_" + entries[i].name).str()
                               : kEntryName.str());
    }
    cudaGraphs.removeAttr(module);
  }
  std::string manifestText;
  llvm::raw_string_ostream(manifestText)
      << llvm::formatv("{0:2}", manifestValue) << "\n";
  if (failed(emitObject(*machine, *objectTemp, manifestText)) ||
      failed(link(*objectTemp, *libraryTemp)) ||
      failed(appendTrailer(*libraryTemp)))
    return failure();
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(*manifestTemp, ec);
    if (ec)
      return error() << "cannot write '" << manifestPath
                     << "': " << ec.message();
    os << manifestText;
  }
  for (PendingFile &file : pending) {
    if (file.final.empty())
      continue;
    if (std::error_code ec = llvm::sys::fs::rename(file.temp, file.final))
      return error() << "cannot write '" << file.final << "': " << ec.message();
    file.temp = file.final = "";
  }
  return success();
}

LogicalResult mlir::qopt::compileForCPU(ModuleOp module,
                                        const CPUTargetOptions &options) {
  DialectRegistry registry;
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  if (options.cuda.enabled) {
    // gpu.module to PTX (NVVM), gpu.binary and its launches to host code.
    registerAllGPUToLLVMIRTranslations(registry);
  }
  module.getContext()->appendDialectRegistry(registry);
  CPUCompiler compiler(module, options);
  return compiler.run();
}
