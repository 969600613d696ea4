/* A file written all or nothing. The bytes go into a temporary file beside
 * the path (PATH.tmp.PID, the name cut to leave room for the suffix within
 * 255 bytes; created with O_EXCL | O_NOFOLLOW, so a link planted at that name
 * is never followed), are flushed to the disk, and only then is the
 * temporary renamed over the path and the directory synced: a failed write
 * (a full disk, ulimit -f, a crash) leaves the old file as it was and no
 * temporary behind. A replaced file keeps its permission bits.
 *
 * Used by checkpoints (safetensors) and `cutrain bench --json`. What may be
 * replaced is the caller's decision: this only refuses nothing.
 */
#ifndef CUTRAIN_SRC_IO_ATOMIC_FILE_H
#define CUTRAIN_SRC_IO_ATOMIC_FILE_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_atomic_file {
    FILE *f;   /* write the contents here */
    char *tmp; /* the temporary file's path */
} ct_atomic_file;

/* Creates the temporary file for path. 0, or the errno that stopped it
 * (then nothing was created and af holds nothing to release). */
int ct_atomic_open(ct_atomic_file *af, const char *path);

/* Flushes, syncs and closes the temporary file and renames it over path.
 * 0, or the first errno met; either way af is released, and on failure the
 * temporary file is removed. */
int ct_atomic_commit(ct_atomic_file *af, const char *path);

/* Gives up: closes and removes the temporary file. */
void ct_atomic_abort(ct_atomic_file *af);

#ifdef __cplusplus
}
#endif

#endif
