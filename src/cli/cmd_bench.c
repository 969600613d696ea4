/* cutrain bench: step throughput (median and spread of repeated timed runs,
 * with the step statistics on and off in the same process) and time to a
 * test accuracy over several seeds. Times are the training loop's own
 * (monotonic clock around the queued steps and the final device sync),
 * evaluation excluded, as the speed records count them. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/cli/common.h"
#include "src/io/atomic_file.h"
#include "src/io/clock.h"
#include "src/train/op_window.h"

#define USAGE                                                                                          \
    "usage: cutrain bench [--model PRESET|FILE] [--data DIR] [--device auto|cpu|cuda] [options]\n\n"  \
    "Times --repeats runs of --steps training steps after --warmup steps, with the step statistics\n" \
    "on and off, and reports the median and spread of samples/s; --epochs N also times whole\n"       \
    "epochs; --time-to-accuracy A trains --seeds models until the test accuracy reaches A."

typedef struct bench_flags {
    const char *model, *data, *device, *optimizer, *loss, *json, *log_jsonl, *save_init;
    int threads, batch_size, steps, warmup, repeats, epochs, seeds, max_epochs, quiet, phases, ops;
    uint64_t seed;
    double lr, tta;
} bench_flags;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct bench_ctx {
    ct_model *m;
    const ct_dataset *train, *test;
    ct_logger *log;
    ct_train_options base;
    uint64_t steps;       /* trained by every run so far, for the --log-jsonl summary */
    uint32_t epochs;
    double train_seconds;
} bench_ctx;

/* Counts a run's steps, epochs and training time toward the log's summary;
 * -1 with err set when the run was interrupted (no figure then). */
static int tally(bench_ctx *c, const ct_run_summary *sum, int rc, ct_error *err) {
    c->steps += sum->steps;
    c->epochs += sum->epochs;
    c->train_seconds += sum->train_seconds;
    if (rc == CT_EXIT_INTERRUPTED) return ct_fail(err, CT_EXIT_INTERRUPTED, "bench: interrupted: no figure to give");
    return 0;
}

/* Training seconds of one run with options o, evaluation off. A run of
 * max_steps gets the epochs that hold them: a figure is computed from the
 * steps asked for, so they must all run (a small data set once capped them). */
static int timed(bench_ctx *c, ct_train_options o, double *seconds, ct_error *err) {
    o.evaluate = 0;
    if (o.max_steps) {
        uint64_t spe = ct_steps_per_epoch(c->train->count, o.batch_size, o.drop_last);
        if (spe == 0) spe = 1; /* refused before (a batch the data cannot fill); no division by 0 here */
        const uint64_t need = o.max_steps / spe + 1;
        if (need > 1000000)
            return ct_fail(err, CT_EXIT_USAGE, "bench: %llu steps are %llu epochs of this data; at most 1000000",
                           (unsigned long long)o.max_steps, (unsigned long long)need);
        o.epochs = (int)need;
    }
    ct_run_summary sum;
    int rc = ct_train(c->m, c->train, c->test, &o, c->log, &sum, err);
    if (rc < 0) return -1;
    if (tally(c, &sum, rc, err)) return -1;
    if (rc == CT_EXIT_HEALTH_STOP)
        return ct_fail(err, CT_EXIT_HEALTH_STOP,
                       "bench: a health policy stopped the timed run (the diagnosis above says why): no figure to give");
    if (rc != CT_EXIT_OK) return ct_fail(err, CT_EXIT_FAILURE, "bench: the timed run ended with status %s", sum.status);
    if (o.max_steps && sum.steps != o.max_steps)
        return ct_fail(err, CT_EXIT_FAILURE, "bench: a timed run of %llu steps ran %llu", (unsigned long long)o.max_steps,
                       (unsigned long long)sum.steps);
    *seconds = sum.train_seconds;
    return 0;
}

/* Training seconds of one run of `steps` steps (or `epochs` whole epochs),
 * queueing the CT_PHASE_* parts in `phases` of each step (0: all). */
