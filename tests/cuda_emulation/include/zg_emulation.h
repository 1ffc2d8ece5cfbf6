// A CPU emulation of the little of CUDA that zengrad's kernels use, so that their index logic,
// tiling, edge handling and tensor-core fragment layouts can be tested on a machine without a GPU.
// For tests only (tests/test_cuda_emulation.py): csrc/cuda/*.cu compile unchanged as C++ with
// this directory ahead of the CUDA headers (whose names the files here take) and
// ZG_CUDA_EMULATION defined.
//
// Each block's threads are fibers (ucontext) run by one OS thread: a thread runs until it
// reaches a barrier (__syncthreads, or the warp-wide exchange inside an emulated mma), then the
// next one runs; when all of them have arrived the barrier opens. Blocks run one after another,
// so a __shared__ variable (a function-local static here) is the block's shared memory.
// Global memory is host memory: "device pointers" are ordinary pointers.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#define ZG_CUDA_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

// The running thread's coordinates (one OS thread runs all fibers: the scheduler sets these).
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

template <class T>
inline T __ldg(const T* p) {
  return *p;
}
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
[[noreturn]] inline void __trap() {
  std::fprintf(stderr, "zg_emulation: __trap()\n");
  std::abort();
}

namespace zg_emulation {

[[noreturn]] inline void die(const char* why) {
  std::fprintf(stderr, "zg_emulation: %s\n", why);
  std::abort();
}

struct Barrier {
  int count = 0, arrived = 0;
  unsigned long generation = 0;
};

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  uint3 thread;
  bool done = false;
  Barrier* waiting = nullptr;
  unsigned long waiting_generation = 0;
};

// A warp's mailbox for the emulated mma: each lane posts its fragments, then reads everyone's.
struct Warp {
  Barrier barrier;
  unsigned a[32][4], b[32][2];
  float c[32][4];
};

struct Block {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  Barrier barrier;
  std::vector<Warp> warps;
  int current = -1;
};

inline Block*& block() {
  static Block* b = nullptr;
  return b;
}

// The running fiber waits at `b` until `b.count` fibers have arrived.
inline void wait(Barrier& b) {
  Block& blk = *block();
  Fiber& me = blk.fibers[blk.current];
  const unsigned long generation = b.generation;
  if (++b.arrived == b.count) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  me.waiting = &b;
  me.waiting_generation = generation;
  swapcontext(&me.context, &blk.scheduler);
}

inline int lane() { return int(threadIdx.x) % 32; }
inline Warp& warp() { return block()->warps[threadIdx.x / 32]; }

// Launch state handed to the fibers (makecontext passes ints only).
struct Entry {
  void (*run)(void*);
  void* state;
};
inline Entry& entry() {
  static Entry e;
  return e;
}
inline void fiber_main() {
  entry().run(entry().state);
  Block& blk = *block();
  blk.fibers[blk.current].done = true;
  swapcontext(&blk.fibers[blk.current].context, &blk.scheduler);
}

// getcontext only initialises the fibers' contexts here; it never returns twice into this frame.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wclobbered"
template <class F>
void run_grid(dim3 grid, dim3 threads, F&& body) {
  const int n = int(threads.x * threads.y * threads.z);
  Block blk;
  blk.fibers.resize(n);
  blk.barrier.count = n;
  blk.warps.resize((n + 31) / 32);
  for (Warp& w : blk.warps) w.barrier.count = 32;
  if (n % 32 != 0 && n > 32) die("blocks of a multiple of 32 threads only");
  for (Fiber& f : blk.fibers) f.stack.resize(1 << 16);
  block() = &blk;
  gridDim = grid;
  blockDim = threads;
  entry() = {[](void* s) { (*static_cast<F*>(s))(); }, &body};
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, bz};
        for (int t = 0; t < n; ++t) {
          Fiber& f = blk.fibers[t];
          f.thread = {unsigned(t) % threads.x, unsigned(t) / threads.x % threads.y, unsigned(t) / (threads.x * threads.y)};
          f.done = false;
          f.waiting = nullptr;
          getcontext(&f.context);
          f.context.uc_stack.ss_sp = f.stack.data();
          f.context.uc_stack.ss_size = f.stack.size();
          f.context.uc_link = nullptr;
          makecontext(&f.context, fiber_main, 0);
        }
        for (int finished = 0; finished < n;) {
          bool progress = false;
          finished = 0;
          for (int t = 0; t < n; ++t) {
            Fiber& f = blk.fibers[t];
            if (f.done) {
              ++finished;
              continue;
            }
            if (f.waiting != nullptr && f.waiting->generation == f.waiting_generation) continue;
            f.waiting = nullptr;
            blk.current = t;
            threadIdx = f.thread;
            swapcontext(&blk.scheduler, &f.context);
            progress = true;
          }
          if (!progress && finished < n) die("deadlock: threads wait at a barrier some never reach");
        }
      }
  block() = nullptr;
}
#pragma GCC diagnostic pop

