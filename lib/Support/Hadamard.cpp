//===- Hadamard.cpp - Hadamard matrices of every constructible order ------===//

#include "qopt/Support/Hadamard.h"

#include <cmath>

namespace qopt::hadamard {
namespace {

/// q = p^e for a prime p, or p = 0.
struct PrimePower {
  int64_t p = 0, e = 0;
};

PrimePower primePower(int64_t q) {
  if (q < 2)
    return {};
  int64_t p = 2;
  while (p * p <= q && q % p != 0)
    ++p;
  if (q % p != 0)
    p = q; // q is prime
  int64_t e = 0;
  while (q % p == 0) {
    q /= p;
    ++e;
  }
  return q == 1 ? PrimePower{p, e} : PrimePower{};
}

/// GF(p^e): elements are 0 .. q-1, read as the base-p digits of a
/// polynomial's coefficients (lowest first), reduced modulo a monic
/// irreducible polynomial of degree e.
class Field {
public:
  Field(int64_t p, int64_t e) : p(p), e(e) {
    q = 1;
    for (int64_t i = 0; i < e; ++i)
      q *= p;
    if (e > 1)
      findModulus();
  }

  int64_t size() const { return q; }

  int64_t sub(int64_t a, int64_t b) const {
    int64_t r = 0, place = 1;
    for (int64_t i = 0; i < e; ++i, a /= p, b /= p, place *= p)
      r += ((a % p - b % p + p) % p) * place;
    return r;
  }

  int64_t mul(int64_t a, int64_t b) const {
    if (e == 1)
      return a * b % p;
    std::vector<int64_t> x = digits(a), y = digits(b), prod(2 * e - 1, 0);
    for (int64_t i = 0; i < e; ++i)
      for (int64_t j = 0; j < e; ++j)
        prod[i + j] = (prod[i + j] + x[i] * y[j]) % p;
    reduce(prod, modulus);
    int64_t r = 0;
    for (int64_t i = e - 1; i >= 0; --i)
      r = r * p + prod[i];
    return r;
  }

  /// χ(a): 0 for 0, 1 for a nonzero square, -1 otherwise, for every a.
  std::vector<int8_t> quadraticCharacter() const {
    std::vector<int8_t> chi(q, -1);
    chi[0] = 0;
    for (int64_t x = 1; x < q; ++x)
      chi[mul(x, x)] = 1;
    return chi;
  }

private:
  std::vector<int64_t> digits(int64_t a) const {
    std::vector<int64_t> d(e);
    for (int64_t i = 0; i < e; ++i, a /= p)
      d[i] = a % p;
    return d;
  }

  /// Reduces `poly` (coefficients lowest first) modulo the monic `mod`;
  /// the remainder is left in its low mod.size() - 1 coefficients.
  void reduce(std::vector<int64_t> &poly,
              const std::vector<int64_t> &mod) const {
    int64_t deg = int64_t(mod.size()) - 1;
    for (int64_t i = int64_t(poly.size()) - 1; i >= deg; --i) {
      int64_t c = poly[i];
      if (c == 0)
        continue;
      for (int64_t j = 0; j <= deg; ++j)
        poly[i - deg + j] = ((poly[i - deg + j] - c * mod[j]) % p + p) % p;
    }
  }

  /// Whether some monic polynomial of degree 1 .. e/2 divides `f`.
  bool hasFactor(const std::vector<int64_t> &f) const {
    for (int64_t d = 1; d <= e / 2; ++d) {
      int64_t count = 1;
      for (int64_t i = 0; i < d; ++i)
        count *= p;
      for (int64_t low = 0; low < count; ++low) {
        std::vector<int64_t> g(d + 1, 1);
        for (int64_t i = 0, v = low; i < d; ++i, v /= p)
          g[i] = v % p;
        std::vector<int64_t> r(f);
        reduce(r, g);
        bool zero = true;
        for (int64_t i = 0; i < d; ++i)
          zero = zero && r[i] == 0;
        if (zero)
          return true;
      }
    }
    return false;
  }

