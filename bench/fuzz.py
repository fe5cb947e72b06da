"""Differential fuzzing: random valid models (tests/model_strategies.py) through every backend and
pass pipeline (tests/differential.py) for a given time.

    python bench/fuzz.py --minutes N [--seed S] [--no-c] [--out DIR]

Runs rounds of hypothesis examples (round r uses seed S + r): inference rounds (onnxruntime at every
optimization level and device pipeline, the NumPy backend before and after the passes, predict, IR
and build determinism), gradient rounds (small models: float64 gradients against finite
differences, the NumPy program's SGD step) and, unless --no-c, C rounds (fewer models: each
compiles a C library): predict in C, and one C training step against the float64 gradients and the
NumPy program's step. A failure is shrunk by hypothesis (at most --shrink-minutes) and saved
as a reproducer DIR/fuzz_<seed>_<digest>.py (default tests/regressions/), which
tests/test_differential.py then runs forever: fix the bug, or mark the file with
XFAIL = "<reason>" (a strict xfail) if the bug belongs to someone else. Prints a summary at the end;
exits 1 if anything failed.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from differential import HAVE_CC, REGRESSIONS, TRAIN_BACKENDS, Stats, check_case, reproducer_source  # noqa: E402
from model_strategies import ALL_LAYER_KINDS, cases_with_data  # noqa: E402

ROUNDS = [  # (name, examples per round, strategy, check options)
    ("inference", 100, lambda: cases_with_data(max_steps=10), {"c_backend": False}),
    ("gradients", 40, lambda: cases_with_data(small=True, max_steps=5),
     {"gradients": True, "c_backend": False, "determinism": False}),
    ("c", 5, lambda: cases_with_data(max_steps=8), {"c_backend": True, "determinism": False}),
    ("c-training", 5, lambda: cases_with_data(small=True, max_steps=5),
     {"gradients": True, "c_backend": False, "determinism": False, "train_backends": ("numpy", "c")}),
]


def failure_key(error: BaseException) -> str:
    """The kind of a failure, for counting: the exception type and its first line without numbers."""
    text = str(error).strip().splitlines()
    line = next((l for l in text if l.strip() and not l.startswith("Not equal")), text[0] if text else "")
    return f"{type(error).__name__}: " + re.sub(r"[-+]?\d[\d.e+-]*", "#", line)[:160]


def run_round(kind, examples, strategy, options, round_seed, deadline, shrink_budget, stats, record):
    """One hypothesis run; returns the shrunk failing (case, data, error) or None."""
    state = {"shrink_started": None}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(strategy())
    def check(case_data):
        now = time.monotonic()
        if state["shrink_started"] is None and now > deadline:
            return  # out of time: let the round finish quietly
        if state["shrink_started"] is not None and now - state["shrink_started"] > shrink_budget:
            return  # shrinking too long: keep the smallest failure found so far
        case, data = case_data
        local = Stats()
        try:
            check_case(case, data, local, **options)
        except Exception as e:
            if state["shrink_started"] is None:
                state["shrink_started"] = now
            record["last"] = (case, data, e, traceback.format_exc())
            raise
        if state["shrink_started"] is None:  # count the models of the generation phase only
            merge(stats, local)

    try:
        seed(round_seed)(check)()
    except Exception:
        return record.pop("last", None)
    return None


def merge(total: Stats, part: Stats) -> None:
    total.models += part.models
    total.calls += part.calls
    total.gradient_checks += part.gradient_checks
    total.gradient_elements += part.gradient_elements
    for name in ("kinds", "ir_ops", "onnx_ops", "comparisons", "train_steps", "c_refused"):
        getattr(total, name).update(getattr(part, name))


def table(title: str, rows: list[tuple[str, object]]) -> str:
    width = max([len(str(k)) for k, _ in rows] + [len(title)])
    lines = [title, "-" * (width + 12)]
    lines += [f"{str(k):<{width}}  {v:>8}" for k, v in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-c", action="store_true", help="skip the C-backend rounds")
    parser.add_argument("--out", type=Path, default=REGRESSIONS, help="where reproducers go")
    parser.add_argument("--shrink-minutes", type=float, default=3.0)
    args = parser.parse_args(argv)
    rounds = [r for r in ROUNDS if not (r[0].startswith("c") and (args.no_c or not HAVE_CC))]
    start = time.monotonic()
    deadline = start + 60 * args.minutes
    stats, per_kind = Stats(), Counter()
    failures: dict[str, tuple[int, Path | None]] = {}
    r = 0
    while time.monotonic() < deadline:
        kind, examples, strategy, options = rounds[r % len(rounds)]
        round_seed = args.seed + r
        before = stats.models
        found = run_round(kind, examples, strategy, options, round_seed, deadline, 60 * args.shrink_minutes, stats, {})
        per_kind[kind] += stats.models - before
        if found is not None:
            case, data, error, trace = found
            key = failure_key(error)
            count, path = failures.get(key, (0, None))
            if path is None:
                digest = hashlib.sha256(case.source.encode()).hexdigest()[:8]
                args.out.mkdir(parents=True, exist_ok=True)
                path = args.out / f"fuzz_{round_seed}_{digest}.py"
                gradients = bool(options.get("gradients"))
                path.write_text(reproducer_source(case, data, f"{type(error).__name__}: {error}", gradients=gradients,
                                                   train_backends=options.get("train_backends", TRAIN_BACKENDS)))
                print(f"\nFAILURE ({kind} round, seed {round_seed}): {key}\n  reproducer: {path}\n"
                      + "\n".join("  " + l for l in trace.strip().splitlines()[-6:]), flush=True)
            failures[key] = (count + 1, path)
        r += 1
        elapsed = time.monotonic() - start
        print(f"[{elapsed / 60:5.1f} min] round {r} ({kind}): {stats.models} models, {len(failures)} failure kinds",
              flush=True)

    elapsed = time.monotonic() - start
    print()
    print(table("summary", [("minutes", f"{elapsed / 60:.1f}"), ("seed", args.seed), ("rounds", r),
                            ("models checked", stats.models)] +
                [(f"  in {k} rounds", v) for k, v in sorted(per_kind.items())] +
                [("layer calls (steps)", stats.calls), ("gradient checks", stats.gradient_checks),
                 ("  gradient elements", stats.gradient_elements)] +
                [(f"training steps ({b})", v) for b, v in sorted(stats.train_steps.items())] +
                [("IR op kinds", len(stats.ir_ops)), ("ONNX op types", len(stats.onnx_ops)),
                 ("failure kinds", len(failures))]))
    print()
    kinds = sorted(set(ALL_LAYER_KINDS) | {"shared", "nested"}, key=lambda k: -stats.kinds[k])
    print(table("layer kinds (models using them)", [(k, stats.kinds[k]) for k in kinds]))
    missing = [k for k in kinds if not stats.kinds[k]]
    if missing:
        print(f"never generated: {', '.join(missing)}")
    print()
    print(table("comparisons against the NumPy reference", sorted(stats.comparisons.items())))
    print()
    print(table("IR ops (models x ops)", stats.ir_ops.most_common()))
    print()
    print(table("ONNX op types (exports x nodes)", stats.onnx_ops.most_common()))
    if stats.c_refused:
        print()
        print(table("C backend refusals (CBackendError, not failures)", stats.c_refused.most_common()))
    print()
    if failures:
        print(table("FAILURES (kind: times)", [(k, n) for k, (n, _) in failures.items()]))
        for key, (_, path) in failures.items():
            print(f"  {path}: {key}")
    else:
        print("no failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
