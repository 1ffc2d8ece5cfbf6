// Which SIMD instruction set the micro-kernels use, chosen at run time from cpuid.
#pragma once

#include <string>
#include <vector>

namespace zg {

enum class Simd { portable = 0, avx2 = 1, avx512 = 2 };

const char* simd_name(Simd level);
std::vector<Simd> supported_simd();  // what this CPU and OS can run, lowest first
Simd simd_level();                   // the level in use: the best supported, or $ZENGRAD_SIMD
void set_simd_level(Simd level);     // throws std::invalid_argument when unsupported
Simd parse_simd(const std::string& name);  // throws std::invalid_argument on an unknown name

}  // namespace zg
