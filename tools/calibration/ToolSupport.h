//===- ToolSupport.h - What qoptc and qopt-calibrate set up alike -*- C++
//-*-===//

#ifndef QOPT_TOOLS_CALIBRATION_TOOLSUPPORT_H
#define QOPT_TOOLS_CALIBRATION_TOOLSUPPORT_H

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <string>

namespace mlir::qopt {

/// The CPU kernel library a tool links models against when not told:
/// ../lib/libqopt_kernels_cpu.a beside the executable (`argv0`, `mainAddr`
/// any function of it).
inline std::string defaultKernelsLibrary(const char *argv0, void *mainAddr) {
  std::string self = llvm::sys::fs::getMainExecutable(argv0, mainAddr);
  llvm::SmallString<256> lib(
      llvm::sys::path::parent_path(llvm::sys::path::parent_path(self)));
  llvm::sys::path::append(lib, "lib", "libqopt_kernels_cpu.a");
  return lib.str().str();
}

/// The folder relative external-data locations of `modelPath` start from.
inline std::string modelFolder(llvm::StringRef modelPath) {
  llvm::SmallString<256> folder(modelPath);
  llvm::sys::path::remove_filename(folder);
  return folder.empty() ? "." : folder.str().str();
}

} // namespace mlir::qopt

#endif // QOPT_TOOLS_CALIBRATION_TOOLSUPPORT_H
