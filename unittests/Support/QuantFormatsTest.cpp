//===- QuantFormatsTest.cpp - Tests of the format helpers -----------------===//
//
// NF4 against bitsandbytes' table, small floats against LLVM's APFloat (an
// independent implementation of the same formats), bit packing against
// hand-computed bytes and round trips; and all of them against the values
// the formats' sources themselves give (bitsandbytes, ml_dtypes), which
// make_format_tables.py wrote into FormatTables.inc.
//
//===----------------------------------------------------------------------===//

#include "qopt/Support/QuantFormats.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/APInt.h"
#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace qopt;

namespace {

TEST(NF4, TableMatchesBitsandbytes) {
  // bitsandbytes/functional.py get_4bit_type("nf4"), as float64 literals.
  const double expected[16] = {-1.0,
                               -0.6961928009986877,
                               -0.5250730514526367,
                               -0.39491748809814453,
                               -0.28444138169288635,
                               -0.18477343022823334,
                               -0.09105003625154495,
                               0.0,
                               0.07958029955625534,
                               0.16093020141124725,
                               0.24611230194568634,
                               0.33791524171829224,
                               0.44070982933044434,
                               0.5626170039176941,
                               0.7229568362236023,
                               1.0};
  const auto &table = nf4CodeTable();
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(table[i], static_cast<float>(expected[i])) << "code " << i;
    if (i > 0) {
      EXPECT_LT(table[i - 1], table[i]);
    }
  }
  EXPECT_EQ(table[7], 0.0f) << "NF4 must represent zero exactly";
}

TEST(NF4, EncodePicksNearestCode) {
  const auto &table = nf4CodeTable();
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.2f, 1.2f);
  for (int trial = 0; trial < 20000; ++trial) {
    float v = dist(rng);
    uint8_t code = nf4Encode(v);
    ASSERT_LT(code, 16);
    float err = std::fabs(table[code] - v);
    for (int j = 0; j < 16; ++j)
      ASSERT_LE(err, std::fabs(table[j] - v)) << "v=" << v;
  }
  // Every code encodes to itself; midpoints go to the lower code.
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(nf4Encode(table[i]), i);
  for (int i = 0; i + 1 < 16; ++i) {
    float mid = (table[i] + table[i + 1]) / 2;
    float dlo = mid - table[i], dhi = table[i + 1] - mid;
    if (dlo == dhi) {
      EXPECT_EQ(nf4Encode(mid), i);
    }
  }
  EXPECT_EQ(nf4Encode(-5.0f), 0);
  EXPECT_EQ(nf4Encode(5.0f), 15);
}

const llvm::fltSemantics &semanticsOf(SmallFloatKind kind) {
  switch (kind) {
  case SmallFloatKind::F8E4M3FN:
    return llvm::APFloat::Float8E4M3FN();
  case SmallFloatKind::F8E5M2:
    return llvm::APFloat::Float8E5M2();
  case SmallFloatKind::F4E2M1FN:
    return llvm::APFloat::Float4E2M1FN();
  case SmallFloatKind::F8E8M0FNU:
    return llvm::APFloat::Float8E8M0FNU();
  }
  return llvm::APFloat::IEEEsingle();
}

float apDecode(SmallFloatKind kind, uint8_t code) {
  unsigned bits = smallFloatBits(kind);
  llvm::APFloat f(semanticsOf(kind), llvm::APInt(bits, code));
  bool lost = false;
  f.convert(llvm::APFloat::IEEEsingle(), llvm::APFloat::rmNearestTiesToEven,
            &lost);
  return f.convertToFloat();
}

uint8_t apEncode(SmallFloatKind kind, float v) {
  llvm::APFloat f(v);
  bool lost = false;
  f.convert(semanticsOf(kind), llvm::APFloat::rmNearestTiesToEven, &lost);
  return static_cast<uint8_t>(f.bitcastToAPInt().getZExtValue());
}

class SmallFloatTest : public ::testing::TestWithParam<SmallFloatKind> {};

TEST_P(SmallFloatTest, DecodeMatchesAPFloat) {
  SmallFloatKind kind = GetParam();
  unsigned n = 1u << smallFloatBits(kind);
  for (unsigned code = 0; code < n; ++code) {
    float ours = smallFloatDecode(kind, static_cast<uint8_t>(code));
    float ref = apDecode(kind, static_cast<uint8_t>(code));
    if (std::isnan(ref))
      EXPECT_TRUE(std::isnan(ours)) << "code " << code;
    else
      EXPECT_EQ(ours, ref) << "code " << code;
  }
}

