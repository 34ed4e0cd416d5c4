//===- FusedQuantCheck.h - a fused quantization against the unfused pair --===//
//
// The CUDA kernels that write a row and quantize it per token in one launch
// (the norm's, the Hadamard transform's) against the row kernel followed by
// qopt_cuda_quantize_rows: shared by CUDANormTest and CUDAHadamardTest; and
// the pointers-as-i64 every CUDA unit test passes the library's entries.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_UNITTESTS_RUNTIME_FUSEDQUANTCHECK_H
#define QOPT_UNITTESTS_RUNTIME_FUSEDQUANTCHECK_H

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

/// A pointer as the i64 the library's entries take (generated code's
/// extract_aligned_pointer_as_index).
inline int64_t addressOf(const void *p) {
  return int64_t(reinterpret_cast<uintptr_t>(p));
}

/// The fused launch's codes (from `codeOffset`), steps (from `stepOffset`)
/// and y equal the unfused pair's bit for bit (y only where written: else
/// NaN-filled `fy` stays NaN), and the first row's codes reach qmax.
/// (Wrap in ASSERT_NO_FATAL_FAILURE.)
inline void expectSameQuantization(
    const std::vector<int8_t> &codes, const std::vector<float> &steps,
    const std::vector<float> &y, const std::vector<int8_t> &fcodes,
    size_t codeOffset, const std::vector<float> &fsteps, size_t stepOffset,
    const std::vector<float> &fy, bool writeY, int bits, int64_t cols) {
  for (size_t e = 0; e < codes.size(); ++e) {
    ASSERT_EQ(fcodes[e + codeOffset], codes[e]) << "code " << e;
    if (writeY)
      ASSERT_TRUE(std::isnan(y[e]) ? std::isnan(fy[e]) : fy[e] == y[e])
          << "y " << e;
    else
      ASSERT_TRUE(std::isnan(fy[e])) << "y written at " << e;
  }
  for (size_t r = 0; r < steps.size(); ++r) {
    float want = steps[r], got = fsteps[r + stepOffset];
    ASSERT_TRUE(std::isnan(want) ? std::isnan(got) : got == want)
        << "step " << r << ": " << got << " vs " << want;
  }
  // The codes span the range: a row's largest magnitude is qmax (FP8
  // E4M3 tokens, bits 0xE4: 448, whose code is 0x7E; E4M3's codes order
  // as their magnitudes).
  bool fp8 = bits == 0xE4;
  int qmax = fp8 ? 0x7E : (1 << (bits - 1)) - 1, top = 0;
  for (int64_t k = 0; k < cols; ++k) {
    int8_t code = fcodes[size_t(k) + codeOffset];
    top = std::max(top, fp8 ? int(uint8_t(code) & 0x7Fu) : std::abs(int(code)));
  }
  EXPECT_EQ(top, qmax);
}

#endif // QOPT_UNITTESTS_RUNTIME_FUSEDQUANTCHECK_H
