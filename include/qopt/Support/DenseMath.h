//===- DenseMath.h - Small dense math on weights at compile time -*- C++
//-*-===//
//
// What passes that create or rewrite weights compute with (LoRA merging,
// adapter initialisation, smoothing and rotation folding): row-major f32
// matrices, products, row norms, and the float element types weights come
// in. Plain C++ (no MLIR, no LLVM), so it is tested on its own and never
// interprets IR. Sizes are those of one weight at a time.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_DENSEMATH_H
#define QOPT_SUPPORT_DENSEMATH_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qopt::dense {

/// A row-major matrix of f32.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;

  Matrix() = default;
  Matrix(int64_t rows, int64_t cols, float fill = 0.0f)
      : rows(rows), cols(cols), data(size_t(rows) * size_t(cols), fill) {}
  float &at(int64_t r, int64_t c) { return data[size_t(r) * cols + c]; }
  float at(int64_t r, int64_t c) const { return data[size_t(r) * cols + c]; }
};

/// `C = alpha · op(A) · op(B) + beta · C`, with op(X) = X or Xᵀ; op(A) is
/// m×k, op(B) k×n, C m×n (all row-major, `C` sized by the caller). Each
/// element is accumulated in double, so results do not depend on blocking.
void gemm(bool transA, bool transB, float alpha, const Matrix &a,
          const Matrix &b, float beta, Matrix &c);

/// `A · B` (shapes must agree).
Matrix matmul(const Matrix &a, const Matrix &b);

/// The transpose of `a`.
Matrix transpose(const Matrix &a);

/// The Euclidean norm of every row of `a` (computed in double).
std::vector<float> rowNorms(const Matrix &a);

/// The `r` largest singular values of `a` (m×n, r ≤ min(m, n)) with their
/// vectors: `u` m×r and `vt` r×n (rows), so that the rank-r truncation of
/// `a` is u · diag(s) · vt. Computed in double from the cyclic Jacobi
/// eigen-decomposition of the smaller Gram matrix: accurate for the
/// leading singular values (what PiSSA keeps), O(min(m,n)² · max(m,n)).
void topSingular(const Matrix &a, int64_t r, Matrix &u, std::vector<float> &s,
                 Matrix &vt);

/// The same by randomized subspace iteration (Halko, Martinsson and Tropp,
/// 2011): an orthonormal basis Q of a·Ω for a Gaussian Ω of r + `oversample`
/// columns (seeded by `seed`), refined by `powerIterations` rounds of
/// Q = orth(a · orth(aᵀ·Q)), then the exact SVD of the small Qᵀ·a.
/// O(m·n·(r + oversample)·powerIterations): for large weights where the
/// exact decomposition is too slow; close to it when the spectrum decays.
void topSingularRandomized(const Matrix &a, int64_t r, Matrix &u,
                           std::vector<float> &s, Matrix &vt,
                           int64_t oversample = 16, int64_t powerIterations = 4,
                           uint64_t seed = 0);

/// The first `r` columns of the Q of `a`'s QR decomposition (m×r,
/// orthonormal; Householder signs: R's diagonal is negative where torch's
/// is) and the first `r` rows of R = Qᵣᵀ · a (r×n), in double. Their
/// product is the projection of `a` onto its first r columns' span.
void thinQR(const Matrix &a, int64_t r, Matrix &q, Matrix &rRows);

//===----------------------------------------------------------------------===//
// Element types of weights
//===----------------------------------------------------------------------===//

enum class FloatKind { F16, BF16, F32, F64 };

/// Bytes of one element of `kind`.
size_t floatKindBytes(FloatKind kind);

/// IEEE half / bfloat16 from and to f32; rounding to nearest, ties to even
/// (what torch's `.to(torch.float16)` / `.to(torch.bfloat16)` do), NaN
/// stays NaN, overflow becomes infinity.
float halfToFloat(uint16_t bits);
uint16_t floatToHalf(float value);
float bfloat16ToFloat(uint16_t bits);
uint16_t floatToBFloat16(float value);

/// Little-endian elements of `kind` (`count` of them at `bytes`) as f32.
void decodeFloats(FloatKind kind, const void *bytes, size_t count, float *out);
/// `count` f32 values as little-endian elements of `kind` at `bytes`.
void encodeFloats(FloatKind kind, const float *values, size_t count,
                  void *bytes);

} // namespace qopt::dense

#endif // QOPT_SUPPORT_DENSEMATH_H
