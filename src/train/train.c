/* The training loop. Nothing in the step synchronises with the host: the
 * step writes its record into a ring in backend memory and the host reads
 * the ring back every `drain_every` steps and at epoch end, then logs the
 * records and lets the health checks judge them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutrain/train.h"
#include "src/io/clock.h"
#include "src/train/train_internal.h"

ct_train_options ct_train_defaults(const ct_model_spec *spec) {
    ct_train_options o;
    memset(&o, 0, sizeof o);
    o.epochs = 1;
    o.batch_size = spec->batch_size;
    o.seed = 0;
    o.health = ct_health_defaults();
    o.exploding_grad_norm = 1e4;
    o.inject_nan_layer = -1;
    o.grad_stats = 1;
    o.evaluate = 1;
    o.drain_every = 32;
    return o;
}

uint64_t ct_steps_per_epoch(size_t n, int batch_size, int drop_last) {
    if (batch_size <= 0) return 0;
    size_t b = (size_t)batch_size;
    return drop_last ? n / b : (n + b - 1) / b;
}

int ct_train_plan_rows(size_t n, int batch_size) {
    const int rows = n < (size_t)batch_size ? (int)n : batch_size;
    return rows > 1000 ? rows : 1000;
}

uint64_t ct_samples_in_steps(size_t n, int batch_size, int drop_last, uint64_t steps) {
    const uint64_t spe = ct_steps_per_epoch(n, batch_size, drop_last);
    if (spe == 0) return 0;
    const uint64_t b = (uint64_t)batch_size, per_epoch = drop_last ? spe * b : (uint64_t)n;
    /* The steps into the last epoch are whole batches: only an epoch's last one is short. */
    return steps / spe * per_epoch + steps % spe * b;
}

/* The ring holds two halves of drain_every records. When a half is full the
 * host queues its copy into pinned memory and goes on queueing steps; it
 * reads a half only when the other half fills, by which time its copy has
 * long finished, so the device never waits for the host. */
typedef struct run {
    ct_model *m;
    const ct_train_options *opt;
    ct_logger *log;
    ct_health health;
    ct_optim_config optim;
    ct_health_thresholds th;   /* the flags' thresholds, from opt */
    ct_device_data train;      /* the dataset, or ...                    */
    const ct_data_source *src; /* ... a callback that fills host batches */
    float *stage_x;            /* src: host_alloc [batch, input] floats  */
    int32_t *stage_y;          /* src: host_alloc [batch] labels         */
    ct_step_record *ring;      /* backend memory, 2 * drain_every records */
    ct_step_record *host_ring; /* host_alloc memory, the same size        */
    uint32_t half;             /* drain_every                            */
    uint32_t slot;             /* next slot, mirrors ctx->slot           */
    int in_flight;             /* half whose copy is queued, -1 for none */
    uint32_t read_in_half;     /* records of the filling half already read (flush) */
    uint32_t read_in_flight;   /* ... and of the half in flight           */
    void *graph;               /* one captured full-batch step, or NULL  */
    int graph_tried;
    uint64_t full_steps;       /* full-batch steps queued so far         */
    uint64_t step;
    uint32_t epoch;            /* where the next step is: epoch ...      */
    uint64_t epoch_step;       /* ... and batch index within it          */
    uint64_t train_count;      /* the training set's size and CRC, for    */
    uint32_t train_crc;        /* checkpoints                             */
    uint64_t stop_step;        /* the step a health policy stopped at    */
    const char *test_path;     /* the test images file, for that message  */
    double train_seconds;      /* summed over epochs, evaluation excluded */
    int reached_target;        /* opt->target_acc reached                */
    int exit_code;
    unsigned phases;           /* CT_PHASE_* queued per step             */
    int timing_only;           /* records are not read (not every phase, or ops cut) */
    /* this epoch so far */
    double ep_loss, ep_correct;
    uint64_t ep_samples, ep_steps, ep_empty, ep_skipped;
    uint64_t ep_samples_before; /* of a resumed epoch: trained before the checkpoint, outside this run's clock */
} run;

/* With --on-nan stop the run ends at the failing step: the steps the
 * device ran after it (queued before the host could know) are not logged or
 * counted, and their weights are never saved. */
static void process(run *r, const ct_step_record *recs, uint32_t n) {
    if (r->timing_only) { /* records of a partial step: counted, not read */
        r->ep_steps += n;
        return;
    }
    for (uint32_t i = 0; i < n && !r->health.stop; ++i) {
        const ct_step_record *rec = &recs[i];
        ct_log_step(r->log, rec);
        r->ep_loss += rec->loss_sum;
        r->ep_correct += rec->correct;
        r->ep_samples += rec->batch_size;
        ++r->ep_steps;
        if (rec->flags & CT_FLAG_EMPTY_BATCH) ++r->ep_empty;
        if (rec->flags & CT_FLAG_SKIPPED_UPDATE) ++r->ep_skipped;
        ct_diagnosis diag[CT_HEALTH_MAX_DIAG];
        int nd = ct_health_observe(&r->health, rec, diag);
        for (int k = 0; k < nd; ++k) ct_log_diagnosis(r->log, &diag[k]);
        if (r->health.stop) r->stop_step = rec->step;
    }
    if (r->health.stop && r->exit_code == CT_EXIT_OK) r->exit_code = CT_EXIT_HEALTH_STOP;
}