static int timed_run_phases(bench_ctx *c, uint64_t steps, int epochs, int grad_stats, unsigned phases,
                            double *seconds, ct_error *err) {
    ct_train_options o = c->base;
    o.phases = phases;
    o.max_steps = steps;
    o.epochs = epochs;
    o.grad_stats = grad_stats;
    return timed(c, o, seconds, err);
}

static int timed_run(bench_ctx *c, uint64_t steps, int epochs, int grad_stats, double *seconds, ct_error *err) {
    return timed_run_phases(c, steps, epochs, grad_stats, 0, seconds, err);
}

/* Where a step's time goes: runs that queue the first k parts of a step for
 * k = 1..6 (CT_PHASE_* order), each --repeats times; a part's cost is the
 * difference of the medians with and without it. The parts overlap nothing
 * on one stream, so the differences add up to the whole step. */
static const struct {
    const char *name;
    unsigned bit;
} k_phases[] = {{"gather", CT_PHASE_GATHER},     {"forward", CT_PHASE_FORWARD},
                {"loss", CT_PHASE_LOSS},         {"backward", CT_PHASE_BACKWARD},
                {"statistics", CT_PHASE_STATS},  {"update", CT_PHASE_UPDATE}};
#define N_PHASES (int)(sizeof k_phases / sizeof k_phases[0])

static int phase_times(bench_ctx *c, const bench_flags *f, const ct_model_spec *spec, FILE *j, ct_error *err) {
    double cum[N_PHASES], t[N_PHASES][64];
    /* Round after round over every k, so drift in the machine's speed hits each k alike. */
    for (int r = 0; r < f->repeats; ++r) {
        unsigned mask = 0;
        for (int k = 0; k < N_PHASES; ++k) {
            mask |= k_phases[k].bit;
            if (timed_run_phases(c, (uint64_t)f->steps, 1000, 1, mask, &t[k][r], err)) return -1;
        }
    }
    for (int k = 0; k < N_PHASES; ++k) cum[k] = 1e6 * median(t[k], f->repeats) / f->steps;
    if (!f->quiet) {
        printf("phases of a %s step (microseconds, median of %d runs of %d steps; each figure is the time a part "
               "adds):\n ",
               spec->name, f->repeats, f->steps);
        for (int k = 0; k < N_PHASES; ++k) printf(" %s %.1f", k_phases[k].name, cum[k] - (k ? cum[k - 1] : 0.0));
        printf("; whole step %.1f\n", cum[N_PHASES - 1]);
    }
    if (j)
        for (int k = 0; k < N_PHASES; ++k) {
            fprintf(j, "{\"tool\":\"cutrain\",\"kind\":\"phase\",\"model\":");
            ct_json_string(j, spec->name);
            fprintf(j, ",\"batch_size\":%d,\"phase\":\"%s\",\"us_per_step\":", spec->batch_size, k_phases[k].name);
            ct_json_number(j, cum[k] - (k ? cum[k - 1] : 0.0));
            fputs(",\"cumulative_us_per_step\":", j);
            ct_json_number(j, cum[k]);
            fputs("}\n", j);
        }
    return 0;
}

/* One timed run on the model's backend as it is (the op window during
 * op_times); the records are not read, since a cut step writes none. */
static int timed_cut_run(bench_ctx *c, uint64_t steps, double *seconds, ct_error *err) {
    ct_train_options o = c->base;
    o.timing_only = 1;
    o.max_steps = steps;
    o.epochs = 1000;
    return timed(c, o, seconds, err);
}

/* Where a step's time goes, op by op: the model runs on an op window
 * (src/train/op_window.h) that passes the first k ops of each step, for
 * k = 0..n, each --repeats times; an op's cost is the difference of the
 * medians with and without it: what it adds to a step as the step runs
 * (captured in a graph on the GPU, so launch gaps count, and one op's
 * work cannot hide behind another's on one stream). */
