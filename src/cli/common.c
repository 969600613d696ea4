#include "src/cli/common.h"

#include "src/io/atomic_file.h"

#include <errno.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const ct_device_choices[] = {"auto", "cpu", "cuda", NULL};
const char *const ct_optimizer_choices[] = {"sgd", "adam", "adamw", "rmsprop", NULL};
const char *const ct_loss_choices[] = {"categorical_crossentropy", "sparse_categorical_crossentropy", "mse", NULL};

int ct_cli_apply_recipe(ct_model_spec *spec, const char *optimizer, double lr, int batch_size, ct_error *err) {
    if (optimizer) {
        ct_schedule keep = spec->optim.schedule;
        spec->optim = ct_optim_defaults((ct_optimizer_kind)ct_optim_parse_kind(optimizer));
        spec->optim.schedule = keep;
    }
    if (lr > 0) spec->optim.lr = (float)lr;
    if (batch_size > 0) spec->batch_size = batch_size;
    if (spec->optim.lr < 1e-30f)
        return ct_fail(err, CT_EXIT_USAGE, "--lr: %g is below what float32 can hold as a learning rate", lr);
    return 0;
}

ct_backend *ct_cli_backend(const char *device, int threads, ct_cli_note *note, ct_error *err) {
    note->text[0] = '\0';
    if (strcmp(device, "cpu") == 0) return ct_backend_create(CT_DEVICE_CPU, threads, err);
    if (strcmp(device, "cuda") == 0) return ct_backend_create(CT_DEVICE_CUDA, threads, err);
    char why[sizeof err->msg];
    if (ct_cuda_available(why, sizeof why)) {
        ct_backend *b = ct_backend_create(CT_DEVICE_CUDA, threads, err);
        /* A setting the user got wrong (CUTRAIN_CUDA_*) is theirs to fix,
         * not a reason to fall back to the CPU. */
        if (b || err->code == CT_EXIT_USAGE) return b;
        snprintf(why, sizeof why, "%s", err->msg);
        ct_error_clear(err);
    }
    snprintf(note->text, sizeof note->text, "cutrain: --device auto: no usable GPU (%s); using the CPU", why);
    return ct_backend_create(CT_DEVICE_CPU, threads, err);
}

void ct_cli_note_print(const ct_cli_note *note, int quiet) {
    if (!quiet && note->text[0]) fprintf(stderr, "%s\n", note->text);
}

int ct_cli_load_split(const char *dir, const char *split, const ct_model_spec *spec, ct_dataset *out,
                      ct_error *err) {
    char images[1024], labels[1024];
    if (ct_mnist_find(dir, split, images, labels, sizeof images, err)) return -1;
    if (ct_dataset_load(images, labels, out, err)) return -1;
    if (out->count == 0) {
        ct_fail(err, CT_EXIT_BAD_INPUT, "%s: the %s set has 0 items; there is nothing to %s", images, split,
                strcmp(split, "train") == 0 ? "train on" : "evaluate on");
        goto fail;
    }
    if (ct_train_check_set(out, spec, err)) goto fail;
    return 0;
fail:
    ct_dataset_free(out);
    return -1;
}