static void process_in_flight(run *r) {
    if (r->in_flight < 0) return;
    ct_backend *be = r->m->be;
    be->ops->fence_wait(be, r->in_flight);
    process(r, r->host_ring + (size_t)r->in_flight * r->half + r->read_in_flight, r->half - r->read_in_flight);
    r->in_flight = -1;
}

/* After every step: when a half has just filled, queue its copy and read
 * the other half's records. */
static void after_step(run *r) {
    r->slot = (r->slot + 1) % (2 * r->half);
    if (r->slot % r->half != 0) return;
    ct_backend *be = r->m->be;
    int full = r->slot == 0 ? 1 : 0;
    size_t off = (size_t)full * r->half;
    be->ops->download_async(be, r->host_ring + off, r->ring + off, r->half * sizeof(ct_step_record));
    be->ops->fence(be, full);
    process_in_flight(r);
    r->in_flight = full;
    r->read_in_flight = r->read_in_half;
    r->read_in_half = 0;
}

/* Everything queued is read, in step order: at epoch end, and before a
 * checkpoint (which then waits for the device, as saving must anyway). */
static void drain_all(run *r) {
    process_in_flight(r);
    uint32_t first = (r->slot >= r->half ? r->half : 0) + r->read_in_half, n = r->slot - first;
    if (n == 0) return;
    ct_backend *be = r->m->be;
    be->ops->download(be, r->host_ring + first, r->ring + first, n * sizeof(ct_step_record));
    process(r, r->host_ring + first, n);
    r->read_in_half += n;
}

/* Fault injection (--inject-nan, --inject-kind): a NaN or an infinity
 * written over the first weight gradient of the chosen layer, or zeros over
 * its whole gradient, between backward and the statistics, so the whole
 * detection path runs as it would for a real divergence or a dead layer.
 * The upload waits for the device, once, at that step only. */
static void inject_nan(run *r) {
    ct_model *m = r->m;
    int layer = r->opt->inject_nan_layer >= 0 ? r->opt->inject_nan_layer : m->n_param_layers - 1;
    size_t begin = m->param_begin[layer], end = m->param_begin[layer + 1];
    if (r->opt->inject_kind == CT_INJECT_ZERO) {
        m->be->ops->zero(m->be, m->grads + begin, (end - begin) * sizeof(float));
        return;
    }
    const float v = r->opt->inject_kind == CT_INJECT_POS_INF   ? INFINITY
                    : r->opt->inject_kind == CT_INJECT_NEG_INF ? -INFINITY
                                                               : NAN;
    m->be->ops->upload(m->be, m->grads + begin, &v, sizeof v);
}

/* The ops of one step, as queued (or captured). */
static void queue_step(run *r, int rows, int inject) {
    ct_model *m = r->m;
    ct_backend *be = m->be;
    const ct_backend_ops *o = be->ops;
    uint64_t seed = r->opt->seed;
    const unsigned ph = r->phases;
    if (rows > 0) {
        /* A custom data source has filled x and labels already. */
        const ct_device_dataset *gather = !r->src && (ph & CT_PHASE_GATHER) ? &r->train.ds : NULL;
        const size_t stride = (size_t)r->opt->batch_size;
        const unsigned pass = CT_PHASE_FORWARD | CT_PHASE_LOSS | CT_PHASE_BACKWARD;
        if ((ph & pass) == pass) {
            /* one op for a dense chain, the gather included */
            ct_model_train_pass(m, gather, r->train.order, stride, rows, seed, m->ctx);
        } else {
            if (gather) o->gather_batch(be, gather, r->train.order, stride, m->ctx, rows, m->x, m->labels);
            if (ph & CT_PHASE_FORWARD) ct_model_forward(m, rows, 1, seed, m->ctx);
            if (ph & CT_PHASE_LOSS) ct_model_loss(m, rows, 1);
            if (ph & CT_PHASE_BACKWARD) ct_model_backward(m, rows, seed, m->ctx);
        }
    } else {
        o->zero(be, m->grads, m->n_params * sizeof(float));
    }
    if (inject) inject_nan(r);
    ct_stats_args a = {
        .grads = m->grads,
        .n = r->opt->grad_stats ? m->n_params : 0,
        .n_layers = r->opt->grad_stats ? (uint32_t)m->n_param_layers : 0,
        .layer_begin = m->param_begin,
        .row_loss = m->row_loss,
        .row_correct = m->row_correct,
        .rows = (uint32_t)rows,
        .th = r->th,
    };
    ct_optim_buffers buf = {m->params, m->grads, m->opt_state, m->opt_t, m->n_params};
    if ((ph & (CT_PHASE_STATS | CT_PHASE_UPDATE)) == (CT_PHASE_STATS | CT_PHASE_UPDATE)) {
        /* one op (one kernel for a small model on the GPU) */
        o->step_finish(be, &a, &r->optim, &buf, &r->th, m->ctx, r->ring);
        return;
    }
    if (ph & CT_PHASE_STATS) o->step_stats(be, &a, m->ctx, r->ring);
    if (ph & CT_PHASE_UPDATE) o->optimizer_step(be, &r->optim, &buf, &r->th, m->ctx, r->ring);
    o->step_advance(be, m->ctx);
}

