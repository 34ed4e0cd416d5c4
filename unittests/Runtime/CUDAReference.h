//===- CUDAReference.h - what the CUDA library's unit tests share ---------===//
//
// The emulated library entries the tests call (lib/Runtime/Kernels/CPU/
// CUDAEmulation.cpp), the formats' code values by their definitions (FP8
// through LLVM's APFloat: independent of QLinearTile.h's decoding), random
// codes, and QLoRA's double-quantized scales as test data.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_UNITTESTS_RUNTIME_CUDAREFERENCE_H
#define QOPT_UNITTESTS_RUNTIME_CUDAREFERENCE_H

#include "../../lib/Runtime/Kernels/CUDA/QLinearTile.h"

#include "qopt/Support/QuantFormats.h"

#include "llvm/ADT/APFloat.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

extern "C" void qopt_cuda_qlinear_emulated(
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t);

// qopt_kernel_sgemm's arguments: the CUDA GEMM's emulated entries, f32 and
// on the tensor cores, C += A·B and (_overwrite) C = A·B.
#define QOPT_SGEMM_DECLARATION(name)                                           \
  extern "C" void name(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,   \
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,   \
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,   \
                       int64_t, int64_t, int64_t, int64_t, int64_t);
QOPT_SGEMM_DECLARATION(qopt_cuda_sgemm_emulated)
QOPT_SGEMM_DECLARATION(qopt_cuda_sgemm_emulated_overwrite)
QOPT_SGEMM_DECLARATION(qopt_cuda_sgemm_bf16_emulated)
QOPT_SGEMM_DECLARATION(qopt_cuda_sgemm_bf16_emulated_overwrite)
QOPT_SGEMM_DECLARATION(qopt_cuda_sgemm_tf32_emulated)
QOPT_SGEMM_DECLARATION(qopt_cuda_sgemm_tf32_emulated_overwrite)
#undef QOPT_SGEMM_DECLARATION

/// The value of code `raw` of `format` by the formats' definitions.
inline double referenceCode(int format, int raw) {
  using namespace qopt_cuda;
  switch (format) {
  case kInt4:
    return raw >= 8 ? raw - 16 : raw;
  case kNF4:
    return qopt::kNF4Codes[size_t(raw)];
  case kInt8:
    return int8_t(raw);
  case kFP8E4M3:
    return llvm::APFloat(llvm::APFloat::Float8E4M3FN(), llvm::APInt(8, raw))
        .convertToDouble();
  case kFP8E5M2:
    return llvm::APFloat(llvm::APFloat::Float8E5M2(), llvm::APInt(8, raw))
        .convertToDouble();
  default:
    return raw;
  }
}

/// Random codes of `format`: FP8's non-finite codes (which quantizers never
/// write) become 0.
inline void randomCodes(int format, std::mt19937 &rng, uint8_t *codes,
                        size_t n) {
  using namespace qopt_cuda;
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = 0; i < n; ++i) {
    codes[i] = uint8_t(byte(rng));
    if ((format == kFP8E4M3 || format == kFP8E5M2) &&
        !std::isfinite(referenceCode(format, codes[i])))
      codes[i] = 0;
  }
}

/// QLoRA's double-quantized scales: scale i = table[code i] · absmax[i / 3]
/// + offset, in f32 as the kernels compute it (blocks of 3 scales cross
/// rows); the codes and absmax `codeOffset` / `absmaxOffset` elements into
/// their buffers.
struct NestedScaleData {
  std::vector<uint8_t> codes;
  std::vector<float> table, absmax;
  float offset = 0.04f;
  uint32_t offsetBits() const {
    uint32_t bits;
    std::memcpy(&bits, &offset, 4);
    return bits;
  }
};

/// The buffers for `scales` (all zeros unless `fill`: then random, and
/// `scales` overwritten with the values they encode).
inline NestedScaleData nestedScales(std::vector<float> &scales,
                                    std::mt19937 &rng, bool fill,
                                    size_t codeOffset = 0,
                                    size_t absmaxOffset = 0) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  NestedScaleData d;
  d.codes.assign(scales.size() + codeOffset, 0);
  d.table.assign(256, 0.0f);
  d.absmax.assign((scales.size() + 2) / 3 + absmaxOffset, 0.0f);
  if (!fill)
    return d;
  for (float &v : d.table)
    v = 0.5f * unit(rng);
  for (float &v : d.absmax)
    v = 0.02f + 0.02f * unit(rng);
  for (size_t i = 0; i < scales.size(); ++i) {
    d.codes[i + codeOffset] = uint8_t(byte(rng));
    volatile float product =
        d.table[d.codes[i + codeOffset]] * d.absmax[i / 3 + absmaxOffset];
    scales[i] = product + d.offset;
  }
  return d;
}

#endif // QOPT_UNITTESTS_RUNTIME_CUDAREFERENCE_H