static int op_times_on(bench_ctx *c, const bench_flags *f, const ct_model_spec *spec, ct_op_window *w, FILE *j,
                       ct_error *err) {
    double census, cum[CT_OP_WINDOW_MAX_OPS + 1];
    ct_op_window_reset(w, -1);
    if (timed_cut_run(c, 3, &census, err)) return -1; /* the census: the ops of a step, named */
    const int n = w->count;
    if (n > CT_OP_WINDOW_MAX_OPS)
        return ct_fail(err, CT_EXIT_FAILURE, "bench --ops: a %s step has %d ops, more than the %d this can time",
                       spec->name, n, CT_OP_WINDOW_MAX_OPS);
    char labels[CT_OP_WINDOW_MAX_OPS][CT_OP_WINDOW_LABEL];
    memcpy(labels, w->labels, sizeof labels);
    /* Round after round over every k, so drift in the machine's speed hits each k alike. */
    double *tk = malloc(sizeof *tk * (size_t)(n + 1) * (size_t)f->repeats);
    if (!tk) return ct_fail(err, CT_EXIT_FAILURE, "bench --ops: out of host memory");
    for (int r = 0; r < f->repeats; ++r)
        for (int k = 0; k <= n; ++k) {
            ct_op_window_reset(w, k);
            if (timed_cut_run(c, (uint64_t)f->steps, &tk[k * f->repeats + r], err)) {
                free(tk);
                return -1;
            }
        }
    for (int k = 0; k <= n; ++k) cum[k] = 1e6 * median(tk + k * f->repeats, f->repeats) / f->steps;
    free(tk);
    if (!f->quiet) {
        printf("ops of a %s step (microseconds, median of %d runs of %d steps; each figure is the time an op adds):\n",
               spec->name, f->repeats, f->steps);
        printf("  %3s %-60s %8.1f\n", "", "(no op: the step loop and an empty step)", cum[0]);
        for (int k = 0; k < n; ++k) printf("  %3d %-60s %8.1f\n", k + 1, labels[k], cum[k + 1] - cum[k]);
        printf("  whole step %.1f (%d ops)\n", cum[n], n);
    }
    if (j)
        for (int k = 0; k <= n; ++k) {
            fprintf(j, "{\"tool\":\"cutrain\",\"kind\":\"op\",\"model\":");
            ct_json_string(j, spec->name);
            fprintf(j, ",\"batch_size\":%d,\"index\":%d,\"op\":", spec->batch_size, k);
            ct_json_string(j, k ? labels[k - 1] : "none");
            fputs(",\"us_per_step\":", j);
            ct_json_number(j, k ? cum[k] - cum[k - 1] : cum[0]);
            fputs(",\"cumulative_us_per_step\":", j);
            ct_json_number(j, cum[k]);
            fputs("}\n", j);
        }
    return 0;
}

static int op_times(bench_ctx *c, const bench_flags *f, const ct_model_spec *spec, FILE *j, ct_error *err) {
    ct_op_window *w = malloc(sizeof *w);
    if (!w) return ct_fail(err, CT_EXIT_FAILURE, "bench --ops: out of host memory");
    ct_backend *real = c->m->be;
    ct_op_window_init(w, real);
    c->m->be = &w->outer;
    int rc = op_times_on(c, f, spec, w, j, err);
    c->m->be = real;
    free(w);
    return rc;
}

typedef struct figures {
    double sps_med, sps_min, sps_max, steps_per_s, epoch_s, overhead, epoch_s_measured;
} figures;