  void findModulus() {
    for (int64_t low = 0; low < q; ++low) {
      std::vector<int64_t> f(e + 1, 1);
      for (int64_t i = 0, v = low; i < e; ++i, v /= p)
        f[i] = v % p;
      if (!hasFactor(f)) {
        modulus = f;
        return;
      }
    }
  }

  int64_t p, e, q = 1;
  std::vector<int64_t> modulus;
};

/// The (q+1)-square core C = [[0, 1ᵀ], [±1, Q]] of both Paley
/// constructions, Q[a][b] = χ(a - b): antisymmetric with -1 below the
/// corner for q ≡ 3 (mod 4), symmetric for q ≡ 1.
std::vector<int8_t> paleyCore(int64_t q) {
  PrimePower pp = primePower(q);
  Field field(pp.p, pp.e);
  std::vector<int8_t> chi = field.quadraticCharacter();
  int8_t below = q % 4 == 3 ? -1 : 1;
  int64_t n = q + 1;
  std::vector<int8_t> c(size_t(n * n), 0);
  for (int64_t i = 1; i < n; ++i) {
    c[size_t(i)] = 1;
    c[size_t(i * n)] = below;
    for (int64_t j = 1; j < n; ++j)
      c[size_t(i * n + j)] = chi[size_t(field.sub(i - 1, j - 1))];
  }
  return c;
}

/// Paley I: H = I + C, order q + 1, for q ≡ 3 (mod 4).
std::vector<int8_t> paleyI(int64_t q) {
  std::vector<int8_t> h = paleyCore(q);
  for (int64_t i = 0; i <= q; ++i)
    h[size_t(i * (q + 1) + i)] = 1;
  return h;
}

/// Paley II: H = C ⊗ [[1, 1], [1, -1]] + I ⊗ [[1, -1], [-1, -1]], order
/// 2(q + 1), for q ≡ 1 (mod 4).
std::vector<int8_t> paleyII(int64_t q) {
  std::vector<int8_t> c = paleyCore(q);
  int64_t k = q + 1, n = 2 * k;
  static constexpr int8_t kOff[2][2] = {{1, 1}, {1, -1}};
  static constexpr int8_t kDiag[2][2] = {{1, -1}, {-1, -1}};
  std::vector<int8_t> h(size_t(n * n));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t s = 0; s < 2; ++s)
          h[size_t((2 * i + r) * n + 2 * j + s)] =
              i == j ? kDiag[r][s] : int8_t(c[size_t(i * k + j)] * kOff[r][s]);
  return h;
}

/// Four circulants (first rows, '+' / '-') for orders no Paley
/// construction reaches: Williamson's symmetric ones, used in the array
/// [[A, B, C, D], [-B, A, -D, C], [-C, D, A, -B], [-D, -C, B, A]].
struct Circulants {
  int64_t n;
  const char *rows[4];
};

// Published quadruples (see the unit test, which checks H·Hᵀ = 4n·I).
constexpr Circulants kWilliamson[] = {
#include "HadamardWilliamson.inc"
};

std::vector<int8_t> williamson(const Circulants &w) {
  int64_t n = w.n, order = 4 * n;
  // Block (r, s) of the array: which circulant, and its sign.
  static constexpr int kWhich[4][4] = {
      {0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
  static constexpr int8_t kSign[4][4] = {
      {1, 1, 1, 1}, {-1, 1, -1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}};
  std::vector<int8_t> h(size_t(order * order));
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t s = 0; s < 4; ++s) {
      const char *row = w.rows[kWhich[r][s]];
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          int8_t v = row[(j - i + n) % n] == '+' ? 1 : -1;
          h[size_t((r * n + i) * order + s * n + j)] = int8_t(kSign[r][s] * v);
        }
    }
  return h;
}

const Circulants *williamsonFor(int64_t m) {
  for (const Circulants &w : kWilliamson)
    if (4 * w.n == m)
      return &w;
  return nullptr;
}

bool isPaleyI(int64_t m) {
  return m >= 4 && primePower(m - 1).p != 0 && (m - 1) % 4 == 3;
}
bool isPaleyII(int64_t m) {
  return m % 2 == 0 && primePower(m / 2 - 1).p != 0 && (m / 2 - 1) % 4 == 1;
}

} // namespace

