/* Step statistics: one pass over the gradient arena and the per-row losses.
 *
 *   loss_sum   = sum_r row_loss[r]           correct = sum_r row_correct[r]
 *   grad_sumsq = sum_{i : g_i finite} g_i^2  grad_max_abs = max_{finite} |g_i|
 *   nonfinite_count = #{i : g_i NaN or Inf}  zero_count = #{i : g_i == 0}
 * and the same sum of squares, non-finite count and "all exactly zero" test
 * per parametric layer, where layer l spans [layer_begin[l], layer_begin[l+1]).
 *
 * Non-finite elements are counted but kept out of the sums so that one NaN
 * does not hide the magnitude of everything else: the norm is still useful
 * for diagnosing what went wrong. Accumulation is in double (a float sum over
 * ~10^6 squares drops the small terms) and in a fixed order: each range is
 * reduced in 8 lanes (reduce_lanes.h; the AVX2 twin gives the same bits),
 * and the range partials are added in arena order, so the record is
 * bit-identical for a given input, with or without AVX2.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/reduce_lanes.h"

/* One contiguous range of the arena, in lanes (reduce_lanes.h). */
typedef struct {
    ct_grad_partial r;
    size_t count;
} grad_partial;

static grad_partial reduce_range(const float *g, size_t lo, size_t hi) {
    grad_partial p = {{0.0, 0.0, 0, 0}, 0};
    if (hi <= lo) return p;
    p.r = cpu_grad_partial(g + lo, hi - lo);
    p.count = hi - lo;
    return p;
}

static void add_partial(ct_step_record *rec, const grad_partial *p) {
    rec->grad_sumsq += p->r.sumsq;
    if (p->r.max_abs > rec->grad_max_abs) rec->grad_max_abs = p->r.max_abs;
    rec->nonfinite_count += p->r.nonfinite;
    rec->zero_count += p->r.zeros;
}

/* Clamped so that a malformed offset table cannot read past the arena. */
static size_t clamp_offset(size_t off, size_t lo, size_t n) {
    if (off < lo) return lo;
    return off > n ? n : off;
}

/* Walks the arena once: the stretch before the first layer, each layer, and
 * the stretch after the last. Elements outside every layer still count toward
 * the totals because they are still parameters the optimizer will move. */
static void reduce_grads(const ct_stats_args *a, ct_step_record *rec) {
    const uint32_t n_layers = a->layer_begin ? a->n_layers : 0;
    if (n_layers == 0) {
        grad_partial all = reduce_range(a->grads, 0, a->n);
        add_partial(rec, &all);
        return;
    }
    size_t pos = clamp_offset(a->layer_begin[0], 0, a->n);
    grad_partial head = reduce_range(a->grads, 0, pos);
    add_partial(rec, &head);
    for (uint32_t l = 0; l < n_layers; ++l) {
        const size_t end = clamp_offset(a->layer_begin[l + 1], pos, a->n);
        grad_partial p = reduce_range(a->grads, pos, end);
        add_partial(rec, &p);
        /* Layers past the record's capacity still count in the totals. */
        if (l < CT_MAX_PARAM_LAYERS) {
            rec->layer_grad_sumsq[l] = p.r.sumsq;
            rec->layer_nonfinite[l] = (uint32_t)p.r.nonfinite;
            if (p.count > 0 && p.r.zeros == p.count) rec->layer_zero_all |= 1u << l;
        }
        pos = end;
    }
    grad_partial tail = reduce_range(a->grads, pos, a->n);
    add_partial(rec, &tail);
}

/* Returns 1 when some row's loss is NaN or Inf. */
static int reduce_rows(const ct_stats_args *a, ct_step_record *rec) {
    int bad = 0;
    for (uint32_t r = 0; r < a->rows; ++r) {
        const float l = a->row_loss[r];
        if (!isfinite(l)) bad = 1;
        rec->loss_sum += (double)l;
        rec->correct += (double)a->row_correct[r];
    }
    return bad;
}

static uint32_t grad_flags(const ct_stats_args *a, const ct_step_record *rec) {
    uint32_t f = 0;
    if (rec->nonfinite_count > 0) f |= CT_FLAG_NONFINITE_GRAD;
    if (rec->layer_zero_all) f |= CT_FLAG_ZERO_GRAD;
    if (a->th.exploding_grad_norm > 0.0 && sqrt(rec->grad_sumsq) > a->th.exploding_grad_norm)
        f |= CT_FLAG_EXPLODING_GRAD;
    return f;
}

void cpu_step_stats(ct_backend *b, const ct_stats_args *a, const ct_step_ctx *ctx, ct_step_record *ring) {
    ct_step_record *rec = ring + ctx->slot;
    (void)b;
    memset(rec, 0, sizeof *rec);
    rec->clip_scale = 1.0;
    rec->step = ctx->step;
    rec->epoch = ctx->epoch;
    rec->batch_size = a->rows;
    rec->n_layers = a->n_layers < CT_MAX_PARAM_LAYERS ? a->n_layers : CT_MAX_PARAM_LAYERS;

    const int bad_row = reduce_rows(a, rec);
    if (bad_row || !isfinite(rec->loss_sum)) rec->flags |= CT_FLAG_NONFINITE_LOSS;

    reduce_grads(a, rec);
    /* An empty batch produced no gradient, so an all-zero arena there says
     * nothing about dead layers; reporting it would be a false alarm. */
    if (a->rows == 0) {
        rec->layer_zero_all = 0;
        rec->flags |= CT_FLAG_EMPTY_BATCH;
    }
    rec->flags |= grad_flags(a, rec);
}
