//===- QuantFormats.h - Number formats of quantized weights -----*- C++ -*-===//
//
// Reference encoders, decoders and bit packing for the formats of
// #qopt.int / #qopt.nf4 / #qopt.float. Plain C++ with no MLIR or LLVM
// dependency: the compiler (constant folding, weight packing) and the
// runtime (kernels' reference implementations) share them.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_QUANTFORMATS_H
#define QOPT_SUPPORT_QUANTFORMATS_H

#include <array>
#include <cstdint>

namespace qopt {

//===----------------------------------------------------------------------===//
// NF4
//===----------------------------------------------------------------------===//

/// The 16 NormalFloat4 code values of QLoRA (bitsandbytes' table: normal
/// quantiles scaled to [-1, 1], appendix E), ascending. A constant here so
/// that the CPU kernel library, which links no qopt library, reads it too.
inline constexpr std::array<float, 16> kNF4Codes = {-1.0f,
                                                    -0.6961928009986877f,
                                                    -0.5250730514526367f,
                                                    -0.39491748809814453f,
                                                    -0.28444138169288635f,
                                                    -0.18477343022823334f,
                                                    -0.09105003625154495f,
                                                    0.0f,
                                                    0.07958029955625534f,
                                                    0.16093020141124725f,
                                                    0.24611230194568634f,
                                                    0.33791524171829224f,
                                                    0.44070982933044434f,
                                                    0.5626170039176941f,
                                                    0.7229568362236023f,
                                                    1.0f};
const std::array<float, 16> &nf4CodeTable();

/// Index of the code nearest to `v` (already divided by the block absmax);
/// ties go to the lower index. Values outside [-1, 1] saturate.
uint8_t nf4Encode(float v);

/// bitsandbytes' quantize_4bit(quant_type="nf4", compress_statistics=False)
/// of the `n` values `x` (row-major), exactly as its CUDA kernel writes
/// them (the checkpoints users bring): per block of `blocksize` elements
/// (the last may be short) `absmax`, each element multiplied by the f32
/// reciprocal of its block's absmax and given the number of bitsandbytes'
/// 15 f32 decision thresholds it exceeds. `codes` gets one code per
/// element (unpacked), `absmax` ceil(n / blocksize) values.
void nf4QuantizeBlockwise(const float *x, int64_t n, int64_t blocksize,
                          uint8_t *codes, float *absmax);

/// bitsandbytes' NF4 decision thresholds (dQuantizeNF4's f32 literals,
/// the midpoints of neighbouring codes), ascending: the code of v is how
/// many of them v exceeds.
const std::array<float, 15> &nf4Thresholds();

/// The inverse: code value · absmax of its block, in f32.
void nf4DequantizeBlockwise(const uint8_t *codes, const float *absmax,
                            int64_t n, int64_t blocksize, float *out);

//===----------------------------------------------------------------------===//
// bitsandbytes' FP4 and 8-bit dynamic blockwise formats
//===----------------------------------------------------------------------===//

/// bitsandbytes' FP4 code values (get_4bit_type("fp4")), in its index order:
/// 0, 0.0052083, 0.6666667, 1, 0.3333333, 0.5, 0.1666667, 0.25, then the
/// same negated (index 8, the sign bit over zero, is +0 in bitsandbytes'
/// table).
const std::array<float, 16> &fp4CodeTable();

/// bitsandbytes' quantize_4bit(quant_type="fp4") as its CUDA kernel writes
/// it, scaled as nf4QuantizeBlockwise does: the sign bit from v < 0 (so
/// small negative values give code 8), the magnitude's code from its seven
/// f32 thresholds on |v|. bitsandbytes' CPU kernel differs: it sends small
/// positive values to 8 and decides the tie at 7/12 the other way; both
/// decode to the same values but at that tie.
void fp4QuantizeBlockwise(const float *x, int64_t n, int64_t blocksize,
                          uint8_t *codes, float *absmax);

/// bitsandbytes' FP4 decision thresholds on |v| (dQuantizeFP4's f32
/// literals), ascending, and the magnitude code (0…7) of each count of
/// thresholds exceeded; the sign bit (8) is v < 0.
const std::array<float, 7> &fp4Thresholds();
const std::array<uint8_t, 8> &fp4MagnitudeCodes();

/// The inverse: code value · absmax of its block, in f32.
void fp4DequantizeBlockwise(const uint8_t *codes, const float *absmax,
                            int64_t n, int64_t blocksize, float *out);

/// bitsandbytes' signed 8-bit dynamic code (create_dynamic_map()): 256
/// values, ascending, from -0.99296875 to 1.
const std::array<float, 256> &dynamicCodeTable();

/// bitsandbytes' quantize_blockwise (the 8-bit dynamic format) as its CUDA
/// kernel writes it: scaled as nf4QuantizeBlockwise does, then its search
/// of the code (seven bisection steps from index 127, then the nearer of
/// the two bracketing codes by their f32 midpoint, ties to the code the
/// search landed on). Its CPU kernel (0.50.2) picks other codes for about
/// 8% of values.
void dynamicQuantizeBlockwise(const float *x, int64_t n, int64_t blocksize,
                              uint8_t *codes, float *absmax);

/// The inverse: code value · absmax of its block, in f32.
void dynamicDequantizeBlockwise(const uint8_t *codes, const float *absmax,
                                int64_t n, int64_t blocksize, float *out);

/// QLoRA's double quantization of the 4-bit blocks' `absmax` (`blocks`
/// values): their mean (the returned offset) subtracted, the rest in the
/// dynamic format in blocks of `blocksize` (bitsandbytes: 256): `codes`
/// one per block, `nestedAbsmax` ceil(blocks / blocksize) values. The
/// offset is torch's mean up to rounding (bitsandbytes' CUDA reduction
/// sums in another order: within an ulp).
float doubleQuantizeAbsmax(const float *absmax, int64_t blocks,
                           int64_t blocksize, uint8_t *codes,
                           float *nestedAbsmax);

/// QLoRA's double quantization undone: the 4-bit blocks' absmaxes are the
/// dynamic codes · nested absmax (blocks of `blocksize`, bitsandbytes: 256),
/// plus the offset (their mean), in f32 as bitsandbytes computes them.
void doubleDequantizeAbsmax(const uint8_t *codes, const float *nestedAbsmax,
                            float offset, int64_t blocks, int64_t blocksize,
                            float *absmax);

//===----------------------------------------------------------------------===//
// Small floats
//===----------------------------------------------------------------------===//

enum class SmallFloatKind { F8E4M3FN, F8E5M2, F4E2M1FN, F8E8M0FNU };

/// Bits of one element of `kind`.
unsigned smallFloatBits(SmallFloatKind kind);
/// Largest finite value of `kind`.
float smallFloatMax(SmallFloatKind kind);
/// The value of bit pattern `code` (low bits) in `kind`; NaN for NaN codes.
float smallFloatDecode(SmallFloatKind kind, uint8_t code);
/// Nearest representable value of `kind` to `v` (ties to even), saturating
/// to the largest finite value; NaN goes to a NaN code (0 for f4E2M1FN,
/// which has none). For F8E8M0FNU (powers of two, unsigned) the exponent is
/// rounded down, as the OCP MX specification computes shared scales.
uint8_t smallFloatEncode(SmallFloatKind kind, float v);

/// Quantizes the rows × cols matrix `x` to the small float `kind` with one
/// f32 scale per row (rows == 1: per tensor): scale = absmax / the format's
/// largest value (1 for a row of zeros), codes = smallFloatEncode(x /
/// scale). This is `qoptc --quantize fp8-e4m3 / fp8-e5m2`.
void floatQuantizeRows(SmallFloatKind kind, const float *x, int64_t rows,
                       int64_t cols, uint8_t *codes, float *scales);

/// The elements one MXFP4 / NVFP4 scale covers along a row.
constexpr int64_t kMXFP4Block = 32, kNVFP4Block = 16;

/// OCP MXFP4 (Microscaling Formats v1.0): per block of 32 consecutive
/// elements of a row (the last may be short) the shared scale 2^e with
/// e = floor(log2(absmax)) - 2 (E2M1's largest exponent), clamped to
/// [-127, 127] and stored as its E8M0 code (a zero block gets code 0); the
/// elements x / 2^e rounded to E2M1 (to nearest, ties to even, saturating
/// at ±6). `codes` gets rows·cols E2M1 codes, `scales` rows·ceil(cols / 32)
/// E8M0 codes.
void mxfp4Quantize(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                   uint8_t *scales);

/// NVFP4, two-level as torchao's nvfp4_quantize with a per-tensor scale:
/// the global scale g = absmax(x) / (448 · 6) (1 for a tensor of zeros,
/// which torchao divides by); per block of 16 elements of a row (the last
/// may be short) the E4M3 code s of (block absmax / 6) / g, clamped to
/// [2^-6, 448]; the elements x / (g · s) clamped to ±6 and rounded to E2M1
/// (ties to even). `codes` gets rows·cols E2M1 codes, `scales`
/// rows·ceil(cols / 16) E4M3 codes; returns g.
float nvfp4Quantize(const float *x, int64_t rows, int64_t cols, uint8_t *codes,
                    uint8_t *scales);

//===----------------------------------------------------------------------===//
// Integers
//===----------------------------------------------------------------------===//

/// Rounds to the nearest integer, ties to even (what numpy and PyTorch do).
int64_t roundHalfToEven(double v);

/// Smallest and largest code of a k-bit integer format.
int64_t intFormatMin(unsigned bits, bool isSigned);
int64_t intFormatMax(unsigned bits, bool isSigned);

/// How intQuantizeGroups picks each group's range.
enum class ClipSearch {
  /// The group's own range (min–max).
  MinMax,
  /// The range shrunk by the ratio in {1, 0.99, …, 0.50} that minimises
  /// the group's squared quantization error (ties to the larger ratio).
  MSE,
};

/// Quantizes the rows × cols matrix `w` to `bits`-bit integers (2 ≤ bits ≤
/// 8) with one scale per group of `group` consecutive columns of a row
/// (group == cols: per row). Symmetric: codes in [-2^(bits-1), 2^(bits-1)-1]
/// (stored as their low `bits` bits), scale = absmax / (2^(bits-1) - 1).
/// Asymmetric: codes in [0, 2^bits - 1] with a zero point, scale =
/// (max - min) / (2^bits - 1) over the range widened to include 0,
/// zero point = round(-min / scale). Codes are round-half-even of
/// value / scale (+ zero point), clamped. A group of zeros gets scale 1.
/// `codes` gets rows·cols codes, `scales` (and `zeroPoints` when
/// asymmetric) rows·ceil(cols / group) values.
void intQuantizeGroups(const float *w, int64_t rows, int64_t cols,
                       int64_t group, unsigned bits, bool asymmetric,
                       ClipSearch clip, uint8_t *codes, float *scales,
                       uint8_t *zeroPoints);

//===----------------------------------------------------------------------===//
// Bit packing
//===----------------------------------------------------------------------===//

/// Bytes one row of `n` elements of `bits` each takes (rows are padded to a
/// whole byte).
int64_t packedRowBytes(int64_t n, unsigned bits);

/// Packs `n` codes (their low `bits` bits; 1 ≤ bits ≤ 8) little-endian into
/// `out` (`packedRowBytes(n, bits)` bytes): element i occupies bits
/// [i·bits, (i+1)·bits) of the row's bit string, so with 4 bits element 0
/// is the low nibble of byte 0. Padding bits are zero.
void packBits(const uint8_t *codes, int64_t n, unsigned bits, uint8_t *out);

/// The inverse of packBits: `n` codes, each in the low `bits` bits.
void unpackBits(const uint8_t *packed, int64_t n, unsigned bits,
                uint8_t *codes);

/// Sign-extends the low `bits` bits of `code`.
int32_t signExtend(uint8_t code, unsigned bits);

} // namespace qopt

#endif // QOPT_SUPPORT_QUANTFORMATS_H
