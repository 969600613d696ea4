/* The per-epoch order. Each swap draws from its own counter (the position
 * i), so the order is a pure function of (seed, epoch, n): a resumed run
 * replays exactly the epoch it stopped in, and the CUDA build shuffles the
 * same way as the CPU build. */
#include "cutrain/data.h"
#include "cutrain/rng.h"

/* Indices are int32_t, so n must not exceed INT32_MAX; i + 1 then always
 * fits the uint32_t bound of ct_rng_below. */
void ct_shuffle_indices(int32_t *idx, size_t n, uint64_t seed, uint32_t epoch) {
    for (size_t i = 0; i < n; ++i) idx[i] = (int32_t)i;
    const uint64_t stream = CT_STREAM_SHUFFLE(epoch);
    for (size_t i = n; i-- > 1;) {
        size_t j = ct_rng_below(seed, stream, (uint64_t)i, (uint32_t)(i + 1));
        int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
