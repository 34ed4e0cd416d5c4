//===- ModelFile.cpp - Validate a compiled model before loading it --------===//
//
// dlopen trusts the file: a truncated library is mapped past its end and the
// first touch of a missing page is a bus error; a corrupted one runs
// whatever its bytes say. The runtime reads the file once, checks the
// trailer qoptc appended (length and hash of every byte), then the ELF
// headers, before the loader sees it.
//
//===----------------------------------------------------------------------===//

#include "ModelFile.h"

#include "qopt/Support/CompiledModel.h"
#include "qopt/Support/LibraryTrailer.h"

#include <cerrno>
#include <cstring>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace qopt::runtime;
namespace cm = qopt::compiled_model;

namespace {

#if defined(__x86_64__)
constexpr unsigned kMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kMachine = EM_AARCH64;
#else
#error "the runtime checks ELF files for x86-64 and AArch64 only"
#endif

bool readFile(const std::string &path, std::vector<unsigned char> &bytes,
              std::string &error) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot open '" + path + "': " + std::strerror(errno);
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    error = "'" + path + "' is not a regular file";
    return false;
  }
  if (st.st_size > (int64_t(1) << 30)) { // code only: weights are apart
    close(fd);
    error = "'" + path + "' is too large to be a compiled model";
    return false;
  }
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      close(fd);
      error = "cannot read '" + path +
              "': " + (n < 0 ? std::strerror(errno) : "unexpected end of file");
      return false;
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  return true;
}

/// [offset, offset + size) lies within `limit`.
bool within(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

} // namespace

bool qopt::runtime::readModelFile(const std::string &path,
                                  std::string &manifest, std::string &error) {
  std::vector<unsigned char> file;
  if (!readFile(path, file, error))
    return false;
  const std::string what = "'" + path + "' ";
  size_t size = 0;
  switch (qopt::trailer::check(file.data(), file.size(), &size)) {
  case qopt::trailer::Status::Ok:
    break;
  case qopt::trailer::Status::Missing:
    error = what + "is not a complete model library written by qoptc (no "
                   "checksum trailer: truncated, or from another tool)";
    return false;
  case qopt::trailer::Status::Truncated:
    error = what + "is truncated";
    return false;
  case qopt::trailer::Status::Corrupted:
    error = what + "is corrupted (its checksum does not match)";
    return false;
  }

  // The ELF structure, against the library's own length.
  const unsigned char *base = file.data();
  if (size < sizeof(Elf64_Ehdr) || std::memcmp(base, ELFMAG, SELFMAG) != 0) {
    error = what + "is not an ELF file";
    return false;
  }
  Elf64_Ehdr eh;
  std::memcpy(&eh, base, sizeof(eh));
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_type != ET_DYN ||
      eh.e_machine != kMachine) {
    error = what + "is not a shared library for this machine";
    return false;
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr) ||
      !within(eh.e_phoff, uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr), size) ||
      (eh.e_shnum &&
       (eh.e_shentsize != sizeof(Elf64_Shdr) ||
        !within(eh.e_shoff, uint64_t(eh.e_shnum) * sizeof(Elf64_Shdr),
                size)))) {
    error = what + "has ELF headers outside the file";
    return false;
  }
  std::vector<Elf64_Phdr> segments(eh.e_phnum);
  std::memcpy(segments.data(), base + eh.e_phoff,
              segments.size() * sizeof(Elf64_Phdr));
  for (const Elf64_Phdr &ph : segments)
    if (ph.p_type == PT_LOAD &&
        (!within(ph.p_offset, ph.p_filesz, size) || ph.p_filesz > ph.p_memsz)) {
      error = what + "has a segment outside the file";
      return false;
    }
  std::vector<Elf64_Shdr> sections(eh.e_shnum);
  std::memcpy(sections.data(), base + eh.e_shoff,
              sections.size() * sizeof(Elf64_Shdr));
  for (const Elf64_Shdr &sh : sections)
    if (sh.sh_type != SHT_NOBITS && !within(sh.sh_offset, sh.sh_size, size)) {
      error = what + "has a section outside the file";
      return false;
    }

  // The manifest: `qopt_manifest` in the dynamic symbol table, a
  // NUL-terminated string in a loaded segment.
  for (const Elf64_Shdr &sh : sections) {
    if (sh.sh_type != SHT_DYNSYM || sh.sh_entsize != sizeof(Elf64_Sym) ||
        sh.sh_link >= sections.size())
      continue;
    const Elf64_Shdr &strtab = sections[sh.sh_link];
    if (strtab.sh_type == SHT_NOBITS)
      continue;
    for (uint64_t off = 0; off + sizeof(Elf64_Sym) <= sh.sh_size;
         off += sizeof(Elf64_Sym)) {
      Elf64_Sym sym;
      std::memcpy(&sym, base + sh.sh_offset + off, sizeof(sym));
      const char (&kName)[sizeof(cm::kManifestSymbol)] = cm::kManifestSymbol;
      if (sym.st_name >= strtab.sh_size ||
          strtab.sh_size - sym.st_name < sizeof(kName) ||
          std::memcmp(base + strtab.sh_offset + sym.st_name, kName,
                      sizeof(kName)) != 0)
        continue;
      for (const Elf64_Phdr &ph : segments) {
        if (ph.p_type != PT_LOAD || sym.st_value < ph.p_vaddr ||
            !within(sym.st_value - ph.p_vaddr, sym.st_size, ph.p_filesz))
          continue;
        const char *text = reinterpret_cast<const char *>(
            base + ph.p_offset + (sym.st_value - ph.p_vaddr));
        if (sym.st_size == 0 || text[sym.st_size - 1] != '\0')
          break;
        manifest.assign(text, sym.st_size - 1);
        return true;
      }
      error = what + "has a malformed manifest symbol";
      return false;
    }
  }
  error = what + "is not a model compiled by qoptc (no qopt_manifest)";
  return false;
}