/* Full batches replay one captured step where the backend can capture; a
 * backend that cannot (the CPU) runs the ops directly. The captured step
 * reads every per-step value from m->ctx, so the one graph serves them all.
 * The first full step runs directly, so that library and module first-use
 * (cuBLAS heuristics, lazy kernel loading) happens outside the capture. */
static void train_step(run *r, int rows) {
    ct_backend *be = r->m->be;
    int full = rows == r->opt->batch_size;
    if (r->step == r->opt->inject_nan_step) {
        queue_step(r, rows, 1); /* never captured: the injection is one step's */
        after_step(r);
        return;
    }
    if (full && r->full_steps++ >= 1 && !r->graph_tried && be->ops->capture_begin) {
        r->graph_tried = 1;
        ct_error err;
        ct_error_clear(&err);
        if (be->ops->capture_begin(be, &err) == 0) {
            queue_step(r, rows, 0);
            r->graph = be->ops->capture_end(be, &err);
        }
        if (!r->graph) ct_log_note(r->log, "running steps without a captured graph: %s", err.msg);
    }
    if (r->graph && full)
        be->ops->graph_launch(be, r->graph);
    else
        queue_step(r, rows, 0);
    after_step(r);
}

/* done and total count from the epoch's start; the rate and ETA from the
 * step this process began the epoch at (first: a resumed epoch's). */
static void show_progress(run *r, uint32_t epoch, uint64_t done, uint64_t total, uint64_t first, double t0) {
    /* Figures of the records read so far, which trail the queued steps. */
    double el = ct_now() - t0;
    double sps = el > 0 ? (double)(r->ep_samples - r->ep_samples_before) / el : 0;
    double eta = done > first ? el * (double)(total - done) / (double)(done - first) : 0;
    double n = r->ep_samples ? (double)r->ep_samples : NAN;
    ct_log_progress(r->log, epoch, (uint32_t)r->opt->epochs, done, total, r->ep_loss / n, r->ep_correct / n, sps,
                    eta);
}

static int interrupted(const run *r) { return r->opt->interrupt && *r->opt->interrupt; }

/* A custom source fills host memory; its batch is uploaded before the step
 * is queued (a host round trip per step, the price of a callback). Returns
 * the rows (0: an empty batch) or -1 with err set. */
static int fill_from_source(run *r, uint32_t epoch, uint64_t batch, ct_error *err) {
    const ct_data_source *src = r->src;
    ct_model *m = r->m;
    int max = r->opt->batch_size;
    int rows = src->next_batch(src->user, epoch, batch, max, r->stage_x, r->stage_y, err);
    if (rows < 0 || rows > max) {
        if (rows > max)
            ct_fail(err, CT_EXIT_BAD_INPUT, "data source %s: batch %llu has %d rows, more than the batch size %d",
                    src->name, (unsigned long long)batch, rows, max);
        else if (!err->code)
            ct_fail(err, CT_EXIT_BAD_INPUT, "data source %s: batch %llu failed", src->name,
                    (unsigned long long)batch);
        return -1;
    }
    /* A label the output cannot represent would reach the loss kernel as a
     * NaN row, and the run would stop blaming the learning rate: the same
     * error as a labels file's, naming the batch and row instead. */
    for (int i = 0; i < rows; ++i)
        if (r->stage_y[i] < 0 || r->stage_y[i] >= m->classes)
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "data source %s: batch %llu row %d: label %d is outside the model's %d classes", src->name,
                           (unsigned long long)batch, i, (int)r->stage_y[i], m->classes);
    if (rows > 0) {
        m->be->ops->upload(m->be, m->x, r->stage_x, (size_t)rows * (size_t)m->spec.input_dim * sizeof(float));
        m->be->ops->upload(m->be, m->labels, r->stage_y, (size_t)rows * sizeof(int32_t));
    }
    return rows;
}

/* Every batch of an epoch empty: the data, not the model, is the problem.
 * Only a whole epoch says so: one that --max-steps cut short after a few
 * empty batches has not seen the rest. */
