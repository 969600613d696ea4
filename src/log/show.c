/* cutrain show: see show.h. Two passes over the indexed log: the first
 * gathers the summary and what the step records say (losses, flags, step
 * numbering); the second prints the epoch and diagnosis records in order. */
#include "src/log/show.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Distinct flag names counted; more (only a newer cutrain would write them)
 * are summed under "other flags". */
#define MAX_FLAGS 32

typedef struct {
    char name[48];
    uint64_t count, first, last;
} flag_count;

typedef struct {
    /* the last summary record */
    int have_summary;
    char status[32], model[160], device[160];
    double exit_code, test_acc, test_loss, steps, epochs, seconds, seed, params; /* NAN when null/absent */
    /* step records */
    uint64_t n_steps, first_step, last_step, gaps, gap_after, gap_to;
    double *loss; /* per step record, NAN when null */
    size_t loss_cap;
    uint64_t nonfinite_loss;
    flag_count flags[MAX_FLAGS];
    int n_flags;
    uint64_t other_flags;
} show_state;

static double number_or_nan(const ct_json_doc *d, int t) {
    return t >= 0 && d->tok[t].kind == CT_JSON_NUMBER ? d->tok[t].number : NAN;
}

static double field(const ct_json_doc *d, const char *key) { return number_or_nan(d, ct_json_find(d, 0, key)); }

static void text_field(const ct_json_doc *d, const char *key, char *buf, size_t cap) {
    const int t = ct_json_find(d, 0, key);
    if (t < 0 || !ct_json_string_copy(d, (uint32_t)t, buf, cap)) snprintf(buf, cap, "?");
}

static void count_flag(show_state *s, const ct_json_doc *d, uint32_t t, uint64_t step) {
    char name[48];
    ct_json_string_copy(d, t, name, sizeof name);
    for (int i = 0; i < s->n_flags; i++)
        if (strcmp(s->flags[i].name, name) == 0) {
            s->flags[i].count++;
            s->flags[i].last = step;
            return;
        }
    if (s->n_flags == MAX_FLAGS) {
        s->other_flags++;
        return;
    }
    flag_count *f = &s->flags[s->n_flags++];
    memcpy(f->name, name, sizeof name);
    f->count = 1;
    f->first = f->last = step;
}

/* A number field that holds something else ("loss":"2.3") would be shown as
 * a missing value; a log that says nonsense is refused instead, by line. */
static int numbers_or_null(const ct_jsonl_file *f, const ct_jsonl_line *ln, const ct_json_doc *d,
                           const char *const *keys, ct_error *err) {
    static const char *const kind_name[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    for (; *keys; ++keys) {
        const int t = ct_json_find(d, 0, *keys);
        if (t < 0 || d->tok[t].kind == CT_JSON_NUMBER || d->tok[t].kind == CT_JSON_NULL) continue;
        const unsigned k = (unsigned)d->tok[t].kind;
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: line %u: \"%s\" is %s; expected a number or null", f->name,
                       ln->lineno, *keys, k < sizeof kind_name / sizeof kind_name[0] ? kind_name[k] : "not a number");
    }
    return 0;
}

static int take_step(show_state *s, const ct_json_doc *d, uint64_t step, ct_error *err) {
    if (s->n_steps == s->loss_cap) {
        const size_t cap = s->loss_cap ? 2 * s->loss_cap : 1024;
        double *p = realloc(s->loss, cap * sizeof *p);
        if (!p) return ct_fail(err, CT_EXIT_FAILURE, "out of memory reading the step records");
        s->loss = p;
        s->loss_cap = cap;
    }
    const double loss = field(d, "loss");
    s->loss[s->n_steps] = loss;
    if (!isfinite(loss)) s->nonfinite_loss++;
    if (s->n_steps == 0) {
        s->first_step = step;
    } else if (step != s->last_step + 1) {
        if (s->gaps++ == 0) s->gap_after = s->last_step, s->gap_to = step;
    }
    s->last_step = step;
    s->n_steps++;
    const int fl = ct_json_find(d, 0, "flags");
    if (fl >= 0 && d->tok[fl].kind == CT_JSON_ARRAY)
        for (uint32_t k = (uint32_t)fl + 1; k < d->tok[fl].next; k = d->tok[k].next)
            if (d->tok[k].kind == CT_JSON_STRING) count_flag(s, d, k, step);
    return 0;
}