// kernel<<<grid, threads, 0, stream>>>(args...), the arguments converted to the parameter types.
template <class S, class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 threads, S /*stream*/, A&&... args) {
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  run_grid(grid, threads, [&] { std::apply(kernel, params); });
}

// ---- tensor cores, as the PTX ISA lays out the fragments (groupID g = lane / 4, t = lane % 4) ----

inline float from_bits(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline unsigned to_bits(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// cvt.rna.tf32.f32: 10 mantissa bits, to nearest, ties away from zero; inf and NaN kept.
inline unsigned to_tf32(float x) {
  const unsigned u = to_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;
  return (u + 0x1000u) & 0xffffe000u;
}

// The low (first) and high (second) bf16 of a packed pair, as floats.
inline float bf16_low(unsigned r) { return from_bits(r << 16); }
inline float bf16_high(unsigned r) { return from_bits(r & 0xffff0000u); }

// D = A B + C for one warp: every lane posts its fragments, then computes its own four D
// elements from the matrices the posts assemble.
template <int K, class Fill>
void warp_mma(float (&d)[4], const unsigned* a, const unsigned* b, Fill fill) {
  Warp& w = warp();
  const int l = lane();
  for (int i = 0; i < 4; ++i) w.a[l][i] = a[i];
  for (int i = 0; i < 2; ++i) w.b[l][i] = b[i];
  for (int i = 0; i < 4; ++i) w.c[l][i] = d[i];
  wait(w.barrier);
  float A[16][K], B[K][8], C[16][8];
  for (int q = 0; q < 32; ++q) {
    const int g = q / 4, t = q % 4;
    fill(A, B, w.a[q], w.b[q], g, t);
    C[g][2 * t] = w.c[q][0];
    C[g][2 * t + 1] = w.c[q][1];
    C[g + 8][2 * t] = w.c[q][2];
    C[g + 8][2 * t + 1] = w.c[q][3];
  }
  wait(w.barrier);  // all lanes have read the posts before any lane posts again
  const int g = l / 4, t = l % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    float s = C[row][col];
    for (int k = 0; k < K; ++k) s = std::fma(A[row][k], B[k][col], s);
    d[e] = s;
  }
}

// mma.m16n8k8 .tf32: A a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4); B b0 (t, g) b1 (t+4, g).
inline void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  warp_mma<8>(d, a, b, [](float (&A)[16][8], float (&B)[8][8], const unsigned* pa, const unsigned* pb, int g, int t) {
    A[g][t] = from_bits(pa[0]);
    A[g + 8][t] = from_bits(pa[1]);
    A[g][t + 4] = from_bits(pa[2]);
    A[g + 8][t + 4] = from_bits(pa[3]);
    B[t][g] = from_bits(pb[0]);
    B[t + 4][g] = from_bits(pb[1]);
  });
}

// mma.m16n8k16 .bf16: register i of A holds two elements, the lower k in the low half:
// a0a1 (g, 2t..2t+1), a2a3 (g+8, 2t..), a4a5 (g, 2t+8..), a6a7 (g+8, 2t+8..);
// B: b0b1 (k = 2t..2t+1, n = g), b2b3 (k = 2t+8.., n = g).
inline void mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  warp_mma<16>(d, a, b, [](float (&A)[16][16], float (&B)[16][8], const unsigned* pa, const unsigned* pb, int g,
                           int t) {
    const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int i = 0; i < 4; ++i) {
      A[rows[i]][cols[i]] = bf16_low(pa[i]);
      A[rows[i]][cols[i] + 1] = bf16_high(pa[i]);
    }
    for (int i = 0; i < 2; ++i) {
      B[2 * t + 8 * i][g] = bf16_low(pb[i]);
      B[2 * t + 8 * i + 1][g] = bf16_high(pb[i]);
    }
  });
}

}  // namespace zg_emulation

inline void __syncthreads() { zg_emulation::wait(zg_emulation::block()->barrier); }
