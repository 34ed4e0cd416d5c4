//===- Npy.cpp - Read and write NumPy .npy and .npz files -----------------===//
//
// Layout (numpy.lib.format): the magic "\x93NUMPY", major and minor version
// bytes, the header length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and
// 3.0), then a Python dict literal padded with spaces and a final '\n' so that
// the data starts at a multiple of 64 bytes, then the raw data.
//
//===----------------------------------------------------------------------===//

#include "qopt/Support/Npy.h"

#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>

using namespace qopt;

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr size_t kAlign = 64;
// Far more than any header numpy writes for the dtypes we support (numpy
// itself refuses headers over 10000 bytes by default); bounds allocation.
constexpr uint64_t kMaxHeaderSize = 1 << 20;
constexpr int64_t kInt64Max = INT64_MAX;

/// The dtype code after an optional byte-order character, e.g. "f4".
std::string typeCode(const std::string &descr) {
  if (!descr.empty() && descr[0] && std::strchr("<>|=", descr[0]))
    return descr.substr(1);
  return descr;
}

/// Checks that `descr` names a supported little-endian (or byte-order
/// independent) dtype.
bool checkDescr(const std::string &descr, std::string &error) {
  std::string code = typeCode(descr);
  if (!code.empty() && code[0] == 'O') {
    error = "object arrays are not supported";
    return false;
  }
  size_t size = npy::itemSize(descr);
  if (size == 0) {
    error = "unsupported dtype '" + descr + "'";
    return false;
  }
  if (descr[0] == '>' && size > 1) {
    error = "big-endian data ('" + descr + "') is not supported";
    return false;
  }
  return true;
}

/// Number of data bytes `shape` of items of `size` bytes needs, or -1 (with
/// `error` set) for negative dimensions or a byte count that overflows int64.
int64_t byteSize(const std::vector<int64_t> &shape, size_t size,
                 std::string &error) {
  int64_t numel = 1;
  for (int64_t dim : shape) {
    if (dim < 0) {
      error = "negative dimension in shape " + npy::formatShape(shape);
      return -1;
    }
    if (dim == 0)
      numel = 0;
  }
  // With a zero dimension the others may be arbitrarily large (as in numpy).
  if (numel == 0)
    return 0;
  int64_t limit = kInt64Max / static_cast<int64_t>(size);
  for (int64_t dim : shape) {
    if (numel > limit / dim) {
      error = "shape " + npy::formatShape(shape) + " is too large";
      return -1;
    }
    numel *= dim;
  }
  return numel * static_cast<int64_t>(size);
}

/// Parser for the header dict, a restricted Python literal such as
/// "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }".
class HeaderParser {
public:
  explicit HeaderParser(const std::string &text) : text(text) {}

  bool parse(std::string &descr, bool &fortranOrder,
             std::vector<int64_t> &shape, std::string &error) {
    bool haveDescr = false, haveOrder = false, haveShape = false;
    skipSpace();
    if (!consume('{'))
      return fail("header is not a dict", error);
    while (true) {
      skipSpace();
      if (consume('}'))
        break;
      std::string key;
      if (!parseString(key, error))
        return false;
      skipSpace();
      if (!consume(':'))
        return fail("expected ':' after '" + key + "' in header", error);
      skipSpace();
      if (key == "descr") {
        if (peek() == '[')
          return fail("structured dtypes are not supported", error);
        if (!parseString(descr, error))
          return false;
        haveDescr = true;
      } else if (key == "fortran_order") {
        if (!parseBool(fortranOrder, error))
          return false;
        haveOrder = true;
      } else if (key == "shape") {
        if (!parseShape(shape, error))
          return false;
        haveShape = true;
      } else {
        return fail("unexpected key '" + key + "' in header", error);
      }
      skipSpace();
      if (consume('}'))
        break;
      if (!consume(','))
        return fail("expected ',' or '}' in header", error);
    }
    skipSpace();
    if (pos != text.size())
      return fail("unexpected text after the header dict", error);
    const char *missing = !haveDescr   ? "descr"
                          : !haveOrder ? "fortran_order"
                          : !haveShape ? "shape"
                                       : nullptr;
    if (missing)
      return fail(std::string("header has no '") + missing + "' entry", error);
    return true;
  }

private:
  const std::string &text;
  size_t pos = 0;

