/* Times the CPU backend's step tail, the two passes over the whole parameter
 * arena after the backward pass: the step statistics (`step_stats`) and the
 * optimizer (`optimizer_step`, with its update accounting), on an arena laid
 * out like a preset's (mlp by default).
 *
 *   build/cpu_step_tail [mlp|seed|cnn] [calls]
 *
 * Gradients are fresh random normals (a few exact zeros, no NaN); each figure
 * is the median and the minimum over `calls` calls (default 300) after 20
 * untimed ones, in microseconds. Only the backend vtable is used, so the
 * same file builds against any earlier commit for a before/after figure
 * (benchmarks/NOTES.md). Set CUTRAIN_CPU_SIMD=generic for the reference
 * twins.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cutrain/backend.h"
#include "cutrain/optim.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* xorshift + Box-Muller: no dependence on the C library's rand(). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float normal(float sd) {
    return (float)(sd * sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "mlp";
    const int calls = argc > 2 ? atoi(argv[2]) : 300;
    /* Parameter counts per layer (weight + bias), as the presets build them. */
    size_t mlp[] = {784 * 512 + 512, 512 * 512 + 512, 512 * 10 + 10};
    size_t seed[] = {784 * 10 + 10, 10 * 10 + 10};
    size_t cnn[] = {32 * 9 + 32, 64 * 32 * 9 + 64, 9216 * 128 + 128, 128 * 10 + 10};
    size_t *layers = mlp, n_layers = 3, rows = 128;
    if (strcmp(model, "seed") == 0) layers = seed, n_layers = 2, rows = 32;
    else if (strcmp(model, "cnn") == 0) layers = cnn, n_layers = 4, rows = 64;
    else if (strcmp(model, "mlp") != 0 || calls < 1) {
        fprintf(stderr, "usage: cpu_step_tail [mlp|seed|cnn] [calls >= 1]\n");
        return 2;
    }
    size_t begin[8] = {0}, n = 0;
    for (size_t l = 0; l < n_layers; ++l) begin[l + 1] = n += layers[l];

    ct_error err;
    ct_error_clear(&err);
    ct_backend *b = ct_backend_cpu_create(1, &err);
    if (!b) {
        fprintf(stderr, "cpu_step_tail: %s\n", err.msg);
        return 1;
    }
    ct_optim_config cfg = ct_optim_defaults(CT_OPT_ADAM);
    const int slots = ct_optim_state_slots(&cfg);
    float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g), *state = calloc((size_t)slots * n, sizeof *state);
    float *row_loss = malloc(rows * sizeof *row_loss), *row_correct = malloc(rows * sizeof *row_correct);
    double *t_stats = malloc((size_t)calls * sizeof *t_stats), *t_opt = malloc((size_t)calls * sizeof *t_opt);
    if (!w || !g || !state || !row_loss || !row_correct || !t_stats || !t_opt) {
        fprintf(stderr, "cpu_step_tail: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; ++i) {
        w[i] = normal(0.05f);
        g[i] = i % 97 == 0 ? 0.0f : normal(1e-3f);
    }
    for (size_t r = 0; r < rows; ++r) row_loss[r] = 0.5f + (float)uniform(), row_correct[r] = (float)(r % 2);

    ct_step_record ring[2];
    uint64_t t = 0;
    ct_stats_args a;
    memset(&a, 0, sizeof a);
    a.grads = g, a.n = n, a.n_layers = (uint32_t)n_layers, a.layer_begin = begin;
    a.row_loss = row_loss, a.row_correct = row_correct, a.rows = (uint32_t)rows;
    const ct_optim_buffers buf = {w, g, state, &t, n};
    for (int c = -20; c < calls; ++c) {
        ct_step_ctx ctx = {(uint64_t)(c + 21), 1, 0, (uint32_t)((c + 20) % 2), 2};
        const double t0 = now_us();
        b->ops->step_stats(b, &a, &ctx, ring);
        const double t1 = now_us();
        b->ops->optimizer_step(b, &cfg, &buf, &a.th, &ctx, ring);
        const double t2 = now_us();
        if (c >= 0) t_stats[c] = t1 - t0, t_opt[c] = t2 - t1;
    }
    qsort(t_stats, (size_t)calls, sizeof *t_stats, by_value);
    qsort(t_opt, (size_t)calls, sizeof *t_opt, by_value);
    printf("%s: %zu parameters, %d calls: step_stats median %.1f us (min %.1f), "
           "optimizer_step (adam) median %.1f us (min %.1f); grad_norm %.9g\n",
           model, n, calls, t_stats[calls / 2], t_stats[0], t_opt[calls / 2], t_opt[0], sqrt(ring[0].grad_sumsq));
    ct_backend_destroy(b);
    return 0;
}
