//===- CUDABinary.h - PTX to cubins for every architecture ------*- C++ -*-===//
//
// The CUDA pipeline leaves each gpu.binary holding the kernels' PTX (for
// the oldest architecture). Here the toolkit's ptxas compiles it for each
// target architecture and fatbinary packs the cubins with the PTX itself
// (which the driver compiles for GPUs newer than all of them): the model
// library embeds that, and the driver picks the image for the GPU it runs
// on. Without a GPU this still checks every kernel's resources.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_TARGET_CUDA_CUDABINARY_H
#define QOPT_TARGET_CUDA_CUDABINARY_H

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace mlir::qopt {

struct CUDABinaryOptions {
  /// The toolkit folder (bin/ptxas, bin/fatbinary).
  std::string toolkit;
  /// sm_XX names, each >= the PTX's own target.
  std::vector<std::string> archs;
  /// Where to write ptxas's resource report (-v) for every architecture
  /// ("" = nowhere).
  std::string reportPath;
};

/// Replaces the PTX object of every gpu.binary in `module` by a fatbin of
/// one cubin per architecture plus the PTX. Errors (no toolkit, ptxas
/// failures) go to the module's diagnostics.
LogicalResult compilePTXToFatbin(ModuleOp module,
                                 const CUDABinaryOptions &options);

} // namespace mlir::qopt

#endif // QOPT_TARGET_CUDA_CUDABINARY_H
