//===- QuantFormats.cpp - Number formats of quantized weights -------------===//

#include "qopt/Support/QuantFormats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace qopt {

const std::array<float, 16> &nf4CodeTable() { return kNF4Codes; }

uint8_t nf4Encode(float v) {
  const auto &table = nf4CodeTable();
  if (std::isnan(v))
    return 7; // zero
  // First code >= v; then pick the nearer neighbour (lower on ties).
  auto it = std::lower_bound(table.begin(), table.end(), v);
  if (it == table.begin())
    return 0;
  if (it == table.end())
    return 15;
  auto hi = static_cast<uint8_t>(it - table.begin());
  uint8_t lo = hi - 1;
  return (v - table[lo] <= table[hi] - v) ? lo : hi;
}

namespace {
/// A subnormal as the signed zero that CUDA's flush-to-zero arithmetic
/// (bitsandbytes' kernels are built with it) reads and writes instead.
float flushSubnormal(float v) {
  return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v;
}

/// bitsandbytes' CUDA blockwise quantizer (kQuantizeBlockwise), which wrote
/// the checkpoints users bring: per block the f32 absmax of the elements,
/// every element multiplied by its f32 reciprocal (no guard: an all-zero
/// block scales 0 by inf, a NaN, which `encode` sends where bitsandbytes
/// does) and encoded, subnormals flushed to zero throughout.
template <typename Encode>
void quantizeBlockwise(const float *x, int64_t n, int64_t blocksize,
                       uint8_t *codes, float *absmax, Encode encode) {
  for (int64_t begin = 0, block = 0; begin < n; begin += blocksize, ++block) {
    int64_t end = std::min(n, begin + blocksize);
    float m = 0.0f;
    for (int64_t i = begin; i < end; ++i)
      m = std::fmax(m, std::fabs(flushSubnormal(x[i])));
    absmax[block] = m;
    float reciprocal = flushSubnormal(1.0f / m);
    for (int64_t i = begin; i < end; ++i)
      codes[i] = encode(flushSubnormal(flushSubnormal(x[i]) * reciprocal));
  }
}

/// How many of the ascending `thresholds` `v` exceeds (0 for NaN).
template <size_t N>
uint8_t countAbove(const std::array<float, N> &thresholds, float v) {
  uint8_t k = 0;
  for (float t : thresholds)
    k += v > t;
  return k;
}

/// bitsandbytes' NF4 decision tree (dQuantizeNF4).
uint8_t nf4EncodeScaled(float v) { return countAbove(nf4Thresholds(), v); }

/// bitsandbytes' FP4 decision tree (dQuantizeFP4).
uint8_t fp4EncodeScaled(float v) {
  uint8_t sign = v < 0.0f ? 8 : 0;
  return sign | fp4MagnitudeCodes()[countAbove(fp4Thresholds(), std::fabs(v))];
}

/// bitsandbytes' CUDA 8-bit search (dQuantize, not stochastic): seven
/// bisection steps from index 127 (they reach indices 0..254), then the
/// landing code or the neighbour bracketing `v` on that side, whichever is
/// nearer by the f32 midpoint (the landing code on ties).
uint8_t dynamicEncodeScaled(float v) {
  const auto &code = dynamicCodeTable();
  int at = 127, below = 0, above = 255;
  float low = -1.0f, high = 1.0f;
  for (int step = 64; step > 0; step /= 2) {
    if (v > code[at]) {
      below = at;
      low = code[at];
      at += step;
    } else {
      above = at;
      high = code[at];
      at -= step;
    }
  }
  if (above == 255)
    high = code[255];
  if (below == 0)
    low = code[0];
  float landed = code[at];
  if (v > landed)
    return v > (high + landed) * 0.5f ? above : at;
  return v < (low + landed) * 0.5f ? below : at;
}

/// code value · absmax of its block, in f32 (a 4-bit table reads the code's
/// low nibble).
template <size_t N>
void decodeBlockwise(const std::array<float, N> &table, const uint8_t *codes,
                     const float *absmax, int64_t n, int64_t blocksize,
                     float *out) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = table[codes[i] & (N - 1)] * absmax[i / blocksize];
}
} // namespace

