//===- CUDABinary.cpp - PTX to cubins for every architecture --------------===//

#include "qopt/Target/CUDA/CUDABinary.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <unistd.h>

using namespace mlir;

namespace {
/// Temporary files removed when it goes out of scope.
struct TempFiles {
  SmallVector<std::string> paths;
  ~TempFiles() {
    for (const std::string &p : paths)
      llvm::sys::fs::remove(p);
  }
  FailureOr<std::string> make(StringRef suffix) {
    SmallString<128> path;
    int fd;
    if (llvm::sys::fs::createTemporaryFile("qoptc-cuda", suffix, fd, path))
      return failure();
    ::close(fd);
    paths.push_back(path.str().str());
    return paths.back();
  }
};

/// Runs `args` (args[0] is the program); on failure the error names the
/// step and quotes the tool's output.
LogicalResult run(Operation *op, ArrayRef<StringRef> args, StringRef log,
                  StringRef what) {
  std::string message;
  std::optional<StringRef> redirects[] = {std::nullopt, log, log};
  int rc = llvm::sys::ExecuteAndWait(args[0], args, std::nullopt, redirects, 0,
                                     0, &message);
  if (rc == 0)
    return success();
  auto text = llvm::MemoryBuffer::getFile(log);
  return op->emitError() << what << " failed" << (message.empty() ? "" : ": ")
                         << message << "\n"
                         << (text ? (*text)->getBuffer() : "");
}
} // namespace