static void check_empty_epoch(run *r, uint32_t epoch, uint64_t steps) {
    if (r->epoch_step != steps) return;
    if (r->ep_steps == 0 || r->ep_empty != r->ep_steps || r->exit_code != CT_EXIT_OK) return;
    ct_diagnosis d;
    memset(&d, 0, sizeof d);
    snprintf(d.code, sizeof d.code, "EMPTY_DATA");
    d.severity = "error";
    d.step = r->step;
    d.epoch = epoch;
    snprintf(d.message, sizeof d.message,
             "epoch %u: all %llu batches from the data source %s were empty, so nothing was trained; check that "
             "the source yields rows (its path, filter or split) before training.",
             epoch, (unsigned long long)r->ep_steps, r->src ? r->src->name : "the dataset");
    ct_log_diagnosis(r->log, &d);
    r->exit_code = CT_EXIT_HEALTH_STOP;
    r->stop_step = r->step;
}

/* Starts (or, after a resume, goes on with) an epoch at batch `first`; the
 * epoch's running sums are zero at its start and restored on a resume. */
static void start_epoch(run *r, uint32_t epoch, uint64_t first) {
    ct_backend *be = r->m->be;
    size_t n = r->train.ds.count;
    if (!r->src) {
        ct_shuffle_indices(r->train.host_order, n, r->opt->seed, epoch);
        be->ops->upload(be, r->train.order, r->train.host_order, n * sizeof(int32_t));
    }
    ct_step_ctx ctx = {r->step + 1, epoch, (uint32_t)first, 0, 2 * r->half};
    be->ops->upload(be, r->m->ctx, &ctx, sizeof ctx);
    r->slot = 0;
    r->in_flight = -1;
    r->read_in_half = r->read_in_flight = 0;
    r->epoch = epoch;
    r->epoch_step = first;
    if (first == 0) {
        r->ep_loss = r->ep_correct = 0;
        r->ep_samples = r->ep_steps = r->ep_empty = r->ep_skipped = 0;
    }
    r->ep_samples_before = r->ep_samples;
}

/* Where the run is, after every queued step's record has been read. */
static void capture_state(const run *r, ct_train_state *st) {
    memset(st, 0, sizeof *st);
    st->seed = r->opt->seed;
    st->step = r->step;
    st->epoch = r->epoch;
    st->epoch_steps = r->epoch_step;
    st->schedule_steps = r->optim.schedule.total_steps;
    st->batch_size = r->opt->batch_size;
    st->drop_last = r->opt->drop_last;
    st->train_count = r->train_count;
    st->train_crc = r->train_crc;
    st->ep_loss = r->ep_loss;
    st->ep_correct = r->ep_correct;
    st->ep_samples = r->ep_samples;
    st->ep_empty = r->ep_empty;
    st->ep_skipped = r->ep_skipped;
    st->train_seconds = r->train_seconds;
    st->health = r->health;
}

/* How the run ended, and what it was, for its summary record (the test
 * scores are the last epoch's, already in sum). */
static void end_summary(ct_run_summary *sum, const run *r, double t0, const char *status, int exit_code,
                        uint64_t steps) {
    sum->seconds = ct_now() - t0;
    sum->train_seconds = r->train_seconds;
    sum->steps = steps;
    sum->exit_code = exit_code;
    sum->status = status;
    sum->seed = r->opt->seed;
    sum->params = r->m->n_params;
    sum->model = r->m->spec.name;
    sum->device = r->opt->device_name ? r->opt->device_name : r->m->be->description;
}

/* The path was tried before training (a file made beside it and taken
 * away), so a write that fails now is the machine's doing (a full disk), a
 * runtime failure, whatever errno it met. */
static int save_checkpoint(run *r, ct_error *err) {
    ct_train_state st;
    capture_state(r, &st);
    if (ct_checkpoint_save(r->m, &st, r->opt->save_path, err) == 0) return 0;
    err->code = CT_EXIT_FAILURE;
    return -1;
}

/* A test loss that overflows while the training loss is finite: the test
 * set, not the training, holds inputs the model cannot take (the loss of
 * every step was finite, so no NONFINITE diagnosis has spoken). Said once.
 * Not after a non-finite step under --on-nan warn: its update let NaN into
 * the weights (a step's loss is taken before its update, so an epoch's last
 * such step leaves its training loss finite), NONFINITE_* has already said
 * so, and the test file is not the cause. */
static void check_test_loss(run *r, const ct_epoch_summary *e) {
    if (r->health.test_loss_said || isfinite(e->test_loss) || isnan(e->test_acc) || !isfinite(e->train_loss)) return;
    if (r->health.nonfinite_steps > 0 && !r->optim.skip_nonfinite) return;
    r->health.test_loss_said = 1;
    ct_diagnosis d;
    memset(&d, 0, sizeof d);
    snprintf(d.code, sizeof d.code, "NONFINITE_TEST_LOSS");
    d.severity = "warning";
    d.step = r->step;
    d.epoch = e->epoch;
    snprintf(d.message, sizeof d.message,
             "epoch %u: the test loss is NaN or Inf while the training loss is finite (%.4g): some items of %s "
             "overflow the model, typically values far outside the training set's range; check how that file "
             "was made and that it is scaled as the training set is.",
             e->epoch, e->train_loss, r->test_path && r->test_path[0] ? r->test_path : "the test set");
    ct_log_diagnosis(r->log, &d);
}

