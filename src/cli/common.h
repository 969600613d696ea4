/* What `train` and `eval` share: choosing the device and loading a split. */
#ifndef CUTRAIN_CLI_COMMON_H
#define CUTRAIN_CLI_COMMON_H

#include <signal.h>

#include "cutrain/cutrain.h"

extern const char *const ct_device_choices[];
extern const char *const ct_optimizer_choices[];
extern const char *const ct_loss_choices[];
#define CT_CLI_LOSS_HELP "categorical_crossentropy|sparse_categorical_crossentropy|mse (default: the model's)"

/* The recipe flags train and bench share, over the model's own recipe:
 * optimizer (NULL: keep; else that optimizer with Keras's defaults, the
 * model's schedule kept), lr (<= 0: keep), batch_size (<= 0: keep). */
int ct_cli_apply_recipe(ct_model_spec *spec, const char *optimizer, double lr, int batch_size, ct_error *err);

/* The diagnoses known before the first step (the loss against the output
 * layer, the data's content), logged as train and bench start. */
void ct_cli_log_build_diagnoses(ct_logger *log, const ct_model_spec *spec, const ct_dataset *train,
                                const ct_dataset *test);

/* A line for stderr that waits until a command's inputs have all been
 * checked: a bad input then gets its one-line error and nothing else. */
typedef struct ct_cli_note {
    char text[sizeof(((ct_error *)0)->msg) + 64];
} ct_cli_note;

/* "auto": CUDA when a device works, else the CPU, with a note saying why
 * (empty when there is nothing to say). */
ct_backend *ct_cli_backend(const char *device, int threads, ct_cli_note *note, ct_error *err);
/* Prints a note that is not empty, unless quiet. */
void ct_cli_note_print(const ct_cli_note *note, int quiet);

/* Finds and loads the MNIST-named split ("train" or "test") of dir and checks
 * it against the model: not empty, items of input_dim values, labels < classes. */
int ct_cli_load_split(const char *dir, const char *split, const ct_model_spec *spec, ct_dataset *out, ct_error *err);

/* 0 when a file can be created at path (its directory exists and is
 * writable); checked before training so a run does not fail at the end. */
int ct_cli_check_writable(const char *path, const char *flag, ct_error *err);

/* ct_cli_check_writable, and for an output written beside and renamed over
 * (--save, --save-init): nothing there but a new name or a regular file. */
int ct_cli_check_replaceable(const char *path, const char *flag, ct_error *err);

/* 0 when a log directory can be used or made at path (not empty: the
 * argument parser refuses empty values): it is a writable directory, or the
 * nearest existing one above it is. */
int ct_cli_check_log_dir(const char *path, const char *flag, ct_error *err);

/* One file a command reads (output 0) or writes (output 1), with the flag
 * that named it; NULL paths are skipped. */
typedef struct ct_cli_file {
    const char *flag, *path;
    int output;
    const char *may_be; /* an input: the output flag that may name the same file (--resume and --save) */
} ct_cli_file;

/* The inputs every command has: the model file (none for a preset) and the
 * data files of the loaded splits (either may be NULL). Returns how many
 * entries it wrote to files (at most 5). */
int ct_cli_input_files(const char *model, const ct_dataset *train, const ct_dataset *test, ct_cli_file *files);

/* 0 when no output is the same file as another output or an input: two
 * logs would interleave in one file, weights renamed over a log would lose
 * it, and a log over the data or the model would destroy them. Otherwise a
 * usage error naming both flags. Files are compared by device and inode
 * when they exist, else by their directory's and their name. */
int ct_cli_check_distinct(const ct_cli_file *files, int n, ct_error *err);

/* SIGINT, SIGTERM and SIGHUP (an ssh session that dropped) set a flag the
 * trainer reads at each step boundary, from before the first input is read
 * until ct_cli_release_stop_signals, so a stop at any point ends cleanly; a
 * signal the process inherited as ignored (nohup, a background job of a
 * non-interactive shell) stays ignored. The flag holds the signal number. */
extern volatile sig_atomic_t ct_cli_stop_signal;
void ct_cli_catch_stop_signals(void);
void ct_cli_release_stop_signals(void);
/* 0 while no stop signal came; else CT_EXIT_INTERRUPTED with err saying it
 * came before `when` ("training began") and that nothing was written. */
int ct_cli_interrupted_before(const char *what, ct_error *err);

#endif
