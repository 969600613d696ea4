/* The scratch of the deterministic two-stage reductions (stats, optimizer),
 * apart from cuda_common.h so that device code which only needs its size
 * (the .cuh files the emulator in tests/emu also compiles) can include it
 * without the CUDA runtime headers. */
#ifndef CUTRAIN_KERNELS_CUDA_PARTIALS_H
#define CUTRAIN_KERNELS_CUDA_PARTIALS_H

/* Per-block partials: stats and optimizer each use at most this many blocks
 * in their first pass. */
#define CT_CUDA_MAX_PARTIAL_BLOCKS 1024

/* Doubles per block in the partials buffer (room for per-layer sums and counts). */
#define CT_CUDA_PARTIAL_STRIDE 8

#endif