static void finish_epoch(run *r, uint32_t epoch, double train_s, const ct_device_data *test, ct_run_summary *sum) {
    ct_epoch_summary e;
    memset(&e, 0, sizeof e);
    e.epoch = epoch;
    e.steps = r->ep_steps;
    e.samples = r->ep_samples;
    e.train_loss = r->ep_samples ? r->ep_loss / (double)r->ep_samples : NAN;
    e.train_acc = r->ep_samples ? r->ep_correct / (double)r->ep_samples : NAN;
    e.seconds = train_s;
    /* A resumed epoch's seconds are this run's part of it: its rate counts
     * the samples of that part, not the ones trained before the checkpoint. */
    e.samples_per_s = train_s > 0 ? (double)(r->ep_samples - r->ep_samples_before) / train_s : 0;
    e.empty_batches = r->ep_empty;
    e.skipped_steps = r->ep_skipped;
    e.test_loss = e.test_acc = NAN;
    /* A stopped run's weights are not worth a test score; an interrupted or
     * step-limited one is: the user asked for it to end there. */
    r->train_seconds += train_s;
    if (r->exit_code != CT_EXIT_HEALTH_STOP && r->opt->evaluate && test) {
        double t1 = ct_now();
        ct_evaluate(r->m, test, &e.test_loss, &e.test_acc);
        e.eval_seconds = ct_now() - t1;
        sum->test_loss = e.test_loss;
        sum->test_acc = e.test_acc;
    }
    ct_log_epoch(r->log, &e, (uint32_t)r->opt->epochs);
    check_test_loss(r, &e);
    sum->epochs = epoch;
    if (r->opt->target_acc > 0 && e.test_acc >= r->opt->target_acc) r->reached_target = 1;
}

/* Trains one epoch; returns 0 to go on, 1 when training should end, -1 on
 * a data source's error (err set). */
static int train_epoch(run *r, uint32_t epoch, const ct_device_data *test, ct_run_summary *sum, ct_error *err) {
    const ct_train_options *opt = r->opt;
    size_t n = r->train.ds.count;
    uint64_t steps = r->src ? r->src->batches_per_epoch : ct_steps_per_epoch(n, opt->batch_size, opt->drop_last);
    uint64_t first = r->epoch == epoch ? r->epoch_step : 0; /* a resumed epoch goes on where it was */
    /* Stopped before this epoch's first step: no record of an epoch that
     * never started, and no test evaluation for it. */
    if (first == 0 && interrupted(r)) {
        r->exit_code = CT_EXIT_INTERRUPTED;
        return 1;
    }
    start_epoch(r, epoch, first);
    /* Where --max-steps ends this epoch, so the progress line's count and ETA aim there. */
    uint64_t end = steps;
    if (opt->max_steps && opt->max_steps > r->step && opt->max_steps - r->step < steps - first)
        end = first + (opt->max_steps - r->step);
    double t0 = ct_now(), last_shown = t0;
    for (uint64_t k = first; k < steps; ++k) {
        if (interrupted(r)) {
            r->exit_code = CT_EXIT_INTERRUPTED;
            break;
        }
        if (opt->max_steps && r->step >= opt->max_steps) break;
        size_t row0 = k * (size_t)opt->batch_size;
        int rows = (int)(n - row0 < (size_t)opt->batch_size ? n - row0 : (size_t)opt->batch_size);
        if (r->src && (rows = fill_from_source(r, epoch, k, err)) < 0) {
            /* The steps already queued are logged and judged first: the
             * log holds every step the summary counts, and their diagnoses.
             * One of them stopping the run came first: it is the outcome,
             * and the batch it never needed does not matter. */
            drain_all(r);
            if (!r->health.stop) return -1;
            ct_error_clear(err);
            break;
        }
        ++r->step;
        train_step(r, rows);
        r->epoch_step = k + 1;
        if (r->exit_code != CT_EXIT_OK) break;
        if (opt->save_every && opt->save_path && r->step % opt->save_every == 0) {
            drain_all(r);
            if (r->health.stop) {
                if (r->exit_code == CT_EXIT_OK) r->exit_code = CT_EXIT_HEALTH_STOP;
                break;
            }
            if (save_checkpoint(r, err)) return -1;
        }
        if (r->slot % r->half == 0 && ct_now() - last_shown > 0.25) {
            show_progress(r, epoch, k + 1, end, first, t0);
            last_shown = ct_now();
        }
    }
    drain_all(r);
    r->m->be->ops->sync(r->m->be);
    double train_s = ct_now() - t0;
    check_empty_epoch(r, epoch, steps);
    finish_epoch(r, epoch, train_s, test, sum);
    /* A log that can no longer be written (a full disk) ends the run at this
     * epoch rather than after every epoch left: the weights so far go to
     * --save, which a run resumed with room to log goes on from. */
    if (ct_logger_failed(r->log, err)) {
        if (r->exit_code != CT_EXIT_HEALTH_STOP && opt->save_path) {
            ct_error ignored; /* the log's failure is the one to report; a failed save keeps the old file */
            ct_error_clear(&ignored);
            (void)save_checkpoint(r, &ignored);
        }
        return -1;
    }
    if (r->epoch_step == steps) { /* done: the run's position is the next epoch's start */
        r->epoch = epoch + 1;
        r->epoch_step = 0;
        r->ep_loss = r->ep_correct = 0;
        r->ep_samples = r->ep_steps = r->ep_empty = r->ep_skipped = 0;
    }
    /* A stop that came after the last step (during the test evaluation or a
     * checkpoint write) ends the run here, at this epoch's end. */
    if (r->exit_code == CT_EXIT_OK && interrupted(r)) r->exit_code = CT_EXIT_INTERRUPTED;
    return r->exit_code != CT_EXIT_OK || (opt->max_steps && r->step >= opt->max_steps) || r->reached_target;
}