const std::array<float, 15> &nf4Thresholds() {
  static const std::array<float, 15> thresholds = {
      -0.8480964004993439f,   -0.6106329262256622f,  -0.4599952697753906f,
      -0.33967943489551544f,  -0.23460740596055984f, -0.13791173323988914f,
      -0.045525018125772476f, 0.03979014977812767f,  0.1202552504837513f,
      0.2035212516784668f,    0.2920137718319893f,   0.3893125355243683f,
      0.5016634166240692f,    0.6427869200706482f,   0.8614784181118011f};
  return thresholds;
}

const std::array<float, 7> &fp4Thresholds() {
  // Rounded literals, so not all exact midpoints: 0.583333 is below 7/12.
  static const std::array<float, 7> thresholds = {
      0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
      0.4166667f,  0.583333f,  0.8333333f};
  return thresholds;
}

const std::array<uint8_t, 8> &fp4MagnitudeCodes() {
  // Codes of 0, 1/192, 1/6, 1/4, 1/3, 1/2, 2/3, 1 (fp4CodeTable's order).
  static const std::array<uint8_t, 8> codes = {0, 1, 6, 7, 4, 5, 2, 3};
  return codes;
}

void nf4QuantizeBlockwise(const float *x, int64_t n, int64_t blocksize,
                          uint8_t *codes, float *absmax) {
  quantizeBlockwise(x, n, blocksize, codes, absmax, nf4EncodeScaled);
}

void nf4DequantizeBlockwise(const uint8_t *codes, const float *absmax,
                            int64_t n, int64_t blocksize, float *out) {
  decodeBlockwise(nf4CodeTable(), codes, absmax, n, blocksize, out);
}

const std::array<float, 16> &fp4CodeTable() {
  // Index 8 is the sign bit over zero; bitsandbytes' table holds +0 there
  // (its native CPU dequantization gives -0 for it, its fallback +0).
  static const std::array<float, 16> table = {0.0f,
                                              0x1.555556p-8f,
                                              0x1.555556p-1f,
                                              1.0f,
                                              0x1.555556p-2f,
                                              0.5f,
                                              0x1.555556p-3f,
                                              0.25f,
                                              0.0f,
                                              -0x1.555556p-8f,
                                              -0x1.555556p-1f,
                                              -1.0f,
                                              -0x1.555556p-2f,
                                              -0.5f,
                                              -0x1.555556p-3f,
                                              -0.25f};
  return table;
}

void fp4QuantizeBlockwise(const float *x, int64_t n, int64_t blocksize,
                          uint8_t *codes, float *absmax) {
  quantizeBlockwise(x, n, blocksize, codes, absmax, fp4EncodeScaled);
}

void fp4DequantizeBlockwise(const uint8_t *codes, const float *absmax,
                            int64_t n, int64_t blocksize, float *out) {
  decodeBlockwise(fp4CodeTable(), codes, absmax, n, blocksize, out);
}