static void take_summary(show_state *s, const ct_json_doc *d) {
    s->have_summary = 1;
    text_field(d, "status", s->status, sizeof s->status);
    text_field(d, "model", s->model, sizeof s->model);
    text_field(d, "device", s->device, sizeof s->device);
    s->exit_code = field(d, "exit_code");
    s->test_acc = field(d, "test_acc");
    s->test_loss = field(d, "test_loss");
    s->steps = field(d, "steps");
    s->epochs = field(d, "epochs");
    s->seconds = field(d, "seconds");
    s->seed = field(d, "seed");
    s->params = field(d, "params");
}

/* 1234567 -> "1,234,567"; "-" for NaN. */
static const char *grouped(double v, char *buf, size_t cap) {
    if (!isfinite(v) || v < 0 || v >= 1e18) {
        if (isfinite(v))
            snprintf(buf, cap, "%.3g", v);
        else
            snprintf(buf, cap, "-");
        return buf;
    }
    char digits[32];
    const int n = snprintf(digits, sizeof digits, "%.0f", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* v printed with fmt (one double conversion); "-" for null (NaN). */
static const char *num(double v, const char *fmt, char *buf, size_t cap) {
    if (isnan(v))
        snprintf(buf, cap, "-");
    else if (isinf(v))
        snprintf(buf, cap, "%s", v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, cap, fmt, v);
    return buf;
}

static void print_header(const ct_jsonl_file *f, const show_state *s, FILE *out) {
    char a[48], b[48], c[48];
    if (!s->have_summary) {
        fprintf(out, "%s: no summary record: the run did not finish (it was killed, or is still running), "
                     "or the log was cut short\n", f->name);
        if (s->n_steps) fprintf(out, "last step record: step %llu\n", (unsigned long long)s->last_step);
        return;
    }
    fprintf(out, "%s: %s on %s, seed %s, %s parameters\n", f->name, s->model, s->device, num(s->seed, "%.0f", a, sizeof a),
            grouped(s->params, b, sizeof b));
    /* Any number may be in a log; only an exit status is converted. */
    const int code = s->exit_code >= 0 && s->exit_code <= 255 ? (int)s->exit_code : -1;
    const char *how = strcmp(s->status, "evaluated") == 0 ? "evaluated (a log of cutrain eval)"
                      : code == CT_EXIT_OK            ? "completed"
                      : code == CT_EXIT_HEALTH_STOP ? "stopped by a health policy (see the diagnoses)"
                      : code == CT_EXIT_INTERRUPTED ? "interrupted (SIGINT, SIGTERM or SIGHUP)"
                      : strcmp(s->status, "failed") == 0
                          ? "failed (a checkpoint could not be written, or the data failed; the run's error said which)"
                          : s->status;
    fprintf(out, "ended: %s, exit status %d, after %s steps in %s epoch%s, %s s", how, code,
            grouped(s->steps, a, sizeof a), num(s->epochs, "%.0f", b, sizeof b), s->epochs == 1 ? "" : "s",
            num(s->seconds, "%.3g", c, sizeof c));
    if (isfinite(s->test_acc) && isfinite(s->test_loss))
        fprintf(out, "; test accuracy %.4f, test loss %.4g\n", s->test_acc, s->test_loss);
    else if (isfinite(s->test_acc)) /* bench: the median over its seeds, no loss */
        fprintf(out, "; test accuracy %.4f\n", s->test_acc);
    else
        fprintf(out, "; no test evaluation\n");
}

static void print_epochs(const ct_jsonl_file *f, ct_json_doc *d, FILE *out) {
    if (f->n_kind[CT_REC_EPOCH] == 0) return;
    fprintf(out, "\nepoch    steps  train_loss  train_acc  test_loss  test_acc  seconds  samples/s  skipped  empty\n");
    for (size_t i = 0; i < f->n_lines; i++) {
        if (f->lines[i].kind != CT_REC_EPOCH || ct_jsonl_parse_line(f, i, d)) continue;
        char e[24], st[24], tl[24], ta[24], vl[24], va[24], sec[24], sps[32], sk[24], em[24];
        fprintf(out, "%5s %8s %11s %10s %10s %9s %8s %10s %8s %6s\n", num(field(d, "epoch"), "%.0f", e, sizeof e),
                grouped(field(d, "steps"), st, sizeof st), num(field(d, "train_loss"), "%.4g", tl, sizeof tl),
                num(field(d, "train_acc"), "%.4f", ta, sizeof ta), num(field(d, "test_loss"), "%.4g", vl, sizeof vl),
                num(field(d, "test_acc"), "%.4f", va, sizeof va), num(field(d, "seconds"), "%.3g", sec, sizeof sec),
                grouped(field(d, "samples_per_s"), sps, sizeof sps),
                num(field(d, "skipped_steps"), "%.0f", sk, sizeof sk),
                num(field(d, "empty_batches"), "%.0f", em, sizeof em));
    }
}

static void print_diagnoses(const ct_jsonl_file *f, ct_json_doc *d, FILE *out) {
    const size_t n = f->n_kind[CT_REC_DIAGNOSIS];
    fprintf(out, "\ndiagnoses:%s\n", n ? "" : " none");
    if (!n) return;
    for (size_t i = 0; i < f->n_lines; i++) {
        if (f->lines[i].kind != CT_REC_DIAGNOSIS || ct_jsonl_parse_line(f, i, d)) continue;
        char code[64], sev[24], layer[96], msg[1024], st[24];
        text_field(d, "code", code, sizeof code);
        text_field(d, "severity", sev, sizeof sev);
        text_field(d, "message", msg, sizeof msg);
        const int lt = ct_json_find(d, 0, "layer");
        if (lt < 0 || !ct_json_string_copy(d, (uint32_t)lt, layer, sizeof layer)) layer[0] = '\0';
        fprintf(out, "  step %s  %s (%s%s%s)\n    %s\n", num(field(d, "step"), "%.0f", st, sizeof st), code, sev,
                layer[0] ? ", layer " : "", layer, msg);
    }
}

static void print_flags(const show_state *s, FILE *out) {
    fprintf(out, "\nflags on step records:%s\n", s->n_flags || s->other_flags ? "" : " none");
    for (int i = 0; i < s->n_flags; i++) {
        const flag_count *c = &s->flags[i];
        if (c->count == 1)
            fprintf(out, "  %-20s 1 step (step %llu)\n", c->name, (unsigned long long)c->first);
        else
            fprintf(out, "  %-20s %llu steps (first %llu, last %llu)\n", c->name, (unsigned long long)c->count,
                    (unsigned long long)c->first, (unsigned long long)c->last);
    }
    if (s->other_flags) fprintf(out, "  and %llu more flags of other names\n", (unsigned long long)s->other_flags);
}

/* The mean finite loss of each of up to CT_SHOW_SPARK_COLS stretches of step
 * records, as eight block heights between the lowest and highest mean; a
 * stretch with a NaN/Inf loss (null in the log) is '!'. */
static void print_sparkline(const show_state *s, FILE *out) {
    static const char *const blocks[8] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                          "\u2585", "\u2586", "\u2587", "\u2588"};
    const size_t n = s->n_steps, cols = n < CT_SHOW_SPARK_COLS ? n : CT_SHOW_SPARK_COLS;
    double mean[CT_SHOW_SPARK_COLS];
    int bad[CT_SHOW_SPARK_COLS];
    double lo = INFINITY, hi = -INFINITY;
    for (size_t c = 0; c < cols; c++) {
        const size_t a = c * n / cols, b = (c + 1) * n / cols;
        double sum = 0;
        size_t k = 0;
        bad[c] = 0;
        for (size_t i = a; i < b; i++) {
            if (isfinite(s->loss[i])) {
                sum += s->loss[i];
                k++;
            } else {
                bad[c] = 1; /* null in the log: the loss was NaN or Inf */
            }
        }
        mean[c] = k ? sum / (double)k : NAN;
        if (k && mean[c] < lo) lo = mean[c];
        if (k && mean[c] > hi) hi = mean[c];
    }
    fputs("  ", out);
    for (size_t c = 0; c < cols; c++) {
        if (bad[c] || !isfinite(mean[c])) {
            fputc('!', out);
        } else {
            int level = hi > lo ? (int)((mean[c] - lo) / (hi - lo) * 7.0 + 0.5) : 0;
            if (level < 0) level = 0;
            if (level > 7) level = 7;
            fputs(blocks[level], out);
        }
    }
    fputc('\n', out);
}

static void print_loss(const show_state *s, FILE *out) {
    if (s->n_steps == 0) {
        fprintf(out, "\nno step records\n");
        return;
    }
    fprintf(out, "\nsteps: %llu records, steps %llu to %llu", (unsigned long long)s->n_steps,
            (unsigned long long)s->first_step, (unsigned long long)s->last_step);
    if (s->first_step > 1) fprintf(out, " (a resumed run logs from its checkpoint's next step)");
    if (s->gaps)
        fprintf(out, "; %llu gap%s in the numbering, the first after step %llu (next: %llu)",
                (unsigned long long)s->gaps, s->gaps == 1 ? "" : "s", (unsigned long long)s->gap_after,
                (unsigned long long)s->gap_to);
    fputc('\n', out);
    size_t first = s->n_steps, low = s->n_steps;
    for (size_t i = 0; i < s->n_steps; i++)
        if (isfinite(s->loss[i])) {
            if (first == s->n_steps) first = i;
            if (low == s->n_steps || s->loss[i] < s->loss[low]) low = i;
        }
    if (first == s->n_steps) {
        fprintf(out, "loss: no finite value in any step record\n");
        return;
    }
    /* Record i is step first_step + i only without gaps; say "record" then. */
    const char *unit = s->gaps ? "record" : "step";
    const uint64_t base = s->gaps ? 1 : s->first_step;
    char last[32];
    fprintf(out, "loss: first %.4g (%s %llu), lowest %.4g (%s %llu), last %s", s->loss[first], unit,
            (unsigned long long)(base + first), s->loss[low], unit, (unsigned long long)(base + low),
            num(s->loss[s->n_steps - 1], "%.4g", last, sizeof last));
    if (s->nonfinite_loss)
        fprintf(out, "; %llu step%s with a NaN/Inf loss (null in the log)", (unsigned long long)s->nonfinite_loss,
                s->nonfinite_loss == 1 ? "" : "s");
    fputc('\n', out);
    print_sparkline(s, out);
}

int ct_show_log(const ct_jsonl_file *f, FILE *out, ct_error *err) {
    if (f->n_lines == 0 && f->cut_tail)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: no complete line (expected a log of cutrain train --log-jsonl)",
                       f->name);
    if (f->n_lines == 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: no records (expected a log of cutrain train --log-jsonl)",
                       f->name);
    show_state *s = calloc(1, sizeof *s);
    ct_json_doc *d = malloc(sizeof *d);
    int rc = 0;
    if (!s || !d) {
        rc = ct_fail(err, CT_EXIT_FAILURE, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < f->n_lines && rc == 0; i++) {
        const ct_jsonl_line *ln = &f->lines[i];
        if ((ln->kind != CT_REC_STEP && ln->kind != CT_REC_SUMMARY) || ct_jsonl_parse_line(f, i, d)) continue;
        static const char *const step_numbers[] = {"loss", NULL};
        static const char *const summary_numbers[] = {"exit_code", "test_acc", "test_loss", "steps",
                                                      "epochs",    "seconds",  "seed",      "params", NULL};
        rc = numbers_or_null(f, ln, d, ln->kind == CT_REC_STEP ? step_numbers : summary_numbers, err);
        if (rc) break;
        if (ln->kind == CT_REC_STEP)
            rc = take_step(s, d, ln->step, err);
        else
            take_summary(s, d);
    }
    if (rc) goto out;
    print_header(f, s, out);
    if (f->cut_tail)
        fprintf(out, "the last line (%zu bytes) is cut short, as a run killed while writing leaves it: left out\n",
                f->cut_tail);
    print_epochs(f, d, out);
    print_diagnoses(f, d, out);
    print_flags(s, out);
    print_loss(s, out);
out:
    if (s) free(s->loss);
    free(s);
    free(d);
    return rc;
}