/* What "chance" is for this run's loss: for cross-entropy, the entropy of
 * the training labels' frequencies (a model that learnt only those scores
 * it), so that three classes in a ten-way output, or a ten-class set in a
 * wider output, are judged against the right level; without the labels (a
 * data source), ln(classes). MSE has no such level here: the check is off.
 * Derived from the data, never saved: a resume recomputes the same value. */
static void set_chance(ct_health *h, const ct_model *m, const ct_dataset *train) {
    if (m->spec.loss != CT_LOSS_XENT) {
        h->chance_loss = 0;
        return;
    }
    if (!train) return;
    h->chance_loss = ct_dataset_label_entropy(train);
    snprintf(h->chance_what, sizeof h->chance_what, "the entropy of the training labels' frequencies");
}

/* What a run is asked to do, checked before any work: a library caller
 * fills the options and sets by hand, and the command's own checks (which
 * name its flags, before any log is opened) do not cover them. */
static int check_request(const ct_model *m, const ct_dataset *train, const ct_data_source *src,
                         const ct_dataset *test, const ct_train_options *opt, const ct_logger *log,
                         const ct_run_summary *sum, ct_error *err) {
    if (!m || !m->be || !opt || !log || !sum || (!train && !src))
        return ct_fail(err, CT_EXIT_USAGE,
                       "train: the model (built), the training data, the options, a logger (ct_logger_open; quiet "
                       "with no paths for none) and a summary are required");
    /* A batch holds at most the whole training set (a data source's, the batch size). */
    const size_t fills = train && train->count < (size_t)opt->batch_size ? train->count : (size_t)opt->batch_size;
    if (opt->batch_size <= 0 || fills > (size_t)m->max_rows)
        return ct_fail(err, CT_EXIT_USAGE, "batch size %d does not fit the model's planned %d rows", opt->batch_size,
                       m->max_rows);
    /* Options zeroed rather than taken from ct_train_defaults: a run of no
     * epochs would "complete" having done nothing. */
    if (opt->epochs < 1)
        return ct_fail(err, CT_EXIT_USAGE, "epochs must be at least 1 (got %d; ct_train_defaults sets 1)",
                       opt->epochs);
    /* The shuffle and dropout derive from the seed: another one would not
     * go on with the run the checkpoint holds. */
    if (opt->resume && opt->resume->seed != opt->seed)
        return ct_fail(err, CT_EXIT_USAGE, "resume: the checkpoint was written by a run with seed %llu, not %llu",
                       (unsigned long long)opt->resume->seed, (unsigned long long)opt->seed);
    /* epochs and max_steps count the whole run, across resumes: limits the
     * checkpoint is already past would end the run at once, "completed"
     * with nothing done. */
    if (opt->resume) {
        const ct_train_state *st = opt->resume;
        const uint32_t least = st->epoch_steps ? st->epoch : st->epoch - 1;
        if ((uint32_t)opt->epochs < least)
            return ct_fail(err, CT_EXIT_USAGE,
                           "resume: epochs %d, but the checkpoint is %s epoch %u already (epochs counts the whole run)",
                           opt->epochs, st->epoch_steps ? "in" : "past", least);
        if (opt->max_steps && opt->max_steps < st->step)
            return ct_fail(err, CT_EXIT_USAGE,
                           "resume: max_steps %llu, but the checkpoint is at step %llu already (max_steps counts the "
                           "steps of the whole run)",
                           (unsigned long long)opt->max_steps, (unsigned long long)st->step);
    }
    if (opt->drain_every <= 0 || opt->drain_every > (1 << 20))
        return ct_fail(err, CT_EXIT_USAGE, "drain interval must be 1 to %d steps", 1 << 20);
    if (opt->inject_nan_layer >= m->n_param_layers)
        return ct_fail(err, CT_EXIT_USAGE, "inject_nan_layer %d: the model has %d layers with parameters",
                       opt->inject_nan_layer, m->n_param_layers);
    /* No test set is no evaluation, so a target accuracy would never be
     * reached: the run would go on to its last epoch without a word. */
    if (opt->target_acc > 0 && (!opt->evaluate || !test || test->count == 0))
        return ct_fail(err, CT_EXIT_USAGE, "target accuracy %g needs the test evaluation (%s)", opt->target_acc,
                       !test ? "no test set was given" : test->count ? "evaluate is off" : "the test set is empty");
    if (train && ct_steps_per_epoch(train->count, opt->batch_size, opt->drop_last) == 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: %zu items make no batch of %d%s: there is nothing to train on", train->images_path,
                       train->count, opt->batch_size, opt->drop_last ? " with drop_last" : "");
    /* The CLI refuses such sets when it loads the files; a set handed to
     * the API is checked here, or a label past the output would have its NaN
     * rows blamed on the rate, and an item of another width be read with the
     * model's stride. */
    if ((train && ct_train_check_set(train, &m->spec, err)) || (test && ct_train_check_set(test, &m->spec, err)))
        return -1;
    return 0;
}