  int peek() const {
    return pos < text.size() ? static_cast<unsigned char>(text[pos]) : -1;
  }
  bool consume(char c) {
    if (peek() != static_cast<unsigned char>(c))
      return false;
    ++pos;
    return true;
  }
  void skipSpace() {
    while (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')
      ++pos;
  }
  static bool fail(const std::string &message, std::string &error) {
    error = message;
    return false;
  }

  /// A quoted string without escapes (none of the keys or supported descrs
  /// need any).
  bool parseString(std::string &s, std::string &error) {
    int quote = peek();
    if (quote != '\'' && quote != '"')
      return fail("expected a quoted string in header", error);
    size_t start = ++pos;
    while (peek() != quote) {
      if (peek() < 0 || peek() == '\n')
        return fail("unterminated string in header", error);
      if (peek() == '\\')
        return fail("escape sequences in header strings are not supported",
                    error);
      ++pos;
    }
    s = text.substr(start, pos - start);
    ++pos;
    return true;
  }

  bool parseBool(bool &value, std::string &error) {
    if (text.compare(pos, 4, "True") == 0) {
      value = true;
      pos += 4;
    } else if (text.compare(pos, 5, "False") == 0) {
      value = false;
      pos += 5;
    } else {
      return fail("fortran_order is not True or False", error);
    }
    return true;
  }

  /// A tuple of integers. "(3)" is accepted too; a Python 2 'L' suffix is
  /// ignored.
  bool parseShape(std::vector<int64_t> &shape, std::string &error) {
    shape.clear();
    if (!consume('('))
      return fail("shape is not a tuple", error);
    skipSpace();
    while (!consume(')')) {
      if (consume('-'))
        return fail("negative dimension in shape", error);
      if (peek() < '0' || peek() > '9')
        return fail("invalid dimension in shape", error);
      int64_t dim = 0;
      while (peek() >= '0' && peek() <= '9') {
        int digit = peek() - '0';
        if (dim > (kInt64Max - digit) / 10)
          return fail("dimension in shape is too large", error);
        dim = dim * 10 + digit;
        ++pos;
      }
      consume('L');
      shape.push_back(dim);
      skipSpace();
      if (consume(')'))
        break;
      if (!consume(','))
        return fail("expected ',' or ')' in shape", error);
      skipSpace();
    }
    return true;
  }
};

uint64_t readLE(const unsigned char *bytes, size_t n) {
  uint64_t value = 0;
  for (size_t i = n; i-- > 0;)
    value = value << 8 | bytes[i];
  return value;
}

} // namespace

size_t npy::itemSize(const std::string &descr) {
  static const struct {
    const char *code;
    size_t size;
  } kTypes[] = {{"b1", 1}, {"i1", 1}, {"i2", 2}, {"i4", 4},
                {"i8", 8}, {"u1", 1}, {"u2", 2}, {"u4", 4},
                {"u8", 8}, {"f2", 2}, {"f4", 4}, {"f8", 8}};
  std::string code = typeCode(descr);
  for (const auto &type : kTypes)
    if (code == type.code)
      return type.size;
  return 0;
}

std::string npy::formatShape(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

bool npy::parse(const char *bytes, size_t size, Array &out,
                std::string &error) {
  out = Array();
  const auto *prefix = reinterpret_cast<const unsigned char *>(bytes);
  if (size < kMagicSize || std::memcmp(prefix, kMagic, kMagicSize) != 0) {
    error = "not a .npy file (bad magic)";
    return false;
  }
  if (size < 8) {
    error = "truncated header";
    return false;
  }
  unsigned major = prefix[6], minor = prefix[7];
  if (minor != 0 || major < 1 || major > 3) {
    error = "unsupported .npy version " + std::to_string(major) + "." +
            std::to_string(minor);
    return false;
  }
  size_t lengthSize = major == 1 ? 2 : 4;
  size_t prefixSize = 8 + lengthSize;
  if (size < prefixSize) {
    error = "truncated header";
    return false;
  }
  uint64_t headerSize = readLE(prefix + 8, lengthSize);
  if (headerSize > size - prefixSize) {
    error = "truncated header";
    return false;
  }
  if (headerSize > kMaxHeaderSize) {
    error = "header of " + std::to_string(headerSize) + " bytes is too large";
    return false;
  }
  std::string header(bytes + prefixSize, headerSize);
  bool fortranOrder = false;
  if (!HeaderParser(header).parse(out.descr, fortranOrder, out.shape, error) ||
      !checkDescr(out.descr, error))
    return false;
  int64_t needed = byteSize(out.shape, itemSize(out.descr), error);
  if (needed < 0)
    return false;
  // Fortran and C order only coincide when at most one dimension exceeds 1.
  size_t bigDims = 0;
  for (int64_t dim : out.shape)
    bigDims += dim > 1;
  if (fortranOrder && bigDims > 1 && needed > 0) {
    error = "fortran_order arrays are not supported";
    return false;
  }
  // Compared with what is there before allocating, so a corrupted shape
  // cannot trigger a huge allocation.
  int64_t available = static_cast<int64_t>(size - prefixSize - headerSize);
  if (available != needed) {
    error = "file holds " + std::to_string(available) +
            " bytes of data but shape " + formatShape(out.shape) + " of '" +
            out.descr + "' needs " + std::to_string(needed);
    return false;
  }
  const char *data = bytes + prefixSize + headerSize;
  out.data.assign(data, data + needed);
  return true;
}

namespace {

/// The whole of `path`, or false with `error` set.
bool readFile(const std::string &path, std::vector<char> &bytes,
              std::string &error) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot open file";
    if (errno)
      error += std::string(": ") + std::strerror(errno);
    return false;
  }
  in.seekg(0, std::ios::end);
  std::streamoff fileSize = in.tellg();
  in.seekg(0, std::ios::beg);
  if (!in || fileSize < 0) {
    error = "cannot determine the file size";
    return false;
  }
  bytes.resize(static_cast<size_t>(fileSize));
  in.read(bytes.data(), fileSize);
  if (in.gcount() != fileSize) {
    error = "cannot read file";
    return false;
  }
  return true;
}

