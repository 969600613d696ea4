/* Evaluation: forward passes in eval mode (dropout off) over a whole set,
 * summed on the backend and read back once. */
#include <math.h>

#include "cutrain/train.h"

void ct_evaluate(ct_model *m, const ct_device_data *d, double *loss, double *acc) {
    ct_backend *be = m->be;
    size_t n = d->ds.count;
    if (n == 0) {
        *loss = *acc = NAN;
        return;
    }
    be->ops->zero(be, m->eval_acc, 2 * sizeof(double));
    const ct_step_ctx start = {0, 0, 0, 0, 1};
    be->ops->upload(be, m->eval_ctx, &start, sizeof start);
    for (size_t off = 0; off < n; off += (size_t)m->max_rows) {
        int rows = (int)(n - off < (size_t)m->max_rows ? n - off : (size_t)m->max_rows);
        be->ops->gather_batch(be, &d->ds, d->order, (size_t)m->max_rows, m->eval_ctx, rows, m->x, m->labels);
        ct_model_forward(m, rows, 0, 0, m->eval_ctx);
        ct_model_loss(m, rows, 0);
        be->ops->loss_accumulate(be, rows, m->row_loss, m->row_correct, m->eval_acc);
        be->ops->step_advance(be, m->eval_ctx);
    }
    double host[2];
    be->ops->download(be, host, m->eval_acc, sizeof host);
    *loss = host[0] / (double)n;
    *acc = host[1] / (double)n;
}