TEST_P(SmallFloatTest, EncodeMatchesAPFloatInRange) {
  SmallFloatKind kind = GetParam();
  float max = smallFloatMax(kind);
  EXPECT_EQ(max, llvm::APFloat::getLargest(semanticsOf(kind)).convertToFloat());
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-max, max);
  std::vector<float> values = {0.0f, -0.0f, max, -max};
  // Every exact code and every midpoint between neighbours (ties).
  unsigned n = 1u << smallFloatBits(kind);
  for (unsigned code = 0; code + 1 < n; ++code) {
    float a = smallFloatDecode(kind, code),
          b = smallFloatDecode(kind, code + 1);
    if (std::isfinite(a) && std::isfinite(b)) {
      values.push_back(a);
      values.push_back((a + b) / 2);
    }
  }
  for (int i = 0; i < 20000; ++i)
    values.push_back(dist(rng) * std::pow(2.0f, -static_cast<float>(i % 12)));
  for (float v : values)
    ASSERT_EQ(smallFloatEncode(kind, v), apEncode(kind, v)) << "v=" << v;
}

TEST_P(SmallFloatTest, EncodeSaturates) {
  SmallFloatKind kind = GetParam();
  float max = smallFloatMax(kind);
  EXPECT_EQ(smallFloatDecode(kind, smallFloatEncode(kind, max * 4)), max);
  EXPECT_EQ(smallFloatDecode(kind, smallFloatEncode(kind, -max * 4)), -max);
  EXPECT_EQ(
      smallFloatDecode(
          kind, smallFloatEncode(kind, std::numeric_limits<float>::infinity())),
      max);
}

INSTANTIATE_TEST_SUITE_P(Formats, SmallFloatTest,
                         ::testing::Values(SmallFloatKind::F8E4M3FN,
                                           SmallFloatKind::F8E5M2,
                                           SmallFloatKind::F4E2M1FN));

TEST(SmallFloat, KnownValues) {
  EXPECT_EQ(smallFloatMax(SmallFloatKind::F8E4M3FN), 448.0f);
  EXPECT_EQ(smallFloatMax(SmallFloatKind::F8E5M2), 57344.0f);
  EXPECT_EQ(smallFloatMax(SmallFloatKind::F4E2M1FN), 6.0f);
  // E2M1: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
  const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(smallFloatDecode(SmallFloatKind::F4E2M1FN, i), e2m1[i]);
    EXPECT_EQ(smallFloatDecode(SmallFloatKind::F4E2M1FN, 8 + i), -e2m1[i]);
  }
  // 2.5 is a tie between 2 (even mantissa) and 3.
  EXPECT_EQ(smallFloatEncode(SmallFloatKind::F4E2M1FN, 2.5f), 0x4);
  EXPECT_EQ(smallFloatEncode(SmallFloatKind::F4E2M1FN, 5.0f), 0x6);
}

TEST(SmallFloat, E8M0ScalesAreFlooredPowersOfTwo) {
  for (int code = 0; code < 255; ++code)
    EXPECT_EQ(smallFloatDecode(SmallFloatKind::F8E8M0FNU, code),
              apDecode(SmallFloatKind::F8E8M0FNU, code))
        << "code " << code;
  EXPECT_TRUE(std::isnan(smallFloatDecode(SmallFloatKind::F8E8M0FNU, 0xff)));
  EXPECT_EQ(smallFloatEncode(SmallFloatKind::F8E8M0FNU, 1.0f), 127);
  EXPECT_EQ(smallFloatEncode(SmallFloatKind::F8E8M0FNU, 1.99f), 127);
  EXPECT_EQ(smallFloatEncode(SmallFloatKind::F8E8M0FNU, 2.0f), 128);
  EXPECT_EQ(smallFloatEncode(SmallFloatKind::F8E8M0FNU, 0.3f), 125);
}

TEST(Int, RangesAndRounding) {
  EXPECT_EQ(intFormatMin(4, true), -8);
  EXPECT_EQ(intFormatMax(4, true), 7);
  EXPECT_EQ(intFormatMin(4, false), 0);
  EXPECT_EQ(intFormatMax(4, false), 15);
  EXPECT_EQ(intFormatMin(2, true), -2);
  EXPECT_EQ(intFormatMax(8, false), 255);
  EXPECT_EQ(roundHalfToEven(0.5), 0);
  EXPECT_EQ(roundHalfToEven(1.5), 2);
  EXPECT_EQ(roundHalfToEven(2.5), 2);
  EXPECT_EQ(roundHalfToEven(-0.5), 0);
  EXPECT_EQ(roundHalfToEven(-1.5), -2);
  EXPECT_EQ(roundHalfToEven(-1.6), -2);
  EXPECT_EQ(signExtend(0xf, 4), -1);
  EXPECT_EQ(signExtend(0x8, 4), -8);
  EXPECT_EQ(signExtend(0x7, 4), 7);
  EXPECT_EQ(signExtend(0x2, 2), -2);
}