const std::array<float, 256> &dynamicCodeTable() {
  // bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
  // total_bits=8), as its float32 values.
  static const std::array<float, 256> table = {
      -0x1.fc66660000000p-1f,  -0x1.f533340000000p-1f,
      -0x1.ee00000000000p-1f,  -0x1.e6cccc0000000p-1f,
      -0x1.df999a0000000p-1f,  -0x1.d866660000000p-1f,
      -0x1.d133340000000p-1f,  -0x1.ca00000000000p-1f,
      -0x1.c2cccc0000000p-1f,  -0x1.bb999a0000000p-1f,
      -0x1.b466660000000p-1f,  -0x1.ad33340000000p-1f,
      -0x1.a600000000000p-1f,  -0x1.9ecccc0000000p-1f,
      -0x1.97999a0000000p-1f,  -0x1.9066660000000p-1f,
      -0x1.8933340000000p-1f,  -0x1.8200000000000p-1f,
      -0x1.7acccc0000000p-1f,  -0x1.73999a0000000p-1f,
      -0x1.6c66680000000p-1f,  -0x1.6533340000000p-1f,
      -0x1.5e00000000000p-1f,  -0x1.56cccc0000000p-1f,
      -0x1.4f999a0000000p-1f,  -0x1.4866680000000p-1f,
      -0x1.4133340000000p-1f,  -0x1.3a00000000000p-1f,
      -0x1.32cccc0000000p-1f,  -0x1.2b999a0000000p-1f,
      -0x1.2466680000000p-1f,  -0x1.1d33340000000p-1f,
      -0x1.1600000000000p-1f,  -0x1.0ecccc0000000p-1f,
      -0x1.0799980000000p-1f,  -0x1.0066660000000p-1f,
      -0x1.f266640000000p-2f,  -0x1.e400000000000p-2f,
      -0x1.d599980000000p-2f,  -0x1.c733340000000p-2f,
      -0x1.b8cccc0000000p-2f,  -0x1.aa66660000000p-2f,
      -0x1.9c00000000000p-2f,  -0x1.8d99980000000p-2f,
      -0x1.7f33340000000p-2f,  -0x1.70cccc0000000p-2f,
      -0x1.6266660000000p-2f,  -0x1.5400000000000p-2f,
      -0x1.4599980000000p-2f,  -0x1.3733340000000p-2f,
      -0x1.28cccc0000000p-2f,  -0x1.1a66680000000p-2f,
      -0x1.0c00000000000p-2f,  -0x1.fb33320000000p-3f,
      -0x1.de66660000000p-3f,  -0x1.c1999a0000000p-3f,
      -0x1.a4cccc0000000p-3f,  -0x1.8800000000000p-3f,
      -0x1.6b33340000000p-3f,  -0x1.4e66660000000p-3f,
      -0x1.31999a0000000p-3f,  -0x1.14cccc0000000p-3f,
      -0x1.f000000000000p-4f,  -0x1.b666680000000p-4f,
      -0x1.93d70a0000000p-4f,  -0x1.8851ee0000000p-4f,
      -0x1.7cccce0000000p-4f,  -0x1.7147ae0000000p-4f,
      -0x1.65c2900000000p-4f,  -0x1.5a3d700000000p-4f,
      -0x1.4eb8540000000p-4f,  -0x1.4333340000000p-4f,
      -0x1.37ae140000000p-4f,  -0x1.2c28f60000000p-4f,
      -0x1.20a3d60000000p-4f,  -0x1.151eba0000000p-4f,
      -0x1.09999a0000000p-4f,  -0x1.fc28f60000000p-5f,
      -0x1.e51eba0000000p-5f,  -0x1.ce147a0000000p-5f,
      -0x1.b70a3e0000000p-5f,  -0x1.a000000000000p-5f,
      -0x1.88f5c20000000p-5f,  -0x1.71eb860000000p-5f,
      -0x1.5ae1460000000p-5f,  -0x1.43d70a0000000p-5f,
      -0x1.2cccce0000000p-5f,  -0x1.15c2900000000p-5f,
      -0x1.fd70a40000000p-6f,  -0x1.cf5c2a0000000p-6f,
      -0x1.a147ae0000000p-6f,  -0x1.7333340000000p-6f,
      -0x1.451eba0000000p-6f,  -0x1.170a3e0000000p-6f,
      -0x1.d1eb860000000p-7f,  -0x1.75c2900000000p-7f,
      -0x1.3e76c80000000p-7f,  -0x1.2c08300000000p-7f,
      -0x1.19999a0000000p-7f,  -0x1.072b020000000p-7f,
      -0x1.e978d40000000p-8f,  -0x1.c49ba60000000p-8f,
      -0x1.9fbe760000000p-8f,  -0x1.7ae1480000000p-8f,
      -0x1.56041a0000000p-8f,  -0x1.3126e80000000p-8f,
      -0x1.0c49ba0000000p-8f,  -0x1.ced9140000000p-9f,
      -0x1.851eb80000000p-9f,  -0x1.3b645a0000000p-9f,
      -0x1.e353f80000000p-10f, -0x1.4fdf3a0000000p-10f,
      -0x1.eecbfe0000000p-11f, -0x1.b3d07c0000000p-11f,
      -0x1.78d5000000000p-11f, -0x1.3dd9820000000p-11f,
      -0x1.02de020000000p-11f, -0x1.8fc5060000000p-12f,
      -0x1.19ce0a0000000p-12f, -0x1.47ae160000000p-13f,
      -0x1.743e960000000p-14f, -0x1.15df660000000p-14f,
      -0x1.6f00680000000p-15f, -0x1.64840c0000000p-16f,
      -0x1.040bfe0000000p-17f, -0x1.b435280000000p-19f,
      -0x1.27476e0000000p-21f, 0x0.0p+0f,
      0x1.27476e0000000p-21f,  0x1.b435280000000p-19f,
      0x1.040bfe0000000p-17f,  0x1.64840c0000000p-16f,
      0x1.6f00680000000p-15f,  0x1.15df660000000p-14f,
      0x1.743e960000000p-14f,  0x1.47ae160000000p-13f,
      0x1.19ce0a0000000p-12f,  0x1.8fc5060000000p-12f,
      0x1.02de020000000p-11f,  0x1.3dd9820000000p-11f,
      0x1.78d5000000000p-11f,  0x1.b3d07c0000000p-11f,
      0x1.eecbfe0000000p-11f,  0x1.4fdf3a0000000p-10f,
      0x1.e353f80000000p-10f,  0x1.3b645a0000000p-9f,
      0x1.851eb80000000p-9f,   0x1.ced9140000000p-9f,
      0x1.0c49ba0000000p-8f,   0x1.3126e80000000p-8f,
      0x1.56041a0000000p-8f,   0x1.7ae1480000000p-8f,
      0x1.9fbe760000000p-8f,   0x1.c49ba60000000p-8f,
      0x1.e978d40000000p-8f,   0x1.072b020000000p-7f,
      0x1.19999a0000000p-7f,   0x1.2c08300000000p-7f,
      0x1.3e76c80000000p-7f,   0x1.75c2900000000p-7f,
      0x1.d1eb860000000p-7f,   0x1.170a3e0000000p-6f,
      0x1.451eba0000000p-6f,   0x1.7333340000000p-6f,
      0x1.a147ae0000000p-6f,   0x1.cf5c2a0000000p-6f,
      0x1.fd70a40000000p-6f,   0x1.15c2900000000p-5f,
      0x1.2cccce0000000p-5f,   0x1.43d70a0000000p-5f,
      0x1.5ae1460000000p-5f,   0x1.71eb860000000p-5f,
      0x1.88f5c20000000p-5f,   0x1.a000000000000p-5f,
      0x1.b70a3e0000000p-5f,   0x1.ce147a0000000p-5f,
      0x1.e51eba0000000p-5f,   0x1.fc28f60000000p-5f,
      0x1.09999a0000000p-4f,   0x1.151eba0000000p-4f,
      0x1.20a3d60000000p-4f,   0x1.2c28f60000000p-4f,
      0x1.37ae140000000p-4f,   0x1.4333340000000p-4f,
      0x1.4eb8540000000p-4f,   0x1.5a3d700000000p-4f,
      0x1.65c2900000000p-4f,   0x1.7147ae0000000p-4f,
      0x1.7cccce0000000p-4f,   0x1.8851ee0000000p-4f,
      0x1.93d70a0000000p-4f,   0x1.b666680000000p-4f,
      0x1.f000000000000p-4f,   0x1.14cccc0000000p-3f,
      0x1.31999a0000000p-3f,   0x1.4e66660000000p-3f,
      0x1.6b33340000000p-3f,   0x1.8800000000000p-3f,
      0x1.a4cccc0000000p-3f,   0x1.c1999a0000000p-3f,
      0x1.de66660000000p-3f,   0x1.fb33320000000p-3f,
      0x1.0c00000000000p-2f,   0x1.1a66680000000p-2f,
      0x1.28cccc0000000p-2f,   0x1.3733340000000p-2f,
      0x1.4599980000000p-2f,   0x1.5400000000000p-2f,
      0x1.6266660000000p-2f,   0x1.70cccc0000000p-2f,
      0x1.7f33340000000p-2f,   0x1.8d99980000000p-2f,
      0x1.9c00000000000p-2f,   0x1.aa66660000000p-2f,
      0x1.b8cccc0000000p-2f,   0x1.c733340000000p-2f,
      0x1.d599980000000p-2f,   0x1.e400000000000p-2f,
      0x1.f266640000000p-2f,   0x1.0066660000000p-1f,
      0x1.0799980000000p-1f,   0x1.0ecccc0000000p-1f,
      0x1.1600000000000p-1f,   0x1.1d33340000000p-1f,
      0x1.2466680000000p-1f,   0x1.2b999a0000000p-1f,
      0x1.32cccc0000000p-1f,   0x1.3a00000000000p-1f,
      0x1.4133340000000p-1f,   0x1.4866680000000p-1f,
      0x1.4f999a0000000p-1f,   0x1.56cccc0000000p-1f,
      0x1.5e00000000000p-1f,   0x1.6533340000000p-1f,
      0x1.6c66680000000p-1f,   0x1.73999a0000000p-1f,
      0x1.7acccc0000000p-1f,   0x1.8200000000000p-1f,
      0x1.8933340000000p-1f,   0x1.9066660000000p-1f,
      0x1.97999a0000000p-1f,   0x1.9ecccc0000000p-1f,
      0x1.a600000000000p-1f,   0x1.ad33340000000p-1f,
      0x1.b466660000000p-1f,   0x1.bb999a0000000p-1f,
      0x1.c2cccc0000000p-1f,   0x1.ca00000000000p-1f,
      0x1.d133340000000p-1f,   0x1.d866660000000p-1f,
      0x1.df999a0000000p-1f,   0x1.e6cccc0000000p-1f,
      0x1.ee00000000000p-1f,   0x1.f533340000000p-1f,
      0x1.fc66660000000p-1f,   0x1.0000000000000p+0f,
  };
  return table;
}

