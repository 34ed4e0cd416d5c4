//===- Npy.h - Read and write NumPy .npy and .npz files ---------*- C++ -*-===//
//
// Plain C-order, little-endian arrays of bool, integer and float dtypes.
// Reading accepts format versions 1.0, 2.0 and 3.0 and refuses everything it
// cannot represent exactly (Fortran order, big-endian, object or structured
// dtypes, sizes that do not match the file) with a message that the caller
// prefixes with the file name. Only the standard library is used; no
// exceptions.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_NPY_H
#define QOPT_SUPPORT_NPY_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qopt::npy {

struct Array {
  std::string descr;          // dtype string as in the header, e.g. "<f4"
  std::vector<int64_t> shape; // () for a scalar
  std::vector<char> data;     // C-order bytes, size == numel * itemsize
};

/// Parses the .npy bytes `bytes[0, size)` into `out`; false with `error`
/// set otherwise.
bool parse(const char *bytes, size_t size, Array &out, std::string &error);
/// Reads `path` into `out`. On failure returns false and sets `error` to a
/// message without the file name, e.g. "truncated header".
bool read(const std::string &path, Array &out, std::string &error);

/// Reads the arrays of the .npz archive `path` (what numpy.savez writes;
/// savez_compressed's deflated members are refused), in archive order,
/// named without ".npy". Every member's CRC is checked. On failure returns
/// false and sets `error`, naming the array where one is at fault.
bool readNpz(const std::string &path,
             std::vector<std::pair<std::string, Array>> &out,
             std::string &error);
/// Writes `array` as format 1.0 (2.0 if the header exceeds 65535 bytes) with
/// the same header layout as numpy.save. The descr is written with its
/// canonical byte-order character ('|' for 1-byte types, '<' otherwise).
bool write(const std::string &path, const Array &array, std::string &error);

/// Item size of a dtype string: b1 (1), i1 i2 i4 i8, u1 u2 u4 u8, f2 f4 f8,
/// optionally preceded by a byte-order character; 0 for anything else.
size_t itemSize(const std::string &descr);

/// Formats a shape like Python's repr of a tuple: "()", "(3,)", "(2, 3)".
std::string formatShape(const std::vector<int64_t> &shape);

} // namespace qopt::npy

#endif // QOPT_SUPPORT_NPY_H