int ct_cli_check_writable(const char *path, const char *flag, ct_error *err) {
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    struct stat st;
    const size_t len = strlen(path);
    if ((len > 0 && path[len - 1] == '/') || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s names a directory; expected a file path", path, flag);
    if (stat(dir, &st) != 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: directory '%s' %s", path, flag, dir,
                       errno == ENOENT ? "does not exist" : strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: '%s' is not a directory", path, flag, dir);
    if (access(dir, W_OK) != 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: directory '%s' is not writable: %s", path, flag, dir,
                       strerror(errno));
    const char *slash = strrchr(path, '/');
    const size_t base = strlen(slash ? slash + 1 : path);
    if (base > 255) /* NAME_MAX of Linux's file systems: found now, not when the run ends */
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: a file name of %zu bytes; at most 255", path, flag, base);
    /* Before any output is opened: a refusal after another log was opened
     * (and emptied) would lose that log's old contents. */
    if (stat(path, &st) == 0 && access(path, W_OK) != 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: the file is not writable: %s", path, flag, strerror(errno));
    return 0;
}

int ct_cli_check_replaceable(const char *path, const char *flag, ct_error *err) {
    if (ct_cli_check_writable(path, flag, err)) return -1;
    ct_error e;
    ct_error_clear(&e);
    if (ct_safetensors_check_destination(path, &e))
        return ct_fail(err, e.code, "%s (%s)", e.msg, flag);
    /* What the permission bits do not tell: a file system out of inodes, one
     * that takes no new files (/proc), a name too long for it. The file is
     * written beside the path and renamed over it, so that is what is tried. */
    ct_atomic_file probe;
    int e_open = ct_atomic_open(&probe, path);
    if (e_open) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: cannot create a file there: %s", path, flag, strerror(e_open));
    ct_atomic_abort(&probe);
    return 0;
}

int ct_cli_check_log_dir(const char *path, const char *flag, ct_error *err) {
    char dir[1024];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return ct_fail(err, CT_EXIT_USAGE, "%s: a path of at most %zu characters, got %zu", flag, sizeof dir - 1,
                       strlen(path));
    struct stat st;
    /* Up to the nearest directory that exists: the one the others are made in. */
    while (stat(dir, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: '%s': %s", path, flag, dir, strerror(errno));
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", dir);
        snprintf(dir, sizeof dir, "%s", dirname(copy));
    }
    if (!S_ISDIR(st.st_mode))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: '%s' is not a directory", path, flag, dir);
    if (access(dir, W_OK) != 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %s: directory '%s' is not writable: %s", path, flag, dir,
                       strerror(errno));
    return 0;
}

int ct_cli_input_files(const char *model, const ct_dataset *train, const ct_dataset *test, ct_cli_file *files) {
    int n = 0;
    ct_model_spec preset;
    if (model && ct_model_spec_preset(model, &preset) != 0) files[n++] = (ct_cli_file){"--model", model, 0};
    const ct_dataset *sets[2] = {train, test};
    for (int i = 0; i < 2; ++i)
        if (sets[i] && sets[i]->images_path[0]) {
            files[n++] = (ct_cli_file){"--data", sets[i]->images_path, 0};
            files[n++] = (ct_cli_file){"--data", sets[i]->labels_path, 0};
        }
    return n;
}

/* What makes two paths the same file, as text: the file's device and inode
 * when it exists, else its directory's and its name; "" when it is not a
 * regular file or cannot be told (the writability checks report those). */
static void file_key(const char *path, char *key, size_t len) {
    struct stat st;
    if (stat(path, &st) == 0) {
        /* /dev/null for two logs is fine: only regular files can be clobbered. */
        if (S_ISREG(st.st_mode)) snprintf(key, len, "file %ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
        else key[0] = '\0';
        return;
    }
    char dir_copy[1024], base_copy[1024];
    snprintf(dir_copy, sizeof dir_copy, "%s", path);
    snprintf(base_copy, sizeof base_copy, "%s", path);
    if (stat(dirname(dir_copy), &st) != 0) {
        key[0] = '\0';
        return;
    }
    snprintf(key, len, "dir %ju:%ju/%s", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino, basename(base_copy));
}

int ct_cli_check_distinct(const ct_cli_file *files, int n, ct_error *err) {
    char a[1100], b[1100];
    for (int i = 0; i < n; ++i) {
        if (!files[i].path || !files[i].output) continue;
        file_key(files[i].path, a, sizeof a);
        if (!a[0]) continue;
        for (int j = 0; j < n; ++j) {
            if (j == i || !files[j].path || (files[j].output && j < i)) continue;
            file_key(files[j].path, b, sizeof b);
            if (strcmp(a, b) != 0) continue;
            if (!files[j].output && files[j].may_be && strcmp(files[j].may_be, files[i].flag) == 0) continue;
            if (files[j].output)
                return ct_fail(err, CT_EXIT_USAGE, "%s %s: the same file as %s %s; give each output its own file",
                               files[i].flag, files[i].path, files[j].flag, files[j].path);
            return ct_fail(err, CT_EXIT_USAGE, "%s %s: the same file as the input %s of %s; it would be overwritten",
                           files[i].flag, files[i].path, files[j].path, files[j].flag);
        }
    }
    return 0;
}

volatile sig_atomic_t ct_cli_stop_signal = 0;

static const int k_stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction g_saved[3];
static int g_caught[3];

static void on_stop_signal(int sig) { ct_cli_stop_signal = sig; }

void ct_cli_catch_stop_signals(void) {
    for (int i = 0; i < 3; ++i) {
        g_caught[i] = 0;
        if (sigaction(k_stop_signals[i], NULL, &g_saved[i]) != 0 || g_saved[i].sa_handler == SIG_IGN) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART; /* a read of the data goes on; the flag is looked at between steps */
        g_caught[i] = sigaction(k_stop_signals[i], &sa, NULL) == 0;
    }
}

void ct_cli_release_stop_signals(void) {
    for (int i = 0; i < 3; ++i)
        if (g_caught[i]) sigaction(k_stop_signals[i], &g_saved[i], NULL), g_caught[i] = 0;
}

int ct_cli_interrupted_before(const char *what, ct_error *err) {
    if (!ct_cli_stop_signal) return 0;
    return ct_fail(err, CT_EXIT_INTERRUPTED, "interrupted by %s before %s; nothing was written",
                   ct_cli_stop_signal == SIGINT ? "SIGINT" : ct_cli_stop_signal == SIGTERM ? "SIGTERM" : "SIGHUP", what);
}

/* Warnings known before the first step: the model's loss against its output,
 * and data that loads but cannot teach. Logged as step-0 diagnoses. */
void ct_cli_log_build_diagnoses(ct_logger *log, const ct_model_spec *spec, const ct_dataset *train,
                                const ct_dataset *test) {
    ct_diagnosis d[6];
    int n = ct_health_check_model(spec, d, 2);
    n += ct_dataset_check_content(train, 0, d + n, 2);
    n += ct_dataset_check_content(test, 1, d + n, 2);
    for (int i = 0; i < n; ++i) ct_log_diagnosis(log, &d[i]);
}