void dynamicQuantizeBlockwise(const float *x, int64_t n, int64_t blocksize,
                              uint8_t *codes, float *absmax) {
  quantizeBlockwise(x, n, blocksize, codes, absmax, dynamicEncodeScaled);
}

void dynamicDequantizeBlockwise(const uint8_t *codes, const float *absmax,
                                int64_t n, int64_t blocksize, float *out) {
  decodeBlockwise(dynamicCodeTable(), codes, absmax, n, blocksize, out);
}

float doubleQuantizeAbsmax(const float *absmax, int64_t blocks,
                           int64_t blocksize, uint8_t *codes,
                           float *nestedAbsmax) {
  // torch's mean: the sum times the f32 reciprocal of the count (the sum in
  // f64 here; CUDA's reduction order differs by at most an ulp).
  double sum = 0.0;
  for (int64_t i = 0; i < blocks; ++i)
    sum += absmax[i];
  float offset = static_cast<float>(sum) * (1.0f / static_cast<float>(blocks));
  std::vector<float> centred(absmax, absmax + blocks);
  for (float &v : centred)
    v -= offset;
  dynamicQuantizeBlockwise(centred.data(), blocks, blocksize, codes,
                           nestedAbsmax);
  return offset;
}

void doubleDequantizeAbsmax(const uint8_t *codes, const float *nestedAbsmax,
                            float offset, int64_t blocks, int64_t blocksize,
                            float *absmax) {
  dynamicDequantizeBlockwise(codes, nestedAbsmax, blocks, blocksize, absmax);
  for (int64_t i = 0; i < blocks; ++i)
    absmax[i] += offset;
}

