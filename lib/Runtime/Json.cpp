//===- Json.cpp - Minimal, defensive JSON reader --------------------------===//
//
// Recursive descent over [begin, end). Every byte access goes through
// `peek()` or is preceded by an explicit `p != end` check, recursion depth is
// bounded by kMaxDepth, and each loop consumes at least one byte per
// iteration, so no input can crash or hang the parser.
//
//===----------------------------------------------------------------------===//

#include "Json.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__has_include)
#if __has_include(<version>)
#include <version>
#endif
#endif
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
#include <charconv>
#define QOPT_JSON_HAVE_FROM_CHARS 1
#endif

using namespace qopt::runtime::json;

const Value *Value::get(const std::string &key) const {
  if (kind != Object)
    return nullptr;
  for (const auto &member : object)
    if (member.first == key)
      return &member.second;
  return nullptr;
}

namespace {

class Parser {
public:
  Parser(const char *data, size_t size)
      : begin(data), p(data), end(data + size) {}

  bool parseDocument(Value &out) {
    skipSpace();
    if (!parseValue(out, 0))
      return false;
    skipSpace();
    if (p != end)
      return fail("unexpected trailing data");
    return true;
  }

  std::string error;

private:
  const char *begin, *p, *end;

  /// The current byte, or -1 at the end of the input.
  int peek() const { return p != end ? static_cast<unsigned char>(*p) : -1; }

  bool fail(const std::string &message) { return failAt(p, message); }
  bool failAt(const char *at, const std::string &message) {
    error = message + " at offset " + std::to_string(at - begin);
    return false;
  }

  /// Consumes `c` if it is next; otherwise fails with "expected 'c'".
  bool expect(char c) {
    if (peek() == static_cast<unsigned char>(c)) {
      ++p;
      return true;
    }
    return fail(std::string("expected '") + c + "'");
  }

  void skipSpace() {
    while (p != end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
      ++p;
  }

  /// Describes the unexpected byte at `p` for error messages.
  std::string describeCurrent() const {
    int c = peek();
    if (c < 0)
      return "end of input";
    if (c >= 0x20 && c < 0x7f)
      return std::string("character '") + static_cast<char>(c) + "'";
    static const char hex[] = "0123456789abcdef";
    return std::string("byte 0x") + hex[c >> 4] + hex[c & 15];
  }

  bool parseValue(Value &v, unsigned depth) {
    switch (peek()) {
    case '{':
      return parseObject(v, depth + 1);
    case '[':
      return parseArray(v, depth + 1);
    case '"':
      v.kind = Value::String;
      return parseString(v.string);
    case 't':
      v.kind = Value::Bool;
      v.boolean = true;
      return parseKeyword("true");
    case 'f':
      v.kind = Value::Bool;
      v.boolean = false;
      return parseKeyword("false");
    case 'n':
      v.kind = Value::Null;
      return parseKeyword("null");
    default:
      if (peek() == '-' || (peek() >= '0' && peek() <= '9'))
        return parseNumber(v);
      return fail("expected a value but found " + describeCurrent());
    }
  }

  bool parseKeyword(const char *word) {
    size_t n = std::strlen(word);
    if (static_cast<size_t>(end - p) < n || std::memcmp(p, word, n) != 0)
      return fail("invalid literal (expected '" + std::string(word) + "')");
    p += n;
    return true;
  }

  bool checkDepth(unsigned depth) {
    if (depth > kMaxDepth)
      return fail("nesting deeper than " + std::to_string(kMaxDepth) +
                  " levels");
    return true;
  }

  bool parseArray(Value &v, unsigned depth) {
    if (!checkDepth(depth))
      return false;
    v.kind = Value::Array;
    ++p; // '['
    skipSpace();
    if (peek() == ']') {
      ++p;
      return true;
    }
    while (true) {
      v.array.emplace_back();
      if (!parseValue(v.array.back(), depth))
        return false;
      skipSpace();
      if (peek() == ']') {
        ++p;
        return true;
      }
      if (peek() != ',')
        return fail("expected ',' or ']' but found " + describeCurrent());
      ++p;
      skipSpace();
    }
  }

  bool parseObject(Value &v, unsigned depth) {
    if (!checkDepth(depth))
      return false;
    v.kind = Value::Object;
    ++p; // '{'
    skipSpace();
    if (peek() == '}') {
      ++p;
      return true;
    }
    while (true) {
      if (peek() != '"')
        return fail("expected a string key but found " + describeCurrent());
      v.object.emplace_back();
      auto &member = v.object.back();
      if (!parseString(member.first))
        return false;
      skipSpace();
      if (!expect(':'))
        return false;
      skipSpace();
      if (!parseValue(member.second, depth))
        return false;
      skipSpace();
      if (peek() == '}') {
        ++p;
        return true;
      }
      if (peek() != ',')
        return fail("expected ',' or '}' but found " + describeCurrent());
      ++p;
      skipSpace();
    }
  }

  /// Reads the 4 hex digits of a \u escape (p is just after the 'u').
  bool parseHex4(unsigned &code) {
    if (end - p < 4)
      return fail("truncated \\u escape");
    code = 0;
    for (int i = 0; i < 4; ++i, ++p) {
      char c = *p;
      unsigned digit;
      if (c >= '0' && c <= '9')
        digit = c - '0';
      else if (c >= 'a' && c <= 'f')
        digit = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        digit = c - 'A' + 10;
      else
        return fail("invalid hex digit in \\u escape");
      code = code * 16 + digit;
    }
    return true;
  }

  static void appendUtf8(std::string &s, unsigned cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  /// Parses a string literal starting at the opening quote. Raw bytes >= 0x80
  /// are copied through unchecked (no UTF-8 validation).
  bool parseString(std::string &s) {
    ++p; // '"'
    while (true) {
      if (p == end)
        return fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"') {
        ++p;
        return true;
      }
      if (c < 0x20)
        return fail("control character in string");
      if (c != '\\') {
        s += static_cast<char>(c);
        ++p;
        continue;
      }
      ++p; // '\\'
      if (p == end)
        return fail("unterminated string");
      char e = *p++;
      static const char kEscapes[] = "\"\\/bfnrt",
                        kDecoded[] = "\"\\/\b\f\n\r\t";
      const char *simple = e ? std::strchr(kEscapes, e) : nullptr;
      if (simple) {
        s += kDecoded[simple - kEscapes];
        continue;
      }
      if (e != 'u') {
        --p; // point the offset at the bad escape character
        return fail("invalid escape sequence");
      }
      const char *escape = p - 2; // surrogate errors point at the '\\'
      unsigned cp = 0;
      if (!parseHex4(cp))
        return false;
      if (cp >= 0xDC00 && cp <= 0xDFFF)
        return failAt(escape, "unpaired low surrogate in \\u escape");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 2 || p[0] != '\\' || p[1] != 'u')
          return failAt(escape, "unpaired high surrogate in \\u escape");
        p += 2;
        unsigned low = 0;
        if (!parseHex4(low))
          return false;
        if (low < 0xDC00 || low > 0xDFFF)
          return failAt(escape, "invalid low surrogate in \\u escape");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
      }
      appendUtf8(s, cp);
    }
  }