LogicalResult mlir::qopt::compilePTXToFatbin(ModuleOp module,
                                             const CUDABinaryOptions &options) {
  SmallString<256> ptxas(options.toolkit), fatbinary(options.toolkit);
  llvm::sys::path::append(ptxas, "bin", "ptxas");
  llvm::sys::path::append(fatbinary, "bin", "fatbinary");
  auto binaries = llvm::to_vector(module.getOps<gpu::BinaryOp>());
  if (binaries.empty())
    return success();
  if (options.toolkit.empty() || !llvm::sys::fs::can_execute(ptxas) ||
      !llvm::sys::fs::can_execute(fatbinary))
    return module.emitError()
           << "--target cuda needs the CUDA toolkit's ptxas and fatbinary"
           << (options.toolkit.empty()
                   ? std::string(" (no toolkit was found when qopt was built)")
                   : " (not found under '" + options.toolkit + "')")
           << ": pass --cuda-toolkit or set QOPT_CUDA_ROOT";
  if (options.archs.empty())
    return module.emitError() << "--cuda-archs names no architecture";
  std::string report;
  llvm::raw_string_ostream reportStream(report);
  TempFiles temps;
  for (gpu::BinaryOp binary : binaries) {
    if (binary.getObjects().size() != 1)
      return binary.emitError() << "expected one PTX object per gpu.binary";
    auto object = cast<gpu::ObjectAttr>(binary.getObjects()[0]);
    if (object.getFormat() != gpu::CompilationTarget::Assembly)
      return binary.emitError() << "expected PTX (format=isa)";
    FailureOr<std::string> ptxPath = temps.make("ptx"),
                           logPath = temps.make("log"),
                           fatbinPath = temps.make("fatbin");
    if (failed(ptxPath) || failed(logPath) || failed(fatbinPath))
      return module.emitError() << "cannot create temporary files";
    {
      std::error_code ec;
      llvm::raw_fd_ostream os(*ptxPath, ec);
      if (ec)
        return module.emitError() << "cannot write " << *ptxPath;
      os << object.getObject().getValue();
    }
    // The PTX's own target (".target sm_80"), from which the driver can
    // compile for GPUs newer than every cubin.
    StringRef ptxText = object.getObject().getValue();
    size_t at = ptxText.find(".target sm_");
    unsigned ptxArch = 0;
    if (at == StringRef::npos || ptxText.substr(at + 11)
                                     .take_while(llvm::isDigit)
                                     .getAsInteger(10, ptxArch))
      return binary.emitError() << "the PTX names no .target";
    std::vector<std::string> fatArgs = {
        fatbinary.str().str(), "--64", "--create=" + *fatbinPath,
        "--image3=kind=ptx,sm=" + std::to_string(ptxArch) +
            ",file=" + *ptxPath};
    // One ptxas per architecture, all at once (each is single-threaded).
    struct Job {
      std::string arch, cubin, log;
      llvm::sys::ProcessInfo process;
    };
    SmallVector<Job> jobs;
    for (const std::string &arch : options.archs) {
      unsigned number = 0;
      if (!StringRef(arch).starts_with("sm_") ||
          StringRef(arch).drop_front(3).getAsInteger(10, number))
        return module.emitError()
               << "--cuda-archs: '" << arch << "' is not an sm_XX name";
      if (number < ptxArch)
        return module.emitError()
               << "--cuda-archs: " << arch << " is older than the kernels' "
               << "PTX target sm_" << ptxArch;
      FailureOr<std::string> cubin = temps.make("cubin"),
                             log = temps.make("log");
      if (failed(cubin) || failed(log))
        return module.emitError() << "cannot create temporary files";
      jobs.push_back({arch, *cubin, *log, {}});
      fatArgs.push_back("--image3=kind=elf,sm=" + std::to_string(number) +
                        ",file=" + *cubin);
    }
    for (Job &job : jobs) {
      std::string archFlag = "-arch=" + job.arch;
      StringRef args[] = {ptxas,    archFlag, "-O3",    "-v",
                          *ptxPath, "-o",     job.cubin};
      std::optional<StringRef> redirects[] = {std::nullopt, StringRef(job.log),
                                              StringRef(job.log)};
      std::string message;
      job.process = llvm::sys::ExecuteNoWait(ptxas, args, std::nullopt,
                                             redirects, 0, &message);
      if (!job.process.Pid) {
        // Wait for those already started (they write temporary files).
        for (Job &started : jobs)
          if (started.process.Pid)
            llvm::sys::Wait(started.process, std::nullopt);
        return binary.emitError() << "cannot run ptxas: " << message;
      }
    }
    bool failedAny = false;
    for (Job &job : jobs) {
      std::string message;
      llvm::sys::ProcessInfo done = llvm::sys::Wait(
          job.process, /*SecondsToWait=*/std::nullopt, &message);
      auto log = llvm::MemoryBuffer::getFile(job.log);
      StringRef text = log ? (*log)->getBuffer() : "";
      if (done.ReturnCode != 0) {
        if (!failedAny)
          binary.emitError() << "ptxas for " << job.arch << " failed"
                             << (message.empty() ? "" : ": ") << message << "\n"
                             << text;
        failedAny = true;
        continue;
      }
      reportStream << "# " << binary.getSymName() << " " << job.arch << "\n"
                   << text;
    }
    if (failedAny)
      return failure();
    SmallVector<StringRef> fatRefs(fatArgs.begin(), fatArgs.end());
    if (failed(run(binary, fatRefs, *logPath, "fatbinary")))
      return failure();
    auto fatbin = llvm::MemoryBuffer::getFile(*fatbinPath, /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    if (!fatbin)
      return module.emitError() << "cannot read back " << *fatbinPath;
    MLIRContext *ctx = module.getContext();
    auto fat = gpu::ObjectAttr::get(
        ctx, object.getTarget(), gpu::CompilationTarget::Fatbin,
        StringAttr::get(ctx, (*fatbin)->getBuffer()), object.getProperties(),
        object.getKernels());
    binary.setObjectsAttr(ArrayAttr::get(ctx, {fat}));
  }
  if (!options.reportPath.empty()) {
    std::error_code ec;
    llvm::raw_fd_ostream os(options.reportPath, ec);
    if (ec)
      return module.emitError()
             << "cannot write '" << options.reportPath << "': " << ec.message();
    os << report;
  }
  return success();
}
