/* The logger: opens the files, fans each record out to the sinks, and
 * prints the terminal lines. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/io/text.h"
#include "src/log/sinks.h"

/* One log file, opened but not yet emptied: a regular file is created or
 * opened and locked (flock, advisory), so that a second run given the same
 * path is refused instead of both writing into one file; a device or pipe
 * (/dev/null, /dev/stdout) is opened as it is. */
typedef struct pending_log {
    int fd;
    int made;    /* created by this open: removed again if the run does not start */
    int regular; /* emptied once every log is open */
} pending_log;

static int lock_log(const char *path, const char *what, pending_log *out, ct_error *err) {
    struct stat st;
    out->fd = -1;
    out->made = 0;
    out->regular = !(stat(path, &st) == 0 && !S_ISREG(st.st_mode));
    if (!out->regular) {
        out->fd = open(path, O_WRONLY | O_CLOEXEC);
    } else {
        out->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (out->fd >= 0) out->made = 1;
        else if (errno == EEXIST) out->fd = open(path, O_WRONLY | O_CLOEXEC);
    }
    if (out->fd < 0) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot write the %s log: %s", path, what, strerror(errno));
    if (out->regular && flock(out->fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        close(out->fd);
        out->fd = -1;
        if (out->made) remove(path);
        out->made = 0;
        if (e == EWOULDBLOCK)
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "%s: another process is writing this %s log (a second run given the same path?)", path, what);
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot lock the %s log: %s", path, what, strerror(e));
    }
    return 0;
}

/* Empties a locked log and gives it a stream; NULL with err set. */
static FILE *start_log(const char *path, const char *what, pending_log *p, ct_error *err) {
    FILE *f = (!p->regular || ftruncate(p->fd, 0) == 0) ? fdopen(p->fd, "w") : NULL;
    if (!f) ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot write the %s log: %s", path, what, strerror(errno));
    else p->fd = -1; /* the stream owns it */
    return f;
}

static void drop_log(const char *path, pending_log *p) {
    if (p->fd >= 0) close(p->fd);
    if (p->made) remove(path);
    p->fd = -1;
}

ct_logger *ct_logger_open(const ct_log_options *opt, ct_error *err) {
    if (!opt || (opt->n_layers > 0 && !opt->layer_names)) {
        ct_fail(err, CT_EXIT_USAGE, "logs: %s", opt ? "n_layers is set but layer_names is NULL" : "no options");
        return NULL;
    }
    ct_logger *lg = calloc(1, sizeof *lg);
    if (!lg) {
        ct_fail(err, CT_EXIT_FAILURE, "out of memory opening the logs");
        return NULL;
    }
    lg->quiet = opt->quiet;
    lg->tty = opt->tty && !opt->quiet;
    lg->jsonl_diagnoses_only = opt->jsonl_diagnoses_only;
    lg->n_layers = opt->n_layers < CT_MAX_PARAM_LAYERS ? opt->n_layers : CT_MAX_PARAM_LAYERS;
    for (int i = 0; i < lg->n_layers; ++i) snprintf(lg->layer_names[i], 32, "%s", opt->layer_names[i]);
    /* A path cut to fit would name another file, which the log would empty. */
    const char *paths[2] = {opt->jsonl_path, opt->csv_path};
    for (int i = 0; i < 2; ++i)
        if (paths[i] && strlen(paths[i]) >= sizeof lg->jsonl_path) {
            ct_fail(err, CT_EXIT_USAGE, "%.200s...: a log path of at most %zu bytes, got %zu", paths[i],
                    sizeof lg->jsonl_path - 1, strlen(paths[i]));
            free(lg);
            return NULL;
        }
    if (opt->jsonl_path) snprintf(lg->jsonl_path, sizeof lg->jsonl_path, "%s", opt->jsonl_path);
    if (opt->csv_path) snprintf(lg->csv_path, sizeof lg->csv_path, "%s", opt->csv_path);
    /* Every log is opened and locked before any is emptied: a run refused
     * here leaves an existing log as it was, and takes away what it made. */
    pending_log j = {-1, 0, 0}, c = {-1, 0, 0};
    if ((opt->jsonl_path && lock_log(lg->jsonl_path, "JSONL", &j, err)) ||
        (opt->csv_path && lock_log(lg->csv_path, "CSV", &c, err)) ||
        (opt->tensorboard_dir && ct_tb_open(lg, opt->tensorboard_dir, err)))
        goto fail;
    if (opt->jsonl_path && !(lg->jsonl = start_log(lg->jsonl_path, "JSONL", &j, err))) goto fail;
    if (opt->csv_path) {
        if (!(lg->csv = start_log(lg->csv_path, "CSV", &c, err))) goto fail;
        ct_csv_header(lg->csv);
    }
    return lg;
fail:
    drop_log(lg->jsonl_path, &j);
    drop_log(lg->csv_path, &c);
    if (lg->jsonl) {
        fclose(lg->jsonl);
        /* An emptied file goes; a device or pipe (/dev/null) is not ours to
         * remove, and as root remove() would take the device node away. */
        if (j.regular) remove(lg->jsonl_path);
    }
    if (lg->tb) ct_tb_discard(lg);
    free(lg);
    return NULL;
}