namespace {
struct FloatLayout {
  unsigned exponentBits, mantissaBits;
  int bias;
  bool hasSign;
};

FloatLayout layoutOf(SmallFloatKind kind) {
  switch (kind) {
  case SmallFloatKind::F8E4M3FN:
    return {4, 3, 7, true};
  case SmallFloatKind::F8E5M2:
    return {5, 2, 15, true};
  case SmallFloatKind::F4E2M1FN:
    return {2, 1, 1, true};
  case SmallFloatKind::F8E8M0FNU:
    return {8, 0, 127, false};
  }
  return {0, 0, 0, false};
}

bool isNaNCode(SmallFloatKind kind, uint8_t code) {
  switch (kind) {
  case SmallFloatKind::F8E4M3FN:
    return (code & 0x7f) == 0x7f;
  case SmallFloatKind::F8E5M2:
    return (code & 0x7f) > 0x7c;
  case SmallFloatKind::F4E2M1FN:
    return false;
  case SmallFloatKind::F8E8M0FNU:
    return code == 0xff;
  }
  return false;
}

bool isInfCode(SmallFloatKind kind, uint8_t code) {
  return kind == SmallFloatKind::F8E5M2 && (code & 0x7f) == 0x7c;
}

uint8_t nanCode(SmallFloatKind kind) {
  switch (kind) {
  case SmallFloatKind::F8E4M3FN:
    return 0x7f;
  case SmallFloatKind::F8E5M2:
    return 0x7e;
  case SmallFloatKind::F4E2M1FN:
    return 0;
  case SmallFloatKind::F8E8M0FNU:
    return 0xff;
  }
  return 0;
}

/// Largest finite positive code.
uint8_t maxCode(SmallFloatKind kind) {
  switch (kind) {
  case SmallFloatKind::F8E4M3FN:
    return 0x7e;
  case SmallFloatKind::F8E5M2:
    return 0x7b;
  case SmallFloatKind::F4E2M1FN:
    return 0x7;
  case SmallFloatKind::F8E8M0FNU:
    return 0xfe;
  }
  return 0;
}
} // namespace

