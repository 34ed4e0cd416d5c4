//===- LibraryTrailer.h - Checksum trailer of compiled models ---*- C++ -*-===//
//
// qoptc appends a trailer to every model.so it links: the FNV-1a hash and
// length of the bytes before it, and a magic word. The dynamic loader
// ignores bytes past the ELF segments; the runtime checks the trailer before
// dlopen, so a truncated or corrupted library is an error, not a signal.
// Header-only and free of MLIR/LLVM: qoptc and the runtime share it.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_LIBRARYTRAILER_H
#define QOPT_SUPPORT_LIBRARYTRAILER_H

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace qopt::trailer {

/// Trailer layout (little-endian): hash (8 bytes), length of the library
/// before the trailer (8 bytes), magic (8 bytes).
inline constexpr char kMagic[8] = {'Q', 'O', 'P', 'T', 'S', 'U', 'M', '1'};
inline constexpr size_t kSize = 24;

/// 64-bit FNV-1a, eight lanes interleaved so that it runs at memory speed
/// (the lanes are combined at the end).
inline uint64_t hash(const unsigned char *data, size_t size) {
  constexpr uint64_t kOffset = 0xcbf29ce484222325ull;
  constexpr uint64_t kPrime = 0x100000001b3ull;
  uint64_t lanes[8];
  for (int i = 0; i < 8; ++i)
    lanes[i] = kOffset + i;
  size_t i = 0;
  for (; i + 8 <= size; i += 8)
    for (int l = 0; l < 8; ++l)
      lanes[l] = (lanes[l] ^ data[i + l]) * kPrime;
  uint64_t h = kOffset;
  for (int l = 0; l < 8; ++l)
    h = (h ^ lanes[l]) * kPrime;
  for (; i < size; ++i)
    h = (h ^ data[i]) * kPrime;
  return (h ^ size) * kPrime;
}

inline void write64(unsigned char *out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<unsigned char>(v >> (8 * i));
}

inline uint64_t read64(const unsigned char *in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

/// The trailer for `library` (the linked bytes).
inline void make(const unsigned char *library, size_t size,
                 unsigned char out[kSize]) {
  write64(out, hash(library, size));
  write64(out + 8, size);
  std::memcpy(out + 16, kMagic, 8);
}

enum class Status { Ok, Missing, Truncated, Corrupted };

/// Checks the trailer at the end of `file`; on success `*librarySize` is
/// the length of the library proper.
inline Status check(const unsigned char *file, size_t size,
                    size_t *librarySize) {
  if (size < kSize || std::memcmp(file + size - 8, kMagic, 8) != 0)
    return Status::Missing;
  uint64_t length = read64(file + size - 16);
  if (length != size - kSize)
    return length > size - kSize ? Status::Truncated : Status::Corrupted;
  if (hash(file, length) != read64(file + size - kSize))
    return Status::Corrupted;
  *librarySize = static_cast<size_t>(length);
  return Status::Ok;
}

} // namespace qopt::trailer

#endif // QOPT_SUPPORT_LIBRARYTRAILER_H