TEST(Packing, KnownBytes) {
  // 4 bits: element 0 in the low nibble (ONNX int4, MatMulNBits).
  const uint8_t int4[4] = {1, 2, 3, 4};
  uint8_t out[2];
  packBits(int4, 4, 4, out);
  EXPECT_EQ(out[0], 0x21);
  EXPECT_EQ(out[1], 0x43);
  // 2 bits: little-endian within the byte.
  const uint8_t int2[4] = {1, 2, 3, 0};
  packBits(int2, 4, 2, out);
  EXPECT_EQ(out[0], 0x39);
  // 3 bits straddle bytes: 111 | 001 << 3 | 010 << 6 -> 0x8f, 0x00.
  const uint8_t int3[3] = {7, 1, 2};
  packBits(int3, 3, 3, out);
  EXPECT_EQ(out[0], 0x8f);
  EXPECT_EQ(out[1], 0x00);
  // An odd count pads the last byte with zeros; only the low bits count.
  const uint8_t odd[3] = {0xff, 0x0a, 0x05};
  packBits(odd, 3, 4, out);
  EXPECT_EQ(out[0], 0xaf);
  EXPECT_EQ(out[1], 0x05);
  EXPECT_EQ(packedRowBytes(3, 4), 2);
  EXPECT_EQ(packedRowBytes(4096, 4), 2048);
  EXPECT_EQ(packedRowBytes(5, 3), 2);
  EXPECT_EQ(packedRowBytes(7, 8), 7);
}

