#!/usr/bin/env python3
"""PyTorch peers of cutrain's MNIST presets, timed the way `cutrain bench` times itself.

    torch_mnist.py --model seed|mlp|cnn --mode usual|expert --data DIR [--device cpu|cuda]
                   [--threads N] [--batch-size B] [--steps S] [--warmup W] [--repeats R]
                   [--seed K] [--init FILE] [--omp-wait-policy passive|active|unset]
                   [--no-compile] [--cuda-graph] [--json FILE]

Models (cutrain's presets, src/model/spec.c; weights [out, in] and [out, in, kh, kw]):
  seed  784 -> Linear 10, ReLU -> Linear 10                                    batch 32,  Adam 1e-3
  mlp   784 -> Linear 512, ReLU -> Linear 512, ReLU -> Linear 10               batch 128, Adam 1e-3
  cnn   PyTorch's MNIST example: Conv 32 3x3, ReLU, Conv 64 3x3, ReLU, MaxPool 2, Dropout 0.25,
        Flatten, Linear 128, ReLU, Dropout 0.5, Linear 10; Adam with OneCycleLR (max_lr 3e-3,
        PyTorch's defaults pct 0.3, div 25, final_div 1e4, cycle_momentum=False)   batch 64
The softmax of the last layer is inside nn.CrossEntropyLoss (integer labels), as cutrain fuses it.
Adam is torch.optim.Adam(betas=(0.9, 0.999), eps=1e-7): Keras's and cutrain's epsilon.

Modes:
  usual   what a PyTorch user writes: a TensorDataset of float32 images scaled by 1/255, a
          DataLoader(shuffle=True, batch_size=B, num_workers=0), and the eager loop
          zero_grad(); forward; CrossEntropyLoss; backward(); step(). Loading is inside the timing.
  expert  the training set stays one uint8 tensor on the device; each step gathers a slice of a
          shuffled permutation into preallocated buffers, converts to float and scales in the
          step; zero_grad(set_to_none=True); no DataLoader. On the CPU, --omp-wait-policy passive
          (the default in this mode) keeps torch's OpenMP workers from spinning on the cores
          OpenBLAS's threads need. On CUDA: cudnn.benchmark, and with torch >= 2 Adam(fused=True)
          and torch.compile(model) (--no-compile to skip it); torch < 2 has no compile, and the
          JSON says so ("compiled", "compile_note"). --cuda-graph (CUDA, torch >= 2, instead of
          torch.compile): the whole step after the batch's indices (gather, forward, loss,
          backward, Adam(capturable=True)) captured once in a torch.cuda.CUDAGraph, PyTorch's
          whole-network recipe, and replayed; each step copies its slice of the permutation
          into the graph's index buffer first, and one-cycle's scheduler fills a device lr
          tensor between replays. The capture's warm-up steps are undone (weights restored,
          Adam's state zeroed) so the timed run starts from the same weights. A failed capture (or
          first replay) prints one line, "torch_mnist: --cuda-graph: capture failed: ...", and
          exits 1. The JSON's first_loss (the first warm-up step's) lets the report check that the
          graph computes what the eager step does.

Threads: --threads N calls torch.set_num_threads(N) and torch.set_num_interop_threads(1), and sets
OPENBLAS_NUM_THREADS=N before torch loads (Debian's torch does its GEMMs in the system OpenBLAS,
whose thread count set_num_threads does not touch). The expert's batches are full ones only (the
last N mod B samples of each shuffled epoch are left out, as with drop_last).

Timing: W warm-up steps (not timed), then R repeats of S steps, each timed with
time.perf_counter (on CUDA with torch.cuda.synchronize() before and after). samples/s counts the
samples each timed step really trained on (a DataLoader's last batch of an epoch may be short);
epoch_s is cutrain's estimate, ceil(60000 / B) steps at the median steps/s.

--init FILE loads initial weights from a safetensors file written by `cutrain bench --save-init`
or `cutrain train --save` (names conv1.weight, ..., dense1.weight, ...; F32), parsed here with
struct and json; without it the weights are PyTorch's default initialisation.

Writes one JSON object (to --json FILE, and always to stdout) with the keys of cutrain bench's.
"""
import argparse
import gzip
import json
import math
import os
import platform
import statistics
import struct
import sys
import time
import warnings

torch = nn = None  # imported in main(), after OPENBLAS_NUM_THREADS is set from --threads

SCRIPT_VERSION = "1"

