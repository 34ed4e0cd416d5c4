//===- ModelFile.h - Validate a compiled model before loading it -*- C++
//-*-===//

#ifndef QOPT_LIB_RUNTIME_MODELFILE_H
#define QOPT_LIB_RUNTIME_MODELFILE_H

#include <string>

namespace qopt::runtime {

/// Checks `path` before dlopen may map it: the qoptc trailer (length and
/// checksum of the whole library), then the ELF structure (a 64-bit shared
/// object for this machine, program and section headers and every loaded
/// segment inside the file), and reads the embedded manifest (the
/// `qopt_manifest` symbol) from the file. Returns false with `error` set.
bool readModelFile(const std::string &path, std::string &manifest,
                   std::string &error);

} // namespace qopt::runtime

#endif // QOPT_LIB_RUNTIME_MODELFILE_H