static void clear_progress(ct_logger *lg) {
    if (!lg->progress_shown) return;
    fputs("\r\033[K", stdout);
    fflush(stdout);
    lg->progress_shown = 0;
}

void ct_log_step(ct_logger *lg, const ct_step_record *r) {
    if (lg->jsonl && !lg->jsonl_diagnoses_only) ct_jsonl_step(lg, r);
    if (lg->tb) ct_tb_step(lg, r);
}

void ct_log_progress(ct_logger *lg, uint32_t epoch, uint32_t epochs, uint64_t step_in_epoch,
                     uint64_t steps_in_epoch, double loss, double acc, double samples_per_s, double eta_s) {
    if (!lg->tty) return;
    printf("\r\033[Kepoch %u/%u  %llu/%llu  loss %.4f  acc %.4f  %.0f samples/s  ETA %.0fs", epoch, epochs,
           (unsigned long long)step_in_epoch, (unsigned long long)steps_in_epoch, loss, acc, samples_per_s,
           eta_s > 0 ? eta_s : 0.0);
    fflush(stdout);
    lg->progress_shown = 1;
}

static void flush_log(ct_logger *lg, FILE *f) {
    errno = 0;
    if (fflush(f) != 0 && !lg->flush_errno) lg->flush_errno = errno ? errno : EIO;
}

void ct_log_epoch(ct_logger *lg, const ct_epoch_summary *e, uint32_t epochs) {
    if (lg->jsonl && !lg->jsonl_diagnoses_only) {
        ct_jsonl_epoch(lg->jsonl, e);
        flush_log(lg, lg->jsonl);
    }
    if (lg->csv) {
        ct_csv_epoch(lg->csv, e);
        flush_log(lg, lg->csv);
    }
    if (lg->tb) {
        ct_tb_epoch(lg, e);
        flush_log(lg, lg->tb);
    }
    if (lg->quiet) return;
    clear_progress(lg);
    printf("epoch %u/%u  %llu steps  %.2fs  %.0f samples/s  train loss %.4f acc %.4f", e->epoch, epochs,
           (unsigned long long)e->steps, e->seconds, e->samples_per_s, e->train_loss, e->train_acc);
    if (isfinite(e->test_acc)) printf("  test loss %.4f acc %.4f", e->test_loss, e->test_acc);
    if (e->empty_batches) printf("  empty batches %llu", (unsigned long long)e->empty_batches);
    if (e->skipped_steps) printf("  skipped %llu", (unsigned long long)e->skipped_steps);
    putchar('\n');
    fflush(stdout);
}

void ct_log_diagnosis(ct_logger *lg, const ct_diagnosis *d) {
    if (lg->jsonl) ct_jsonl_diagnosis(lg->jsonl, d);
    if (lg->tb) ct_tb_diagnosis(lg, d);
    /* Diagnoses are why the user reads the terminal: shown even when quiet. */
    clear_progress(lg);
    /* The message may quote a path or a file's words: shown escaped, on one line. */
    fprintf(stderr, "cutrain: %s [%s]%s", d->severity, d->code, d->layer[0] ? " in " : "");
    ct_put_escaped(stderr, d->layer);
    fputs(": ", stderr);
    ct_put_escaped(stderr, d->message);
    fputc('\n', stderr);
}