static int run_training(ct_model *m, const ct_dataset *train, const ct_data_source *src, const ct_dataset *test,
                        const ct_train_options *opt, ct_logger *log, ct_run_summary *sum, ct_error *err) {
    /* err may be NULL; the steps below, and a data source's callback, write one. */
    ct_error local;
    if (!err) {
        ct_error_clear(&local);
        err = &local;
    }
    if (check_request(m, train, src, test, opt, log, sum, err)) return -1;
    ct_backend *be = m->be;
    run r;
    memset(&r, 0, sizeof r);
    r.m = m;
    r.opt = opt;
    r.log = log;
    r.src = src;
    r.test_path = test ? test->images_path : NULL;
    r.graph_tried = src != NULL; /* a source's upload cannot be part of a replayed graph */
    r.half = (uint32_t)opt->drain_every;
    r.in_flight = -1;
    r.phases = opt->phases ? opt->phases & CT_PHASE_ALL : CT_PHASE_ALL;
    r.timing_only = r.phases != CT_PHASE_ALL || opt->timing_only;
    r.optim = m->spec.optim;
    /* stop and skip both keep the last good weights; only warn lets NaN in. */
    r.optim.skip_nonfinite = opt->health.on_nan != CT_ON_NAN_WARN;
    if (r.optim.schedule.total_steps == 0) {
        /* A schedule spans the run unless it says otherwise. */
        uint64_t per_epoch = src ? src->batches_per_epoch
                                 : ct_steps_per_epoch(train->count, opt->batch_size, opt->drop_last);
        uint64_t total = per_epoch * (uint64_t)opt->epochs;
        r.optim.schedule.total_steps = opt->max_steps && opt->max_steps < total ? opt->max_steps : total;
    }
    r.th.vanishing_update_ratio = opt->health.vanishing_ratio;
    r.th.exploding_grad_norm = opt->exploding_grad_norm;
    ct_train_health_init(m, opt, &r.health);
    r.epoch = 1;
    if (train) {
        r.train_count = train->count;
        r.train_crc = ct_dataset_crc32(train);
    }
    if (opt->resume) {
        const ct_train_state *st = opt->resume;
        r.step = st->step;
        r.epoch = st->epoch;
        r.epoch_step = st->epoch_steps;
        const ct_schedule_kind sk = r.optim.schedule.kind;
        if ((sk == CT_SCHED_COSINE || sk == CT_SCHED_ONECYCLE) && st->schedule_steps != r.optim.schedule.total_steps)
            ct_log_note(log,
                        "--resume: the checkpoint's %s schedule spans %llu steps and keeps that length (this run's "
                        "settings would make it %llu): past step %llu the learning rate stays at the schedule's last "
                        "value",
                        sk == CT_SCHED_COSINE ? "cosine" : "one-cycle", (unsigned long long)st->schedule_steps,
                        (unsigned long long)r.optim.schedule.total_steps, (unsigned long long)st->schedule_steps);
        r.optim.schedule.total_steps = st->schedule_steps;
        r.ep_loss = st->ep_loss;
        r.ep_correct = st->ep_correct;
        r.ep_samples = st->ep_samples;
        r.ep_steps = st->epoch_steps;
        r.ep_empty = st->ep_empty;
        r.ep_skipped = st->ep_skipped;
        r.train_seconds = st->train_seconds;
        r.health = st->health;
    }
    set_chance(&r.health, m, train);
    /* The schedule as this run applies it: its span is known only now. */
    r.health.schedule = r.optim.schedule;

    ct_device_data dtest;
    memset(&dtest, 0, sizeof dtest);
    size_t ring_bytes = 2 * (size_t)r.half * sizeof(ct_step_record);
    size_t batch = (size_t)opt->batch_size;
    int rc = -1;
    if (!(r.ring = be->ops->alloc(be, ring_bytes, err)) || !(r.host_ring = be->ops->host_alloc(be, ring_bytes, err)))
        goto out;
    if (src && (!(r.stage_x = be->ops->host_alloc(be, batch * (size_t)m->spec.input_dim * sizeof(float), err)) ||
                !(r.stage_y = be->ops->host_alloc(be, batch * sizeof(int32_t), err))))
        goto out;
    if ((train && ct_device_data_upload(be, train, &r.train, err)) ||
        (test && ct_device_data_upload(be, test, &dtest, err)))
        goto out;

    /* A run that is not a resume starts at step 1, epoch 1 and its
     * schedule's start, so the optimizer starts from zero too, whatever an
     * earlier run on this model left: moments carried into a restarted
     * count would mix two runs, and a checkpoint of this run would hold
     * more updates than steps, which a resume refuses. */
    if (!opt->resume) {
        const int slots = ct_optim_state_slots(&m->spec.optim);
        if (slots) be->ops->zero(be, m->opt_state, (size_t)slots * m->n_params * sizeof(float));
        be->ops->zero(be, m->opt_t, sizeof(uint64_t));
    }
    memset(sum, 0, sizeof *sum);
    sum->test_loss = sum->test_acc = NAN;
    double t0 = ct_now();
    for (int epoch = (int)r.epoch; epoch <= opt->epochs; ++epoch) {
        /* A run resumed at its step limit has nothing left to do, unless
         * it stopped mid-epoch: then that epoch is still finished and logged. */
        if (opt->max_steps && r.step >= opt->max_steps && r.epoch_step == 0) break;
        int end = train_epoch(&r, (uint32_t)epoch, test ? &dtest : NULL, sum, err);
        if (end < 0) goto failed;
        if (end) break;
    }
    end_summary(sum, &r, t0,
                r.exit_code == CT_EXIT_OK            ? "completed"
                : r.exit_code == CT_EXIT_HEALTH_STOP ? "stopped"
                                                     : "interrupted",
                r.exit_code, r.exit_code == CT_EXIT_HEALTH_STOP ? r.stop_step : r.step);
    /* The final checkpoint comes before the summary, whose status says
     * whether the run ended with its checkpoint written. */
    if (opt->save_path && r.exit_code != CT_EXIT_HEALTH_STOP && save_checkpoint(&r, err)) goto failed;
    if (ct_log_summary(log, sum, err) && r.exit_code == CT_EXIT_OK) {
        sum->status = "failed"; /* as the record says: the terminal's lines were lost */
        sum->exit_code = CT_EXIT_FAILURE;
        goto out; /* rc -1, err set */
    }
    rc = r.exit_code;
    goto out;
failed:
    /* A checkpoint that could not be written, or a data source's error:
     * the log still ends with a summary, which says so. */
    end_summary(sum, &r, t0, "failed", err->code, r.step);
    ct_error ignored; /* the failure already in err is the one to report */
    ct_error_clear(&ignored);
    ct_log_summary(log, sum, &ignored);
out:
    if (r.graph) be->ops->graph_destroy(be, r.graph);
    ct_device_data_free(be, &dtest);
    ct_device_data_free(be, &r.train);
    if (r.ring) be->ops->free(be, r.ring);
    if (r.host_ring) be->ops->host_free(be, r.host_ring);
    if (r.stage_x) be->ops->host_free(be, r.stage_x);
    if (r.stage_y) be->ops->host_free(be, r.stage_y);
    return rc;
}

