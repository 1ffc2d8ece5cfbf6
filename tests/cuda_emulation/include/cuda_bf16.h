// Stand-in for cuda_bf16.h in the CPU emulation (see zg_emulation.h): the one conversion used.
#pragma once

#include <cstdint>
#include <cstring>

struct __nv_bfloat162 {
  std::uint16_t x, y;  // x at the lower address: the low half of the 32-bit pair
};

// float -> bfloat16, to nearest, ties to even; NaN -> a quiet NaN.
inline std::uint16_t zg_emulation_bf16_rn(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}

inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {zg_emulation_bf16_rn(lo), zg_emulation_bf16_rn(hi)};
}