TEST(Packing, RoundTripAllWidths) {
  std::mt19937 rng(1);
  for (unsigned bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {1, 2, 3, 7, 8, 63, 64, 65, 1000}) {
      std::vector<uint8_t> codes(n), back(n);
      for (auto &c : codes)
        c = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
      std::vector<uint8_t> packed(packedRowBytes(n, bits), 0xcc);
      packBits(codes.data(), n, bits, packed.data());
      unpackBits(packed.data(), n, bits, back.data());
      ASSERT_EQ(codes, back) << "bits=" << bits << " n=" << n;
      // Padding bits are zero.
      int64_t used = n * bits;
      if (used % 8) {
        ASSERT_EQ(packed.back() >> (used % 8), 0) << "bits=" << bits;
      }
    }
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// Against the formats' sources (FormatTables.inc)
//===----------------------------------------------------------------------===//

namespace {

#include "FormatTables.inc"

float fromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

/// Equal bit for bit, or both NaN (NaN payloads differ between sources).
::testing::AssertionResult sameFloat(float got, float want) {
  if ((std::isnan(got) && std::isnan(want)) ||
      std::memcmp(&got, &want, sizeof(float)) == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got << " vs " << want;
}

TEST(Sources, NF4TableIsBitsandbytes) {
  const auto &table = nf4CodeTable();
  for (int i = 0; i < 16; ++i)
    EXPECT_TRUE(sameFloat(table[i], fromBits(kBnbNF4Table[i]))) << "code " << i;
}

TEST(Sources, NF4EncodingIsBitsandbytes) {
  // bitsandbytes' quantize_4bit: per block of 64, the code nearest to
  // x / absmax (random data: no value sits on a midpoint).
  constexpr int kBlock = 64;
  for (int i = 0; i < 1024; ++i) {
    float absmax = fromBits(kBnbNF4Absmax[i / kBlock]);
    float x = fromBits(kBnbNF4Samples[i]);
    EXPECT_EQ(nf4Encode(x / absmax), kBnbNF4Codes[i])
        << "element " << i << " (" << x << " / " << absmax << ")";
  }
}

TEST(Sources, NF4BlockwiseIsBitsandbytes) {
  // Whole blocks of random data, then midpoints and their neighbours, a
  // block of zeros (bitsandbytes scales it by 1/0: code 0) and a short
  // last block: codes and absmax bit for bit.
  auto check = [](const uint32_t *samples, const uint32_t *absmaxBits,
                  const uint8_t *want, int64_t n) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i)
      x[i] = fromBits(samples[i]);
    int64_t blocks = (n + 63) / 64;
    std::vector<uint8_t> codes(n);
    std::vector<float> absmax(blocks);
    nf4QuantizeBlockwise(x.data(), n, 64, codes.data(), absmax.data());
    for (int64_t b = 0; b < blocks; ++b)
      EXPECT_TRUE(sameFloat(absmax[b], fromBits(absmaxBits[b])))
          << "block " << b;
    for (int64_t i = 0; i < n; ++i)
      EXPECT_EQ(codes[i], want[i]) << "element " << i << " (" << x[i] << ")";
    std::vector<float> back(n);
    nf4DequantizeBlockwise(codes.data(), absmax.data(), n, 64, back.data());
    for (int64_t i = 0; i < n; ++i)
      EXPECT_TRUE(sameFloat(back[i], nf4CodeTable()[want[i]] *
                                         fromBits(absmaxBits[i / 64])))
          << "element " << i;
  };
  check(kBnbNF4Samples, kBnbNF4Absmax, kBnbNF4Codes, 1024);
  check(kBnbNF4EdgeSamples, kBnbNF4EdgeAbsmax, kBnbNF4EdgeCodes,
        std::size(kBnbNF4EdgeCodes));
}

TEST(Sources, FP4IsBitsandbytes) {
  const auto &table = fp4CodeTable();
  for (int i = 0; i < 16; ++i)
    EXPECT_TRUE(sameFloat(table[i], fromBits(kBnbFP4Table[i]))) << "code " << i;
  // Random blocks, midpoints of the sorted codes and their neighbours,
  // zeros, a block of zeros and a short last block: codes and absmax.
  int64_t n = std::size(kBnbFP4Codes), blocks = (n + 63) / 64;
  std::vector<float> x(n), absmax(blocks), back(n);
  for (int64_t i = 0; i < n; ++i)
    x[i] = fromBits(kBnbFP4Samples[i]);
  std::vector<uint8_t> codes(n);
  fp4QuantizeBlockwise(x.data(), n, 64, codes.data(), absmax.data());
  for (int64_t b = 0; b < blocks; ++b)
    EXPECT_TRUE(sameFloat(absmax[b], fromBits(kBnbFP4Absmax[b])))
        << "block " << b;
  for (int64_t i = 0; i < n; ++i)
    EXPECT_EQ(codes[i], kBnbFP4Codes[i])
        << "element " << i << " (" << x[i] << ")";
  fp4DequantizeBlockwise(codes.data(), absmax.data(), n, 64, back.data());
  for (int64_t i = 0; i < n; ++i)
    EXPECT_TRUE(sameFloat(back[i], table[kBnbFP4Codes[i]] * absmax[i / 64]))
        << "element " << i;
}

TEST(Sources, DynamicFormatIsBitsandbytes) {
  const auto &table = dynamicCodeTable();
  for (int i = 0; i < 256; ++i)
    EXPECT_TRUE(sameFloat(table[i], fromBits(kBnbDynamicTable[i])))
        << "code " << i;
  // Random blocks, the midpoints between codes and one ulp either side,
  // +-1, a block of zeros and a short last block: bitsandbytes' codes and
  // absmax bit for bit, then decoded.
  int64_t n = std::size(kBnbDynamicCodes), blocks = (n + 255) / 256;
  std::vector<float> x(n), absmax(blocks), back(n);
  for (int64_t i = 0; i < n; ++i)
    x[i] = fromBits(kBnbDynamicSamples[i]);
  std::vector<uint8_t> codes(n);
  dynamicQuantizeBlockwise(x.data(), n, 256, codes.data(), absmax.data());
  for (int64_t b = 0; b < blocks; ++b)
    EXPECT_TRUE(sameFloat(absmax[b], fromBits(kBnbDynamicAbsmax[b])))
        << "block " << b;
  for (int64_t i = 0; i < n; ++i)
    EXPECT_EQ(codes[i], kBnbDynamicCodes[i])
        << "element " << i << " (" << x[i] << ")";
  dynamicDequantizeBlockwise(kBnbDynamicCodes, absmax.data(), n, 256,
                             back.data());
  for (int64_t i = 0; i < n; ++i)
    EXPECT_TRUE(
        sameFloat(back[i], table[kBnbDynamicCodes[i]] * absmax[i / 256]))
        << "element " << i;
}

/// Distance in ulps between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - ib);
}

