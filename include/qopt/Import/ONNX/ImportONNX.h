//===- ImportONNX.h - ONNX ModelProto to MLIR -------------------*- C++ -*-===//
//
// Reads an ONNX model (binary ModelProto or ONNX text format) into a module:
// initializers become qopt.param (small ones inline, the rest by reference to
// the bytes of the model file or its external data files), the graph becomes
// func.func @main, and every node a onnx.node located at its name.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_IMPORT_ONNX_IMPORTONNX_H
#define QOPT_IMPORT_ONNX_IMPORTONNX_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/StringMap.h"

#include <cstdint>
#include <string>

namespace llvm {
class SourceMgr;
} // namespace llvm

namespace mlir::qopt {

struct ONNXImportOptions {
  /// Symbolic dimensions (dim_param) pinned to a size, e.g. seq=128.
  llvm::StringMap<int64_t> dimSizes;
  /// Initializers up to this many bytes are stored inline (dense<…>) so that
  /// shape computations can fold; larger ones stay in their file.
  int64_t inlineLimitBytes = 256;
  /// Import nodes of unknown domains instead of refusing them.
  bool allowUnsupported = false;
};

/// Parses one `--dim` value, NAME=SIZE, into `options.dimSizes`; on failure
/// returns false with the message for the user in `error`.
bool parseDimSpec(llvm::StringRef spec, ONNXImportOptions &options,
                  std::string &error);

/// Imports the model held by the main buffer of `sourceMgr`, whose
/// identifier is the model's path (external data is resolved next to it).
/// Emits diagnostics and returns null on failure.
OwningOpRef<ModuleOp> importONNXModel(llvm::SourceMgr &sourceMgr,
                                      MLIRContext *context,
                                      const ONNXImportOptions &options);

/// Registers the `--import-onnx` translation (with its `--dim` and
/// `--allow-unsupported` options) for qopt-translate.
void registerImportONNXTranslation();

} // namespace mlir::qopt

#endif // QOPT_IMPORT_ONNX_IMPORTONNX_H
