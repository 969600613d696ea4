/* The CUDA backend: device memory, one non-blocking stream, cuBLAS for GEMM,
 * cuDNN for convolutions and hand-written kernels for the rest (the other
 * kernels/cuda/ files).
 *
 * Everything the backend queues goes on impl->stream, in order, so the
 * ops need no events between them; the host waits only in upload, download,
 * sync and fence_wait. A whole training step can be captured into a CUDA
 * graph (capture_begin/capture_end) and replayed, because every per-step
 * value lives in the device-side step context, not in kernel arguments.
 *
 * cuBLAS is set up for parity and reproducibility rather than peak speed:
 * plain fp32 (CUBLAS_DEFAULT_MATH: no TF32), no atomics (so results do not
 * depend on scheduling), and a fixed workspace (so a captured GEMM never
 * allocates and replays the same algorithm with the same scratch). cuDNN
 * likewise: one handle on the same stream, fp32 FMA math (no TF32), the
 * algorithms chosen once per layer in conv_plan (see conv_cuda.cu).
 *
 * Errors: a failing CUDA call inside an op is fatal (ct_cuda_fatal). Only
 * the calls whose contract allows failure - create, alloc, host_alloc and
 * capture - return an error instead, so the caller can fall back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

/* cuBLAS's recommended workspace for Hopper; ample for older GPUs. */
#define CT_CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

/* ------------------------------------------------------------------------ */
/* Fatal errors                                                              */

/* __FILE__ is an absolute path; from "kernels/" on it says all that matters. */
static const char *short_path(const char *file) {
    const char *p = file ? strstr(file, "kernels/") : NULL;
    return p ? p : (file ? file : "?");
}

void ct_cuda_fatal(const char *what, const char *call, const char *file, int line) {
    /* Only plain queries here, unchecked: they work even after a sticky
     * device fault, and a failure must not recurse into this function. */
    int dev = -1;
    char name[256] = "unknown device";
    if (cudaGetDevice(&dev) == cudaSuccess) {
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) snprintf(name, sizeof name, "%s", prop.name);
    } else {
        dev = -1;
    }
    if (dev >= 0)
        fprintf(stderr, "cutrain: error: CUDA: %s in %s at %s:%d (device %d, %s)\n", what ? what : "error",
                call ? call : "?", short_path(file), line, dev, name);
    else
        fprintf(stderr, "cutrain: error: CUDA: %s in %s at %s:%d (no current device)\n", what ? what : "error",
                call ? call : "?", short_path(file), line);
    exit(CT_EXIT_FAILURE);
}

/* ------------------------------------------------------------------------ */
/* Availability                                                              */

/* An empty kernel: asking for its attributes tells whether this build holds
 * machine code (or PTX) the device can run, before any real launch fails. */
static __global__ void probe_kernel(void) {}

int ct_cuda_available(char *reason, size_t reason_len) {
    char dummy[8];
    if (!reason || !reason_len) {
        reason = dummy;
        reason_len = sizeof dummy;
    }
    reason[0] = '\0';

    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* clear it; nothing else must see it */
        if (e == cudaErrorInsufficientDriver)
            snprintf(reason, reason_len, "CUDA driver missing or too old (%s)", cudaGetErrorString(e));
        else if (e == cudaErrorNoDevice)
            snprintf(reason, reason_len, "no CUDA device found (%s)", cudaGetErrorString(e));
        else
            snprintf(reason, reason_len, "CUDA initialisation failed (%s)", cudaGetErrorString(e));
        return 0;
    }
    if (count <= 0) {
        snprintf(reason, reason_len, "no CUDA device found");
        return 0;
    }

    /* Device 0 of those the runtime sees ($CUDA_VISIBLE_DEVICES applies).
     * cudaFree(0) forces the context into existence, so a device that is
     * busy (exclusive mode), faulted or out of memory is reported here and
     * not by the first op. */
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e == cudaSuccess) e = cudaSetDevice(0);
    if (e == cudaSuccess) e = cudaFree(0);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(reason, reason_len, "CUDA device 0 cannot be used (%s)", cudaGetErrorString(e));
        return 0;
    }
    cudaFuncAttributes attr;
    e = cudaFuncGetAttributes(&attr, probe_kernel);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(reason, reason_len, "%s (sm_%d%d) cannot run this build's kernels (%s)", prop.name, prop.major,
                 prop.minor, cudaGetErrorString(e));
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static void *cuda_alloc(ct_backend *b, size_t bytes, ct_error *err) {
    ct_cuda_impl *im = ct_cuda(b);
    void *p = NULL;
    /* cudaMalloc(0) may succeed with NULL, which callers read as failure. */
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaSuccess) return p;
    (void)cudaGetLastError(); /* an allocation failure is not a device fault */
    if (e == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
            ct_fail(err, CT_EXIT_FAILURE, "cuda: out of memory: asked for %.1f MiB, %.1f MiB free of %.1f MiB on %s",
                    mib(bytes), mib(free_b), mib(total_b), im->name);
        else
            ct_fail(err, CT_EXIT_FAILURE, "cuda: out of memory: asked for %.1f MiB on %s", mib(bytes), im->name);
        (void)cudaGetLastError();
    } else {
        ct_fail(err, CT_EXIT_FAILURE, "cuda: allocating %.1f MiB on %s failed: %s", mib(bytes), im->name,
                cudaGetErrorString(e));
    }
    return NULL;
}

