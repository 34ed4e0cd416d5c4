//===- Hadamard.h - Hadamard matrices of every constructible order -*- C++
//-*-===//
//
// QuaRot-style rotations need a Hadamard matrix of the hidden size, and
// hidden sizes are rarely powers of two (3072, 5120, 11008, 14336). An order
// n = m · 2^j is built as H_m ⊗ H_{2^j}: Sylvester's construction for the
// power of two, and for m = 4·t (t odd) one of
//   - Paley I, order q + 1 for a prime power q ≡ 3 (mod 4),
//   - Paley II, order 2(q + 1) for a prime power q ≡ 1 (mod 4),
//   - Williamson's array over four tabulated circulants (orders 92, 116,
//     156, 172, which neither Paley construction reaches),
// computed here over GF(q) rather than stored, so every order up to
// kMaxBaseOrder that these give works. Plain C++: the compiler's verifier,
// its lowering, its weight-folding passes and the unit tests share it.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_HADAMARD_H
#define QOPT_SUPPORT_HADAMARD_H

#include <cstdint>
#include <string>
#include <vector>

namespace qopt::hadamard {

/// The largest non-power-of-two factor m that is built (its m × m matrix
/// becomes a constant, and each output element costs m multiply-adds).
constexpr int64_t kMaxBaseOrder = 1020;

/// How an order n splits: n = base · 2^twos with `base` 1 (pure Sylvester)
/// or a constructible 4·t, t odd.
struct Order {
  int64_t base = 1;
  int64_t power = 1; // 2^twos
};

/// The split of `n`, or base = 0 when no construction here reaches n.
Order split(int64_t n);

/// H_n = H_base ⊗ H_p1 ⊗ H_p2, with p1 · p2 = split(n).power split as
/// evenly as powers of two allow (p1 <= p2; Sylvester's H_{p1·p2} =
/// H_p1 ⊗ H_p2): the factors small products apply one axis at a time, each
/// costing its order in multiply-adds per element. base = 0 when n is not
/// supported.
struct KroneckerFactors {
  int64_t base = 1, p1 = 1, p2 = 1;
};
KroneckerFactors kroneckerFactors(int64_t n);

/// Whether a Hadamard matrix of order `n` is known here.
inline bool isSupported(int64_t n) { return n >= 1 && split(n).base != 0; }

/// How the base order `m` (a multiple of 4) is constructed: "Paley I
/// (q = 11)", "Paley II (q = 25)", "Williamson (n = 43)", or empty when it
/// is not.
std::string construction(int64_t m);

/// The m × m ±1 matrix (row-major) for a base order m that split()
/// returns (1 gives [1]); empty when m is not constructible.
std::vector<int8_t> baseMatrix(int64_t m);

/// The full n × n ±1 matrix H_base ⊗ H_power (unnormalised), empty when n is
/// not supported. For tests and compile-time folding of small orders.
std::vector<int8_t> matrix(int64_t n);

/// The largest divisor of `n` that is a supported order (1 at least): the
/// block of the nearest block-diagonal rotation.
int64_t largestSupportedDivisor(int64_t n);

/// Applies the normalised transform (1/√n) · H_n to `x` (n floats) in
/// place, for a supported n: butterflies over the power of two, the dense
/// base matrix across them (index i = a · power + b, a < base, b < power).
/// `base` is baseMatrix(split(n).base), passed so callers build it once.
void apply(float *x, int64_t n, const std::vector<int8_t> &base);

} // namespace qopt::hadamard

#endif // QOPT_SUPPORT_HADAMARD_H
