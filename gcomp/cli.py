"""The `gcomp` command: inspect and compile model files.

Every user mistake ends in one line on stderr and a non-zero exit; set GCOMP_DEBUG=1 to see the
traceback of an unexpected failure.
"""
from __future__ import annotations

import argparse
import os
import sys

from gcomp.errors import GcompError


def _cmd_summary(args) -> None:
    from gcomp.model_file import load_model
    load_model(args.model_file, args.model).summary()


def _cmd_ir(args) -> None:
    from gcomp.ir import print_graph
    from gcomp.model_file import load_model
    model = load_model(args.model_file, args.model)
    if args.numpy:
        from gcomp.backends.numpy_backend import render_inference_module
        sys.stdout.write(render_inference_module(model._inference_graph()))
    else:
        sys.stdout.write(print_graph(model._inference_graph()))


def _cmd_build(args) -> None:
    from gcomp.build import build, build_numpy
    from gcomp.passes import Report
    if args.target == "c":
        from gcomp.build import build_c
        folder, trains = build_c(args.model_file, args.output, model_name=args.model, max_batch=args.max_batch,
                                 max_len=args.max_len, opt_level=args.opt_level)
        kind = "training and inference" if trains else \
            "inference only: the model was never compiled with a loss, so it cannot train"
        print(f"wrote {folder}: C99 code ({kind}), Makefile, README.md, weights.bin (run make there)")
        return
    if args.target == "numpy":
        folder, trains = build_numpy(args.model_file, args.output, model_name=args.model)
        kind = "training and inference" if trains else \
            "inference only: the model was never compiled with a loss, so it cannot train"
        print(f"wrote {folder}/model.py ({kind}), weights.npz, README.md")
        return
    report = Report() if args.explain else None
    path = build(args.model_file, args.output, model_name=args.model, format=args.format,
                 opt_level=args.opt_level, device=args.device, report=report)
    if report is not None:
        print(report.text())
    print(f"wrote {path}")


def one_line(text: str) -> str:
    """A message as one line (a model file's exception may span several): lines joined by " | "."""
    return " | ".join(line.strip() for line in str(text).splitlines() if line.strip())


class _Parser(argparse.ArgumentParser):
    """argparse, with usage mistakes (an unknown --target, a missing -o) reported on one line."""

    def error(self, message):
        usage = " ".join(self.format_usage().split())
        hint = f"{usage}; see {self.prog} --help" if len(usage) <= 60 else f"see {self.prog} --help"
        self.exit(2, f"{self.prog}: error: {one_line(message)} ({hint})\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gcomp", description="gcomp: a graph compiler for Keras-style models. A model file is a "
        "Python file that defines a Model; gcomp executes it (as a module named __gcomp__), then "
        "takes its variable `model`, or the only Model it defines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_command(name: str, help_text: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("model_file", metavar="model.py", help="Python file defining the model")
        p.add_argument("--model", metavar="NAME", help="variable holding the model, when the file defines several")
        p.set_defaults(func=func)
        return p

    build = model_command("build", "compile the model to an ONNX file (written atomically)", _cmd_build)
    build.add_argument("-o", "--output", required=True, metavar="PATH",
                       help="output: a file for --target onnx (model.onnx), a folder for --target numpy")
    build.add_argument("--target", default="onnx", choices=["onnx", "numpy", "c"],
                       help="onnx (default): an ONNX file for onnxruntime; numpy: a standalone NumPy program "
                            "that predicts and, if model.py compiled the model, trains; c: C99 inference "
                            "code with a Makefile")
    build.add_argument("--max-batch", type=_positive_int, default=64, metavar="N",
                       help="--target c: the most samples one call takes (default 64)")
    build.add_argument("--max-len", type=_positive_int, default=512, metavar="N",
                       help="--target c: the longest free length (sequence) one call takes (default 512)")
    build.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default: onnx)")
    build.add_argument("--opt-level", type=int, default=2, choices=[0, 1, 2],
                       help="0: no passes; 1: clean-ups that keep the weights; 2 (default): also merges "
                            "(--target c: inference-only code, optimized for the CPU)")
    build.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                       help="where the file will run: passes that do not pay there are skipped (default: cuda)")
    build.add_argument("--explain", action="store_true",
                       help="print what each pass did: nodes, ops and parameter bytes before/after, rewrites")
    model_command("summary", "print the model's summary table (layers, output shapes, parameters)", _cmd_summary)
    ir = model_command("ir", "print the model's IR after shape inference", _cmd_ir)
    ir.add_argument("--numpy", action="store_true", help="print the generated NumPy module instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (GcompError, OSError) as e:
        print(f"gcomp: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gcomp: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in gcomp: still one line, unless asked for the traceback
        if os.environ.get("GCOMP_DEBUG"):
            raise
        print(f"gcomp: internal error: {type(e).__name__}: {one_line(e)} (set GCOMP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