unsigned smallFloatBits(SmallFloatKind kind) {
  FloatLayout l = layoutOf(kind);
  return l.exponentBits + l.mantissaBits + (l.hasSign ? 1 : 0);
}

float smallFloatMax(SmallFloatKind kind) {
  return smallFloatDecode(kind, maxCode(kind));
}

float smallFloatDecode(SmallFloatKind kind, uint8_t code) {
  FloatLayout l = layoutOf(kind);
  unsigned bits = smallFloatBits(kind);
  code &= static_cast<uint8_t>((1u << bits) - 1);
  if (isNaNCode(kind, code))
    return std::numeric_limits<float>::quiet_NaN();
  bool negative = l.hasSign && (code >> (bits - 1)) & 1;
  if (isInfCode(kind, code))
    return negative ? -std::numeric_limits<float>::infinity()
                    : std::numeric_limits<float>::infinity();
  unsigned mantissa = code & ((1u << l.mantissaBits) - 1);
  unsigned exponent = (code >> l.mantissaBits) & ((1u << l.exponentBits) - 1);
  double value;
  if (exponent == 0 && l.mantissaBits > 0) // subnormal
    value = std::ldexp(static_cast<double>(mantissa),
                       1 - l.bias - static_cast<int>(l.mantissaBits));
  else
    value = std::ldexp(1.0 + std::ldexp(static_cast<double>(mantissa),
                                        -static_cast<int>(l.mantissaBits)),
                       static_cast<int>(exponent) - l.bias);
  return static_cast<float>(negative ? -value : value);
}

uint8_t smallFloatEncode(SmallFloatKind kind, float v) {
  if (std::isnan(v))
    return nanCode(kind);
  FloatLayout l = layoutOf(kind);
  if (kind == SmallFloatKind::F8E8M0FNU) {
    if (!(v > 0.0f))
      return 0;            // 2^-127: the smallest scale
    int e = std::ilogb(v); // floor(log2(v))
    return static_cast<uint8_t>(std::clamp(e + l.bias, 0, 254));
  }
  unsigned bits = smallFloatBits(kind);
  uint8_t signBit = static_cast<uint8_t>(1u << (bits - 1));
  uint8_t sign = std::signbit(v) ? signBit : 0;
  float mag = std::fabs(v);
  // Positive codes 0..maxCode are monotonically increasing in value: binary
  // search for the neighbours of `mag`.
  uint8_t top = maxCode(kind);
  if (mag >= smallFloatDecode(kind, top))
    return sign | top; // saturate (and +-inf)
  unsigned lo = 0, hi = top;
  while (hi - lo > 1) {
    unsigned mid = (lo + hi) / 2;
    if (smallFloatDecode(kind, static_cast<uint8_t>(mid)) <= mag)
      lo = mid;
    else
      hi = mid;
  }
  float vlo = smallFloatDecode(kind, static_cast<uint8_t>(lo));
  float vhi = smallFloatDecode(kind, static_cast<uint8_t>(hi));
  uint8_t code;
  if (mag - vlo < vhi - mag)
    code = static_cast<uint8_t>(lo);
  else if (mag - vlo > vhi - mag)
    code = static_cast<uint8_t>(hi);
  else // tie: even mantissa, i.e. even code
    code = static_cast<uint8_t>((lo & 1) ? hi : lo);
  return sign | code;
}