int ct_log_summary(ct_logger *lg, const ct_run_summary *s, ct_error *err) {
    int e = 0;
    if (!lg->quiet) {
        clear_progress(lg);
        printf("%s: %llu steps in %.2fs", s->status, (unsigned long long)s->steps, s->seconds);
        if (isfinite(s->test_acc)) printf(", test accuracy %.4f", s->test_acc);
        putchar('\n');
        errno = 0;
        if (fflush(stdout) != 0 || ferror(stdout)) e = errno ? errno : EIO;
    }
    ct_run_summary failed = *s;
    if (e && s->exit_code == CT_EXIT_OK) failed.status = "failed", failed.exit_code = CT_EXIT_FAILURE;
    if (lg->jsonl && !lg->jsonl_diagnoses_only) ct_jsonl_summary(lg->jsonl, &failed, NULL);
    if (!e) return 0;
    return ct_fail(err, CT_EXIT_FAILURE, "stdout: write failed: %s", strerror(e));
}

void ct_log_summary_fields(ct_logger *lg, const ct_run_summary *s, const char *extra) {
    if (!lg->jsonl) return;
    ct_jsonl_summary(lg->jsonl, s, extra);
    flush_log(lg, lg->jsonl);
}

void ct_log_note(ct_logger *lg, const char *fmt, ...) {
    if (lg && lg->quiet) return;
    if (lg) clear_progress(lg);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fputs("cutrain: ", stderr);
    ct_put_escaped(stderr, line);
    fputc('\n', stderr);
}

int ct_logger_failed(const ct_logger *lg, ct_error *err) {
    if (!lg) return 0;
    const struct {
        FILE *f;
        const char *path;
    } logs[] = {{lg->jsonl, lg->jsonl_path}, {lg->csv, lg->csv_path}, {lg->tb, lg->tb_path}};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; ++i)
        if (logs[i].f && (ferror(logs[i].f) || (logs[i].f == lg->tb && lg->tb_bad)))
            return ct_fail(err, CT_EXIT_FAILURE, "%s: writing the log failed: %s", logs[i].path,
                           strerror(lg->flush_errno ? lg->flush_errno : EIO));
    return 0;
}

static int close_file(const ct_logger *lg, FILE *f, const char *path, ct_error *err) {
    if (!f) return 0;
    int bad = ferror(f), e = 0;
    errno = 0;
    if (fflush(f) != 0) bad = 1, e = errno;
    if (fclose(f) != 0) bad = 1, e = e ? e : errno;
    if (!bad) return 0;
    if (!e) e = lg->flush_errno ? lg->flush_errno : EIO; /* an earlier write failed: its flush's reason */
    /* A log the disk never took a byte of says nothing: it goes, rather than
     * stay behind as an empty file. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) remove(path);
    return ct_fail(err, CT_EXIT_FAILURE, "%s: writing the log failed: %s", path, strerror(e));
}

int ct_logger_close(ct_logger *lg, ct_error *err) {
    if (!lg) return 0;
    clear_progress(lg);
    int rc = close_file(lg, lg->jsonl, lg->jsonl_path, err);
    if (close_file(lg, lg->csv, lg->csv_path, rc ? NULL : err)) rc = -1;
    if (lg->tb_bad && !rc) rc = ct_fail(err, CT_EXIT_FAILURE, "%s: writing the TensorBoard log failed", lg->tb_path);
    if (close_file(lg, lg->tb, lg->tb_path, rc ? NULL : err)) rc = -1;
    if (lg->tb && access(lg->tb_path, F_OK) != 0) { /* removed empty: the directories made for it go too */
        lg->tb = NULL;
        lg->tb_path[0] = '\0';
        ct_tb_discard(lg);
    }
    free(lg);
    return rc;
}