static int throughput(bench_ctx *c, const bench_flags *f, figures *out, ct_error *err) {
    double warm;
    if (f->warmup > 0 && timed_run(c, (uint64_t)f->warmup, 1000, 1, &warm, err)) return -1;
    double on[64], off[64], sps[64];
    /* The rows the steps trained: a step of a batch larger than the data,
     * or an epoch's last one, holds fewer than the batch size. */
    const double samples = (double)ct_samples_in_steps(c->train->count, c->base.batch_size, c->base.drop_last,
                                                       (uint64_t)f->steps);
    /* Interleaved, so drift in the machine's speed hits both alike. */
    for (int r = 0; r < f->repeats; ++r) {
        if (timed_run(c, (uint64_t)f->steps, 1000, 1, &on[r], err) ||
            timed_run(c, (uint64_t)f->steps, 1000, 0, &off[r], err))
            return -1;
        sps[r] = samples / on[r];
    }
    double t_on = median(on, f->repeats), t_off = median(off, f->repeats);
    qsort(sps, (size_t)f->repeats, sizeof *sps, cmp_double);
    out->sps_med = median(sps, f->repeats);
    out->sps_min = sps[0];
    out->sps_max = sps[f->repeats - 1];
    out->steps_per_s = (double)f->steps / t_on;
    out->overhead = t_off > 0 ? t_on / t_off - 1.0 : NAN;
    const uint64_t spe = ct_steps_per_epoch(c->train->count, c->base.batch_size, c->base.drop_last);
    out->epoch_s = (double)spe / out->steps_per_s;
    out->epoch_s_measured = NAN;
    if (f->epochs > 0) {
        double ep[64];
        for (int r = 0; r < f->repeats; ++r) {
            if (timed_run(c, 0, f->epochs, 1, &ep[r], err)) return -1;
            ep[r] /= f->epochs;
        }
        out->epoch_s_measured = median(ep, f->repeats);
    }
    return 0;
}

/* The throughput figures as ,"key":value pairs, for --json and the log. */
static void put_figures(FILE *f, const figures *fg) {
    const struct {
        const char *k;
        double v;
    } nums[] = {
        {"samples_per_s", fg->sps_med}, {"samples_per_s_min", fg->sps_min}, {"samples_per_s_max", fg->sps_max},
        {"steps_per_s", fg->steps_per_s}, {"epoch_s", isfinite(fg->epoch_s_measured) ? fg->epoch_s_measured : fg->epoch_s},
        {"stats_overhead", fg->overhead},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; ++i) {
        fprintf(f, ",\"%s\":", nums[i].k);
        ct_json_number(f, nums[i].v);
    }
}

static void json_figures(FILE *j, const bench_flags *f, const ct_model_spec *spec, const ct_backend *be,
                         const figures *fg) {
    fprintf(j, "{\"tool\":\"cutrain\",\"version\":\"%s\",\"model\":", CUTRAIN_VERSION);
    ct_json_string(j, spec->name);
    fprintf(j, ",\"batch_size\":%d,\"device\":", spec->batch_size);
    ct_json_string(j, be->description);
    fprintf(j, ",\"threads\":%d,\"optimizer\":\"%s\",\"loss\":\"%s\",\"steps\":%d,\"warmup\":%d,\"repeats\":%d",
            be->threads, ct_optim_kind_name(spec->optim.kind), ct_loss_name(spec->loss), f->steps, f->warmup,
            f->repeats);
    put_figures(j, fg);
    fprintf(j, ",\"epoch_s_measured\":%s}\n", isfinite(fg->epoch_s_measured) ? "true" : "false");
}

/* Time to accuracy: fresh weights per seed, evaluation after every epoch
 * (not timed), stop at the first epoch at or above the target. */
typedef struct tta_result {
    int reached;
    double median_s, median_acc; /* NaN when no seed reached the target */
} tta_result;

