#!/usr/bin/env python3
"""Writes the markdown report of a benchmarks/run-cpu run from the files it left in one folder.

    make_table.py RUN_DIR [--out FILE]

RUN_DIR holds, per model M, one JSON file per run of a tool (round k = 1, 2, ...):
  M.cutrain.rK.json                  `cutrain bench --json` (the object with samples_per_s is used)
  M.pytorch-usual.rK.json            benchmarks/peers/torch_mnist.py --mode usual --json
  M.pytorch-expert.VARIANT.rK.json   torch_mnist.py --mode expert --json, one or more variants
                                     (passive, unset: its OMP_WAIT_POLICY; compiled, graph on a
                                     GPU); of the variants with the most rounds, the one with the
                                     higher figure is the expert's, and every variant is listed.
                                     For seed and mlp a graph variant's first_loss must equal the
                                     compiled variant's (to rounding); the notes say when it does not
  M.init-eval.jsonl                  `cutrain eval --log-jsonl` of the initial weights (optional)
(a name without .rK counts as one round) and meta.txt (KEY<TAB>VALUE lines: the machine, versions,
commit, date; "models" lists the models in order; "stopped", written by run-gpu when a signal
stopped it, gives a warning), commands.txt (the exact commands, one per line)
and failed.txt (those that failed).

A tool's figure over its rounds: samples/s is the median of the rounds' medians, (min–max) the
lowest and highest single repeat of any round; steps/s, epoch s and the statistics overhead are
medians over the rounds. Every figure in the report is read from those files or computed from them
(these medians, the ratios, and cutrain's rate with the statistics off = samples_per_s *
(1 + stats_overhead)); a missing or unreadable file gives "no result", never a number. Stdlib only.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

TOOLS = ("cutrain", "pytorch-usual", "pytorch-expert")


def read_json_objects(path):
    """The JSON objects of a file holding one object, or one per line; [] when it cannot be read."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return []
    try:
        obj = json.loads(text)
        return [obj] if isinstance(obj, dict) else []
    except json.JSONDecodeError:
        pass
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def throughput_record(path):
    for obj in read_json_objects(path):
        if num(obj.get("samples_per_s")):
            return obj
    return None


def runs_of(d, model, tool):
    """{variant: [records, one per round, in round order]} of one tool for one model."""
    pat = re.compile(re.escape(f"{model}.{tool}") + r"(?:\.([A-Za-z0-9_-]+?))??(?:\.r(\d+))?\.json$")
    found = {}
    for name in os.listdir(d):
        mt = pat.fullmatch(name)
        if not mt:
            continue
        rec = throughput_record(os.path.join(d, name))
        if rec is not None:
            found.setdefault(mt.group(1) or "", []).append((int(mt.group(2) or 0), rec))
    return {v: [r for _, r in sorted(rs, key=lambda x: x[0])] for v, rs in found.items()}


def aggregate(recs):
    """One figure over the rounds of a tool (see the module's docstring)."""
    first = recs[0]
    agg = dict(first)

    def med(key):
        vals = [r[key] for r in recs if num(r.get(key))]
        return statistics.median(vals) if len(vals) == len(recs) else None

    agg["samples_per_s"] = med("samples_per_s")
    mins = [r["samples_per_s_min"] for r in recs if num(r.get("samples_per_s_min"))]
    maxs = [r["samples_per_s_max"] for r in recs if num(r.get("samples_per_s_max"))]
    agg["samples_per_s_min"] = min(mins) if len(mins) == len(recs) else None
    agg["samples_per_s_max"] = max(maxs) if len(maxs) == len(recs) else None
    agg["steps_per_s"] = med("steps_per_s")
    agg["epoch_s"] = med("epoch_s")
    agg["stats_overhead"] = med("stats_overhead")
    agg["round_medians"] = [r["samples_per_s"] for r in recs]
    agg["first_losses"] = [r.get("first_loss") for r in recs]
    agg["rounds"] = len(recs)
    return agg


