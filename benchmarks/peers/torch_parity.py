#!/usr/bin/env python3
"""cutrain <-> PyTorch: the same training step for step, and weights both ways (docs/interop.md).

    torch_parity.py [--cutrain EXE] [--data DIR] [--device cpu|cuda] [--steps N] [--seed S]
                    [--threads N] [--tolerance X] [--init cutrain|torch] [--adam keras|torch]
                    [--bias-grad double|float] [--workdir DIR] [--json FILE]

What it does, for the `mlp` preset (784 -> 512 ReLU -> 512 ReLU -> 10, softmax cross-entropy,
Adam lr 1e-3, batch 128):
  1. initial weights: `cutrain bench --save-init` (--init cutrain, the default), or PyTorch's own
     default initialisation written as safetensors (--init torch);
  2. cutrain trains N steps from them: `cutrain train --init-weights ... --max-steps N --log-jsonl`;
  3. PyTorch trains the same model from the same weights on the same batches: cutrain's batch
     order is recomputed here (its counter-based Fisher-Yates, include/cutrain/rng.h and
     src/data/shuffle.c), pixels are scaled as cutrain's gather does (float(byte) * float32(1/255)),
     the model is nn.Linear layers, F.cross_entropy and autograd, except that bias gradients are
     summed in double as cutrain sums them (--bias-grad float: nn.Linear's own float sum), and Adam
     is cutrain's Keras form written out in torch ops (--adam torch: torch.optim.Adam, whose
     epsilon sits elsewhere); the two switches measure how far each difference moves the trace;
  4. compares the per-step losses: passes when max |l_cutrain - l_torch| / |l_torch| <= --tolerance;
  5. PyTorch's trained state_dict, written as safetensors, is scored by `cutrain eval --weights`,
     and cutrain's `--save` checkpoint is loaded into PyTorch (load_state_dict, strict) and scored
     there: the test-set correct counts must be equal and the test losses within 1e-5.

safetensors files are read and written with the `safetensors` package when it is importable, else
with the small reader/writer below (the format: 8-byte little-endian header length, a JSON header,
raw little-endian data; include/cutrain/checkpoint.h).

Exit status: 0 every check passed, 1 a check failed (or cutrain failed), 2 bad command line,
77 skipped: torch is not importable, no MNIST directory was found, or (--device cuda)
torch.cuda.is_available() is False. 77 is what the CTest test reads as "skipped".

--device cuda trains both sides on the GPU (cutrain --device cuda, torch on cuda with TF32 off).
"""
import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
except ImportError:  # main() reports it as a skip, with torch's
    np = None

EXIT_FAIL, EXIT_SKIP = 1, 77
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The mlp preset's recipe (src/model/spec.c, src/optim/optim_config.c: Keras's Adam defaults).
BATCH, LR, BETA1, BETA2, EPS = 128, 1e-3, 0.9, 0.999, 1e-7
LAYERS = (("dense1", 784, 512), ("dense2", 512, 512), ("dense3", 512, 10))
# cutrain's gather multiplies each byte, as a float, by the float nearest 1/255
# (src/train/device_data.c, kernels/cpu/gather_cpu.c); dividing by 255 instead
# would differ in the last bit for some pixels.
INV255 = float(np.float32(1.0) / np.float32(255.0)) if np else None

torch = nn = None  # imported in main(): OPENBLAS_NUM_THREADS must be set before torch loads


def say(msg):
    print(msg, flush=True)


def skip(why):
    say(f"torch_parity: skipped: {why}")
    sys.exit(EXIT_SKIP)


def fail(why):
    say(f"torch_parity: error: {why}")
    sys.exit(EXIT_FAIL)