void floatQuantizeRows(SmallFloatKind kind, const float *x, int64_t rows,
                       int64_t cols, uint8_t *codes, float *scales) {
  float max = smallFloatMax(kind);
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * cols;
    float absmax = 0.0f;
    for (int64_t i = 0; i < cols; ++i)
      absmax = std::max(absmax, std::fabs(row[i]));
    float scale = absmax > 0.0f ? absmax / max : 1.0f;
    scales[r] = scale;
    for (int64_t i = 0; i < cols; ++i)
      codes[r * cols + i] = smallFloatEncode(kind, row[i] / scale);
  }
}

namespace {
/// The largest magnitude of `x[0, n)`.
float absmaxOf(const float *x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    m = std::max(m, std::fabs(x[i]));
  return m;
}
} // namespace

void mxfp4Quantize(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                   uint8_t *scales) {
  int64_t blocks = (cols + kMXFP4Block - 1) / kMXFP4Block;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b) {
      int64_t begin = b * kMXFP4Block;
      int64_t n = std::min(kMXFP4Block, cols - begin);
      const float *v = x + r * cols + begin;
      float absmax = absmaxOf(v, n);
      // floor(log2(absmax)) - 2, clamped to E8M0's exponents [-127, 127].
      int e =
          absmax > 0.0f ? std::clamp(std::ilogb(absmax) - 2, -127, 127) : -127;
      scales[r * blocks + b] = static_cast<uint8_t>(e + 127);
      for (int64_t i = 0; i < n; ++i) // x / 2^e is exact
        codes[r * cols + begin + i] =
            smallFloatEncode(SmallFloatKind::F4E2M1FN, std::ldexp(v[i], -e));
    }
}

float nvfp4Quantize(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                    uint8_t *scales) {
  const float e4m3Max = smallFloatMax(SmallFloatKind::F8E4M3FN);
  const float e2m1Max = smallFloatMax(SmallFloatKind::F4E2M1FN);
  const float e4m3Tiny = 0.015625f; // 2^-6, E4M3's smallest normal
  float global = absmaxOf(x, rows * cols) / (e4m3Max * e2m1Max);
  if (global == 0.0f)
    global = 1.0f;
  int64_t blocks = (cols + kNVFP4Block - 1) / kNVFP4Block;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b) {
      int64_t begin = b * kNVFP4Block;
      int64_t n = std::min(kNVFP4Block, cols - begin);
      const float *v = x + r * cols + begin;
      float blockScale =
          std::clamp(absmaxOf(v, n) / e2m1Max / global, e4m3Tiny, e4m3Max);
      uint8_t s = smallFloatEncode(SmallFloatKind::F8E4M3FN, blockScale);
      scales[r * blocks + b] = s;
      float total = global * smallFloatDecode(SmallFloatKind::F8E4M3FN, s);
      for (int64_t i = 0; i < n; ++i)
        codes[r * cols + begin + i] =
            smallFloatEncode(SmallFloatKind::F4E2M1FN,
                             std::clamp(v[i] / total, -e2m1Max, e2m1Max));
    }
  return global;
}

int64_t roundHalfToEven(double v) {
  return static_cast<int64_t>(std::nearbyint(v)); // default mode: to even
}

int64_t intFormatMin(unsigned bits, bool isSigned) {
  return isSigned ? -(int64_t(1) << (bits - 1)) : 0;
}

int64_t intFormatMax(unsigned bits, bool isSigned) {
  return isSigned ? (int64_t(1) << (bits - 1)) - 1 : (int64_t(1) << bits) - 1;
}

