/* The TensorBoard sink: the step, epoch and diagnosis records as one event
 * file in a log directory. Tags are the JSONL field names under the record
 * type ("step/loss", "epoch/test_acc", "layer_grad_norm/dense1"), and a
 * diagnosis is a text summary "diagnosis/CODE" at its step. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "src/log/sinks.h"
#include "src/log/tfevents.h"

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* mkdir -p, counting the directories it made so that a run that fails to
 * start can take them away again. */
static int make_dirs(const char *dir, int *made, size_t *deepest, ct_error *err) {
    char path[sizeof ((struct ct_logger *)0)->tb_dir];
    snprintf(path, sizeof path, "%s", dir);
    size_t n = strlen(path);
    *made = 0;
    for (size_t i = 1; i <= n; ++i) {
        if (i < n && path[i] != '/') continue;
        char keep = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) == 0) {
            ++*made;
            *deepest = i; /* the made directories end here: the undo starts from it */
        } else if (errno != EEXIST) {
            int e = errno;
            path[i] = keep;
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot make the TensorBoard log directory: %s", dir,
                           strerror(e));
        }
        path[i] = keep;
    }
    return 0;
}

/* Removes the event file and the directories make_dirs made, deepest first. */
void ct_tb_discard(struct ct_logger *lg) {
    if (lg->tb) {
        fclose(lg->tb);
        lg->tb = NULL;
    }
    if (lg->tb_path[0]) remove(lg->tb_path);
    char path[sizeof lg->tb_dir];
    snprintf(path, sizeof path, "%.*s", (int)lg->tb_made_len, lg->tb_dir);
    for (int i = 0; i < lg->tb_made; ++i) {
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/') path[--n] = '\0';
        if (rmdir(path) != 0) break;
        char *slash = strrchr(path, '/');
        if (!slash) break;
        *slash = '\0';
    }
    lg->tb_made = 0;
    lg->tb_path[0] = '\0';
}

int ct_tb_open(struct ct_logger *lg, const char *dir, ct_error *err) {
    snprintf(lg->tb_dir, sizeof lg->tb_dir, "%s", dir);
    if (make_dirs(dir, &lg->tb_made, &lg->tb_made_len, err)) {
        ct_tb_discard(lg); /* the directories made before the one that failed */
        return -1;
    }
    char host[64] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; ++p)
        if (*p == '/') *p = '_';
    double now = wall_time();
    /* The name TensorBoard looks for; O_EXCL so that a second run in the same
     * second and directory never writes into this one's file. */
    int fd = -1;
    for (int k = 0; k < 100 && fd < 0; ++k) {
        snprintf(lg->tb_path, sizeof lg->tb_path, "%s/events.out.tfevents.%lld.%s.%ld.%d", dir, (long long)now, host,
                 (long)getpid(), k);
        fd = open(lg->tb_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || !(lg->tb = fdopen(fd, "wb"))) {
        int e = errno;
        if (fd >= 0) close(fd);
        ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot write the TensorBoard log: %s", lg->tb_path, strerror(e));
        if (fd < 0) lg->tb_path[0] = '\0';
        ct_tb_discard(lg);
        return -1;
    }
    ct_pb event;
    ct_pb_reset(&event);
    ct_tb_event(&event, now, 0, NULL);
    if (ct_tfrecord_write(lg->tb, &event)) lg->tb_bad = 1;
    return 0;
}

static void write_event(struct ct_logger *lg, uint64_t step, const ct_pb *summary) {
    ct_pb event;
    ct_pb_reset(&event);
    ct_tb_event(&event, wall_time(), step, summary);
    if (ct_tfrecord_write(lg->tb, &event)) lg->tb_bad = 1;
}

void ct_tb_step(struct ct_logger *lg, const ct_step_record *r) {
    ct_pb s;
    ct_pb_reset(&s);
    if (r->batch_size) { /* an empty batch has no loss to plot, rather than a NaN */
        ct_tb_scalar_value(&s, "step/loss", (float)ct_record_loss(r));
        ct_tb_scalar_value(&s, "step/acc", (float)ct_record_accuracy(r));
    }
    ct_tb_scalar_value(&s, "step/grad_norm", (float)ct_record_grad_norm(r));
    ct_tb_scalar_value(&s, "step/max_abs_grad", (float)r->grad_max_abs);
    ct_tb_scalar_value(&s, "step/update_ratio", (float)ct_record_update_ratio(r));
    for (uint32_t i = 0; i < r->n_layers && i < (uint32_t)lg->n_layers; ++i) {
        char tag[64];
        snprintf(tag, sizeof tag, "layer_grad_norm/%s", lg->layer_names[i]);
        ct_tb_scalar_value(&s, tag, r->layer_nonfinite[i] ? NAN : (float)sqrt(r->layer_grad_sumsq[i]));
    }
    write_event(lg, r->step, &s);
    lg->tb_last_step = r->step;
}

void ct_tb_epoch(struct ct_logger *lg, const ct_epoch_summary *e) {
    ct_pb s;
    ct_pb_reset(&s);
    const struct {
        const char *tag;
        double v;
    } fields[] = {{"epoch/train_loss", e->train_loss}, {"epoch/train_acc", e->train_acc},
                  {"epoch/test_loss", e->test_loss},   {"epoch/test_acc", e->test_acc},
                  {"epoch/seconds", e->seconds},       {"epoch/samples_per_s", e->samples_per_s}};
    /* NaN here means "not measured" (an epoch stopped before evaluation). */
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; ++i)
        if (isfinite(fields[i].v)) ct_tb_scalar_value(&s, fields[i].tag, (float)fields[i].v);
    write_event(lg, lg->tb_last_step, &s);
}

void ct_tb_diagnosis(struct ct_logger *lg, const ct_diagnosis *d) {
    char tag[64], text[sizeof d->message + 128];
    snprintf(tag, sizeof tag, "diagnosis/%s", d->code);
    snprintf(text, sizeof text, "%s [%s]%s%s: %s", d->severity, d->code, d->layer[0] ? " in " : "", d->layer,
             d->message);
    ct_pb s;
    ct_pb_reset(&s);
    ct_tb_text_value(&s, tag, text);
    write_event(lg, d->step, &s);
}
