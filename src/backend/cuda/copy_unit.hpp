// The access width of the row kernels of copy_3d.cu and move_rows.cu: one thread moves a 16-, 4- or
// 2-byte unit (move_rows' accumulation: a 16-byte pack or one element), the widest that divides
// every byte offset the kernel forms from its arguments (base pointers, strides, row length), so
// that each access is aligned. Plain C++, so the choice is tested on the CPU
// (test_cuda_copy_3d.cpp, test_cuda_move_rows.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace uvit::cuda {

// The widest of 16, 4 and 2 bytes dividing every value (byte counts or addresses). 2 assumes
// 2-byte elements at least (bf16 or fp32), which every value is then a multiple of.
inline size_t copy_unit(std::initializer_list<size_t> bytes) {
  size_t bits = 0;  // a power of two divides every value iff it divides their OR
  for (size_t v : bytes) bits |= v;
  return bits % 16 == 0 ? 16 : bits % 4 == 0 ? 4 : 2;
}

inline size_t address(const void* p) { return size_t(reinterpret_cast<uintptr_t>(p)); }

}  // namespace uvit::cuda