namespace {
/// One group's codes for a given range; returns the squared error.
double quantizeGroup(const float *w, int64_t n, unsigned bits, bool asym,
                     float lo, float hi, uint8_t *codes, float &scale,
                     uint8_t &zp) {
  int64_t qmin = asym ? 0 : -(int64_t(1) << (bits - 1));
  int64_t qmax =
      asym ? (int64_t(1) << bits) - 1 : (int64_t(1) << (bits - 1)) - 1;
  int64_t zero = 0;
  if (asym) {
    lo = std::min(lo, 0.0f);
    hi = std::max(hi, 0.0f);
    scale = (hi - lo) / static_cast<float>(qmax);
    if (scale == 0.0f)
      scale = 1.0f;
    zero = std::clamp<int64_t>(roundHalfToEven(-lo / scale), 0, qmax);
  } else {
    scale = std::max(std::fabs(lo), std::fabs(hi)) / static_cast<float>(qmax);
    if (scale == 0.0f)
      scale = 1.0f;
  }
  zp = static_cast<uint8_t>(zero);
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t q =
        std::clamp<int64_t>(roundHalfToEven(w[i] / scale) + zero, qmin, qmax);
    codes[i] = static_cast<uint8_t>(q & ((1 << bits) - 1));
    double d = static_cast<double>((q - zero) * scale) - w[i];
    err += d * d;
  }
  return err;
}
} // namespace

void intQuantizeGroups(const float *w, int64_t rows, int64_t cols,
                       int64_t group, unsigned bits, bool asymmetric,
                       ClipSearch clip, uint8_t *codes, float *scales,
                       uint8_t *zeroPoints) {
  int64_t groups = (cols + group - 1) / group;
  std::vector<uint8_t> trial(group);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      int64_t begin = g * group, n = std::min(group, cols - begin);
      const float *x = w + r * cols + begin;
      float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
      float scale;
      uint8_t zp;
      double best = quantizeGroup(x, n, bits, asymmetric, lo, hi,
                                  codes + r * cols + begin, scale, zp);
      if (clip == ClipSearch::MSE)
        for (int step = 1; step <= 50; ++step) {
          float ratio = 1.0f - 0.01f * step, s;
          uint8_t z;
          double err = quantizeGroup(x, n, bits, asymmetric, lo * ratio,
                                     hi * ratio, trial.data(), s, z);
          if (err < best) {
            best = err;
            scale = s;
            zp = z;
            std::copy(trial.begin(), trial.begin() + n,
                      codes + r * cols + begin);
          }
        }
      scales[r * groups + g] = scale;
      if (zeroPoints)
        zeroPoints[r * groups + g] = zp;
    }
}

int64_t packedRowBytes(int64_t n, unsigned bits) {
  return (n * static_cast<int64_t>(bits) + 7) / 8;
}

void packBits(const uint8_t *codes, int64_t n, unsigned bits, uint8_t *out) {
  std::fill(out, out + packedRowBytes(n, bits), uint8_t(0));
  const unsigned mask = (1u << bits) - 1;
  for (int64_t i = 0; i < n; ++i) {
    int64_t bit = i * bits;
    unsigned value = (codes[i] & mask) << (bit % 8);
    out[bit / 8] |= static_cast<uint8_t>(value);
    if (value >> 8) // straddles into the next byte
      out[bit / 8 + 1] |= static_cast<uint8_t>(value >> 8);
  }
}

void unpackBits(const uint8_t *packed, int64_t n, unsigned bits,
                uint8_t *codes) {
  const unsigned mask = (1u << bits) - 1;
  for (int64_t i = 0; i < n; ++i) {
    int64_t bit = i * bits;
    unsigned word = packed[bit / 8];
    if (bit % 8 + bits > 8)
      word |= static_cast<unsigned>(packed[bit / 8 + 1]) << 8;
    codes[i] = static_cast<uint8_t>((word >> (bit % 8)) & mask);
  }
}

int32_t signExtend(uint8_t code, unsigned bits) {
  int32_t v = code & ((1u << bits) - 1);
  if (v & (1 << (bits - 1)))
    v -= (1 << bits);
  return v;
}

} // namespace qopt