TEST(Sources, DoubleQuantizationIsBitsandbytes) {
  // QLoRA's double quantization of 300 absmaxes (nested blocks of 256, the
  // second short), as bitsandbytes' CUDA kernels wrote it: the same nested
  // codes; the offset (torch's CUDA mean) and so the nested absmax within
  // an ulp; decoded back near the absmaxes.
  int64_t blocks = std::size(kBnbDoubleAbsmax);
  std::vector<float> absmax(blocks), nested(std::size(kBnbDoubleNested)),
      back(blocks);
  for (int64_t b = 0; b < blocks; ++b)
    absmax[b] = fromBits(kBnbDoubleAbsmax[b]);
  for (size_t b = 0; b < nested.size(); ++b)
    nested[b] = fromBits(kBnbDoubleNested[b]);
  for (int i = 0; i < 256; ++i)
    EXPECT_TRUE(
        sameFloat(dynamicCodeTable()[i], fromBits(kBnbDoubleNestedCode[i])))
        << "code " << i;
  float bnbOffset = fromBits(kBnbDoubleOffset[0]);
  std::vector<uint8_t> codes(blocks);
  std::vector<float> ours(nested.size());
  float offset = doubleQuantizeAbsmax(absmax.data(), blocks, 256, codes.data(),
                                      ours.data());
  EXPECT_LE(ulps(offset, bnbOffset), 1) << offset << " vs " << bnbOffset;
  for (size_t b = 0; b < nested.size(); ++b)
    EXPECT_LE(ulps(ours[b], nested[b]), 1) << "nested block " << b;
  for (int64_t i = 0; i < blocks; ++i)
    EXPECT_EQ(codes[i], kBnbDoubleCodes[i]) << "absmax " << i;

  doubleDequantizeAbsmax(kBnbDoubleCodes, nested.data(), bnbOffset, blocks, 256,
                         back.data());
  for (int64_t i = 0; i < blocks; ++i) {
    EXPECT_TRUE(sameFloat(
        back[i],
        dynamicCodeTable()[kBnbDoubleCodes[i]] * nested[i / 256] + bnbOffset))
        << "absmax " << i;
    // Within half the widest code spacing (0.014) of the nested scale.
    EXPECT_LE(std::fabs(back[i] - absmax[i]), 0.008f * nested[i / 256])
        << "absmax " << i;
  }
}

struct SourceTable {
  SmallFloatKind kind;
  const uint32_t *decoded;
  const uint32_t *samples, *rounded;
  size_t numSamples;
};

void checkAgainstMlDtypes(const SourceTable &t) {
  unsigned codes = 1u << smallFloatBits(t.kind);
  for (unsigned c = 0; c < codes; ++c)
    EXPECT_TRUE(sameFloat(smallFloatDecode(t.kind, static_cast<uint8_t>(c)),
                          fromBits(t.decoded[c])))
        << "code " << c;
  for (size_t i = 0; i < t.numSamples; ++i) {
    float x = fromBits(t.samples[i]);
    float got = smallFloatDecode(t.kind, smallFloatEncode(t.kind, x));
    EXPECT_TRUE(sameFloat(got, fromBits(t.rounded[i]))) << "rounding " << x;
  }
}

TEST(Sources, F8E4M3FNIsMlDtypes) {
  checkAgainstMlDtypes({SmallFloatKind::F8E4M3FN, kF8E4M3FNDecoded,
                        kF8E4M3FNSamples, kF8E4M3FNRounded,
                        std::size(kF8E4M3FNSamples)});
}
TEST(Sources, F8E5M2IsMlDtypes) {
  checkAgainstMlDtypes({SmallFloatKind::F8E5M2, kF8E5M2Decoded, kF8E5M2Samples,
                        kF8E5M2Rounded, std::size(kF8E5M2Samples)});
}
TEST(Sources, F4E2M1FNIsMlDtypes) {
  checkAgainstMlDtypes({SmallFloatKind::F4E2M1FN, kF4E2M1FNDecoded,
                        kF4E2M1FNSamples, kF4E2M1FNRounded,
                        std::size(kF4E2M1FNSamples)});
}
TEST(Sources, F8E8M0FNUDecodesAsMlDtypes) {
  // Encoding floors the exponent (OCP MX), where ml_dtypes rounds: only
  // the code values are compared.
  checkAgainstMlDtypes(
      {SmallFloatKind::F8E8M0FNU, kF8E8M0FNUDecoded, nullptr, nullptr, 0});
}

} // namespace