static int time_to_accuracy(bench_ctx *c, const ct_model_spec *spec, ct_backend *be, const bench_flags *f, FILE *j,
                            tta_result *res, ct_error *err) {
    double secs[64], accs[64];
    int reached = 0, n_acc = 0, stopped = 0;
    for (int s = 0; s < f->seeds; ++s) {
        ct_model m;
        int max_rows = ct_train_plan_rows(c->train->count, spec->batch_size);
        if (ct_model_build(&m, spec, be, max_rows, f->seed + (uint64_t)s, err)) return -1;
        ct_train_options o = c->base;
        o.seed = f->seed + (uint64_t)s;
        o.epochs = f->max_epochs;
        o.target_acc = f->tta;
        ct_run_summary sum;
        int rc = ct_train(&m, c->train, c->test, &o, c->log, &sum, err);
        ct_model_free(&m);
        if (rc < 0) return -1;
        if (tally(c, &sum, rc, err)) return -1;
        /* A seed that a health policy stopped has no score (its diagnosis says
         * why); it counts as not reaching the target, and if every seed was
         * stopped there is no figure, as for the throughput runs. */
        const int was_stopped = rc == CT_EXIT_HEALTH_STOP;
        stopped += was_stopped;
        if (isfinite(sum.test_acc)) accs[n_acc++] = sum.test_acc;
        int ok = !was_stopped && sum.test_acc >= f->tta;
        if (!f->quiet && was_stopped)
            printf("seed %llu: stopped by a health policy at step %llu (the diagnosis above says why), %.2f s of "
                   "training\n",
                   (unsigned long long)o.seed, (unsigned long long)sum.steps, sum.train_seconds);
        else if (!f->quiet)
            printf("seed %llu: test accuracy %.4f after %u epochs (%s %.4f), %.2f s of training\n",
                   (unsigned long long)o.seed, sum.test_acc, sum.epochs, ok ? "reached the target" : "short of the target",
                   f->tta, sum.train_seconds);
        if (j) {
            fprintf(j, "{\"tool\":\"cutrain\",\"kind\":\"time_to_accuracy\",\"model\":");
            ct_json_string(j, spec->name);
            fprintf(j, ",\"seed\":%llu,\"target\":%g,\"reached\":%s,\"stopped\":%s,\"test_acc\":",
                    (unsigned long long)o.seed, f->tta, ok ? "true" : "false", was_stopped ? "true" : "false");
            ct_json_number(j, sum.test_acc);
            fprintf(j, ",\"epochs\":%u,\"train_seconds\":", sum.epochs);
            ct_json_number(j, sum.train_seconds);
            fputs("}\n", j);
        }
        if (ok) secs[reached++] = sum.train_seconds;
    }
    res->reached = reached;
    res->median_s = reached ? median(secs, reached) : NAN;
    res->median_acc = n_acc ? median(accs, n_acc) : NAN;
    if (stopped == f->seeds)
        return ct_fail(err, CT_EXIT_HEALTH_STOP,
                       "bench: a health policy stopped the run of every seed (the diagnoses above say why): no figure "
                       "to give");
    if (!f->quiet) {
        if (reached)
            printf("time to %.4f: median %.2f s of training over the %d of %d seeds that reached it\n", f->tta,
                   res->median_s, reached, f->seeds);
        else
            printf("time to %.4f: no seed reached it within %d epochs\n", f->tta, f->max_epochs);
    }
    return 0;
}

/* The --log-jsonl summary: the usual fields over every run bench made
 * (status, steps, training time; test_acc the median over the seeds of
 * --time-to-accuracy, else null: throughput runs are not evaluated), then
 * the figures. */
static void log_summary(ct_logger *log, const bench_ctx *c, const bench_flags *f, const ct_model_spec *spec,
                        const ct_model *m, const ct_backend *be, int code, double seconds, const figures *fg,
                        const tta_result *tr) {
    char *extra = NULL;
    size_t len = 0;
    FILE *x = open_memstream(&extra, &len);
    if (!x) return;
    fprintf(x, "\"command\":\"bench\",\"batch_size\":%d,\"threads\":%d,\"optimizer\":\"%s\",\"loss\":\"%s\"",
            spec->batch_size, be->threads, ct_optim_kind_name(spec->optim.kind), ct_loss_name(spec->loss));
    if (f->tta > 0) {
        fprintf(x, ",\"target\":%g,\"seeds\":%d,\"seeds_reached\":%d,\"time_to_accuracy_s\":", f->tta, f->seeds,
                tr->reached);
        ct_json_number(x, tr->median_s);
    } else if (fg) {
        put_figures(x, fg);
    }
    if (fclose(x) != 0) {
        free(extra);
        return;
    }
    ct_run_summary s = {.status = code == CT_EXIT_OK             ? "completed"
                                  : code == CT_EXIT_HEALTH_STOP ? "stopped"
                                  : code == CT_EXIT_INTERRUPTED ? "interrupted"
                                                                : "failed",
                        .exit_code = code, .test_loss = NAN, .test_acc = f->tta > 0 ? tr->median_acc : NAN,
                        .steps = c->steps, .epochs = c->epochs, .seconds = seconds, .train_seconds = c->train_seconds,
                        .model = spec->name, .device = be->description, .seed = f->seed, .params = m->n_params};
    ct_log_summary_fields(log, &s, extra);
    free(extra);
}