void ct_train_health_init(const ct_model *m, const ct_train_options *opt, ct_health *h) {
    char names[CT_MAX_PARAM_LAYERS][32];
    for (int i = 0; i < m->n_param_layers; ++i) memcpy(names[i], m->layers[m->param_layer[i]].spec.name, 32);
    ct_health_init(h, &opt->health, m->spec.optim.lr, ct_optim_kind_name(m->spec.optim.kind), m->classes,
                   m->n_param_layers, (const char(*)[32])names);
    h->clip_norm = m->spec.optim.clip_norm;
    ct_health_set_optimizer(h, &m->spec.optim);
}

int ct_train(ct_model *m, const ct_dataset *train, const ct_dataset *test, const ct_train_options *opt,
             ct_logger *log, ct_run_summary *sum, ct_error *err) {
    return run_training(m, train, NULL, test, opt, log, sum, err);
}

int ct_train_source(ct_model *m, const ct_data_source *src, const ct_dataset *test, const ct_train_options *opt,
                    ct_logger *log, ct_run_summary *sum, ct_error *err) {
    if (!src || !src->next_batch || !src->name)
        return ct_fail(err, CT_EXIT_USAGE, "data source: a name and a next_batch callback are required");
    if (src->batches_per_epoch == 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "data source %s: 0 batches per epoch: there is nothing to train on",
                       src->name);
    return run_training(m, NULL, src, test, opt, log, sum, err);
}
