/* `cutrain show`: a run's JSONL log (cutrain train --log-jsonl) told to a
 * person: how the run ended, its epochs, every diagnosis, which health flags
 * were raised on which steps, and the loss from the first step to the last.
 * Everything comes from the records; nothing is recomputed or guessed. A log
 * without a summary record is itself news (the run was killed, is still
 * running, or the file was cut) and is said first.
 */
#ifndef CUTRAIN_SRC_LOG_SHOW_H
#define CUTRAIN_SRC_LOG_SHOW_H

#include <stdio.h>

#include "cutrain/error.h"
#include "src/io/jsonl_read.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Columns of the loss sparkline (one column per stretch of steps). */
#define CT_SHOW_SPARK_COLS 60

/* Writes the account of log f to out. 0, or -1 with err (out of memory:
 * CT_EXIT_FAILURE; a log with no records, or a field show prints that holds
 * the wrong JSON type: CT_EXIT_BAD_INPUT, naming the file and line). Strings from
 * the log are printed with control characters replaced (ct_json_string_copy). */
int ct_show_log(const ct_jsonl_file *f, FILE *out, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
