//===- Random.h - A reproducible random generator ---------------*- C++ -*-===//
//
// SplitMix64: a small generator whose numbers are the same on every
// machine and standard library (std's distributions are not), for the
// compile-time initialisations and rotations that must be reproducible.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_RANDOM_H
#define QOPT_SUPPORT_RANDOM_H

#include <cmath>
#include <cstdint>

namespace qopt {

class Random {
public:
  explicit Random(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return (next() >> 11) * 0x1.0p-53; }
  /// Uniform in [-bound, bound).
  float symmetric(double bound) { return (2 * uniform() - 1) * bound; }
  /// Standard normal (Box-Muller).
  float normal() {
    double u = 1.0 - uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2 * M_PI * v);
  }

private:
  uint64_t state;
};

} // namespace qopt

#endif // QOPT_SUPPORT_RANDOM_H