# ------------------------------------------------------------------------------ cutrain's order
# numpy's uint64 arithmetic wraps as C's does: the whole counter range is mixed at once.
def _mix64(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def cutrain_order(n, seed, epoch):
    """ct_shuffle_indices(n, seed, epoch): Fisher-Yates from the top, the swap partner of position i
    drawn by ct_rng_below(seed, CT_STREAM_SHUFFLE(epoch), counter i, bound i + 1)."""
    with np.errstate(over="ignore"):
        stream = np.array([(1 << 56) | epoch], dtype=np.uint64)
        key = _mix64(np.array([seed], dtype=np.uint64) ^ _mix64(stream))
        i = np.arange(n - 1, 0, -1, dtype=np.uint64)
        r = _mix64(key ^ i) >> np.uint64(32)
        partner = ((r * (i + np.uint64(1))) >> np.uint64(32)).tolist()  # r < 2^32, i < 2^31: no wrap
    idx = list(range(n))
    for pos, j in zip(range(n - 1, 0, -1), partner):
        idx[pos], idx[j] = idx[j], idx[pos]
    return np.array(idx, dtype=np.int64)


# ct_shuffle_indices's own output, pinned by tests/unit/test_interop.cpp (ShufflePins): the first
# eight indices and sum(i * order[i]). Both sides check the same numbers, so the orders agree.
SHUFFLE_PINS = (
    (60000, 1, 1, (5648, 43251, 28291, 46450, 28522, 46911, 24696, 21841), 54114803380481),
    (1000, 0x123456789ABCDEF, 9, (669, 64, 482, 483, 498, 812, 795, 752), 248607711),
    (60000, 0xFFFFFFFFFFFFFFFF, 4000000000, (35420, 4896, 17391, 16223, 2517, 55645, 55452, 1554),
     53940449845779),
)


def check_shuffle_pins():
    for n, seed, epoch, first, wsum in SHUFFLE_PINS:
        order = cutrain_order(n, seed, epoch)
        got = (tuple(int(v) for v in order[:8]), int(np.dot(np.arange(n, dtype=np.int64), order)))
        if got != (first, wsum):
            return f"n={n} seed={seed:#x} epoch={epoch}: {got} != cutrain's {(first, wsum)}"
    return None


# ----------------------------------------------------------------------------------------- data
def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        fail(f"{path}: not an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * data[3], data[4:4 + 4 * data[3]])
    body = np.frombuffer(bytearray(data), dtype=np.uint8, offset=4 + 4 * data[3])  # writable, for torch
    if body.size != math.prod(dims):
        fail(f"{path}: {body.size} data bytes; the header says {math.prod(dims)}")
    return body.reshape(dims)


def split_file(data_dir, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(data_dir, name)):
            return os.path.join(data_dir, name)
    return None


def find_mnist(arg):
    """--data, else where tests/support/fixtures.h mnist_dir() looks."""
    env = os.environ.get("CUTRAIN_MNIST_DIR")
    candidates = [arg] if arg else [d for d in (env, os.path.join(REPO, "data/mnist"),
                                                os.path.join(REPO, "../shared/data/mnist")) if d]
    stems = [f"{p}-{k}-idx{r}-ubyte" for p in ("train", "t10k") for k, r in (("images", 3), ("labels", 1))]
    for d in candidates:
        if all(split_file(d, s) for s in stems):
            return os.path.abspath(d)
    if arg:  # asked for, so a mistake rather than a machine without the data
        say(f"torch_parity: error: --data: {arg} lacks the MNIST IDX files ({', '.join(stems)}, raw or .gz)")
        sys.exit(2)
    skip(f"no MNIST IDX files in {', '.join(candidates)} (give --data DIR)")


def load_split(data_dir, prefix):
    images = read_idx(split_file(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(split_file(data_dir, f"{prefix}-labels-idx1-ubyte"))
    return images.reshape(images.shape[0], -1), labels


# ---------------------------------------------------------------------------------- safetensors
def st_load(path):
    """{name: float32 CPU tensor} of a safetensors file."""
    try:
        from safetensors.torch import load_file
        return {k: v.float() for k, v in load_file(path).items()}
    except ImportError:
        pass
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            fail(f"{path}: {name} is {info['dtype']}; this reader takes F32")
        begin, end = info["data_offsets"]
        arr = np.frombuffer(blob, dtype="<f4", count=(end - begin) // 4, offset=base + begin)
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(info["shape"]))
    return out


def st_save(tensors, path, metadata):
    """Writes {name: tensor} as F32 safetensors, as PyTorch's `safetensors.torch.save_file` would."""
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    try:
        from safetensors.torch import save_file
        return save_file(tensors, path, metadata=metadata)
    except ImportError:
        pass
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to a multiple of 8 with spaces
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# ---------------------------------------------------------------------------------------- model
def make_model(bias_grad="double"):
    class BiasAdd(torch.autograd.Function):
        """y + b whose bias gradient is summed over the rows in double, then rounded to float, as
        cutrain's dbias is (kernels/cpu/activation_cpu.c; the CUDA kernel sums in the same order).
        torch's own float sum differs in the last bits, and over 100 steps this trajectory turns
        that into more than 1e-4 (docs/interop.md)."""

        @staticmethod
        def forward(ctx, y, b):
            return y + b

        @staticmethod
        def backward(ctx, grad):
            return grad, grad.double().sum(0).float()

    class Mlp(nn.Module):
        """cutrain's mlp with its layer names, so state_dict() keys are cutrain's tensor names."""

        def __init__(self):
            super().__init__()
            for name, fan_in, fan_out in LAYERS:
                setattr(self, name, nn.Linear(fan_in, fan_out))

        def dense(self, name, x):
            layer = getattr(self, name)
            if bias_grad == "float":
                return layer(x)  # stock nn.Linear
            return BiasAdd.apply(nn.functional.linear(x, layer.weight), layer.bias)

        def forward(self, x):
            # The softmax is inside the loss (cross_entropy on logits), as cutrain fuses it.
            h = torch.relu(self.dense("dense1", x))
            h = torch.relu(self.dense("dense2", h))
            return self.dense("dense3", h)

    return Mlp()


def f32(x):
    return float(np.float32(x))


class KerasAdam:
    """cutrain's Adam (include/cutrain/optim.h, kernels/cpu/optim_cpu.c), op for op:
        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g*g)
        w -= (m * alpha) / (sqrt(v) + eps),  alpha = lr*sqrt(1-b2^t)/(1-b1^t) in double, then float.
    torch.optim.Adam instead divides by sqrt(v)/sqrt(1-b2^t) + eps: the same rule with an epsilon
    sqrt(1-b2^t) times smaller (31.6 times at t = 1). Every scalar is the float32 cutrain holds,
    and each product is its own op, as cutrain's C (built with -ffp-contract=off) rounds them."""

    def __init__(self, params):
        self.params = list(params)
        self.b1, self.b2 = float(np.float32(BETA1)), float(np.float32(BETA2))  # double of the float
        self.lr = float(np.float32(LR))
        self.one_b1, self.one_b2 = f32(1.0 - self.b1), f32(1.0 - self.b2)
        self.eps = f32(EPS)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.t += 1
        alpha = f32(self.lr * math.sqrt(1.0 - self.b2 ** self.t) / (1.0 - self.b1 ** self.t))
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                g = p.grad
                m.mul_(self.b1).add_(g * self.one_b1)
                v.mul_(self.b2).add_((g * g).mul_(self.one_b2))
                p.sub_((m * alpha).div_(v.sqrt().add_(self.eps)))


# ------------------------------------------------------------------------------------ training
def torch_train(model, opt, images, labels, steps, seed, device):
    """Trains `steps` steps in cutrain's order (epochs from 1, the last batch of an epoch short);
    returns the per-step (loss, correct, rows)."""
    n = images.shape[0]
    per_epoch = (n + BATCH - 1) // BATCH
    x_all = torch.from_numpy(images).to(device)
    y_all = torch.from_numpy(labels.astype(np.int64)).to(device)
    trace, order, epoch = [], None, 0
    for k in range(steps):
        b = k % per_epoch
        if b == 0:
            epoch += 1
            order = torch.from_numpy(cutrain_order(n, seed, epoch)).to(device)
        idx = order[b * BATCH:(b + 1) * BATCH]
        x = x_all.index_select(0, idx).float().mul_(INV255)
        y = y_all.index_select(0, idx)
        opt.zero_grad()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        trace.append((loss.item(), int((logits.argmax(1) == y).sum().item()), int(y.shape[0])))
    return trace


def torch_eval(model, images, labels, device):
    """(mean loss, correct) on the test split, in chunks of 1000 rows as cutrain evaluates."""
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, images.shape[0], 1000):
            x = torch.from_numpy(images[i:i + 1000]).to(device).float().mul_(INV255)
            y = torch.from_numpy(labels[i:i + 1000].astype(np.int64)).to(device)
            logits = model(x)
            loss_sum += nn.functional.cross_entropy(logits.double(), y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum().item())
    return loss_sum / images.shape[0], correct


def load_into(model, path, device):
    """A safetensors file into the model: load_state_dict(strict=True) refuses a missing, extra or
    misshapen tensor, so a file that loads is the whole model. A cutrain training checkpoint also
    holds the optimizer state under "optim.<param>.<slot>" (same shape as <param>): set aside here,
    after checking that every one belongs to a parameter of the same shape."""
    tensors = st_load(path)
    params = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    for k, v in tensors.items():
        if k.startswith("optim."):
            owner = k[len("optim."):].rsplit(".", 1)[0]
            if owner not in params or params[owner].shape != v.shape:
                raise RuntimeError(f"{path}: optimizer state {k} has no parameter {owner} of shape {tuple(v.shape)}")
    model.load_state_dict(params, strict=True)
    return model.to(device)


# ------------------------------------------------------------------------------------- cutrain
class Cutrain:
    def __init__(self, exe, data, device, threads, workdir):
        self.exe, self.data, self.device, self.threads, self.workdir = exe, data, device, threads, workdir

    def run(self, command, *args):
        cmd = [self.exe, command, "--model", "mlp", "--data", self.data, "--device", self.device, "--quiet"]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        cmd += [str(a) for a in args]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{' '.join(cmd)} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
        return time.perf_counter() - t0

    def path(self, name):
        return os.path.join(self.workdir, name)

    def records(self, log, kind):
        with open(log) as f:
            return [r for r in map(json.loads, f) if r["type"] == kind]

    def eval(self, weights, name):
        log = self.path(name + ".eval.jsonl")
        self.run("eval", "--weights", weights, "--log-jsonl", log)
        s = self.records(log, "summary")[0]
        return s["test_loss"], s["test_acc"]


def rel(a, b):
    return abs(a - b) / abs(b) if b else abs(a - b)


# ---------------------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description="cutrain vs PyTorch: loss-trace parity and weight interchange "
                                            "on the mlp preset (docs/interop.md).")
    p.add_argument("--cutrain", default=os.path.join(REPO, "build/cutrain"), help="the cutrain executable")
    p.add_argument("--data", help="MNIST IDX directory (default: as the tests find it)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="both sides train here")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=1, help="cutrain's seed: initial weights and batch order")
    # The CPUs this process may use, at most 64: cutrain refuses a --threads above its OpenBLAS's
    # build limit (64 in Debian's) rather than run fewer than the log says.
    p.add_argument("--threads", type=int, default=min(len(os.sched_getaffinity(0)), 64),
                   help="CPU threads for both sides (default: the CPUs this process may use, at most 64); "
                        "the same count gives both the same OpenBLAS partition of each GEMM")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max relative loss difference (1e-4)")
    p.add_argument("--init", choices=("cutrain", "torch"), default="cutrain",
                   help="initial weights from cutrain bench --save-init, or PyTorch's default init")
    p.add_argument("--adam", choices=("keras", "torch"), default="keras",
                   help="torch side: cutrain's Adam written out (keras), or torch.optim.Adam(eps=1e-7)")
    p.add_argument("--bias-grad", choices=("double", "float"), default="double",
                   help="torch side: bias gradients summed in double as cutrain does, or nn.Linear's own")
    p.add_argument("--workdir", help="keep the files here (default: a temporary directory, removed)")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    if args.steps < 1 or args.tolerance <= 0 or (args.threads is not None and args.threads < 1) or \
            not 0 <= args.seed < 1 << 64:
        p.error("--steps and --threads must be >= 1, --tolerance > 0, --seed in 0 .. 2^64-1")
    return args


def main(argv=None):
    args = parse_args(argv)
    global torch, nn
    if args.threads:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # read when torch loads OpenBLAS
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # torch's OpenMP pool must not spin on BLAS's cores
    try:
        if np is None:
            import numpy  # noqa: F401  (raises the ImportError to report)
        import torch as _torch
        import torch.nn as _nn
    except ImportError as e:
        skip(f"{sys.executable} cannot import numpy and torch ({e}); on Debian: apt-get install python3-torch, "
             "and run this with /usr/bin/python3")
    torch, nn = _torch, _nn
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            skip("--device cuda: torch.cuda.is_available() is False")
        # cuBLAS's TF32 would round every GEMM input to 10 mantissa bits; cutrain computes in FP32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if not os.access(args.cutrain, os.X_OK):
        fail(f"--cutrain: {args.cutrain} is not an executable (build cutrain first)")
    data = find_mnist(args.data)
    device = torch.device(args.device)
    checks, figures = [], {}

    def check(name, ok, detail):
        checks.append((name, ok))
        say(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")

    why = check_shuffle_pins()
    check("batch order", why is None, why or "this script's shuffle gives cutrain's pinned orders")

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="torch_parity.")
    workdir = args.workdir or tmp.name
    os.makedirs(workdir, exist_ok=True)
    ct = Cutrain(os.path.abspath(args.cutrain), data, args.device, args.threads, workdir)
    train_x, train_y = load_split(data, "train")
    test_x, test_y = load_split(data, "t10k")
    n_test = test_x.shape[0]

    # 1. The initial weights, and both sides scoring them the same.
    init = ct.path("init.safetensors")
    if args.init == "cutrain":
        ct.run("bench", "--seed", args.seed, "--steps", 1, "--warmup", 0, "--repeats", 1, "--save-init", init)
    else:
        torch.manual_seed(args.seed)
        st_save(make_model().state_dict(), init, {"format": "pt", "source": "torch_parity.py --init torch"})
    model = load_into(make_model(args.bias_grad), init, device)
    t_loss, t_correct = torch_eval(model, test_x, test_y, device)
    c_loss, c_acc = ct.eval(init, "init")
    check("initial weights", round(c_acc * n_test) == t_correct and rel(c_loss, t_loss) <= 1e-5,
          f"test loss cutrain {c_loss:.9g} torch {t_loss:.9g} (rel {rel(c_loss, t_loss):.2e}), "
          f"correct {round(c_acc * n_test)} / {t_correct}")

    # 2. cutrain trains from them.
    log, trained = ct.path("cutrain.jsonl"), ct.path("cutrain.safetensors")
    epochs = -(-args.steps // -(-train_x.shape[0] // BATCH))  # --max-steps ends a run, it does not lengthen it
    secs = ct.run("train", "--seed", args.seed, "--epochs", epochs, "--max-steps", args.steps,
                  "--init-weights", init, "--log-jsonl", log, "--save", trained)
    c_steps = ct.records(log, "step")
    c_summary = ct.records(log, "summary")[0]

    # 3. PyTorch trains from them, batch for batch.
    opt = KerasAdam(model.parameters()) if args.adam == "keras" else \
        torch.optim.Adam(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS)
    t0 = time.perf_counter()
    t_steps = torch_train(model, opt, train_x, train_y, args.steps, args.seed, device)
    t_secs = time.perf_counter() - t0

    # 4. The loss traces.
    if len(c_steps) != len(t_steps):
        fail(f"cutrain logged {len(c_steps)} steps, PyTorch ran {len(t_steps)}")
    diffs = [rel(c["loss"], t[0]) for c, t in zip(c_steps, t_steps)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    acc_steps = sum(round(c["acc"] * c["batch_size"]) != t[1] for c, t in zip(c_steps, t_steps))
    say("step   cutrain loss     torch loss       rel. diff")
    for k in sorted({0, 9, 24, 49, 74, len(diffs) - 1, worst} & set(range(len(diffs)))):
        say(f"{k + 1:>4}   {c_steps[k]['loss']:<15.9g}  {t_steps[k][0]:<15.9g}  {diffs[k]:.2e}")
    check("loss traces", diffs[worst] <= args.tolerance,
          f"max relative difference {diffs[worst]:.3e} at step {worst + 1} over {len(diffs)} steps "
          f"(tolerance {args.tolerance:g}); batch correct counts differ at {acc_steps} steps")
    figures.update(max_rel_diff=diffs[worst], worst_step=worst + 1, step1_rel_diff=diffs[0],
                   steps_with_other_correct_count=acc_steps, cutrain_train_s=secs, torch_train_s=t_secs,
                   losses_cutrain=[c["loss"] for c in c_steps], losses_torch=[t[0] for t in t_steps])

    # 5a. PyTorch's weights into cutrain: the trained state_dict, scored by cutrain eval.
    t_loss, t_correct = torch_eval(model, test_x, test_y, device)
    torch_file = ct.path("torch.safetensors")
    st_save(model.state_dict(), torch_file, {"format": "pt", "source": "torch_parity.py"})
    c_loss, c_acc = ct.eval(torch_file, "torch")
    check("torch -> cutrain", round(c_acc * n_test) == t_correct and rel(c_loss, t_loss) <= 1e-5,
          f"PyTorch's trained state_dict: test correct torch {t_correct}, cutrain eval {round(c_acc * n_test)}; "
          f"test loss rel diff {rel(c_loss, t_loss):.2e}")
    figures.update(torch_test_acc=t_correct / n_test, torch_test_loss=t_loss)

    # 5b. cutrain's checkpoint into PyTorch.
    from_ct = load_into(make_model(), trained, device)
    t2_loss, t2_correct = torch_eval(from_ct, test_x, test_y, device)
    c_correct = round(c_summary["test_acc"] * n_test)
    check("cutrain -> torch", t2_correct == c_correct and rel(t2_loss, c_summary["test_loss"]) <= 1e-5,
          f"cutrain's --save checkpoint: test correct cutrain {c_correct}, torch {t2_correct}; "
          f"test loss rel diff {rel(t2_loss, c_summary['test_loss']):.2e}")
    with torch.no_grad():
        dw = max((a - b).abs().max().item() for a, b in zip(from_ct.parameters(), model.parameters()))
    say(f"info  trained weights: max |w_cutrain - w_torch| = {dw:.3e}; test acc cutrain "
        f"{c_summary['test_acc']:.4f}, torch {t_correct / n_test:.4f}")
    figures.update(cutrain_test_acc=c_summary["test_acc"], cutrain_test_loss=c_summary["test_loss"],
                   max_abs_weight_diff=dw)

    ok = all(o for _, o in checks)
    figures.update(passed=ok, checks={n: o for n, o in checks}, torch=torch.__version__, device=args.device,
                   adam=args.adam, bias_grad=args.bias_grad, init=args.init, steps=args.steps, seed=args.seed, threads=args.threads,
                   tolerance=args.tolerance,
                   safetensors="package" if _have_safetensors() else "built-in reader/writer")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f)
            f.write("\n")
    say(f"torch_parity: {'passed' if ok else 'FAILED'} (torch {torch.__version__}, {args.device}, "
        f"safetensors: {figures['safetensors']})")
    if tmp:
        tmp.cleanup()
    return 0 if ok else EXIT_FAIL


def _have_safetensors():
    try:
        import safetensors.torch  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
