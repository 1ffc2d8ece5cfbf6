#include "threading.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ZG_PAUSE() _mm_pause()
#define ZG_HAS_MXCSR 1
#else
#define ZG_PAUSE() ((void)0)
#define ZG_HAS_MXCSR 0
#endif

namespace zg {
namespace {

// Idle workers spin this long before sleeping, so that the regions of a training step, between
// which Python runs for tens to hundreds of microseconds, start without a wake-up: a sleeping
// worker woke late (tens of microseconds in a VM) and the caller waited for it at the join. At
// 50 us the seed CNN's step took 6.05 ms, at 300 us 5.8, at 1-2 ms 5.2. Idle workers still
// leave the cores to others (NumPy's BLAS) within 2 ms, a hundredth of OpenMP's default.
constexpr auto kIdleSpin = std::chrono::microseconds(2000);
// Threads waiting inside a region (barrier, join) spin longer, then yield.
constexpr auto kBusySpin = std::chrono::microseconds(200);

// Calls done() until it returns true or `limit` has passed; true when done() did.
template <class Done>
bool spin_until(Done done, std::chrono::microseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    for (int i = 0; i < 16; ++i) {
      if (done()) return true;
      ZG_PAUSE();
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
  }
}

thread_local bool t_inside_region = false;

// The SSE/AVX control register, which decides how the FPU treats denormals: workers run each
// region in their caller's mode, so a kernel computes alike on every thread.
unsigned fp_mode() {
#if ZG_HAS_MXCSR
  return _mm_getcsr();
#else
  return 0;
#endif
}

void set_fp_mode(unsigned mode) {
#if ZG_HAS_MXCSR
  if (_mm_getcsr() != mode) _mm_setcsr(mode);
#else
  (void)mode;
#endif
}

// Flush-to-zero (denormal results become 0) and denormals-are-zero (denormal inputs read as 0).
constexpr unsigned kFlushDenormals = 0x8040;
std::atomic<bool> g_flush_denormals{false};

class Pool {
 public:
  ~Pool() { resize(0); }

  void resize(int workers) {
    std::lock_guard<std::mutex> busy(busy_);
    stop_workers();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = false;
    }
    // A worker must start from the generation it was created in, not the one it first sees:
    // a stop requested before the thread first runs would otherwise be missed.
    const unsigned created = generation_.load();
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i, created] { worker_loop(i + 1, created); });
  }

  int workers() const { return static_cast<int>(threads_.size()); }

  // False when the pool is already running another caller's region.
  bool try_run(int team, const std::function<void(int, int)>& fn) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    team = std::min(team, workers() + 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      team_ = team;
      mode_ = fp_mode();
      pending_.store(team - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    t_inside_region = true;
    fn(0, team);
    t_inside_region = false;
    auto joined = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(joined, kBusySpin))
      while (!joined()) std::this_thread::yield();
    return true;
  }

 private:
  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  void worker_loop(int tid, unsigned seen) {
    t_inside_region = true;  // a kernel running on a worker never opens a nested region
    for (;;) {
      auto woken = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(woken, kIdleSpin)) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, woken);
      }
      const std::function<void(int, int)>* job;
      int team;
      unsigned mode;
      bool stopping;
      {
        // Read the generation with its job: a newer region may already have replaced `now`'s.
        std::lock_guard<std::mutex> lock(mutex_);
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        team = team_;
        mode = mode_;
        stopping = stopping_;
      }
      if (stopping) return;
      if (tid < team) {
        set_fp_mode(mode);
        (*job)(tid, team);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  std::mutex busy_;   // held by the caller whose region is running
  std::mutex mutex_;  // guards job_, team_, stopping_
  std::condition_variable wake_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  int team_ = 1;
  unsigned mode_ = 0;
  bool stopping_ = false;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> pending_{0};
};

Pool& pool() {
  static Pool instance;
  return instance;
}

std::atomic<int> g_num_threads{1};

}  // namespace

void set_num_threads(int n) {
  n = std::max(n, 1);
  g_num_threads.store(n);
  if (pool().workers() != n - 1) pool().resize(n - 1);
}

int num_threads() { return g_num_threads.load(); }

void set_flush_denormals(bool on) { g_flush_denormals.store(on); }
bool flush_denormals() { return g_flush_denormals.load(); }

void parallel(int max_team, const std::function<void(int, int)>& fn) {
  int team = std::min(max_team, num_threads());
  if (t_inside_region) return fn(0, 1);
  // A top-level region (a kernel) runs in the denormal mode asked for, and leaves the caller's
  // mode as it found it (NumPy code on this thread is never affected).
  const unsigned caller_mode = fp_mode();
  const bool flush = g_flush_denormals.load(std::memory_order_relaxed);
  if (flush) set_fp_mode(caller_mode | kFlushDenormals);
  if (team <= 1 || !pool().try_run(team, fn)) {
    t_inside_region = true;
    fn(0, 1);
    t_inside_region = false;
  }
  if (flush) set_fp_mode(caller_mode);
}

void parallel_for(long n, long grain, const std::function<void(long, long)>& fn) {
  if (n <= 0) return;
  long most = std::max(1L, n / std::max(grain, 1L));
  parallel(static_cast<int>(std::min<long>(most, 1 << 20)), [&](int tid, int team) {
    auto [begin, end] = split_range(n, tid, team);
    if (begin < end) fn(begin, end);
  });
}

void Barrier::wait(int team) {
  if (team <= 1) return;
  int gen = generation_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team - 1) {
    arrived_.store(0, std::memory_order_relaxed);
    generation_.store(gen + 1, std::memory_order_release);
    return;
  }
  auto released = [&] { return generation_.load(std::memory_order_acquire) != gen; };
  if (!spin_until(released, kBusySpin))
    while (!released()) std::this_thread::yield();
}

}  // namespace zg
