//===- NpyDType.h - NumPy dtype strings of runtime dtypes -------*- C++ -*-===//
//
// What .npy headers call the runtime's dtypes, for the tools that feed
// models from NumPy files (qopt-run, qoptc's calibration).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_NPYDTYPE_H
#define QOPT_RUNTIME_NPYDTYPE_H

#include "qopt/Runtime/Runtime.h"

#include <string>

namespace qopt::npy {

struct DTypeDescr {
  qopt_dtype dtype;
  const char *descr;
};
inline constexpr DTypeDescr kDTypeDescrs[] = {
    {QOPT_DTYPE_F32, "<f4"}, {QOPT_DTYPE_F64, "<f8"}, {QOPT_DTYPE_F16, "<f2"},
    {QOPT_DTYPE_I8, "|i1"},  {QOPT_DTYPE_I16, "<i2"}, {QOPT_DTYPE_I32, "<i4"},
    {QOPT_DTYPE_I64, "<i8"}, {QOPT_DTYPE_U8, "|u1"},  {QOPT_DTYPE_U16, "<u2"},
    {QOPT_DTYPE_U32, "<u4"}, {QOPT_DTYPE_U64, "<u8"}, {QOPT_DTYPE_BOOL, "|b1"},
};

/// The dtype of a .npy descr ("<f4", "|b1", "i8", ...), or INVALID.
inline qopt_dtype dtypeOf(std::string descr) {
  if (!descr.empty() && (descr[0] == '=' || descr[0] == '<' || descr[0] == '|'))
    descr = descr.substr(1);
  for (const DTypeDescr &d : kDTypeDescrs)
    if (descr == d.descr + 1)
      return d.dtype;
  return QOPT_DTYPE_INVALID;
}

/// The canonical .npy descr of `dtype`, or null (bfloat16 has none).
inline const char *descrOf(qopt_dtype dtype) {
  for (const DTypeDescr &d : kDTypeDescrs)
    if (d.dtype == dtype)
      return d.descr;
  return nullptr;
}

} // namespace qopt::npy

#endif // QOPT_RUNTIME_NPYDTYPE_H