def best_rounds(listed, tool):
    """The most rounds any variant of `tool` has (listed: (tool, variant, aggregate, chosen))."""
    return max((a["rounds"] for t, _, a, _ in listed if t == tool), default=0)


# Models whose CUDA-graph expert must start with the compiled expert's first loss: the same weights
# and batch, no dropout, so only kernel rounding may differ (cnn's dropout draws other masks).
SAME_FIRST_LOSS = ("seed", "mlp")


def first_loss_notes(model, variants):
    """{variant: note} for each CUDA-graph variant (its name contains "graph") of the expert whose
    first training loss differs from the compiled variant's, round by round, beyond rounding
    (the tolerance of the initial-weights check): a captured step that does not compute what the
    eager one does would show here."""
    if model not in SAME_FIRST_LOSS or "compiled" not in variants:
        return {}
    ref = variants["compiled"].get("first_losses") or []
    notes = {}
    for v, a in variants.items():
        if "graph" not in v:
            continue
        pairs = [(g, c) for g, c in zip(a.get("first_losses") or [], ref) if num(g) and num(c)]
        bad = [(g, c) for g, c in pairs if abs(g - c) > 1e-4 * max(1.0, abs(c))]
        if bad:
            g, c = bad[0]
            notes[v] = f"first loss differs: {v} {g:.6f}, compiled {c:.6f}"
    return notes


def rate(r):
    if not r or not num(r.get("samples_per_s")):
        return "no result"
    s = f"{r['samples_per_s']:,.0f}"
    if num(r.get("samples_per_s_min")) and num(r.get("samples_per_s_max")):
        s += f" ({r['samples_per_s_min']:,.0f}–{r['samples_per_s_max']:,.0f})"
    return s


def ratio(a, b):
    if a and b and num(a.get("samples_per_s")) and num(b.get("samples_per_s")) and b["samples_per_s"] > 0:
        return f"{a['samples_per_s'] / b['samples_per_s']:.2f}×"
    return "–"


def stats_off(c):
    """cutrain's samples/s with the step statistics off, from its median step time with them off.

    From samples_per_s, not steps_per_s x batch_size: a step holds fewer rows than the batch size at an
    epoch's end or when the batch is larger than the data, and samples_per_s counts the rows trained."""
    if c and num(c.get("samples_per_s")) and num(c.get("stats_overhead")):
        return c["samples_per_s"] * (1.0 + c["stats_overhead"])
    return None