/* The figures, all or nothing (ct_atomic_file), so a failed write leaves
 * the old file as it was. A path that is not a regular file (/dev/stdout, a
 * FIFO) is written directly: renaming would replace it. */
static int write_json(const char *path, const char *buf, size_t len, ct_error *err) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        errno = 0;
        FILE *f = fopen(path, "w");
        if (!f) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot write the JSON output: %s", path, strerror(errno));
        int e = fwrite(buf, 1, len, f) == len ? 0 : (errno ? errno : EIO);
        errno = 0;
        if (fclose(f) != 0 && !e) e = errno ? errno : EIO;
        if (e) return ct_fail(err, CT_EXIT_FAILURE, "%s: writing the JSON output failed: %s", path, strerror(e));
        return 0;
    }
    ct_atomic_file af;
    int e = ct_atomic_open(&af, path);
    if (e) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot write the JSON output: %s", path, strerror(e));
    errno = 0;
    if (fwrite(buf, 1, len, af.f) != len) {
        e = errno ? errno : EIO;
        ct_atomic_abort(&af);
    } else {
        e = ct_atomic_commit(&af, path);
    }
    if (e) return ct_fail(err, CT_EXIT_FAILURE, "%s: writing the JSON output failed: %s", path, strerror(e));
    return 0;
}

