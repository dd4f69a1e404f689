"""``gemmperf plan | budget | whatif | archs``: training-run planning from the command line.

Numeric options are read as text and checked by the command itself (:func:`check_numbers`),
not by argparse types: argparse would print its whole usage block for a bad value, while a
:class:`PlanError` naming the option and its accepted range is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import Any

from gemmperf.cli._args import path_arg
from gemmperf.cli._output import print_json, print_table
from gemmperf.training.errors import PlanError

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
# A signed number with an optional k/M/B/T suffix. The sign is parsed so that "-5" is reported
# as out of range, not as "not a number".
_NUMBER = re.compile(r"\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*"
                     r"([kKmMbBgGtTpP]?)\s*")


def quantity(text: str) -> float | None:
    """A number with an optional k/M/B/T suffix: ``2T``, ``4M``, ``1.5e6``; None if it is not one.

    Only the syntax: whether the value makes sense is the option's :class:`_Range`.
    """
    match = _NUMBER.fullmatch(str(text))
    if not match:
        return None
    return float(match.group(1)) * _SUFFIX[match.group(2).lower()]


@dataclass(frozen=True)
class _Range:
    """What a numeric option accepts, and how its error message says so."""

    low: float
    low_inclusive: bool
    integer: bool
    text: str                 # "a positive integer", ...
    high: float = math.inf

    def accepts(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        return (math.isfinite(value) and above and value <= self.high
                and (not self.integer or value.is_integer()))


_POSITIVE = _Range(0.0, False, False, "a positive number (e.g. 1.5e6, 4M or 2T)")
_COUNT = _Range(1.0, True, True, "a positive integer")
_TOKEN_COUNT = _Range(1.0, True, True, "a positive whole number of tokens (e.g. 4M)")
_PRICE = _Range(0.0, False, False, "a positive number of USD per GPU-hour")
_PUE = _Range(1.0, True, False, "a number of at least 1.0 (1.0: no facility overhead)")
_ZERO_STAGE = _Range(0.0, True, True, "an integer from 0 to 3", high=3.0)

# Every numeric option of plan/budget/whatif, by its argparse dest.
_NUMERIC = {
    "tokens": _TOKEN_COUNT, "num_gpus": _COUNT, "seq": _COUNT, "global_batch_tokens": _TOKEN_COUNT,
    "price": _PRICE, "pue": _PUE, "tp": _COUNT, "pp": _COUNT, "ep": _COUNT,
    "micro_batch": _COUNT, "virtual_stages": _COUNT, "zero_stage": _ZERO_STAGE,
    "gpu_hours": _POSITIVE, "flops": _POSITIVE, "energy_mwh": _POSITIVE, "usd": _POSITIVE,
    "tokens_per_param": _Range(0.0, False, False, "a positive number of tokens per parameter"),
    "inference_tokens": _POSITIVE,
}


def _checked(dest: str, text: str) -> float | int:
    """``text`` of option ``dest`` as a number in its range, else a one-line PlanError."""
    accepted = _NUMERIC[dest]
    value = quantity(text)
    if value is None or not accepted.accepts(value):
        option = "--" + dest.replace("_", "-")
        raise PlanError(f"{option} must be {accepted.text}, got {text!r}")
    return int(value) if accepted.integer else value


def check_numbers(args: argparse.Namespace) -> None:
    """Replace the text of every numeric option in ``args`` by its checked value (in place)."""
    for dest in _NUMERIC:
        text = getattr(args, dest, None)
        if text is None:  # omitted: the default (often "searched") applies
            continue
        if isinstance(text, list):  # a whatif sweep list
            if not text:
                raise PlanError(f"--{dest.replace('_', '-')} needs at least one value")
            setattr(args, dest, [_checked(dest, part) for part in text])
        else:
            setattr(args, dest, _checked(dest, text))


def _csv(text: str) -> list[str]:
    """The comma-separated parts of ``text`` (empty parts dropped: an empty list is an error)."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def register(subparsers: Any) -> None:
    """Add ``plan``, ``budget``, ``whatif`` and ``archs``."""
    plan = subparsers.add_parser(
        "plan", help="time, MFU, GPU-hours, energy and cost of a training run",
        description="Plan a training run GEMM by GEMM: step time, tokens/s per GPU, MFU/HFU, "
        "wall-clock days, GPU-hours, energy (GPU power x time x PUE) and dollars.")
    plan.add_argument("--arch", required=True, help="preset name (gemmperf archs) or config.json")
    plan.add_argument("--tokens", required=True, help="training tokens, e.g. 2T")
    _run_options(plan)
    plan.add_argument("--num-gpus", required=True, help="GPUs in the cluster (an integer)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=_plan)

    budget = subparsers.add_parser(
        "budget", help="compute-optimal model size and tokens for a GPU budget",
        description="Convert a budget to FLOPs with the planner's achieved throughput for the "
        "GPU, solve a scaling law for N_opt and D_opt, and plan a concrete architecture.")
    group = budget.add_mutually_exclusive_group(required=True)
    group.add_argument("--gpu-hours", help="GPU-hours on --gpu, e.g. 1e6")
    group.add_argument("--flops", help="training FLOPs, e.g. 1e24 (no --gpu needed)")
    group.add_argument("--energy-mwh", help="facility energy (PUE included)")
    group.add_argument("--usd", help="dollars (with --price per GPU-hour)")
    budget.add_argument("--gpu", help="GPU name or alias (needed for all but --flops)")
    budget.add_argument("--price", help="USD per GPU-hour")
    budget.add_argument("--law", default="epoch", choices=("hoffmann", "epoch", "kaplan",
                                                           "deepseek"),
                        help="scaling law (data/scaling_laws.json; default epoch)")
    budget.add_argument("--num-gpus", help="GPUs (default: sized for ~30 days)")
    budget.add_argument("--tokens-per-param", help="over-train at this D/N ratio")
    budget.add_argument("--inference-tokens",
                        help="expected inference tokens (minimise training + inference FLOPs)")
    budget.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp8"),
                        help="training dtype (default bf16)")
    budget.add_argument("--seq", default="4096", help="sequence length (default 4096)")
    budget.add_argument("--pue", help="facility PUE (default 1.1)")
    budget.add_argument("--json", action="store_true", help="print the answer as JSON")
    budget.set_defaults(func=_budget)

    whatif = subparsers.add_parser(
        "whatif", help="one plan (or budget) across GPUs, dtypes, cluster sizes or budgets",
        description="Comma-separated lists sweep every combination. Plan sweep (--arch and "
        "--tokens): one plan per --gpu, --num-gpus and --dtype, e.g. --gpu a100,h100 "
        "--num-gpus 512,1024 --dtype bf16,fp8. Budget sweep (no --arch): the compute-optimal "
        "model of each --gpu-hours/--usd budget per --gpu and --dtype, as `gemmperf budget`. "
        "Options of the other sweep (--gpu-hours/--usd/--law with --arch; --tokens/--num-gpus/"
        "--global-batch-tokens without) are rejected, not ignored.")
    whatif.add_argument("--arch", help="preset or config.json (plan sweep)")
    whatif.add_argument("--tokens", help="training tokens (plan sweep)")
    whatif.add_argument("--gpu", type=_csv, required=True, help="GPU names, comma-separated")
    whatif.add_argument("--num-gpus", type=_csv, help="cluster sizes (plan sweep)")
    whatif.add_argument("--dtype", type=_csv, default=["bf16"],
                        help="training dtypes, comma-separated (default bf16)")
    whatif.add_argument("--gpu-hours", type=_csv, help="GPU-hour budgets (budget sweep)")
    whatif.add_argument("--usd", type=_csv, help="dollar budgets, with --price (budget sweep)")
    whatif.add_argument("--law", choices=("hoffmann", "epoch", "kaplan", "deepseek"),
                        help="scaling law (budget sweep; default epoch)")
    whatif.add_argument("--seq", help="sequence length")
    whatif.add_argument("--global-batch-tokens", help="tokens per optimizer step (plan sweep)")
    whatif.add_argument("--price", help="USD per GPU-hour")
    whatif.add_argument("--pue", help="facility PUE (default 1.1)")
    whatif.add_argument("--plot", type=path_arg, help="write a figure comparing the scenarios "
                        "(.png, .svg, .pdf, ...; checked before the sweep)")
    whatif.add_argument("--json", action="store_true", help="print the scenarios as JSON")
    whatif.set_defaults(func=_run_whatif)

    archs = subparsers.add_parser("archs", help="list the bundled architecture presets")
    archs.add_argument("--json", action="store_true", help="print the presets as JSON")
    archs.set_defaults(func=_archs)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", required=True, help="GPU name or alias, e.g. h100, a100-40gb")
    parser.add_argument("--seq", help="sequence length (default: the preset's)")
    parser.add_argument("--global-batch-tokens",
                        help="tokens per optimizer step (default: published or DeepSeek B_opt)")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp8"),
                        help="training dtype (default bf16)")
    parser.add_argument("--price", help="USD per GPU-hour")
    parser.add_argument("--pue", help="facility PUE (default 1.1)")
    parser.add_argument("--tp", help="tensor-parallel size (default: searched)")
    parser.add_argument("--pp", help="pipeline stages (default: searched)")
    parser.add_argument("--ep", help="expert-parallel size for MoE (default: searched)")
    parser.add_argument("--micro-batch", help="sequences per micro-batch (default: searched)")
    parser.add_argument("--virtual-stages",
                        help="interleaved pipeline depth (default: searched)")
    parser.add_argument("--recompute", choices=("auto", "none", "full"), default="auto",
                        help="full activation recomputation (default auto: searched)")
    parser.add_argument("--no-flash-attention", action="store_true",
                        help="unfused attention (pre-2022 frameworks); same as --attention unfused")
    parser.add_argument("--attention", choices=("fa2", "fa3", "fa4", "unfused"),
                        help="attention kernel (default: the fastest published one for the GPU)")
    parser.add_argument("--zero-stage",
                        help="data-parallel sharding, 0-3: 1 distributed optimizer, 3 FSDP "
                        "(default: searched over 1 and 3)")
    parser.add_argument("--dropout", action="store_true", help="hidden/attention dropout on")
    parser.add_argument("--grad-reduce-dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="precision of the data-parallel gradient reduction")
    parser.add_argument("--no-predictor", action="store_true",
                        help="use the calibrated roofline even where the predictor covers the GPU")
    parser.add_argument("--lenient", action="store_true",
                        help="ignore unknown config.json fields instead of failing")


def _plan_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from gemmperf.training.config import load_arch

    return {
        "arch": load_arch(args.arch, strict=not args.lenient), "gpu": args.gpu,
        "tokens": args.tokens, "num_gpus": args.num_gpus, "seq_len": args.seq,
        "global_batch_tokens": args.global_batch_tokens, "dtype": args.dtype,
        "price_per_gpu_hour": args.price, "pue": args.pue, "tp": args.tp, "pp": args.pp,
        "ep": args.ep, "micro_batch": args.micro_batch, "virtual_stages": args.virtual_stages,
        "recompute": {"auto": None, "none": False, "full": True}[args.recompute],
        "flash_attention": not args.no_flash_attention, "use_predictor": not args.no_predictor,
        "attention": args.attention, "zero_stage": args.zero_stage, "dropout": args.dropout,
        "grad_reduce_dtype": args.grad_reduce_dtype,
    }


def _plan(args: argparse.Namespace) -> int:
    from gemmperf.training.planner import plan_training

    check_numbers(args)
    plan = plan_training(**_plan_kwargs(args))
    if args.json:
        print_json(plan.to_dict())
        return 0
    _print_plan(plan)
    return 0


def _print_plan(plan: Any) -> None:
    mem = plan.memory
    rows = [
        ("layout", f"{plan.num_gpus} x {plan.gpu}, {plan.parallelism.describe()}, {plan.dtype}"),
        ("sequence / global batch", f"{plan.seq_len} / {plan.global_batch_tokens:,} tokens"),
        ("step time", f"{plan.step_time_s:.3f} s"),
        ("tokens/s per GPU", f"{plan.tokens_per_s_per_gpu:,.0f}"),
        ("MFU / HFU / MFU (PaLM)", f"{plan.mfu:.1%} / {plan.hfu:.1%} / {plan.mfu_palm:.1%}"),
        ("attention kernel / sustained clock",
         f"{plan.attention_kernel} / {plan.sustained_clock_factor:g} x burst"),
        ("model TFLOP/s per GPU", f"{plan.model_tflops_per_gpu:.1f}"),
        ("wall clock", f"{plan.days:,.1f} days for {plan.tokens:.3g} tokens"),
        ("GPU-hours", f"{plan.gpu_hours:,.0f}"),
        ("energy", f"{plan.energy_mwh:,.1f} MWh (avg {plan.avg_gpu_power_w:.0f} W/GPU, "
                   f"PUE {plan.pue:g})"),
        ("cost", "-" if plan.usd is None else f"${plan.usd:,.0f}"),
        ("memory per GPU", f"{mem.total / 2**30:.1f} of {mem.capacity / 2**30:.1f} GiB usable"),
    ]
    print_table(("", "value"), rows, title=f"{plan.arch} training plan")
    total = plan.step_time_s
    print_table(("part", "s/step", "share"),
                [(k, v, f"{v / total:.1%}") for k, v in plan.breakdown_s.items()]
                + [(f"  comm: {k}", v, f"{v / total:.1%}") for k, v in
                   plan.communication_s.items()],
                title="step breakdown (critical path)")
    print_table(("GEMM kind", "s/step", "share of GEMM time"),
                [(k, v, f"{v / max(sum(plan.breakdown_kind_s.values()), 1e-30):.1%}")
                 for k, v in plan.breakdown_kind_s.items()],
                title="GEMM time by kind (per GPU)")
    for note in plan.notes:
        print(f"note: {note}")


def _budget(args: argparse.Namespace) -> int:
    from gemmperf.training.budget import compute_optimal

    check_numbers(args)
    result = compute_optimal(
        gpu=args.gpu, flops=args.flops, gpu_hours=args.gpu_hours, energy_mwh=args.energy_mwh,
        usd=args.usd, price_per_gpu_hour=args.price, law=args.law, num_gpus=args.num_gpus,
        tokens_per_param=args.tokens_per_param, inference_tokens=args.inference_tokens,
        dtype=args.dtype, seq_len=args.seq, pue=args.pue)
    if args.json:
        print_json(result.to_dict())
        return 0
    opt, a = result.optimum, result.arch
    rows = [("law", f"{result.law} ({opt.mode})"), ("compute", f"{result.flops:.3g} FLOPs"),
            ("N_opt", _with_interval(opt.n_params, opt.n_params_interval)),
            ("D_opt", _with_interval(opt.tokens, opt.tokens_interval)),
            ("architecture", f"{a.num_layers} layers x {a.hidden_size} wide, {a.num_heads} heads "
                             f"({a.num_kv_heads} KV), FFN {a.intermediate_size}, vocab "
                             f"{a.vocab_size}"),
            ("size (law's count)", f"{result.arch_params:.4g}"),
            ("tokens", f"{result.tokens:.4g}"),
            ("predicted loss", "-" if result.loss is None else
             _with_interval(result.loss, opt.loss_interval, fmt=".3f"))]
    plan = result.plan
    if plan is not None:
        rows += [("plan", f"{plan.num_gpus} x {plan.gpu}, {plan.parallelism.describe()}"),
                 ("days / GPU-hours", f"{plan.days:,.1f} / {plan.gpu_hours:,.0f}"),
                 ("energy", f"{plan.energy_mwh:,.1f} MWh"), ("MFU", f"{plan.mfu:.1%}"),
                 ("cost", "-" if plan.usd is None else f"${plan.usd:,.0f}")]
    b = result.batch
    rows.append(("batch (DeepSeek B_opt)", f"{b.deepseek_batch_tokens:,.0f} tokens, lr "
                                           f"{b.deepseek_learning_rate:.2e}"))
    if b.kaplan_critical_batch_tokens:
        rows.append(("Kaplan B_crit(L)", f"{b.kaplan_critical_batch_tokens:,.0f} tokens"))
    rows.append(("batch warmup (Merrill 2025)", ", ".join(
        f"{bt / 1e6:.0f}M from {start / 1e9:.0f}B" for start, bt in b.warmup_schedule_tokens)))
    print_table(("", "value"), rows, title="compute-optimal budget")
    for note in (*result.notes, *b.notes):
        print(f"note: {note}")
    return 0


def _with_interval(value: float, interval: Any, fmt: str = ".3g") -> str:
    text = format(value, fmt)
    if interval:
        text += f" (80% interval {format(interval[0], fmt)} - {format(interval[1], fmt)})"
    return text


# Options only one kind of whatif sweep uses: given to the other, they would be ignored.
def _run_whatif(args: argparse.Namespace) -> int:
    from gemmperf.cli.whatif import run_whatif  # it uses this module's option checks

    return run_whatif(args)


def _archs(args: argparse.Namespace) -> int:
    from gemmperf.training.config import list_presets

    presets = list_presets()
    rows = []
    for p in presets:
        a, c = p.arch, p.arch.params
        rows.append({"name": p.key, "params_b": c.total / 1e9, "active_b": c.active / 1e9,
                     "layers": a.num_layers, "hidden": a.hidden_size, "heads": a.num_heads,
                     "kv_heads": a.num_kv_heads, "ffn": a.intermediate_size,
                     "experts": f"{a.experts_per_token}/{a.num_experts}" if a.is_moe else "-",
                     "vocab": a.vocab_size, "source": p.source})
    if args.json:
        print_json(rows)
        return 0
    columns = ("name", "params_b", "active_b", "layers", "hidden", "heads", "kv_heads", "ffn",
               "experts", "vocab")
    print_table(columns, [[r[c] for c in columns] for r in rows],
                title=f"{len(rows)} architecture presets (params in billions; sources: --json)")
    return 0