PRESETS = {
    # model: (batch size, base lr, one-cycle schedule)
    "seed": (32, 1e-3, False),
    "mlp": (128, 1e-3, False),
    "cnn": (64, 3e-3, True),
}


# --------------------------------------------------------------------------------------- data
def read_idx(path):
    """Reads an IDX file (raw or .gz) of unsigned bytes into a uint8 tensor of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise SystemExit(f"torch_mnist: error: {path}: not an IDX file (bad magic)")
    dtype, ndim = data[2], data[3]
    if dtype != 0x08:
        raise SystemExit(f"torch_mnist: error: {path}: IDX item type 0x{dtype:02x}; expected unsigned bytes (0x08)")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    count = math.prod(dims)
    if len(body) != count:
        raise SystemExit(f"torch_mnist: error: {path}: {len(body)} data bytes; the header says {count}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def find_split(data_dir, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise SystemExit(f"torch_mnist: error: {data_dir}: no {stem} or {stem}.gz (MNIST IDX files expected)")


def load_mnist(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(find_split(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_split(data_dir, f"{prefix}-labels-idx1-ubyte"))
    if images.shape[0] != labels.shape[0]:
        raise SystemExit(f"torch_mnist: error: {data_dir}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
    return images.reshape(images.shape[0], -1), labels  # uint8 [N, 784], uint8 [N]


# -------------------------------------------------------------------------------------- model
def build_model(name):
    if name == "seed":
        return nn.Sequential(nn.Linear(784, 10), nn.ReLU(), nn.Linear(10, 10))
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 10))
    raise SystemExit(f"torch_mnist: error: --model: unknown model '{name}' (expected seed, mlp or cnn)")


def input_shape(name):
    return (1, 28, 28) if name == "cnn" else (784,)


def cutrain_names(model):
    """cutrain's names of the parameter layers, in order: conv1, conv2, ..., dense1, dense2, ..."""
    counts, out = {}, []
    for module in model:
        kind = {nn.Linear: "dense", nn.Conv2d: "conv"}.get(type(module))
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
            out.append((f"{kind}{counts[kind]}", module))
    return out


def read_safetensors(path):
    """{name: float32 tensor} of a safetensors file (F32 only), parsed with struct and json."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SystemExit(f"torch_mnist: error: {path}: too short for a safetensors file")
    (hlen,) = struct.unpack("<Q", blob[:8])
    if 8 + hlen > len(blob):
        raise SystemExit(f"torch_mnist: error: {path}: header length {hlen} runs past the end of the file")
    try:
        header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"torch_mnist: error: {path}: bad safetensors header ({e})")
    data = blob[8 + hlen:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") != "F32":
            raise SystemExit(f"torch_mnist: error: {path}: {name} is {info.get('dtype')}; expected F32")
        shape, (begin, end) = info["shape"], info["data_offsets"]
        if end - begin != 4 * math.prod(shape) or end > len(data) or begin < 0:
            raise SystemExit(f"torch_mnist: error: {path}: {name}: data_offsets {begin}..{end} do not fit shape {shape}")
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=torch.float32) if raw else torch.empty(0)
        if sys.byteorder != "little":
            t = t.byteswap()  # pragma: no cover (safetensors data is little-endian)
        tensors[name] = t.reshape(shape).clone()
    return tensors


def load_init(model, path):
    tensors = read_safetensors(path)
    used = set()
    with torch.no_grad():
        for name, module in cutrain_names(model):
            for part, param in (("weight", module.weight), ("bias", module.bias)):
                key = f"{name}.{part}"
                if key not in tensors:
                    raise SystemExit(f"torch_mnist: error: {path}: no tensor {key} (has {sorted(tensors)})")
                t = tensors[key]
                if tuple(t.shape) != tuple(param.shape):
                    raise SystemExit(f"torch_mnist: error: {path}: {key} has shape {list(t.shape)}; "
                                     f"the model needs {list(param.shape)}")
                param.copy_(t)
                used.add(key)
    extra = sorted(set(tensors) - used)
    if extra:
        raise SystemExit(f"torch_mnist: error: {path}: tensors the model does not have: {extra}")


def test_loss(model, images, labels, shape, device):
    """Mean cross-entropy and accuracy on the test split (eval mode), to check a loaded init."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, images.shape[0], 1000):
            x = images[i:i + 1000].to(device).float().div_(255.0).reshape(-1, *shape)
            y = labels[i:i + 1000].to(device).long()
            logits = model(x)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train()
    return loss_sum / images.shape[0], correct / images.shape[0]