static void cuda_free(ct_backend *b, void *p) {
    if (p) CT_CUDA_CHECK(cudaFree(p));
}

/* host_src may be pageable and may be freed as soon as this returns, so the
 * copy is waited for; queuing it on the stream keeps it behind earlier ops. */
static void cuda_upload(ct_backend *b, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    ct_cuda_impl *im = ct_cuda(b);
    CT_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, im->stream));
    CT_CUDA_CHECK(cudaStreamSynchronize(im->stream));
}

static void cuda_download(ct_backend *b, void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    ct_cuda_impl *im = ct_cuda(b);
    CT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, im->stream));
    CT_CUDA_CHECK(cudaStreamSynchronize(im->stream));
}

static void cuda_zero(ct_backend *b, void *dst, size_t bytes) {
    if (!bytes) return;
    CT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ct_cuda(b)->stream));
}

static void cuda_sync(ct_backend *b) { CT_CUDA_CHECK(cudaStreamSynchronize(ct_cuda(b)->stream)); }

static void *cuda_host_alloc(ct_backend *b, size_t bytes, ct_error *err) {
    void *p = NULL;
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e == cudaSuccess) return p;
    (void)cudaGetLastError();
    ct_fail(err, CT_EXIT_FAILURE, "cuda: cannot allocate %.1f MiB of pinned host memory: %s", mib(bytes),
            cudaGetErrorString(e));
    return NULL;
}

static void cuda_host_free(ct_backend *b, void *p) {
    if (p) CT_CUDA_CHECK(cudaFreeHost(p));
}

/* host_dst is host_alloc (pinned) memory, so the copy is truly asynchronous;
 * the caller waits on a fence set after it. */
static void cuda_download_async(ct_backend *b, void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, ct_cuda(b)->stream));
}

static cudaEvent_t fence_event(ct_backend *b, int id) {
    if (id < 0 || id >= CT_MAX_FENCES) ct_cuda_fatal("fence id out of range", "fence", __FILE__, __LINE__);
    return ct_cuda(b)->fences[id];
}

static void cuda_fence(ct_backend *b, int id) {
    CT_CUDA_CHECK(cudaEventRecord(fence_event(b, id), ct_cuda(b)->stream));
}

static void cuda_fence_wait(ct_backend *b, int id) { CT_CUDA_CHECK(cudaEventSynchronize(fence_event(b, id))); }

/* ------------------------------------------------------------------------ */
/* Capture and replay                                                        */

/* Thread-local mode: only this thread's unsafe calls (cudaMalloc, a sync)
 * break the capture; other threads of the process are not affected. */
static int cuda_capture_begin(ct_backend *b, ct_error *err) {
    cudaError_t e = cudaStreamBeginCapture(ct_cuda(b)->stream, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) return 0;
    (void)cudaGetLastError();
    return ct_fail(err, CT_EXIT_FAILURE, "cuda: cudaStreamBeginCapture failed: %s", cudaGetErrorString(e));
}

static void *cuda_capture_end(ct_backend *b, ct_error *err) {
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(ct_cuda(b)->stream, &graph);
    if (e != cudaSuccess || !graph) {
        (void)cudaGetLastError();
        if (graph) (void)cudaGraphDestroy(graph);
        ct_fail(err, CT_EXIT_FAILURE, "cuda: cudaStreamEndCapture failed: %s",
                e != cudaSuccess ? cudaGetErrorString(e) : "no graph was captured");
        return NULL;
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    /* The executable graph is independent of the graph it came from. */
    (void)cudaGraphDestroy(graph);
    if (e != cudaSuccess || !exec) {
        (void)cudaGetLastError();
        ct_fail(err, CT_EXIT_FAILURE, "cuda: cudaGraphInstantiate failed: %s",
                e != cudaSuccess ? cudaGetErrorString(e) : "no executable graph");
        return NULL;
    }
    return (void *)exec;
}

static void cuda_graph_launch(ct_backend *b, void *graph) {
    CT_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, ct_cuda(b)->stream));
}