std::string construction(int64_t m) {
  if (m < 4 || m % 4 != 0 || m > kMaxBaseOrder)
    return "";
  if (isPaleyI(m))
    return "Paley I (q = " + std::to_string(m - 1) + ")";
  if (isPaleyII(m))
    return "Paley II (q = " + std::to_string(m / 2 - 1) + ")";
  if (williamsonFor(m))
    return "Williamson (n = " + std::to_string(m / 4) + ")";
  return "";
}

Order split(int64_t n) {
  if (n < 1)
    return {0, 1};
  int64_t power = 1, odd = n;
  while (odd % 2 == 0) {
    odd /= 2;
    power *= 2;
  }
  if (odd == 1)
    return {1, power};
  if (power < 4 || construction(4 * odd).empty())
    return {0, 1};
  return {4 * odd, power / 4};
}

KroneckerFactors kroneckerFactors(int64_t n) {
  Order order = split(n);
  if (order.base == 0)
    return {0, 1, 1};
  int64_t p1 = 1;
  while (p1 * p1 * 4 <= order.power)
    p1 *= 2;
  return {order.base, p1, order.power / p1};
}

std::vector<int8_t> baseMatrix(int64_t m) {
  if (m == 1)
    return {1};
  if (construction(m).empty())
    return {};
  if (isPaleyI(m))
    return paleyI(m - 1);
  if (isPaleyII(m))
    return paleyII(m / 2 - 1);
  return williamson(*williamsonFor(m));
}

std::vector<int8_t> matrix(int64_t n) {
  Order o = split(n);
  if (o.base == 0)
    return {};
  std::vector<int8_t> b = baseMatrix(o.base), h(size_t(n * n));
  int64_t p = o.power;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int64_t a = i / p, a2 = j / p, x = i % p, y = j % p;
      int sylvester = __builtin_popcountll(uint64_t(x & y)) % 2 ? -1 : 1;
      h[size_t(i * n + j)] = int8_t(b[size_t(a * o.base + a2)] * sylvester);
    }
  return h;
}

int64_t largestSupportedDivisor(int64_t n) {
  if (n < 1)
    return 1;
  // n = odd · 2^t: a divisor is o · 2^j for an odd divisor o of `odd`.
  int64_t odd = n, power = 1;
  while (odd % 2 == 0) {
    odd /= 2;
    power *= 2;
  }
  int64_t best = power; // Sylvester
  auto consider = [&](int64_t o) {
    for (int64_t p = power; p >= 1; p /= 2)
      if (o * p > best && isSupported(o * p)) {
        best = o * p;
        break;
      }
  };
  for (int64_t o = 1; o * o <= odd; o += 2)
    if (odd % o == 0) {
      consider(o);
      consider(odd / o);
    }
  return best;
}

void apply(float *x, int64_t n, const std::vector<int8_t> &base) {
  Order o = split(n);
  int64_t p = o.power, m = o.base;
  for (int64_t a = 0; a < m; ++a) {
    float *chunk = x + a * p;
    for (int64_t h = 1; h < p; h *= 2)
      for (int64_t i = 0; i < p; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j) {
          float u = chunk[j], v = chunk[j + h];
          chunk[j] = u + v;
          chunk[j + h] = u - v;
        }
  }
  float norm = float(1.0 / std::sqrt(double(n)));
  if (m == 1) {
    for (int64_t i = 0; i < n; ++i)
      x[i] *= norm;
    return;
  }
  std::vector<double> column(static_cast<size_t>(m));
  for (int64_t b = 0; b < p; ++b) {
    for (int64_t a = 0; a < m; ++a) {
      double s = 0;
      for (int64_t k = 0; k < m; ++k)
        s += base[size_t(a * m + k)] * double(x[k * p + b]);
      column[size_t(a)] = s;
    }
    for (int64_t a = 0; a < m; ++a)
      x[a * p + b] = float(column[size_t(a)] * norm);
  }
}

} // namespace qopt::hadamard
