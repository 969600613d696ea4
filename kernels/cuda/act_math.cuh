/* One element of bias + activation, forward and backward: the device
 * functions behind activation_cuda.cu's elementwise kernels and the fused
 * dense chain (dense_chain_cuda.cu), so both round exactly alike. The math is
 * kernels/cpu/activation_cpu.c's; softmax works on whole rows and lives in
 * activation_cuda.cu. */
#ifndef CUTRAIN_KERNELS_CUDA_ACT_MATH_CUH
#define CUTRAIN_KERNELS_CUDA_ACT_MATH_CUH

#include "cutrain/backend.h"

/* NaN <= 0 is false, so NaN passes through (the health checks must see it). */
static __device__ __forceinline__ float ct_relu(float z) { return z <= 0.0f ? 0.0f : z; }

/* Two branches so that only e^-|z| is ever formed (see the CPU version). */
static __device__ __forceinline__ float ct_sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    const float e = expf(z);
    return e / (1.0f + e);
}

/* act(z) for the elementwise activations; linear (and softmax, which has
 * its own row kernel) returns z. */
static __device__ __forceinline__ float ct_act_forward_one(ct_activation act, float z) {
    switch (act) {
    case CT_ACT_RELU: return ct_relu(z);
    case CT_ACT_SIGMOID: return ct_sigmoid(z);
    case CT_ACT_TANH: return tanhf(z);
    default: return z;
    }
}

/* dL/dz from the output y and dL/dy. The products use __fmul_rn so nvcc
 * cannot fuse them into an FMA: each is rounded as the CPU rounds it. */
static __device__ __forceinline__ float ct_act_backward_one(ct_activation act, float y, float d) {
    switch (act) {
    case CT_ACT_RELU: return y > 0.0f ? d : 0.0f;
    case CT_ACT_SIGMOID: return __fmul_rn(d, __fmul_rn(y, 1.0f - y));
    case CT_ACT_TANH: return __fmul_rn(d, 1.0f - __fmul_rn(y, y));
    default: return d;
    }
}

#endif