int ct_cmd_bench(int argc, char **argv) {
    bench_flags f = {.model = "mlp", .data = "data/mnist", .device = "auto", .steps = 100, .warmup = 10,
                     .repeats = 5, .seeds = 3, .max_epochs = 10, .seed = 1};
    ct_arg args[] = {
        {"--model", ARG_STRING, &f.model, 0, 0, 0, "PRESET|FILE", "seed, mlp, cnn, or a model file (default mlp)"},
        {"--data", ARG_STRING, &f.data, 0, 0, 0, "DIR", "directory with the MNIST IDX files (default data/mnist)"},
        {"--device", ARG_CHOICE, &f.device, 0, 0, 0, "auto|cpu|cuda", "where to run (default auto)", ct_device_choices},
        {"--threads", ARG_INT, &f.threads, 1, 1024, 0, "N", "CPU threads (default: the CPUs this process may use)"},
        {"--batch-size", ARG_INT, &f.batch_size, 1, 65536, 0, "N", "rows per step (default: the model's)"},
        {"--optimizer", ARG_CHOICE, &f.optimizer, 0, 0, 0, "NAME", "sgd|adam|adamw|rmsprop", ct_optimizer_choices},
        {"--lr", ARG_DOUBLE, &f.lr, 0, 10, 1, "X", "learning rate (default: the model's)"},
        {"--loss", ARG_CHOICE, &f.loss, 0, 0, 0, "NAME", CT_CLI_LOSS_HELP, ct_loss_choices},
        {"--steps", ARG_INT, &f.steps, 1, 10000000, 0, "N", "timed steps per run (100)"},
        {"--warmup", ARG_INT, &f.warmup, 0, 10000000, 0, "N", "untimed steps first (10)"},
        {"--repeats", ARG_INT, &f.repeats, 1, 64, 0, "N", "timed runs per figure (5)"},
        {"--epochs", ARG_INT, &f.epochs, 0, 1000, 0, "N", "also time runs of N whole epochs (0: estimate)"},
        {"--seed", ARG_U64, &f.seed, 0, 0, 0, "N", "first seed (1)"},
        {"--time-to-accuracy", ARG_DOUBLE, &f.tta, 0, 1, 1, "A", "train until the test accuracy reaches A"},
        {"--seeds", ARG_INT, &f.seeds, 1, 64, 0, "N", "seeds for --time-to-accuracy (3)"},
        {"--max-epochs", ARG_INT, &f.max_epochs, 1, 1000, 0, "N", "epochs at most per seed (10)"},
        {"--json", ARG_STRING, &f.json, 0, 0, 0, "FILE", "write the figures as JSON lines"},
        {"--log-jsonl", ARG_STRING, &f.log_jsonl, 0, 0, 0, "FILE",
         "log the runs' diagnoses and a summary record with the figures as JSONL"},
        {"--save-init", ARG_STRING, &f.save_init, 0, 0, 0, "FILE", "write the initial weights (safetensors)"},
        {"--phases", ARG_FLAG, &f.phases, 0, 0, 0, NULL, "also time the parts of a step (gather ... update)"},
        {"--ops", ARG_FLAG, &f.ops, 0, 0, 0, NULL, "also time each op of a step (the backend table's calls)"},
        {"--quiet", ARG_FLAG, &f.quiet, 0, 0, 0, NULL, "print nothing but errors"},
    };
    int n = (int)(sizeof args / sizeof args[0]);
    ct_error err;
    ct_error_clear(&err);
    int rc = ct_args_parse(argc, argv, args, n, USAGE, &err);
    if (rc == 1) return CT_EXIT_OK;
    if (rc) return ct_cli_report(&err);
    if (ct_args_seen(args, n, "--time-to-accuracy")) {
        const char *throughput_only[] = {"--steps", "--warmup", "--repeats", "--epochs", "--phases", "--ops"};
        for (size_t i = 0; i < sizeof throughput_only / sizeof throughput_only[0]; ++i)
            if (ct_args_seen(args, n, throughput_only[i])) {
                ct_fail(&err, CT_EXIT_USAGE,
                        "%s: a setting of the throughput runs, which --time-to-accuracy replaces (it trains whole "
                        "epochs until the accuracy)",
                        throughput_only[i]);
                return ct_cli_report(&err);
            }
    }
    const char *tta_only[] = {"--seeds", "--max-epochs"};
    for (int i = 0; i < 2; ++i)
        if (ct_args_seen(args, n, tta_only[i]) && !ct_args_seen(args, n, "--time-to-accuracy")) {
            ct_fail(&err, CT_EXIT_USAGE, "%s: a setting of --time-to-accuracy A, which is not given", tta_only[i]);
            return ct_cli_report(&err);
        }

    ct_model_spec spec;
    if (ct_model_spec_resolve(f.model, &spec, &err) ||
        ct_cli_apply_recipe(&spec, f.optimizer, f.lr, f.batch_size, &err))
        return ct_cli_report(&err);
    if (f.loss) spec.loss = (ct_loss_kind)ct_loss_parse(f.loss);
    if (ct_model_spec_validate(&spec, &err)) return ct_cli_report(&err);

    ct_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    ct_backend *be = NULL;
    ct_model model;
    memset(&model, 0, sizeof model);
    ct_logger *log = NULL;
    FILE *j = NULL;
    char *json_buf = NULL;
    size_t json_len = 0;
    ct_cli_note device_note;
    bench_ctx c;
    figures fg;
    tta_result tr = {0, NAN, NAN};
    int started = 0, have_fg = 0;
    double t_start = ct_now();
    int code = CT_EXIT_OK;
    ct_cli_catch_stop_signals();
    /* Step records would be timed with the steps they describe; the runs'
     * diagnoses and one summary with the figures are what the log holds. */
    ct_log_options lo = {f.log_jsonl, NULL, 1, 0, 0, NULL, NULL, 1};
    ct_cli_file files[8] = {{"--json", f.json, 1}, {"--save-init", f.save_init, 1}, {"--log-jsonl", f.log_jsonl, 1}};
    if (ct_cli_load_split(f.data, "train", &spec, &train, &err) || ct_cli_load_split(f.data, "test", &spec, &test, &err) ||
        (f.json && ct_cli_check_writable(f.json, "--json", &err)) ||
        (f.log_jsonl && ct_cli_check_writable(f.log_jsonl, "--log-jsonl", &err)) ||
        (f.save_init && ct_cli_check_replaceable(f.save_init, "--save-init", &err)) ||
        ct_cli_check_distinct(files, 3 + ct_cli_input_files(f.model, &train, &test, files + 3), &err) ||
        !(be = ct_cli_backend(f.device, f.threads, &device_note, &err)) ||
        ct_model_build(&model, &spec, be, ct_train_plan_rows(train.count, spec.batch_size), f.seed, &err) ||
        ct_cli_interrupted_before("the bench began", &err) || !(log = ct_logger_open(&lo, &err))) {
        code = ct_cli_report(&err);
        goto out;
    }
    /* From here the log is open: whatever fails is in its summary. */
    started = 1;
    c = (bench_ctx){&model, &train, &test, log, ct_train_defaults(&spec), 0, 0, 0.0};
    /* The figures gather in memory and reach --json only when the bench
     * succeeded: a failed or interrupted one leaves no empty or partial file
     * (and an old one as it was). */
    if (f.json && !(j = open_memstream(&json_buf, &json_len))) {
        ct_fail(&err, CT_EXIT_FAILURE, "%s: out of memory for the JSON output", f.json);
        code = ct_cli_report(&err);
        goto out;
    }
    ct_cli_note_print(&device_note, f.quiet);
    ct_cli_log_build_diagnoses(log, &spec, &train, &test);
    if (f.save_init && ct_model_save_weights(&model, f.save_init, &err)) {
        code = ct_cli_report(&err);
        goto out;
    }
    c.base.seed = f.seed;
    c.base.interrupt = &ct_cli_stop_signal;
    if (f.tta > 0) {
        if (time_to_accuracy(&c, &spec, be, &f, j, &tr, &err)) code = ct_cli_report(&err);
        goto out;
    }
    if (throughput(&c, &f, &fg, &err)) {
        code = ct_cli_report(&err);
        goto out;
    }
    have_fg = 1;
    if (!f.quiet) {
        printf("%s, batch %d, %s: %.0f samples/s (median of %d; %.0f-%.0f), %.1f steps/s, epoch %.3f s%s, "
               "statistics overhead %.1f%%\n",
               spec.name, spec.batch_size, be->description, fg.sps_med, f.repeats, fg.sps_min, fg.sps_max,
               fg.steps_per_s, isfinite(fg.epoch_s_measured) ? fg.epoch_s_measured : fg.epoch_s,
               isfinite(fg.epoch_s_measured) ? "" : " (estimated from steps/s)", 100.0 * fg.overhead);
    }
    if (j) json_figures(j, &f, &spec, be, &fg);
    if (f.phases && phase_times(&c, &f, &spec, j, &err)) {
        code = ct_cli_report(&err);
        goto out;
    }
    if (f.ops && op_times(&c, &f, &spec, j, &err)) code = ct_cli_report(&err);
out:
    if (j && fclose(j) != 0 && code == CT_EXIT_OK) {
        ct_fail(&err, CT_EXIT_FAILURE, "%s: out of memory for the JSON output", f.json);
        code = ct_cli_report(&err);
    }
    if (j && code == CT_EXIT_OK && write_json(f.json, json_buf, json_len, &err)) code = ct_cli_report(&err);
    free(json_buf);
    if (log && started) {
        /* Figures printed to a stdout that took none are lost: the log says failed, as the exit will. */
        errno = 0;
        if ((fflush(stdout) != 0 || ferror(stdout)) && code == CT_EXIT_OK) {
            ct_fail(&err, CT_EXIT_FAILURE, "stdout: write failed: %s", strerror(errno ? errno : EIO));
            code = ct_cli_report(&err);
        }
        log_summary(log, &c, &f, &spec, &model, be, code, ct_now() - t_start, have_fg ? &fg : NULL, &tr);
        ct_error cerr;
        ct_error_clear(&cerr);
        if (ct_logger_close(log, &cerr) && code == CT_EXIT_OK) code = ct_cli_report(&cerr);
        log = NULL;
    }
    if (log) ct_logger_close(log, NULL);
    ct_model_free(&model);
    if (be) ct_backend_destroy(be);
    ct_dataset_free(&train);
    ct_dataset_free(&test);
    ct_cli_release_stop_signals();
    return code;
}
