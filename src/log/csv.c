/* CSV: one row per epoch, for spreadsheets and plotting. Empty cells for
 * values that were not measured (an epoch stopped before evaluation). */
#include <math.h>
#include <stdio.h>

#include "src/log/sinks.h"

void ct_csv_header(FILE *f) {
    fputs("epoch,steps,samples,train_loss,train_acc,test_loss,test_acc,seconds,samples_per_s,"
          "empty_batches,skipped_steps\n", f);
}

static void cell(FILE *f, double v) {
    fputc(',', f);
    if (isfinite(v)) fprintf(f, "%.9g", v);
}

void ct_csv_epoch(FILE *f, const ct_epoch_summary *e) {
    fprintf(f, "%u,%llu,%llu", e->epoch, (unsigned long long)e->steps, (unsigned long long)e->samples);
    cell(f, e->train_loss);
    cell(f, e->train_acc);
    cell(f, e->test_loss);
    cell(f, e->test_acc);
    cell(f, e->seconds);
    cell(f, e->samples_per_s);
    fprintf(f, ",%llu,%llu\n", (unsigned long long)e->empty_batches, (unsigned long long)e->skipped_steps);
}
