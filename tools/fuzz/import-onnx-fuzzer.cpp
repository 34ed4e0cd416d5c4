//===- import-onnx-fuzzer.cpp - libFuzzer target for the ONNX importer ----===//
//
// Feeds arbitrary bytes to the importer as a binary model (and, when they
// start like one, as ONNX text). Any crash, sanitizer report or hang is a
// bug: bad input must end in a diagnostic.
//
//===----------------------------------------------------------------------===//

#include "qopt/Import/ONNX/ImportONNX.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mlir::MLIRContext context;
  context.disableMultithreading();
  // Diagnostics are expected; keep them quiet.
  mlir::ScopedDiagnosticHandler silence(
      &context, [](mlir::Diagnostic &) { return mlir::success(); });
  llvm::SourceMgr sourceMgr;
  // A name without a folder: external data is refused before any file is
  // touched (the fuzzer must not read the file system).
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size),
          "<stdin>"),
      llvm::SMLoc());
  mlir::qopt::ONNXImportOptions options;
  (void)mlir::qopt::importONNXModel(sourceMgr, &context, options);
  return 0;
}
