/* JSONL: one object per line, "type" first. Non-finite numbers are written
 * as null (JSON has no NaN); the flags of the same record say why. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/io/text.h"
#include "src/log/sinks.h"

void ct_json_number(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

/* JSON text is UTF-8: a byte of a path or a model file's word that is not
 * (a Latin-1 file name) becomes U+FFFD, so that the log stays one that
 * show, check and every JSON reader accept. */
void ct_json_string(FILE *f, const char *s) {
    fputc('"', f);
    const unsigned char *p = (const unsigned char *)s;
    const size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t u;
        size_t k;
        if (p[i] == '"' || p[i] == '\\')
            fprintf(f, "\\%c", p[i++]);
        else if (p[i] < 0x20 || p[i] == 0x7F)
            fprintf(f, "\\u%04x", p[i++]);
        else if (p[i] < 0x80)
            fputc(p[i++], f);
        else if ((k = ct_utf8_sequence(p + i, n - i, &u)) > 0)
            fwrite(p + i, 1, k, f), i += k;
        else
            fputs("\\ufffd", f), ++i;
    }
    fputc('"', f);
}

static void field_num(FILE *f, const char *key, double v) {
    fprintf(f, ",\"%s\":", key);
    ct_json_number(f, v);
}

void ct_jsonl_step(struct ct_logger *lg, const ct_step_record *r) {
    FILE *f = lg->jsonl;
    fprintf(f, "{\"type\":\"step\",\"epoch\":%u,\"step\":%llu,\"batch_size\":%u", r->epoch,
            (unsigned long long)r->step, r->batch_size);
    field_num(f, "loss", ct_record_loss(r));
    field_num(f, "acc", ct_record_accuracy(r));
    field_num(f, "grad_norm", ct_record_grad_norm(r));
    field_num(f, "max_abs_grad", r->grad_max_abs);
    field_num(f, "update_ratio", ct_record_update_ratio(r));
    fprintf(f, ",\"nonfinite\":%llu,\"zero_grads\":%llu", (unsigned long long)r->nonfinite_count,
            (unsigned long long)r->zero_count);
    fputs(",\"layer_grad_norms\":{", f);
    for (uint32_t i = 0; i < r->n_layers && i < (uint32_t)lg->n_layers; ++i) {
        if (i) fputc(',', f);
        ct_json_string(f, lg->layer_names[i]);
        fputc(':', f);
        ct_json_number(f, r->layer_nonfinite[i] ? NAN : sqrt(r->layer_grad_sumsq[i]));
    }
    fputs("},\"flags\":[", f);
    int first = 1;
    for (unsigned b = 0; b < CT_FLAG_COUNT; ++b) {
        if (!(r->flags & (1u << b))) continue;
        if (!first) fputc(',', f);
        ct_json_string(f, ct_flag_name(b));
        first = 0;
    }
    fputs("]}\n", f);
}

void ct_jsonl_epoch(FILE *f, const ct_epoch_summary *e) {
    fprintf(f, "{\"type\":\"epoch\",\"epoch\":%u,\"steps\":%llu,\"samples\":%llu", e->epoch,
            (unsigned long long)e->steps, (unsigned long long)e->samples);
    field_num(f, "train_loss", e->train_loss);
    field_num(f, "train_acc", e->train_acc);
    field_num(f, "test_loss", e->test_loss);
    field_num(f, "test_acc", e->test_acc);
    field_num(f, "seconds", e->seconds);
    field_num(f, "eval_seconds", e->eval_seconds);
    field_num(f, "samples_per_s", e->samples_per_s);
    fprintf(f, ",\"empty_batches\":%llu,\"skipped_steps\":%llu}\n", (unsigned long long)e->empty_batches,
            (unsigned long long)e->skipped_steps);
}

void ct_jsonl_diagnosis(FILE *f, const ct_diagnosis *d) {
    fputs("{\"type\":\"diagnosis\",\"code\":", f);
    ct_json_string(f, d->code);
    fputs(",\"severity\":", f);
    ct_json_string(f, d->severity);
    fprintf(f, ",\"step\":%llu,\"epoch\":%u,\"layer\":", (unsigned long long)d->step, d->epoch);
    if (d->layer[0])
        ct_json_string(f, d->layer);
    else
        fputs("null", f);
    fputs(",\"message\":", f);
    ct_json_string(f, d->message);
    fputs("}\n", f);
}

void ct_jsonl_summary(FILE *f, const ct_run_summary *s, const char *extra) {
    fputs("{\"type\":\"summary\",\"status\":", f);
    ct_json_string(f, s->status);
    fprintf(f, ",\"exit_code\":%d", s->exit_code);
    field_num(f, "test_acc", s->test_acc);
    field_num(f, "test_loss", s->test_loss);
    fprintf(f, ",\"steps\":%llu,\"epochs\":%u", (unsigned long long)s->steps, s->epochs);
    field_num(f, "seconds", s->seconds);
    field_num(f, "train_seconds", s->train_seconds);
    fputs(",\"model\":", f);
    ct_json_string(f, s->model ? s->model : "");
    fputs(",\"device\":", f);
    ct_json_string(f, s->device ? s->device : "");
    fprintf(f, ",\"seed\":%llu,\"params\":%llu", (unsigned long long)s->seed, (unsigned long long)s->params);
    if (extra && *extra) fprintf(f, ",%s", extra);
    fputs("}\n", f);
}