static void cuda_graph_destroy(ct_backend *b, void *graph) {
    if (graph) CT_CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
}

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */

/* Frees whatever of im exists. Errors are ignored on purpose: this also
 * unwinds a half-built backend in create, where a failure must become an
 * error return, not an exit. */
static void release_impl(ct_cuda_impl *im) {
    if (!im) return;
    if (im->cudnn) (void)cudnnDestroy(im->cudnn);
    if (im->cublas) (void)cublasDestroy(im->cublas);
    if (im->cublas_workspace) (void)cudaFree(im->cublas_workspace);
    if (im->partials) (void)cudaFree(im->partials);
    if (im->done) (void)cudaFree(im->done);
    for (int i = 0; i < CT_MAX_FENCES; i++)
        if (im->fences[i]) (void)cudaEventDestroy(im->fences[i]);
    if (im->stream) (void)cudaStreamDestroy(im->stream);
    (void)cudaGetLastError();
    free(im);
}

static void cuda_destroy(ct_backend *b) {
    ct_cuda_impl *im = ct_cuda(b);
    if (!im) return;
    /* Reports a fault of the last queued work instead of losing it. */
    if (im->stream) CT_CUDA_CHECK(cudaStreamSynchronize(im->stream));
    release_impl(im);
    b->impl = NULL;
}

static const ct_backend_ops cuda_ops = {
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .zero = cuda_zero,
    .sync = cuda_sync,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .download_async = cuda_download_async,
    .fence = cuda_fence,
    .fence_wait = cuda_fence_wait,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .graph_launch = cuda_graph_launch,
    .graph_destroy = cuda_graph_destroy,
    .gemm = cuda_gemm,
    .bias_act_forward = cuda_bias_act_forward,
    .bias_act_backward = cuda_bias_act_backward,
    .conv_plan = cuda_conv_plan,
    .conv_plan_free = cuda_conv_plan_free,
    .conv2d_forward = cuda_conv2d_forward,
    .conv2d_backward = cuda_conv2d_backward,
    .maxpool_forward = cuda_maxpool_forward,
    .maxpool_backward = cuda_maxpool_backward,
    .dense_chain_plan = cuda_dense_chain_plan,
    .dense_chain_plan_free = cuda_dense_chain_plan_free,
    .dense_chain_train = cuda_dense_chain_train,
    .softmax_xent = cuda_softmax_xent,
    .mse_onehot = cuda_mse_onehot,
    .loss_accumulate = cuda_loss_accumulate,
    .dropout_forward = cuda_dropout_forward,
    .dropout_backward = cuda_dropout_backward,
    .gather_batch = cuda_gather_batch,
    .step_stats = cuda_step_stats,
    .optimizer_step = cuda_optimizer_step,
    .step_advance = cuda_step_advance,
    .step_finish = cuda_step_finish,
};

/* Set-up steps that may fail: the failure becomes err and a NULL backend
 * (so --device auto can fall back to the CPU), never an exit. */
#define CREATE_CUDA(call)                                                                                   \
    do {                                                                                                    \
        cudaError_t e_ = (call);                                                                            \
        if (e_ != cudaSuccess) {                                                                            \
            (void)cudaGetLastError();                                                                       \
            ct_fail(err, CT_EXIT_FAILURE, "cuda: setting up the GPU: %s failed: %s", #call,                \
                    cudaGetErrorString(e_));                                                                \
            goto fail;                                                                                      \
        }                                                                                                   \
    } while (0)

#define CREATE_CUBLAS(call)                                                                                 \
    do {                                                                                                    \
        cublasStatus_t s_ = (call);                                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                  \
            (void)cudaGetLastError();                                                                       \
            ct_fail(err, CT_EXIT_FAILURE, "cuda: setting up cuBLAS: %s failed: %s", #call,                 \
                    cublasGetStatusString(s_));                                                             \
            goto fail;                                                                                      \
        }                                                                                                   \
    } while (0)

#define CREATE_CUDNN(call)                                                                                  \
    do {                                                                                                    \
        cudnnStatus_t d_ = (call);                                                                          \
        if (d_ != CUDNN_STATUS_SUCCESS) {                                                                   \
            (void)cudaGetLastError();                                                                       \
            ct_fail(err, CT_EXIT_FAILURE, "cuda: setting up cuDNN: %s failed: %s", #call,                  \
                    cudnnGetErrorString(d_));                                                               \
            goto fail;                                                                                      \
        }                                                                                                   \
    } while (0)

/* CUTRAIN_CUDA_STEP_FINISH: 1 on, 0 off (unset, empty or "off"), -1 anything else. */
static int step_finish_setting(void) {
    const char *v = getenv("CUTRAIN_CUDA_STEP_FINISH");
    if (!v || !*v || strcmp(v, "off") == 0) return 0;
    return strcmp(v, "on") == 0 ? 1 : -1;
}