def read_lines(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return []


def read_meta(run_dir):
    meta = {}
    for line in read_lines(os.path.join(run_dir, "meta.txt")):
        key, sep, value = line.partition("\t")
        if sep:
            meta[key] = value
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description="Markdown report of a benchmarks/run-cpu run.")
    p.add_argument("run_dir")
    p.add_argument("--out", help="write here (default: stdout)")
    args = p.parse_args(argv)
    d = args.run_dir
    if not os.path.isdir(d):
        print(f"make_table: error: {d}: not a directory", file=sys.stderr)
        return 2
    meta = read_meta(d)
    models = meta.get("models", "").split() or sorted(
        {n.split(".")[0] for n in os.listdir(d) if ".cutrain." in n and n.endswith(".json")})
    if not models:
        print(f"make_table: error: {d}: no results (no meta.txt models and no M.cutrain*.json)", file=sys.stderr)
        return 1

    rows, details, checks, warnings = [], [], [], []
    for m in models:
        figs, listed = {}, []
        for tool in TOOLS:
            variants = {v: aggregate(rs) for v, rs in sorted(runs_of(d, m, tool).items())}
            # The faster variant among those with every round (the most rounds any variant has):
            # a variant that lost a round is not compared on fewer, luckier runs.
            most = max((a["rounds"] for a in variants.values()), default=0)
            best = max((a for a in variants.values() if a["rounds"] == most),
                       key=lambda a: a["samples_per_s"] or 0.0) if variants else None
            figs[tool] = best
            for v, a in variants.items():
                listed.append((tool, v, a, len(variants) > 1 and a is best))
            if best is None:
                warnings.append(f"{m}: {tool}: no result (its runs failed or were not made; see the log)")
            elif any(a.get("model") != m for a in variants.values()):
                warnings.append(f"{m}: {tool}: a JSON file names another model")
        c, u, e = (figs[t] for t in TOOLS)
        present = [r for r in figs.values() if r]
        for key, what in (("batch_size", "batch sizes"), ("threads", "thread counts"), ("steps", "steps per repeat"),
                          ("repeats", "repeats per round"), ("rounds", "numbers of rounds")):
            if key == "threads" and meta.get("device_kind") == "GPU":
                continue  # host threads: cutrain's GPU step uses one, torch keeps its own pool
            vals = {str(r.get(key)) for r in present}
            if len(vals) > 1:
                warnings.append(f"{m}: the {what} differ between the tools: {', '.join(sorted(vals))}")
        off = stats_off(c)
        ref = present[0] if present else {}
        rows.append("| " + " | ".join([
            m,
            str(ref.get("batch_size", "–")),
            "/".join(sorted({str(r.get("threads")) for r in present})) or "–",
            rate(c),
            f"{off:,.0f}" if off is not None else "–",
            rate(u),
            rate(e),
            ratio(c, u),
            ratio(c, e),
            f"{100 * c['stats_overhead']:.1f}%" if c and num(c.get("stats_overhead")) else "–",
        ]) + " |")
        loss_notes = first_loss_notes(m, {v: a for t, v, a, _ in listed if t == "pytorch-expert"})
        for x in loss_notes.values():
            warnings.append(f"{m}: pytorch-expert: {x}")
        for tool, variant, a, chosen in listed:
            notes = []
            # OpenMP's wait policy is what tells CPU variants apart; on a GPU it means nothing.
            if a.get("omp_wait_policy") and meta.get("device_kind") != "GPU":
                notes.append(f"OMP_WAIT_POLICY {a['omp_wait_policy']}")
            elif variant:
                notes.append(f"variant {variant}")
            if variant:
                if chosen:
                    notes.append("the figure used")
                elif a["rounds"] < best_rounds(listed, tool):
                    notes.append(f"not used: {a['rounds']} of {best_rounds(listed, tool)} rounds")
                else:
                    notes.append("slower: not used")
            if tool == "pytorch-expert" and variant in loss_notes:
                notes.append(loss_notes[variant])
            if a.get("compile_note"):
                notes.append(a["compile_note"])
            if a.get("gpu_math"):
                notes.append(a["gpu_math"])
            details.append("| " + " | ".join([
                m, tool,
                ", ".join(f"{x:,.0f}" for x in a["round_medians"]),
                f"{a['steps_per_s']:.1f}" if num(a.get("steps_per_s")) else "–",
                f"{a['epoch_s']:.2f}" if num(a.get("epoch_s")) else "–",
                f"{a['rounds']} × ({a.get('warmup', '?')} + {a.get('repeats', '?')} × {a.get('steps', '?')})",
                str(a.get("device", "–")),
                "; ".join(notes) or "–",
            ]) + " |")
        ev = [o for o in read_json_objects(os.path.join(d, f"{m}.init-eval.jsonl")) if o.get("type") == "summary"]
        chk = [(t, figs[t].get("init_check")) for t in TOOLS[1:] if figs[t] and figs[t].get("init_check")]
        if ev or chk:
            parts, losses = [], []
            if ev and num(ev[0].get("test_loss")):
                parts.append(f"cutrain eval: test loss {ev[0]['test_loss']:.6f}, accuracy {ev[0].get('test_acc')}")
                losses.append(ev[0]["test_loss"])
            for t, ck in chk:
                if num(ck.get("test_loss")):
                    parts.append(f"{t}: test loss {ck['test_loss']:.6f}, accuracy {ck.get('test_acc')}")
                    losses.append(ck["test_loss"])
            same = len(losses) >= 2 and max(losses) - min(losses) <= 1e-4 * max(1.0, abs(losses[0]))
            checks.append(f"- `{m}`: " + "; ".join(parts) +
                          (": the same start." if same else ": NOT shown to be the same start."))
            if not same:
                warnings.append(f"{m}: the initial weights are not shown to give the same test loss in every tool")
    warnings += [f"this command failed: `{line}`" for line in read_lines(os.path.join(d, "failed.txt"))]
    if meta.get("stopped"):
        warnings.append(f"the run was stopped {meta['stopped']}: that command may not have finished, and the "
                        "ones after it never ran")

    out = []
    w = out.append
    where = meta.get("device_kind", "CPU")  # run-gpu writes "GPU"
    w(f"# {where} throughput: cutrain vs PyTorch, {meta.get('date', 'date unknown')}")
    w("")
    w(f"Training samples per second on the {where}, higher is better: the median over the rounds (the tools "
      "take turns) of each run's median repeat, and (min–max) the slowest and fastest single repeat. "
      "Ratios are cutrain's figure over the peer's. Same model, batch size, optimizer (Adam, eps 1e-7; "
      "one-cycle for cnn), thread count and initial weights in every column; `benchmarks/README.md` "
      "says what each figure means and how it is measured.")
    w("")
    w("| model | batch | threads | cutrain samples/s | cutrain, stats off | PyTorch usual | PyTorch expert | "
      "cutrain / usual | cutrain / expert | cutrain stats overhead |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    out.extend(rows)
    w("")
    w("`cutrain samples/s` is with the step statistics on (what `cutrain train` does); `cutrain, stats off` "
      "is computed from the same JSON as samples_per_s × (1 + stats_overhead), i.e. its median step "
      "time with the statistics off. PyTorch computes no such statistics.")
    w("")
    w("| model | tool | samples/s per round | steps/s | epoch s (estimate) | rounds × (warm-up + repeats × steps) "
      "| device | notes |")
    w("| --- | --- | ---: | ---: | ---: | --- | --- | --- |")
    out.extend(details)
    if checks:
        w("")
        w("Initial weights (cutrain's `--save-init` file, which both peers load), scored on the test set "
          "before training:")
        w("")
        out.extend(checks)
    if warnings:
        w("")
        w("**Warnings**")
        w("")
        out.extend(f"- {x}" for x in warnings)
    w("")
    w("## Machine and software")
    w("")
    labels = [("gpu", "GPU"), ("driver", "driver"), ("cuda", "CUDA compiler"), ("machine", "CPU"), ("cores", "cores"), ("os", "OS"), ("kernel", "kernel"),
              ("compiler", "compiler (cutrain)"), ("build_type", "cutrain build type"),
              ("openblas", "OpenBLAS"), ("torch", "PyTorch (torch.__version__)"),
              ("torch_pkg", "PyTorch (package)"), ("python", "Python for PyTorch"),
              ("commit", "commit"), ("date", "date (UTC)"), ("load_before", "load average before the run"),
              ("load_after", "load average after the run"), ("data", "data")]
    for key, label in labels:
        if key in meta:
            w(f"- {label}: {meta[key]}")
    cmds = read_lines(os.path.join(d, "commands.txt"))
    if cmds:
        w("")
        w("## Commands")
        w("")
        w("In the order they ran (from the repository root):")
        w("")
        w("```sh")
        out.extend(cmds)
        w("```")
    text = "\n".join(out) + "\n"
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.out)
    else:
        sys.stdout.write(text)
    return 1 if any("no result" in x or "failed" in x or "stopped" in x for x in warnings) else 0


if __name__ == "__main__":
    sys.exit(main())
