//===- Pool.h - The CUDA host library's memory pool -------------*- C++ -*-===//
//
// Every buffer of a CUDA model comes from one region reserved at load:
// first fit over the free ranges (ordered by offset), freed ranges merged
// with their neighbours, every range 256-byte aligned. Plain C++ (the unit
// tests use it on host memory).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_CUDAHOST_POOL_H
#define QOPT_RUNTIME_CUDAHOST_POOL_H

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>

namespace qopt::cuda {

class Pool {
public:
  /// Takes `bytes` at `region` (any alignment), dropping what was
  /// allocated.
  void reset(char *region, size_t bytes) {
    // Generated code assumes its buffers' alignment (64 bytes; 256 keeps
    // vector loads within one memory transaction).
    size_t skip =
        (kAlign - reinterpret_cast<uintptr_t>(region) % kAlign) % kAlign;
    base = region + std::min(skip, bytes);
    size = (bytes - std::min(skip, bytes)) / kAlign * kAlign;
    free.clear();
    used.clear();
    inUse = peak = peakBase = 0;
    if (size)
      free[0] = size;
  }
  /// A 256-byte aligned range of at least `bytes` (1 for 0), or null.
  void *allocate(size_t bytes) {
    if (bytes > size)
      return nullptr;
    bytes = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
    for (auto it = free.begin(); it != free.end(); ++it) {
      if (it->second < bytes)
        continue;
      size_t offset = it->first, left = it->second - bytes;
      free.erase(it);
      if (left)
        free[offset + bytes] = left;
      used[offset] = bytes;
      inUse += bytes;
      peak = std::max(peak, inUse);
      return base + offset;
    }
    return nullptr;
  }
  /// Gives back a range allocate returned (others are ignored).
  void release(void *p) {
    auto it = used.find(static_cast<char *>(p) - base);
    if (it == used.end())
      return;
    size_t offset = it->first, bytes = it->second;
    used.erase(it);
    inUse -= bytes;
    auto next = free.lower_bound(offset);
    if (next != free.end() && offset + bytes == next->first) {
      bytes += next->second;
      next = free.erase(next);
    }
    if (next != free.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        prev->second += bytes;
        return;
      }
    }
    free[offset] = bytes;
  }
  bool owns(const void *p) const { return p >= base && p < base + size; }
  /// Starts recording the most bytes in use at once from now on.
  void resetPeak() { peak = peakBase = inUse; }
  /// That most, beyond what was in use at resetPeak.
  size_t peakSinceReset() const { return peak - peakBase; }
  size_t capacity() const { return size; }
  size_t available() const { return size - inUse; }
  size_t largestFree() const {
    size_t largest = 0;
    for (auto &[offset, bytes] : free)
      largest = std::max(largest, bytes);
    return largest;
  }

private:
  static constexpr size_t kAlign = 256;
  char *base = nullptr;
  size_t size = 0, inUse = 0, peak = 0, peakBase = 0;
  std::map<size_t, size_t> free, used;
};

} // namespace qopt::cuda

#endif // QOPT_RUNTIME_CUDAHOST_POOL_H
