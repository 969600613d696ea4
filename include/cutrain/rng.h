/* Counter-based random numbers: every draw is a pure function of
 * (seed, stream, counter), so shuffles, dropout masks and initial weights do
 * not depend on thread scheduling, on the backend, or on how many draws came
 * before. The mixer is SplitMix64's finaliser applied twice with the key
 * folded in between; it passes BigCrush as a counter-mode generator and costs
 * a handful of multiplies, the same on host and device. */
#ifndef CUTRAIN_RNG_H
#define CUTRAIN_RNG_H

#include <stdint.h>

#if defined(__CUDACC__)
#define CT_HOSTDEV __host__ __device__ __forceinline__
#else
#define CT_HOSTDEV static inline
#endif

/* Streams: the top byte says what the numbers are for. */
#define CT_STREAM_SHUFFLE(epoch) ((1ull << 56) | (uint64_t)(epoch))
#define CT_STREAM_DROPOUT(step, layer) ((2ull << 56) | ((uint64_t)(step) << 8) | (uint64_t)(layer))
#define CT_STREAM_INIT(layer) ((3ull << 56) | (uint64_t)(layer))

CT_HOSTDEV uint64_t ct_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ct_rng_u64 split in two, for loops over counters of one (seed, stream):
 * the key once, then one mix per draw. */
CT_HOSTDEV uint64_t ct_rng_key(uint64_t seed, uint64_t stream) { return ct_mix64(seed ^ ct_mix64(stream)); }
CT_HOSTDEV uint64_t ct_rng_keyed_u64(uint64_t key, uint64_t counter) { return ct_mix64(key ^ counter); }

CT_HOSTDEV uint64_t ct_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    return ct_rng_keyed_u64(ct_rng_key(seed, stream), counter);
}

/* Uniform in [0, 1) with 24 random bits: exactly representable as float. */
CT_HOSTDEV float ct_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return (float)(ct_rng_u64(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n) by Lemire's multiply-shift (bias < n / 2^32). */
CT_HOSTDEV uint32_t ct_rng_below(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t n) {
    uint64_t r = ct_rng_u64(seed, stream, counter) >> 32;
    return (uint32_t)((r * (uint64_t)n) >> 32);
}

#endif
