//===- Json.h - Minimal, defensive JSON reader ------------------*- C++ -*-===//
//
// A small JSON parser for runtime manifests. It depends only on the standard
// library, builds without exceptions, and never reads past the input: every
// malformed document (truncated, too deep, bad escapes, random bytes) yields
// an error message carrying the byte offset instead of a crash.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_JSON_H
#define QOPT_RUNTIME_JSON_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qopt::runtime::json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  double number = 0;      // every number
  bool isInteger = false; // the literal had no fraction/exponent, fits int64
  int64_t integer = 0;    // exact value when isInteger
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object; // in document order

  /// The first member named `key` of an object, or nullptr (also when this
  /// is not an object).
  const Value *get(const std::string &key) const;
};

/// Maximum nesting depth of arrays and objects; deeper documents are errors.
constexpr unsigned kMaxDepth = 64;

/// Parses a whole document (surrounding whitespace allowed, nothing else
/// after it). On error returns false and sets `error` to a message with the
/// byte offset, e.g. "expected ':' at offset 17". Strings are decoded to
/// UTF-8 (\uXXXX escapes included, surrogate pairs combined); raw control
/// characters inside strings are errors.
bool parse(const char *data, size_t size, Value &out, std::string &error);

} // namespace qopt::runtime::json

#endif // QOPT_RUNTIME_JSON_H
