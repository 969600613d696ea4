#ifndef CUTRAIN_SRC_IO_CLOCK_H
#define CUTRAIN_SRC_IO_CLOCK_H
/* Seconds on the monotonic clock: for intervals, never for dates. */
double ct_now(void);
#endif