# ----------------------------------------------------------------------------------- training
def make_optimizer(model, args, total_steps, fused=False, graph_device=None):
    _, lr, onecycle = PRESETS[args.model]
    kw = {"fused": True} if fused else {}
    if graph_device is not None:
        # A captured step reads lr from device memory (a Python float would be baked into the
        # graph); a scheduler fills the tensor in place between replays.
        kw["capturable"] = True
        if onecycle:
            lr = torch.tensor(lr, dtype=torch.float32, device=graph_device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-7, **kw)
    sched = None
    if onecycle:
        # max_lr a float even when Adam's lr is a tensor: the schedule is then reckoned on the
        # host and written with one fill_ per step, not a few tiny kernels queued between replays.
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=PRESETS[args.model][1], total_steps=total_steps,
                                                    pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
                                                    cycle_momentum=False)
    return opt, sched


def fp32_math(device):
    """Plain FP32 on the GPU, as cutrain computes (no TF32 in cuBLAS or cuDNN): PyTorch's default
    lets cuDNN's convolutions use TF32, which would time cnn in other arithmetic than cutrain's.
    The legacy flags, which torch_parity.py sets too (newer torch warns that they are deprecated
    but honours them; mixing them with fp32_precision is an error there)."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return "fp32 (TF32 off in cuBLAS and cuDNN, as in cutrain)"


def capture_step(model, opt, train_on, batch, device):
    """PyTorch's whole-network capture (torch.cuda.graphs docs): a few steps on a side stream
    (cuDNN's autotuning, Adam's state and the gradients' allocation happen there), then the step
    captured with the gradients set to None, so that each replay writes them afresh. Those
    steps train on the first `batch` samples and are then undone: the weights copied back and
    Adam's state zeroed, in place (the graph holds their addresses), as a fresh Adam has it. So
    the replays start from the same weights and batches as the eager expert (the same first
    loss up to kernel rounding for seed and mlp; cnn's dropout draws other masks, since the
    warm-up moved the CUDA generator).
    Returns (graph, index buffer, loss)."""
    params = [p for p in model.parameters()]
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
    static_idx = torch.zeros((batch,), dtype=torch.long, device=device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        static_idx.copy_(torch.arange(batch, device=device))
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            train_on(static_idx)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    # On the warm-up's stream: whatever a library set up per stream on first use (handles,
    # workspaces) is then in place before the capture, not made during it.
    with torch.cuda.graph(graph, stream=side):
        static_loss = train_on(static_idx)
    with torch.no_grad():
        for p, p0 in zip(params, saved):
            p.copy_(p0)
        for st in opt.state.values():
            for v in st.values():
                if torch.is_tensor(v):
                    v.zero_()
    torch.cuda.synchronize(device)
    return graph, static_idx, static_loss


def graph_error(stage, e):
    """A failure of the CUDA graph (its capture, or its first replay) as one line on stderr and
    exit status 1, in place of a traceback: run-gpu records the command as failed and the table
    keeps the compiled variant."""
    first = (str(e).strip().splitlines() or [""])[0]
    return SystemExit(f"torch_mnist: --cuda-graph: {stage} failed: {type(e).__name__}" + (f": {first}" if first else ""))


def capture_or_exit(model, opt, train_on, batch, device):
    """capture_step, with a failure turned into graph_error's one line."""
    try:
        return capture_step(model, opt, train_on, batch, device)
    except Exception as e:  # whatever the capture raises (mostly RuntimeError from CUDA or cuDNN)
        raise graph_error("capture", e) from None


def usual_batches(images, labels, shape, batch, seed):
    """The usual input pipeline: float32 TensorDataset + shuffling DataLoader, epoch after epoch."""
    x = images.float().div_(255.0).reshape(-1, *shape)
    ds = torch.utils.data.TensorDataset(x, labels.long())
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, generator=gen)
    while True:
        for xb, yb in loader:
            yield xb, yb


