// Which SIMD instruction set the micro-kernels use, chosen at run time from cpuid.
#pragma once

#include <string>
#include <vector>

// On a function: compiled for AVX-512, AVX2 and the baseline, the loader picking the best one
// the CPU runs (GCC's function multiversioning). For plain loops that the compiler vectorises;
// no wide-ISA code is reachable on older CPUs.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ZG_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
// On a function called only where simd_level() is avx512: compiled for AVX-512 alone.
#define ZG_AVX512 __attribute__((target("avx512f")))
#define ZG_HAS_AVX512_PATHS 1
#else
#define ZG_MULTIVERSION
#define ZG_AVX512
#define ZG_HAS_AVX512_PATHS 0
#endif

namespace zg {

enum class Simd { portable = 0, avx2 = 1, avx512 = 2 };

const char* simd_name(Simd level);
std::vector<Simd> supported_simd();  // what this CPU and OS can run, lowest first
Simd simd_level();                   // the level in use: the best supported, or $ZENGRAD_SIMD
void set_simd_level(Simd level);     // throws std::invalid_argument when unsupported
Simd parse_simd(const std::string& name);  // throws std::invalid_argument on an unknown name

// The sizes of a core's L1 data cache and of its L2 cache in bytes (from the OS; 32 KiB and
// 1 MiB where it does not say).
long l1d_bytes();
long l2_bytes();

}  // namespace zg
