#include "cpu_features.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace zg {
namespace {

bool cpu_has(Simd level) {
#if defined(__x86_64__) && defined(__GNUC__)
  // libgcc's checks include the OS's XSAVE support (XCR0) for the wide registers.
  __builtin_cpu_init();
  switch (level) {
    case Simd::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
    case Simd::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Simd::portable:
      return true;
  }
  return false;
#else
  return level == Simd::portable;
#endif
}

Simd initial_level() {
  auto levels = supported_simd();
  Simd best = levels.back();
  if (const char* env = std::getenv("ZENGRAD_SIMD"); env && *env) {
    Simd wanted = parse_simd(env);  // an unknown name is an error, not a silent fallback
    if (cpu_has(wanted)) return wanted;
  }
  return best;
}

std::atomic<Simd>& current() {
  static std::atomic<Simd> level{initial_level()};
  return level;
}

#ifdef _SC_LEVEL1_DCACHE_SIZE
constexpr int kL1dName = _SC_LEVEL1_DCACHE_SIZE, kL2Name = _SC_LEVEL2_CACHE_SIZE;
#else
constexpr int kL1dName = -1, kL2Name = -1;  // no such query here: the fallbacks
#endif

// sysconf's answer for the cache `name` when it is in [lo, hi], else `fallback`.
long cache_bytes(int name, long lo, long hi, long fallback) {
  const long reported = name < 0 ? -1 : sysconf(name);
  return reported >= lo && reported <= hi ? reported : fallback;
}

}  // namespace

long l1d_bytes() {
  static const long bytes = cache_bytes(kL1dName, 16L << 10, 1L << 20, 32L << 10);
  return bytes;
}

long l2_bytes() {
  static const long bytes = cache_bytes(kL2Name, 128L << 10, 64L << 20, 1L << 20);
  return bytes;
}

const char* simd_name(Simd level) {
  switch (level) {
    case Simd::avx512: return "avx512";
    case Simd::avx2: return "avx2";
    case Simd::portable: return "portable";
  }
  return "?";
}

Simd parse_simd(const std::string& name) {
  for (Simd level : {Simd::portable, Simd::avx2, Simd::avx512})
    if (name == simd_name(level)) return level;
  throw std::invalid_argument("unknown SIMD level '" + name + "'; known: portable, avx2, avx512");
}

std::vector<Simd> supported_simd() {
  std::vector<Simd> levels;
  for (Simd level : {Simd::portable, Simd::avx2, Simd::avx512})
    if (cpu_has(level)) levels.push_back(level);
  return levels;
}

Simd simd_level() { return current().load(std::memory_order_relaxed); }

void set_simd_level(Simd level) {
  if (!cpu_has(level))
    throw std::invalid_argument(std::string("SIMD level '") + simd_name(level) + "' is not supported by this CPU");
  current().store(level, std::memory_order_relaxed);
}

}  // namespace zg