def run(args):
    device = torch.device(args.device)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_mnist: error: --device cuda: torch.cuda.is_available() is False")
    torch.manual_seed(args.seed)
    shape = input_shape(args.model)
    batch = args.batch_size or PRESETS[args.model][0]
    total_steps = args.warmup + args.repeats * args.steps

    images, labels = load_mnist(args.data, "train")
    if batch > images.shape[0]:
        raise SystemExit(f"torch_mnist: error: --batch-size: {batch} is larger than the {images.shape[0]} training images")

    model = build_model(args.model)
    init_check = None
    if args.init:
        load_init(model, args.init)
        t_images, t_labels = load_mnist(args.data, "test")
        loss, acc = test_loss(model, t_images, t_labels, shape, torch.device("cpu"))
        init_check = {"test_loss": loss, "test_acc": acc}
    model.to(device).train()
    major = int(torch.__version__.split(".")[0])
    # The expert's CUDA extras where this torch has them: Adam's fused kernel (torch >= 2) and
    # cuDNN's autotuner. On the CPU neither exists (foreach Adam measured no faster there).
    fused = args.mode == "expert" and device.type == "cuda" and major >= 2
    if args.cuda_graph and (args.mode != "expert" or device.type != "cuda" or major < 2):
        raise SystemExit("torch_mnist: error: --cuda-graph needs --mode expert, --device cuda and torch >= 2 "
                         f"(this is torch {torch.__version__}, --device {args.device})")
    math_note = fp32_math(device)
    if args.mode == "expert" and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    opt, sched = make_optimizer(model, args, total_steps, fused=fused,
                                graph_device=device if args.cuda_graph else None)
    loss_fn = nn.CrossEntropyLoss()

    compiled, compile_note = False, None
    if args.cuda_graph:
        compile_note = "CUDA graph of the whole step (eager modules, Adam capturable)"
    elif args.mode == "expert":
        if major < 2:
            compile_note = f"torch.compile needs torch >= 2; this is torch {torch.__version__}: eager"
        elif args.device != "cuda":
            compile_note = "torch.compile is used on CUDA only: eager on the CPU"
        elif args.no_compile:
            compile_note = "--no-compile: eager"
        else:
            model = torch.compile(model)
            compiled, compile_note = True, "torch.compile(model), default mode"
    else:
        compile_note = "usual mode: eager"

    if args.mode == "usual":
        batches = usual_batches(images, labels, shape, batch, args.seed)

        def step():
            xb, yb = next(batches)
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            return xb.shape[0], loss
    else:
        n = images.shape[0]
        d_images = images.to(device)                      # uint8, the whole training set
        d_labels = labels.to(device).long()
        per_epoch = n // batch                            # full batches only: the buffers are fixed
        gen = torch.Generator(device=device).manual_seed(args.seed)
        u8 = torch.empty((batch, images.shape[1]), dtype=torch.uint8, device=device)
        xb = torch.empty((batch, *shape), dtype=torch.float32, device=device)
        yb = torch.empty((batch,), dtype=torch.long, device=device)
        state = {"perm": None, "i": per_epoch}
        inv255 = 1.0 / 255.0

        def next_indices():
            if state["i"] == per_epoch:
                state["perm"] = torch.randperm(n, generator=gen, device=device)
                state["i"] = 0
            idx = state["perm"][state["i"] * batch:(state["i"] + 1) * batch]
            state["i"] += 1
            return idx

        def train_on(idx):
            torch.index_select(d_images, 0, idx, out=u8)
            torch.index_select(d_labels, 0, idx, out=yb)
            xb.view(batch, -1).copy_(u8).mul_(inv255)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            return loss

        if args.cuda_graph:
            graph, static_idx, static_loss = capture_or_exit(model, opt, train_on, batch, device)

            def step():
                static_idx.copy_(next_indices())
                graph.replay()
                if sched:
                    sched.step()
                return batch, static_loss
        else:
            def step():
                idx = next_indices()
                opt.zero_grad(set_to_none=True)
                loss = train_on(idx)
                if sched:
                    sched.step()
                return batch, loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    first_loss = last_loss = None
    for i in range(args.warmup):
        try:
            _, loss = step()
            if i == 0:
                first_loss = loss.item()  # a sync: an error of the graph's first replay shows here
        except Exception as e:
            if not (args.cuda_graph and i == 0):
                raise
            raise graph_error("first replay", e) from None
    rates, step_rates = [], []
    for _ in range(args.repeats):
        samples = 0
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            k, loss = step()
            samples += k
        sync()
        dt = time.perf_counter() - t0
        rates.append(samples / dt)
        step_rates.append(args.steps / dt)
    last_loss = loss.item()

    med = statistics.median(rates)
    n_train = images.shape[0]
    threads = torch.get_num_threads()
    if device.type == "cuda":
        dev = f"cuda ({torch.cuda.get_device_name(device)}, torch {torch.__version__})"
    else:
        dev = f"cpu (PyTorch {torch.__version__}, {blas_info()[0]}, {threads} threads)"
    return {
        "tool": f"pytorch-{args.mode}",
        "model": args.model,
        "batch_size": batch,
        "device": dev,
        "threads": threads,
        "optimizer": "adam",
        "optimizer_impl": "fused" if fused else "default (for-loop)",
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "samples_per_s": med,
        "samples_per_s_min": min(rates),
        "samples_per_s_max": max(rates),
        "samples_per_s_all": rates,
        "steps_per_s": statistics.median(step_rates),
        # cutrain's estimate: the steps of an epoch (the last one short) at the median step rate
        "epoch_s": math.ceil(n_train / batch) / statistics.median(step_rates),
        "stats_overhead": None,
        "schedule": "onecycle" if PRESETS[args.model][2] else "constant",
        "blas": blas_info()[1],
        "omp_wait_policy": args.omp_wait_policy,
        "compiled": compiled,
        "cuda_graph": bool(args.cuda_graph),
        "compile_note": compile_note,
        "gpu_math": math_note,
        "init": args.init or "pytorch-default",
        "init_check": init_check,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "seed": args.seed,
        "version": SCRIPT_VERSION,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def blas_info():
    """(short name, full description) of the BLAS library really loaded: Debian's torch says
    BLAS_INFO=generic and uses libblas.so.3, whichever the alternatives system points at."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                base = os.path.basename(fields[-1]) if len(fields) >= 6 else ""
                if "blas" in base or "mkl_core" in base:
                    libs.add(os.path.realpath(fields[-1]))
    except OSError:
        pass
    for path in sorted(libs):
        if "openblas" in path:
            try:
                import ctypes
                lib = ctypes.CDLL(path)
                lib.openblas_get_config.restype = ctypes.c_char_p
                cfg = lib.openblas_get_config().decode().strip()
                short = " ".join(cfg.split()[:2])
                return (f"{short}, {lib.openblas_get_num_threads()} BLAS threads",
                        f"{path}: {cfg}, {lib.openblas_get_num_threads()} threads")
            except (OSError, AttributeError):
                return "OpenBLAS", path
    if libs:
        return "BLAS " + ", ".join(os.path.basename(x) for x in sorted(libs)), ", ".join(sorted(libs))
    return "BLAS unknown", "no BLAS library found in /proc/self/maps"


def positive(text):
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text})")
    return v


def non_negative(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {text})")
    return v


def main(argv=None):
    p = argparse.ArgumentParser(description="PyTorch peers of cutrain's MNIST presets (throughput).")
    p.add_argument("--model", choices=sorted(PRESETS), required=True)
    p.add_argument("--mode", choices=("usual", "expert"), required=True)
    p.add_argument("--data", default="data/mnist", help="directory with the MNIST IDX files (raw or .gz)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=positive, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--batch-size", type=positive, default=None, help="default: the preset's")
    p.add_argument("--steps", type=positive, default=200, help="timed steps per repeat")
    p.add_argument("--warmup", type=non_negative, default=20, help="untimed steps before the repeats")
    p.add_argument("--repeats", type=positive, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--init", help="safetensors file of initial weights (cutrain bench --save-init)")
    p.add_argument("--no-compile", action="store_true", help="expert mode: do not torch.compile")
    p.add_argument("--cuda-graph", action="store_true",
                   help="expert mode on CUDA: replay the whole step as one captured CUDA graph (no compile)")
    p.add_argument("--omp-wait-policy", choices=("passive", "active", "unset"),
                   help="OMP_WAIT_POLICY for torch's OpenMP pool (default: passive for expert, "
                        "unset for usual, i.e. libgomp's spinning default)")
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)

    global torch, nn
    policy = args.omp_wait_policy or ("passive" if args.mode == "expert" else "unset")
    if policy != "unset":
        # Debian's torch runs its own ops on an OpenMP pool (libgomp) and its GEMMs on OpenBLAS's
        # pthread pool; libgomp's workers spin after each parallel region by default, on the same
        # cores OpenBLAS's threads need. "passive" makes them sleep; libgomp reads it at load time.
        os.environ["OMP_WAIT_POLICY"] = policy
    args.omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    if args.threads:
        # PyTorch's GEMMs go to the system BLAS (Debian: OpenBLAS), whose thread count
        # torch.set_num_threads does not set: OpenBLAS reads it when it is loaded.
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import torch as _torch
    import torch.nn as _nn
    torch, nn = _torch, _nn
    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    result = run(args)
    text = json.dumps(result)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.json)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