/// CRC-32 (ISO-HDLC, what zip records) of `size` bytes.
uint32_t crc32(const unsigned char *bytes, size_t size) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k)
        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i)
    c = table[(c ^ bytes[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

} // namespace

bool npy::read(const std::string &path, Array &out, std::string &error) {
  std::vector<char> bytes;
  return readFile(path, bytes, error) &&
         parse(bytes.data(), bytes.size(), out, error);
}

bool npy::readNpz(const std::string &path,
                  std::vector<std::pair<std::string, Array>> &out,
                  std::string &error) {
  // A zip archive as numpy.savez writes it (zipfile, one stored member
  // "<name>.npy" per array): the end-of-central-directory record locates
  // the directory, whose entries give each member's sizes, CRC and local
  // header. Zip64 fields are read where the 32-bit ones overflow.
  out.clear();
  std::vector<char> file;
  if (!readFile(path, file, error))
    return false;
  const auto *z = reinterpret_cast<const unsigned char *>(file.data());
  size_t size = file.size();
  auto le = [&](size_t at, size_t n) { return readLE(z + at, n); };
  if (size >= 4 && std::memcmp(z, "\x93NUM", 4) == 0) {
    error = "a .npy file, not an .npz archive";
    return false;
  }
  // The record is 22 bytes plus a comment of at most 65535.
  size_t eocd = SIZE_MAX;
  for (size_t back = 22; back <= size && back <= 22 + 65535; ++back)
    if (le(size - back, 4) == 0x06054b50) {
      eocd = size - back;
      break;
    }
  if (eocd == SIZE_MAX) {
    error = "not an .npz archive (no zip directory; truncated?)";
    return false;
  }
  uint64_t entries = le(eocd + 10, 2), dirSize = le(eocd + 12, 4),
           dirOffset = le(eocd + 16, 4);
  if ((entries == 0xffff || dirOffset == 0xffffffff) && eocd >= 20 &&
      le(eocd - 20, 4) == 0x07064b50) {
    uint64_t record = le(eocd - 20 + 8, 8);
    if (size < 56 || record > size - 56 || le(record, 4) != 0x06064b50) {
      error = "corrupted zip64 directory record";
      return false;
    }
    entries = le(record + 32, 8);
    dirSize = le(record + 40, 8);
    dirOffset = le(record + 48, 8);
  }
  if (dirOffset > size || dirSize > size - dirOffset) {
    error = "corrupted zip directory (truncated?)";
    return false;
  }
  size_t at = dirOffset;
  for (uint64_t i = 0; i < entries; ++i) {
    if (at + 46 > dirOffset + dirSize || le(at, 4) != 0x02014b50) {
      error = "corrupted zip directory entry " + std::to_string(i);
      return false;
    }
    uint64_t method = le(at + 10, 2), crc = le(at + 16, 4),
             compressed = le(at + 20, 4), uncompressed = le(at + 24, 4),
             nameLength = le(at + 28, 2), extraLength = le(at + 30, 2),
             commentLength = le(at + 32, 2), local = le(at + 42, 4);
    size_t next = at + 46 + nameLength + extraLength + commentLength;
    if (next > dirOffset + dirSize) {
      error = "corrupted zip directory entry " + std::to_string(i);
      return false;
    }
    std::string name(file.data() + at + 46, nameLength);
    // Zip64 extended information: the overflowing fields, in this order.
    for (size_t e = at + 46 + nameLength;
         e + 4 <= at + 46 + nameLength + extraLength;) {
      uint64_t id = le(e, 2), length = le(e + 2, 2);
      size_t field = e + 4, fieldEnd = field + length;
      if (fieldEnd > at + 46 + nameLength + extraLength)
        break;
      if (id == 1)
        for (uint64_t *v : {&uncompressed, &compressed, &local})
          if (*v == 0xffffffff && field + 8 <= fieldEnd) {
            *v = le(field, 8);
            field += 8;
          }
      e = fieldEnd;
    }
    at = next;
    if (name.size() < 5 || name.compare(name.size() - 4, 4, ".npy") != 0) {
      error = "member '" + name + "' is not a .npy array";
      return false;
    }
    name.resize(name.size() - 4);
    if (method != 0) {
      error = "array '" + name +
              "' is compressed (numpy.savez_compressed); only numpy.savez "
              "archives are read";
      return false;
    }
    if (local > size || size - local < 30 || le(local, 4) != 0x04034b50) {
      error = "array '" + name + "': corrupted zip member (truncated?)";
      return false;
    }
    uint64_t data = local + 30 + le(local + 26, 2) + le(local + 28, 2);
    if (compressed != uncompressed || data > size ||
        uncompressed > size - data) {
      error = "array '" + name + "': truncated zip member";
      return false;
    }
    if (crc32(z + data, uncompressed) != crc) {
      error = "array '" + name + "': CRC mismatch (corrupted archive)";
      return false;
    }
    Array array;
    if (!parse(file.data() + data, uncompressed, array, error)) {
      error = "array '" + name + "': " + error;
      return false;
    }
    for (const auto &[seen, unused] : out)
      if (seen == name) {
        error = "array '" + name + "' appears twice";
        return false;
      }
    out.emplace_back(std::move(name), std::move(array));
  }
  return true;
}

bool npy::write(const std::string &path, const Array &array,
                std::string &error) {
  if (!checkDescr(array.descr, error))
    return false;
  size_t size = itemSize(array.descr);
  int64_t needed = byteSize(array.shape, size, error);
  if (needed < 0)
    return false;
  if (static_cast<uint64_t>(needed) != array.data.size()) {
    error = "array holds " + std::to_string(array.data.size()) +
            " bytes of data but shape " + formatShape(array.shape) + " of '" +
            array.descr + "' needs " + std::to_string(needed);
    return false;
  }

  // Same text as numpy.save, including the spare spaces numpy leaves so that
  // the first dimension can grow in place (GROWTH_AXIS_MAX_DIGITS = 21).
  std::string descr = (size == 1 ? "|" : "<") + typeCode(array.descr);
  std::string dict =
      "{'descr': '" + descr +
      "', 'fortran_order': False, 'shape': " + formatShape(array.shape) + ", }";
  if (!array.shape.empty())
    dict.append(21 - std::to_string(array.shape[0]).size(), ' ');
  // numpy pads by 1..64 spaces (never 0), then the terminating '\n'.
  size_t lengthSize = 2;
  size_t textSize = dict.size() + 1;
  size_t padding = kAlign - (8 + lengthSize + textSize) % kAlign;
  if (textSize + padding > 65535) {
    lengthSize = 4;
    padding = kAlign - (8 + lengthSize + textSize) % kAlign;
  }
  uint64_t headerSize = textSize + padding;
  std::string file(kMagic, kMagicSize);
  file += static_cast<char>(lengthSize == 2 ? 1 : 2);
  file += '\0';
  for (size_t i = 0; i < lengthSize; ++i)
    file += static_cast<char>((headerSize >> (8 * i)) & 0xff);
  file += dict;
  file.append(padding, ' ');
  file += '\n';

  errno = 0;
  std::ofstream os(path, std::ios::binary | std::ios::trunc);
  if (!os) {
    error = "cannot create file";
    if (errno)
      error += std::string(": ") + std::strerror(errno);
    return false;
  }
  os.write(file.data(), static_cast<std::streamsize>(file.size()));
  os.write(array.data.data(), static_cast<std::streamsize>(array.data.size()));
  os.close();
  if (!os) {
    error = "cannot write file";
    std::remove(path.c_str());
    return false;
  }
  return true;
}