ct_backend *ct_backend_cuda_create(ct_error *err) {
    char why[256];
    if (!ct_cuda_available(why, sizeof why)) {
        ct_fail(err, CT_EXIT_USAGE, "--device cuda: no usable GPU: %s", why);
        return NULL;
    }
    const int fused_finish = step_finish_setting();
    if (fused_finish < 0) {
        ct_fail(err, CT_EXIT_USAGE, "CUTRAIN_CUDA_STEP_FINISH: expected \"on\" or \"off\", got \"%.40s\"",
                getenv("CUTRAIN_CUDA_STEP_FINISH"));
        return NULL;
    }
    /* The other two are read where they apply (a dense chain's, a conv's
     * plan); checked here too, so a typo is refused whatever the model. */
    if (cuda_dense_chain_setting(err) < 0 || cuda_conv_backward_setting(err) < 0) return NULL;
    ct_backend *b = (ct_backend *)calloc(1, sizeof *b);
    ct_cuda_impl *im = (ct_cuda_impl *)calloc(1, sizeof *im);
    if (!b || !im) {
        free(b);
        free(im);
        ct_fail(err, CT_EXIT_FAILURE, "cuda: out of memory creating the backend");
        return NULL;
    }

    cudaDeviceProp prop;
    im->device = 0;
    CREATE_CUDA(cudaSetDevice(im->device));
    CREATE_CUDA(cudaGetDeviceProperties(&prop, im->device));
    /* prop.name is longer than im->name; real names fit, a long one is cut. */
    snprintf(im->name, sizeof im->name, "%.*s", (int)sizeof im->name - 1, prop.name);
    im->sm_count = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    im->fused_finish = fused_finish;

    /* Non-blocking: no implicit synchronisation with the legacy default
     * stream, which other code in the process might use. */
    CREATE_CUDA(cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
    for (int i = 0; i < CT_MAX_FENCES; i++)
        CREATE_CUDA(cudaEventCreateWithFlags(&im->fences[i], cudaEventDisableTiming));
    CREATE_CUDA(cudaMalloc((void **)&im->partials,
                           (size_t)CT_CUDA_MAX_PARTIAL_BLOCKS * CT_CUDA_PARTIAL_STRIDE * sizeof(double)));
    CREATE_CUDA(cudaMalloc((void **)&im->done, CT_CUDA_COUNTERS * sizeof(unsigned int)));
    CREATE_CUDA(cudaMemsetAsync(im->done, 0, CT_CUDA_COUNTERS * sizeof(unsigned int), im->stream));

    im->cublas_workspace_bytes = CT_CUBLAS_WORKSPACE_BYTES;
    CREATE_CUDA(cudaMalloc(&im->cublas_workspace, im->cublas_workspace_bytes));
    CREATE_CUBLAS(cublasCreate(&im->cublas));
    /* SetStream resets the workspace to cuBLAS's own pool: it goes first. */
    CREATE_CUBLAS(cublasSetStream(im->cublas, im->stream));
    CREATE_CUBLAS(cublasSetWorkspace(im->cublas, im->cublas_workspace, im->cublas_workspace_bytes));
    /* fp32 throughout: TF32 would break parity with the CPU reference.
     * (NVIDIA_TF32_OVERRIDE=1 in the environment would still force it.) */
    CREATE_CUBLAS(cublasSetMathMode(im->cublas, CUBLAS_DEFAULT_MATH));
    CREATE_CUBLAS(cublasSetAtomicsMode(im->cublas, CUBLAS_ATOMICS_NOT_ALLOWED));
    CREATE_CUBLAS(cublasSetPointerMode(im->cublas, CUBLAS_POINTER_MODE_HOST));

    CREATE_CUDNN(cudnnCreate(&im->cudnn));
    CREATE_CUDNN(cudnnSetStream(im->cudnn, im->stream));
    /* cuDNN 9 loads its sub-libraries on demand; asking for their versions
     * loads the two the convolutions use now, so a missing or mismatched
     * libcudnn_ops / libcudnn_cnn is an error here (and --device auto falls
     * back to the CPU) rather than a fatal error at the first convolution. */
    CREATE_CUDNN(cudnnOpsVersionCheck());
    CREATE_CUDNN(cudnnCnnVersionCheck());

    b->ops = &cuda_ops;
    b->kind = CT_DEVICE_CUDA;
    b->threads = 1;
    b->impl = im;
    snprintf(b->description, sizeof b->description, "cuda (%s, sm_%d%d, %d SMs)", im->name, prop.major, prop.minor,
             im->sm_count);
    return b;

fail:
    release_impl(im);
    free(b);
    return NULL;
}
