// Runs a CUDA kernel's device code on the CPU, so that its logic (indexing,
// barrier placement, shuffles, races between its phases) is tested in CI on
// a machine without a GPU, against the CPU reference of kernels/cpu.
//
// Include this before a kernel's .cuh (the device code alone; the launcher
// with its <<< >>> stays in the .cu). It defines the CUDA keywords and the
// intrinsics such kernels use, and ct_emu::launch runs a grid:
//  - blocks one after another; within a block, every thread a fiber
//    (ucontext) on one OS thread, run until it reaches a barrier;
//  - __syncthreads() waits for every thread of the block, a warp shuffle
//    for every lane of the warp (only full masks are emulated);
//  - a barrier that can never be passed (a thread returned, or waits at
//    another barrier) is reported, not hung: launch throws;
//  - the order in which threads run between barriers is a parameter: a
//    kernel whose threads read what another thread writes in the same phase
//    gives different results in ascending and descending order.
//  - __shared__ variables are static: one copy that every thread of every
//    block sees. Blocks run one after another, so that is a block's own
//    shared memory, except that it starts with what the previous block left
//    (on a GPU: undefined), which a kernel must not read anyway;
//  - atomics and fences: fibers switch only at barriers and shuffles, so an
//    atomicAdd is a plain read-modify-write, a fence a no-op, and blocks
//    that count themselves done see the last block last.
// What it does not emulate: the GPU's math library (expf, tanhf, exp, log,
// pow are the host's, a few ulp apart), its memory model (a missing fence is
// not seen), and timing.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cstddef>
#include <functional>

namespace ct_emu {

struct Dim3 {
    unsigned x = 0, y = 0, z = 0;
};

enum class Order { kAscending, kDescending };

// Runs kernel() once per thread of `grid` blocks of `threads` threads (1-D).
// Throws std::runtime_error naming the block and the stuck barrier when the
// threads cannot all finish.
void launch(unsigned grid, unsigned threads, const std::function<void()> &kernel, Order order = Order::kAscending);

// The running thread's coordinates (valid inside launch only).
const Dim3 &thread_idx();
const Dim3 &block_idx();
const Dim3 &block_dim();
const Dim3 &grid_dim();

void sync_threads();
// A warp exchange: returns (in out) what lane `src` passed as `mine`; a
// source outside the warp gives the caller's own value, as on the GPU.
void warp_exchange(unsigned mask, const void *mine, void *out, size_t bytes, int src);

template <typename T>
inline T shfl_xor(unsigned mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8, "a warp slot holds 8 bytes");
    T out;
    warp_exchange(mask, &v, &out, sizeof v, (int)(thread_idx().x & 31u) ^ lane_mask);
    return out;
}

template <typename T>
inline T shfl_down(unsigned mask, T v, unsigned delta) {
    static_assert(sizeof(T) <= 8, "a warp slot holds 8 bytes");
    T out;
    warp_exchange(mask, &v, &out, sizeof v, (int)(thread_idx().x & 31u) + (int)delta);
    return out;
}

}  // namespace ct_emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define threadIdx (::ct_emu::thread_idx())
#define blockIdx (::ct_emu::block_idx())
#define blockDim (::ct_emu::block_dim())
#define gridDim (::ct_emu::grid_dim())
#define __syncthreads() ::ct_emu::sync_threads()
#define __shfl_xor_sync(mask, v, off) ::ct_emu::shfl_xor((mask), (v), (off))
#define __shfl_down_sync(mask, v, delta) ::ct_emu::shfl_down((mask), (v), (delta))
#define __shared__ static
#define __threadfence()

static inline unsigned atomicAdd(unsigned *p, unsigned v) {
    const unsigned old = *p;
    *p = old + v;
    return old;
}
template <typename T>
static inline T __ldcg(const T *p) {
    return *p;
}

// Operations rounded on their own: the test targets build with
// -ffp-contract=off, so the host never fuses them either.
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline float __double2float_rn(double a) { return (float)a; }
static inline double __ull2double_rn(unsigned long long a) { return (double)a; }
static inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline long long __double_as_longlong(double d) {
    long long i;
    memcpy(&i, &d, sizeof i);
    return i;
}
static inline double __longlong_as_double(long long i) {
    double d;
    memcpy(&d, &i, sizeof d);
    return d;
}
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
static inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, sizeof i);
    return i;
}