  bool isDigit() const { return peek() >= '0' && peek() <= '9'; }

  bool parseNumber(Value &v) {
    const char *start = p;
    bool negative = peek() == '-';
    if (negative)
      ++p;
    if (peek() == '0') {
      ++p;
    } else if (isDigit()) {
      while (isDigit())
        ++p;
    } else {
      return fail("invalid number");
    }
    const char *intEnd = p;
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++p;
      if (!isDigit())
        return fail("expected a digit after '.'");
      while (isDigit())
        ++p;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++p;
      if (peek() == '+' || peek() == '-')
        ++p;
      if (!isDigit())
        return fail("expected a digit in exponent");
      while (isDigit())
        ++p;
    }

    v.kind = Value::Number;
    if (integral) {
      // Exact int64 when the magnitude fits (up to 2^63 for negatives).
      uint64_t limit = negative ? uint64_t(1) << 63 : uint64_t(INT64_MAX);
      uint64_t magnitude = 0;
      bool fits = true;
      for (const char *d = start + negative; d != intEnd && fits; ++d) {
        unsigned digit = *d - '0';
        if (magnitude > (limit - digit) / 10)
          fits = false;
        else
          magnitude = magnitude * 10 + digit;
      }
      if (fits) {
        v.isInteger = true;
        // Negate in unsigned arithmetic so that -2^63 does not overflow.
        v.integer = negative ? static_cast<int64_t>(0 - magnitude)
                             : static_cast<int64_t>(magnitude);
      }
    }
    return convertDouble(start, v.number);
  }

  /// Converts the validated literal [start, p) to a double. Values too large
  /// for a double are errors; values too small become (signed) zero.
  bool convertDouble(const char *start, double &number) {
#ifdef QOPT_JSON_HAVE_FROM_CHARS
    // from_chars is locale-independent.
    auto result = std::from_chars(start, p, number);
    if (result.ec == std::errc() && result.ptr == p)
      return true;
    if (result.ec != std::errc::result_out_of_range)
      return failAt(start, "invalid number");
    if (literalAtLeastOne(start))
      return failAt(start, "number out of range");
    number = *start == '-' ? -0.0 : 0.0;
    return true;
#else
    // strtod needs a NUL-terminated copy; it honours LC_NUMERIC, which qopt
    // leaves at "C".
    std::string literal(start, p);
    number = std::strtod(literal.c_str(), nullptr);
    if (std::isinf(number))
      return failAt(start, "number out of range");
    return true;
#endif
  }

  /// Whether the validated literal [start, p) has magnitude >= 1, used to tell
  /// overflow from underflow.
  bool literalAtLeastOne(const char *start) const {
    const char *d = start + (*start == '-');
    auto digit = [&] { return d != p && *d >= '0' && *d <= '9'; };
    // Decimal exponent of the first nonzero digit, ignoring the 'e' part.
    long lead = 0;
    bool found = false;
    for (; digit(); ++d) {
      if (found)
        ++lead;
      found |= *d != '0';
    }
    if (d != p && *d == '.')
      for (++d; digit(); ++d)
        if (!found) {
          --lead;
          found = *d != '0';
        }
    if (!found)
      return false; // zero is never out of range
    long exponent = 0;
    if (d != p && (*d == 'e' || *d == 'E')) {
      ++d;
      bool negative = d != p && *d == '-';
      if (d != p && (*d == '-' || *d == '+'))
        ++d;
      for (; digit(); ++d)
        if (exponent < 100000000) // clamp; only the sign of the sum matters
          exponent = exponent * 10 + (*d - '0');
      if (negative)
        exponent = -exponent;
    }
    return lead + exponent >= 0;
  }
};

} // namespace

bool qopt::runtime::json::parse(const char *data, size_t size, Value &out,
                                std::string &error) {
  out = Value();
  if (!data && size) {
    error = "null input buffer";
    return false;
  }
  Parser parser(data, size);
  if (parser.parseDocument(out))
    return true;
  error = parser.error;
  return false;
}
