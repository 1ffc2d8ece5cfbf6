// zengrad's own thread pool: one team of persistent workers, fork-join regions, a barrier.
//
// Why our own: an OpenMP runtime keeps its threads spinning after each region and would steal
// the cores NumPy's BLAS needs (and a process could end up with two OpenMP runtimes). Our
// workers spin for a few microseconds after a region, then sleep on a condition variable.
//
// Results never depend on the team size: kernels split work over outputs, never over a sum.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <utility>

namespace zg {

void set_num_threads(int n);  // n >= 1; the pool grows or shrinks to n - 1 workers
int num_threads();

// When on, kernels (every region opened by `parallel`) run with denormals flushed to zero,
// inputs and results (x86 FTZ + DAZ): arithmetic on denormals otherwise takes a slow microcode
// path, ~100 cycles an operation. Off by default: results then match IEEE (and NumPy) exactly.
void set_flush_denormals(bool on);
bool flush_denormals();

// Runs fn(tid, team) once on each thread of a team of at most `max_team` threads; tid 0 is
// the caller. The team is smaller when the pool is busy with another caller (another Python
// thread) or when called from inside a region: then fn(0, 1) runs on the caller alone.
void parallel(int max_team, const std::function<void(int tid, int team)>& fn);

// Calls fn(begin, end) over [0, n) split into contiguous ranges, one per thread, each at least
// `grain` long (so small loops stay on one thread).
void parallel_for(long n, long grain, const std::function<void(long begin, long end)>& fn);

// The part [begin, end) of [0, n) that thread tid of `team` owns (contiguous, balanced).
inline std::pair<long, long> split_range(long n, int tid, int team) {
  long base = n / team, extra = n % team;
  long begin = tid * base + std::min<long>(tid, extra);
  return {begin, begin + base + (tid < extra ? 1 : 0)};
}

// A spin-then-yield barrier for the threads of one region: all `team` of them call wait(team).
class Barrier {
 public:
  void wait(int team);

 private:
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<int> generation_{0};
};

}  // namespace zg
