"""Hypothesis strategies for random, valid-by-construction gcomp models (differential testing).

`model_cases()` draws a `ModelCase`: the Python source of a `build()` function written with gcomp's
public API (the same text a reproducer file holds), plus what the generator knows independently of
gcomp: every tensor's shape (ints and symbolic free lengths, tracked here, not by gcomp's shape
rules), the free lengths' ranges, and the layer kinds used. `data_specs(case)` draws inputs for it.

Models are random DAGs over every layer gcomp supports: Dense (every activation), Activation, ReLU
(its options too), Dropout, Flatten, Reshape, Conv1D/Conv2D (strides, dilation, valid/same/causal,
1x1), Max/Average pooling 1D/2D, global pooling (keepdims too), Embedding on int inputs, LSTM
(return_sequences, return_state, go_backwards, ONNX-expressible activations), GRU (reset_after both
ways), Bidirectional LSTMs and GRUs (every merge_mode), the six elementwise merges (with broadcasting of size-1 dims) and Concatenate (last
and inner axes); with branches, merges, shared layers (one layer object called on several tensors),
sibling Dense layers on one tensor, nested models (called once or shared), several inputs (some of one
shape) and outputs (an input or a tensor twice among them, sometimes), a free batch and free lengths
(Input(shape=(None, d)), Input(shape=(None, None, c))).

Validity is by construction: each layer is applied only where its shape rule (written here) accepts
the input at the smallest lengths the model promises to take; since every window and reshape rule is
monotone in its input's length, that holds for every length in range. Weights come from a seeded RNG
(`randomize_weights`), scaled by fan-in so activations stay near unit size, with nonzero biases and
some weights copied from others of the same shape (so deduplication has work to do).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

from gcomp.codegen import numpy_runtime

ACTIVATIONS = sorted(numpy_runtime().ACTIVATIONS) + ["swish", "hard_swish", None]
# LSTM activations with an ONNX LSTM form, except softplus: onnxruntime's overflows to inf/NaN once
# the cell passes ~88 (tests/regressions/onnx_lstm_softplus_overflow.py, a known difference).
LSTM_ACTIVATIONS = ["tanh", "sigmoid", "relu", "softsign"]
# Gates stay bounded: relu/softplus gates let the state grow exponentially over time, and there
# onnxruntime's LSTM overflows (inf, then NaN) where the NumPy reference still has finite values.
LSTM_GATE_ACTIVATIONS = ["sigmoid", "tanh", "softsign"]
BOUNDED = {"sigmoid", "tanh", "softsign", "hard_sigmoid", "softmax"}

# Layer kinds, simplest first (hypothesis shrinks sampled_from towards the front).
RELU_OPTIONS = [{}, {"max_value": 6.0}, {"negative_slope": 0.3}, {"max_value": 1.5},
                {"max_value": 2.0, "negative_slope": 0.1, "threshold": 0.25}]
UNARY_KINDS = ["Dense", "Activation", "ReLU", "Dropout", "Flatten", "Reshape", "Conv1D", "Conv2D", "MaxPooling1D",
               "AveragePooling1D", "MaxPooling2D", "AveragePooling2D", "GlobalMaxPooling1D",
               "GlobalAveragePooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling2D", "LSTM", "GRU", "Bidirectional"]
BIDIRECTIONAL_MERGES = ["concat", "sum", "mul", "ave", None]
RECURRENT_KINDS = ("LSTM", "GRU", "Bidirectional")
MERGE_KINDS = ["Add", "Concatenate", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]
STEP_KINDS = UNARY_KINDS[:1] + MERGE_KINDS[:1] + ["shared"] + UNARY_KINDS[1:] + MERGE_KINDS[1:] + ["siblings", "nested"]
ALL_LAYER_KINDS = tuple(UNARY_KINDS + MERGE_KINDS + ["Embedding"])


# ---- dims: ints, or symbolic expressions over the free lengths -------------------------------------

@dataclass(frozen=True)
class Sym:
    """A free dim: a Python integer expression over the free-length variables (e.g. ``in0_1 - 2``).
    Equal text means equal value for every length, which is all a merge needs."""

    expr: str

    def eval(self, env: dict[str, int]) -> int:
        return int(eval(self.expr, {"__builtins__": {}}, dict(env)))

    def __str__(self) -> str:
        return self.expr


Dim = Any  # int | Sym
Shape = tuple  # the dims after the batch axis


def _atom(d: Dim) -> str:
    s = str(d)
    return s if isinstance(d, int) or s.isidentifier() else f"({s})"


def dim_value(d: Dim, env: dict[str, int]) -> int:
    return d if isinstance(d, int) else d.eval(env)


def shape_value(shape: Shape, env: dict[str, int]) -> tuple[int, ...]:
    return tuple(dim_value(d, env) for d in shape)


def keras_shape(shape: Shape) -> tuple:
    return tuple(d if isinstance(d, int) else None for d in shape)


def _add(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return Sym(f"{_atom(a)} + {_atom(b)}")


def _window(n: Dim, kernel: int, stride: int, dilation: int, padding: str) -> Dim:
    """Keras's output length of a window (convolution or pooling) along one axis."""
    effective = dilation * (kernel - 1) + 1
    if padding in ("same", "causal"):
        if isinstance(n, int):
            return -(-n // stride)
        return n if stride == 1 else Sym(f"-(-{_atom(n)} // {stride})")
    if isinstance(n, int):
        return (n - effective) // stride + 1
    if stride == 1:
        return n if effective == 1 else Sym(f"{_atom(n)} - {effective - 1}")
    return Sym(f"({_atom(n)} - {effective}) // {stride} + 1")


def _static_product(shape: Shape) -> tuple[int, list[Sym]]:
    static, syms = 1, []
    for d in shape:
        if isinstance(d, int):
            static *= d
        else:
            syms.append(d)
    return static, syms


# ---- the generator's view of tensors and layers ---------------------------------------------------

@dataclass
class Tensor:
    var: str
    shape: Shape
    dtype: str = "float32"
    mag: float = 1.0  # a rough size of the values (keeps exponentials and products sane)
    uses: int = 0
    is_input: bool = False


@dataclass
class LayerDef:
    var: str
    kind: str
    cfg: dict
    ctor: str  # constructor source
    calls: int = 0


@dataclass
class ModelCase:
    """A generated model: `source` defines build() (needing Input, Model, layers, randomize_weights)."""

    source: str
    inputs: list[tuple[str, Shape, str]]  # (name, dims after the batch axis, dtype)
    outputs: list[Shape]
    free: dict[str, tuple[int, int]]  # free-length variable -> (smallest, largest) length
    ties: dict[str, str]  # input axis "<input>_<axis>" -> the free-length variable whose length it takes
    kinds: tuple[str, ...]  # layer kinds used, plus "shared" / "nested" when present
    n_calls: int

    def build(self):
        from gcomp import Input, Model, layers
        namespace = {"Input": Input, "Model": Model, "layers": layers, "randomize_weights": randomize_weights}
        exec(compile(self.source, "<generated model>", "exec"), namespace)
        return namespace["build"]()

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return f"ModelCase(free={self.free}, kinds={self.kinds})\n{self.source}"


@dataclass(frozen=True)
class DataSpec:
    seed: int
    batch: int
    lengths: dict = field(default_factory=dict)  # free-length variable -> length


class _Gen:
    """State of one model's generation (inside a hypothesis draw)."""

    def __init__(self, draw, small: bool, kinds: list[str]):
        self.draw, self.small, self.kinds = draw, small, kinds
        self.tensors: list[Tensor] = []
        self.layers: list[LayerDef] = []
        self.lines: list[str] = []
        self.free: dict[str, tuple[int, int]] = {}
        self.ties: dict[str, str] = {}
        self.used_kinds: set[str] = set()
        self.n_calls = 0
        self.n_nested = 0

    # ---- drawing helpers
    def int_(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))

    def coin(self, p=0.5):
        # True with probability p; shrinks to False
        return self.draw(st.integers(0, 99)) >= 100 - int(p * 100)

    def units(self):
        return self.int_(1, 3) if self.small else self.pick([4, 1, 2, 3, 5, 8])

    def lo(self, env_value: Dim) -> int:
        return dim_value(env_value, {k: lo for k, (lo, _) in self.free.items()})

    def valid(self, shape: Shape) -> bool:
        return all(self.lo(d) >= 1 for d in shape)

    # ---- inputs
    def add_input(self, i: int) -> None:
        name = f"in{i}"
        earlier = [t for t in self.tensors if t.is_input]
        if earlier and self.coin(0.3):  # the shape of an earlier input (shared layers can batch them)
            like = earlier[self.int_(0, len(earlier) - 1)]
            tied = self.coin()  # the same free lengths as that input (the data makes them equal), or new ones
            shape = tuple(d if not isinstance(d, Sym) else self.tie(name, axis + 1, d) if tied else
                          self.free_dim(name, axis + 1) for axis, d in enumerate(like.shape))
            self.declare_input(name, shape, like.dtype)
            return
        form = self.pick(["vec", "seq", "tokens", "img"])
        if form == "tokens":
            length = self.free_dim(name, 1) if self.coin(0.6) else self.int_(1, 6)
            shape, dtype = (length,), "int32"
        elif form == "vec":
            shape, dtype = (self.units() + (0 if self.small else 1),), "float32"
        elif form == "seq":
            length = self.free_dim(name, 1) if self.coin(0.5) else self.int_(1, 5 if self.small else 9)
            shape, dtype = (length, self.int_(1, 3 if self.small else 5)), "float32"
        else:
            h = self.free_dim(name, 1) if self.coin(0.2) else self.int_(1, 4 if self.small else 8)
            w = self.free_dim(name, 2) if self.coin(0.2) else self.int_(1, 4 if self.small else 8)
            shape, dtype = (h, w, self.int_(1, 2 if self.small else 4)), "float32"
        self.declare_input(name, shape, dtype)

    def declare_input(self, name: str, shape: Shape, dtype: str) -> None:
        keras = ", ".join("None" if isinstance(d, Sym) else str(d) for d in shape) + ("," if len(shape) == 1 else "")
        dtype_arg = ', dtype="int32"' if dtype == "int32" else ""
        self.lines.append(f'{name} = Input(shape=({keras}){dtype_arg}, name="{name}")')
        self.tensors.append(Tensor(name, shape, dtype, is_input=True))

    def tie(self, name: str, axis: int, dim: Sym) -> Sym:
        """Free axis ``axis`` of input ``name`` takes the length of the free-length variable ``dim``."""
        self.ties[f"{name}_{axis}"] = dim.expr
        return dim

    def free_dim(self, name: str, axis: int) -> Sym:
        var = f"{name}_{axis}"
        lo = self.int_(1, 4 if self.small else 9)
        self.free[var] = (lo, lo + self.int_(0, 3 if self.small else 7))
        return Sym(var)

    # ---- choosing what to apply
    def candidates(self, ok: Callable[[Tensor], bool]) -> list[Tensor]:
        """Tensors passing ``ok``: unused ones first, most recent first (shrinks towards chains)."""
        found = [t for t in self.tensors if ok(t)]
        return sorted(found, key=lambda t: (t.uses > 0, -self.tensors.index(t)))

    def choose(self, ok) -> Tensor | None:
        found = self.candidates(ok)
        if not found:
            return None
        return found[self.int_(0, len(found) - 1)]

    def step(self, kind: str) -> bool:
        """Apply one layer of ``kind`` somewhere it fits; False if it fits nowhere."""
        if kind == "shared":
            return self.reuse()
        if kind == "nested":
            return self.nested()
        if kind == "siblings":
            return self.siblings()
        if kind in MERGE_KINDS:
            return self.merge(kind)
        x = self.choose(lambda t: t.dtype == "float32" and self.config_for(kind, t, probe=True) is not None)
        if x is None and (kind[-2:] in ("1D", "2D") or kind in RECURRENT_KINDS):
            x = self.adapter(kind)  # a Reshape to the rank the kind needs
        if x is None:
            return False
        cfg = self.config_for(kind, x)
        self.call(self.new_layer(kind, cfg), [x])
        return True

    def siblings(self) -> bool:
        """2-3 Dense layers with one activation reading one tensor (merge_sibling_dense's pattern)."""
        x = self.choose(lambda t: t.dtype == "float32" and t.shape and isinstance(t.shape[-1], int))
        if x is None:
            return False
        cfg = self.config_for("Dense", x)
        for _ in range(self.int_(2, 3)):
            self.call(self.new_layer("Dense", {**cfg, "units": self.units()}), [x])
        return True

    def adapter(self, kind: str) -> Tensor | None:
        """A statically shaped float tensor reshaped to (size, 1) or (a, size / a, 1)."""
        x = self.choose(lambda t: t.dtype == "float32" and all(isinstance(d, int) for d in t.shape))
        if x is None:
            return None
        size = math.prod(x.shape)
        if kind.endswith("2D"):
            a = self.pick([d for d in range(1, size + 1) if size % d == 0])
            target = (a, size // a, 1)
        else:
            target = (size, 1)
        (y,) = self.call(self.new_layer("Reshape", {"target_shape": target}), [x])
        return y

    # ---- unary layers: configs, shape rules, constructors
    def config_for(self, kind: str, x: Tensor, probe: bool = False) -> dict | None:
        """A random config of ``kind`` for input ``x`` (None if the kind cannot take x). With
        probe=True nothing is drawn: only whether some config fits."""
        s = x.shape
        rank = len(s)
        if kind == "Dense":
            if not isinstance(s[-1], int):
                return None
            if probe:
                return {}
            acts = [a for a in ACTIVATIONS if a != "exponential" or x.mag <= 2]
            act = None if self.coin(0.25) else self.pick(acts)  # linear dense ops fold (opt_level 2)
            return {"units": self.units(), "activation": act, "use_bias": not self.coin(0.2)}
        if kind == "Activation":
            if probe:
                return {}
            return {"activation": self.pick([a for a in ACTIVATIONS if a != "exponential" or x.mag <= 2])}
        if kind == "ReLU":  # plain (an activation), relu6, leaky, clipped, every option (the relu op)
            return {} if probe else self.pick(RELU_OPTIONS)
        if kind == "Flatten":
            return {} if rank >= 1 else None
        if kind == "Dropout":
            return {"rate": 0.0} if probe else {"rate": self.pick([0.5, 0.0, 0.25])}
        if kind == "Reshape":
            return self.reshape_config(s, probe)
        if kind in ("Conv1D", "Conv2D"):
            r = int(kind[-2])
            if rank != r + 1 or not isinstance(s[-1], int):
                return None
            if probe:
                return {}
            size = [self.pick([1, 3, 2]) for _ in range(r)]
            strides = [self.pick([1, 2, 3]) for _ in range(r)] if self.coin(0.4) else [1] * r
            dilation = [self.pick([1, 2]) for _ in range(r)] if max(strides) == 1 and self.coin(0.3) else [1] * r
            paddings = ["valid", "same", "causal"] if r == 1 else ["valid", "same"]
            cfg = {"filters": self.units(), "kernel_size": size, "strides": strides, "dilation_rate": dilation,
                   "padding": self.pick(paddings), "activation": self.pick([None, "relu", "tanh", "gelu", "sigmoid", "elu"]),
                   "use_bias": not self.coin(0.2)}
            if self.conv_out(cfg, s) is None:
                cfg["padding"] = "same"  # always fits
            return cfg
        if "Pooling" in kind and not kind.startswith("Global"):
            r = int(kind[-2])
            if rank != r + 1:
                return None
            if probe:
                return {}
            pool = [self.pick([2, 1, 3]) for _ in range(r)]
            strides = None if self.coin(0.5) else [self.pick([1, 2, 3]) for _ in range(r)]
            cfg = {"pool_size": pool, "strides": strides, "padding": self.pick(["valid", "same"])}
            if self.pool_out(cfg, s) is None:
                cfg["padding"] = "same"
            return cfg
        if kind.startswith("Global"):
            r = int(kind[-2])
            if rank != r + 1:
                return None
            return {"keepdims": False if probe else self.coin(0.3)}
        if kind in ("GRU", "Bidirectional"):  # an LSTM's config, GRU's reset_after, Bidirectional's merge
            cfg = self.config_for("LSTM", x, probe)
            if cfg is None or probe:
                return cfg
            if kind == "GRU":
                return {**cfg, "reset_after": not self.coin(0.3)}
            inner = self.pick(["LSTM", "GRU"])
            return {**cfg, "go_backwards": False, "merge_mode": self.pick(BIDIRECTIONAL_MERGES), "inner": inner,
                    "reset_after": inner == "LSTM" or not self.coin(0.3)}
        if kind == "LSTM":
            if rank != 2 or not isinstance(s[-1], int):
                return None
            if probe:
                return {}
            return {"units": self.units(), "return_sequences": self.coin(), "go_backwards": self.coin(),
                    "return_state": self.coin(0.2), "use_bias": not self.coin(0.1),
                    "activation": "tanh" if not self.coin(0.3) else self.pick(LSTM_ACTIVATIONS),
                    "recurrent_activation": "sigmoid" if not self.coin(0.3) else self.pick(LSTM_GATE_ACTIVATIONS)}
        raise AssertionError(kind)

    def reshape_config(self, s: Shape, probe: bool) -> dict | None:
        static, syms = _static_product(s)
        divisors = [d for d in range(1, static + 1) if static % d == 0]
        if probe:
            return {}
        if syms:
            last = self.pick(divisors)
            return {"target_shape": (-1, last) if self.coin(0.7) else (-1,)}
        a = self.pick(divisors)
        rest = static // a
        forms = [(a, rest), (static,), (-1, rest), (a, -1)]
        b_divs = [d for d in range(1, rest + 1) if rest % d == 0]
        b = self.pick(b_divs)
        forms += [(a, b, rest // b), (a, -1, rest // b), (1, static)]
        return {"target_shape": self.pick(forms)}

    def conv_out(self, cfg, s: Shape) -> Shape | None:
        spatial = tuple(_window(n, k, st_, d, cfg["padding"]) for n, k, st_, d in
                        zip(s[:-1], cfg["kernel_size"], cfg["strides"], cfg["dilation_rate"]))
        out = spatial + (cfg["filters"],)
        return out if self.valid(out) else None

    def pool_out(self, cfg, s: Shape) -> Shape | None:
        strides = cfg["strides"] or cfg["pool_size"]
        spatial = tuple(_window(n, k, st_, 1, cfg["padding"]) for n, k, st_ in zip(s[:-1], cfg["pool_size"], strides))
        out = spatial + (s[-1],)
        return out if self.valid(out) else None

    def out_shapes(self, layer: LayerDef, xs: list[Tensor]) -> list[Shape] | None:
        """The layer's output shapes for inputs ``xs`` (None: it cannot take them). For a built
        layer (called before), the weights fix the input's last dim."""
        kind, cfg = layer.kind, layer.cfg
        if kind in MERGE_KINDS:
            return self.merge_out(kind, cfg, xs)
        (x,) = xs
        s, rank = x.shape, len(x.shape)
        want_int = kind == "Embedding"
        if (x.dtype == "int32") != want_int:
            return None
        if "in_dim" in cfg and (rank == 0 or s[-1] != cfg["in_dim"]):
            return None
        if kind == "nested":
            if rank != len(cfg["in_shape"]) or any(isinstance(a, int) and a != b for a, b in zip(cfg["in_shape"], s)):
                return None
            if any(isinstance(b, Sym) and a is not None for a, b in zip(cfg["in_shape"], s)):
                return None
            shape = s
            for inner in cfg["chain"]:
                out = self.out_shapes(inner, [Tensor("", shape)])
                if out is None:
                    return None
                (shape,) = out
            return [shape]
        if kind == "Embedding":
            return [s + (cfg["output_dim"],)]
        if kind == "Dense":
            return [s[:-1] + (cfg["units"],)] if isinstance(s[-1], int) and rank >= 1 else None
        if kind in ("Activation", "ReLU", "Dropout"):
            return [s]
        if kind == "Flatten":
            static, syms = _static_product(s)
            if not syms:
                return [(static,)]
            return [(Sym("*".join([str(static)] * (static != 1) + [_atom(d) for d in syms])),)]
        if kind == "Reshape":
            target = cfg["target_shape"]
            static, syms = _static_product(s)
            known = math.prod(d for d in target if d != -1)
            if syms:
                if -1 not in target or static % known:
                    return None
                fill = Sym("*".join([str(static // known)] * (static // known != 1) + [_atom(d) for d in syms]))
            elif -1 in target:
                if static % known:
                    return None
                fill = static // known
            else:
                return [tuple(target)] if known == static else None
            return [tuple(fill if d == -1 else d for d in target)]
        if kind in ("Conv1D", "Conv2D"):
            if rank != int(kind[-2]) + 1 or not isinstance(s[-1], int):
                return None
            out = self.conv_out(cfg, s)
            return None if out is None else [out]
        if kind.startswith("Global"):
            r = int(kind[-2])
            if rank != r + 1:
                return None
            return [(1,) * r + (s[-1],)] if cfg["keepdims"] else [(s[-1],)]
        if "Pooling" in kind:
            if rank != int(kind[-2]) + 1:
                return None
            out = self.pool_out(cfg, s)
            return None if out is None else [out]
        if kind in RECURRENT_KINDS:
            if rank != 2 or not isinstance(s[-1], int):
                return None
            u = cfg["units"]
            out = [(s[0], u) if cfg["return_sequences"] else (u,)]
            states = [(u,)] * (2 if "LSTM" in (kind, cfg.get("inner")) else 1) if cfg["return_state"] else []
            if kind != "Bidirectional":
                return out + states
            merge = cfg["merge_mode"]
            merged = out * 2 if merge is None else [out[0][:-1] + (2 * u,)] if merge == "concat" else out
            return merged + states * 2
        raise AssertionError(kind)

    def ctor(self, kind: str, cfg: dict) -> str:
        def args(**kw):
            return ", ".join(f"{k}={v!r}" for k, v in kw.items())
        if kind == "Dense":
            extra = "" if cfg["use_bias"] else ", use_bias=False"
            return f"layers.Dense({cfg['units']}, activation={cfg['activation']!r}{extra})"
        if kind == "Activation":
            return f"layers.Activation({cfg['activation']!r})"
        if kind in ("ReLU", "Flatten"):
            return f"layers.{kind}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"
        if kind == "Dropout":
            return f"layers.Dropout({cfg['rate']})"
        if kind == "Reshape":
            return f"layers.Reshape({tuple(cfg['target_shape'])!r})"
        if kind == "Embedding":
            return f"layers.Embedding({cfg['input_dim']}, {cfg['output_dim']})"
        if kind in ("Conv1D", "Conv2D"):
            one = kind == "Conv1D"
            pack = (lambda v: v[0]) if one else (lambda v: v[0] if v[0] == v[1] else tuple(v))
            kw = {"strides": pack(cfg["strides"]), "padding": cfg["padding"],
                  "dilation_rate": pack(cfg["dilation_rate"]), "activation": cfg["activation"]}
            kw = {k: v for k, v in kw.items() if v not in (1, (1, 1), "valid", None)}
            if not cfg["use_bias"]:
                kw["use_bias"] = False
            return f"layers.{kind}({cfg['filters']}, {pack(cfg['kernel_size'])!r}{', ' + args(**kw) if kw else ''})"
        if "Pooling" in kind and not kind.startswith("Global"):
            one = kind.endswith("1D")
            pack = (lambda v: v[0]) if one else (lambda v: tuple(v))
            kw = {}
            if cfg["strides"] is not None:
                kw["strides"] = pack(cfg["strides"])
            if cfg["padding"] != "valid":
                kw["padding"] = cfg["padding"]
            return f"layers.{kind}({pack(cfg['pool_size'])!r}{', ' + args(**kw) if kw else ''})"
        if kind.startswith("Global"):
            return f"layers.{kind}({'keepdims=True' if cfg['keepdims'] else ''})"
        if kind in RECURRENT_KINDS:
            kw = {k: cfg[k] for k in ("return_sequences", "return_state", "go_backwards") if cfg[k]}
            if not cfg["use_bias"]:
                kw["use_bias"] = False
            for k, default in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
                if cfg[k] != default:
                    kw[k] = cfg[k]
            inner = cfg.get("inner", kind)
            if inner == "GRU" and not cfg["reset_after"]:
                kw["reset_after"] = False
            rnn = f"layers.{inner}({cfg['units']}{', ' + args(**kw) if kw else ''})"
            if kind == "Bidirectional":
                return f"layers.Bidirectional({rnn}, merge_mode={cfg['merge_mode']!r})"
            return rnn
        if kind == "Concatenate":
            return f"layers.Concatenate({'axis=%d' % cfg['axis'] if cfg['axis'] != -1 else ''})"
        if kind in MERGE_KINDS:
            return f"layers.{kind}()"
        raise AssertionError(kind)

    def new_layer(self, kind: str, cfg: dict) -> LayerDef:
        layer = LayerDef(f"l{len(self.layers)}", kind, cfg, self.ctor(kind, cfg))
        self.layers.append(layer)
        return layer

    def call(self, layer: LayerDef, xs: list[Tensor]) -> list[Tensor]:
        shapes = self.out_shapes(layer, xs)
        assert shapes is not None and all(self.valid(s) for s in shapes), (layer, [x.shape for x in xs])
        if layer.kind in ("Dense", "Conv1D", "Conv2D") + RECURRENT_KINDS and "in_dim" not in layer.cfg:
            layer.cfg["in_dim"] = xs[0].shape[-1]
        layer.calls += 1
        self.n_calls += 1
        self.used_kinds.add(layer.kind)
        if layer.calls > 1:
            self.used_kinds.add("shared")
        for x in xs:
            x.uses += 1
        mag = self.magnitude(layer, xs)
        outs = [Tensor(f"t{len(self.tensors) + i}", s, "float32", mag) for i, s in enumerate(shapes)]
        self.tensors.extend(outs)
        args = "[" + ", ".join(x.var for x in xs) + "]" if layer.kind in MERGE_KINDS else xs[0].var
        targets = ", ".join(t.var for t in outs)
        self.lines.append(("call", targets, layer, args))
        return outs

    def magnitude(self, layer: LayerDef, xs: list[Tensor]) -> float:
        kind, cfg, m = layer.kind, layer.cfg, max(x.mag for x in xs)
        act = cfg.get("activation", "linear") or "linear"
        if kind in ("LSTM", "GRU", "Embedding"):
            return 1.0
        if kind == "Bidirectional":  # a sum of the two directions' outputs reaches 2
            return 2.0 if cfg["merge_mode"] == "sum" else 1.0
        if kind == "Multiply":
            return math.prod(x.mag for x in xs)
        if kind in ("Add", "Subtract"):
            return sum(x.mag for x in xs)
        if kind in ("Dense", "Conv1D", "Conv2D"):
            m += 0.3
        if act in BOUNDED:
            return 1.0
        if act == "exponential":
            return math.exp(2 * m)
        if kind == "nested":
            return m * 2
        return m

    # ---- merges
    def merge_out(self, kind: str, cfg: dict, xs: list[Tensor]) -> list[Shape] | None:
        if any(x.dtype != "float32" for x in xs) or len(xs) < 2:
            return None
        first = xs[0].shape
        if any(len(x.shape) != len(first) for x in xs):
            return None
        if kind == "Concatenate":
            axis = cfg["axis"] % (len(first) + 1) - 1  # the index after the batch axis
            if axis < 0:
                return None
            out = list(first)
            for x in xs[1:]:
                if any(a != b for i, (a, b) in enumerate(zip(first, x.shape)) if i != axis):
                    return None
                out[axis] = _add(out[axis], x.shape[axis])
            return [tuple(out)]
        if kind == "Subtract" and len(xs) != 2:
            return None
        out = list(first)
        for x in xs[1:]:
            for i, (a, b) in enumerate(zip(out, x.shape)):
                if a == b or b == 1:
                    continue
                if a == 1:
                    out[i] = b
                else:
                    return None
        return [tuple(out)]

    def merge(self, kind: str) -> bool:
        floats = [t for t in self.tensors if t.dtype == "float32" and t.shape]
        if kind == "Multiply":
            floats = [t for t in floats if t.mag <= 8]
        if not floats:
            return False
        first = self.choose(lambda t: t in floats)
        cfg: dict = {}
        if kind == "Concatenate":
            rank = len(first.shape) + 1  # with the batch axis
            axis = -1
            if rank > 2 and self.coin(0.3):
                axis = self.int_(1, rank - 1) - (rank if self.coin() else 0)  # positive or negative form
            cfg = {"axis": axis}
        partners = [t for t in floats if self.merge_out(kind, cfg, [first, t]) is not None]
        if not self.coin(0.15):  # broadcasting and self-merges are fine, but rarer
            partners = [t for t in partners if t.shape == first.shape and t is not first] or partners
        partners.sort(key=lambda t: (t.uses > 0, -self.tensors.index(t)))
        second = partners[self.int_(0, len(partners) - 1)]  # first itself always qualifies
        xs = [first, second]
        if kind != "Subtract" and self.coin(0.25):
            more = [t for t in partners if self.merge_out(kind, cfg, xs + [t]) is not None]
            if more:
                xs.append(more[self.int_(0, len(more) - 1)])
        if self.merge_out(kind, cfg, xs) is None:
            return False
        if self.coin(0.2):
            xs = xs[::-1] if self.merge_out(kind, cfg, xs[::-1]) is not None else xs
        self.call(self.new_layer(kind, cfg), xs)
        return True

    # ---- sharing
    def reuse(self) -> bool:
        options = []
        for layer in self.layers:
            if layer.kind in MERGE_KINDS:
                continue  # merges are reused below through new tensor lists
            for t in self.tensors:
                if self.out_shapes(layer, [t]) is not None:
                    options.append((layer, t))
        merges = [l for l in self.layers if l.kind in MERGE_KINDS]
        if merges and self.coin(0.2):
            layer = merges[self.int_(0, len(merges) - 1)]
            floats = [t for t in self.tensors if t.dtype == "float32"]
            for a in floats[::-1]:
                same = [b for b in floats if self.merge_out(layer.kind, layer.cfg, [a, b]) is not None]
                if same:
                    self.call(layer, [a, same[self.int_(0, len(same) - 1)]])
                    return True
        if not options:
            return False
        options.sort(key=lambda o: (o[1].uses > 0, -self.tensors.index(o[1])))
        layer, t = options[self.int_(0, len(options) - 1)]
        self.call(layer, [t])
        return True

    def nested(self) -> bool:
        x = self.choose(lambda t: t.dtype == "float32")
        if x is None:
            return False
        chain, shape = [], x.shape
        for _ in range(self.int_(1, 3)):
            kind = self.pick([k for k in ["Dense", "Activation", "Conv1D", "Conv2D", "MaxPooling1D", "AveragePooling2D",
                                          "Dropout", "LSTM", "GlobalAveragePooling1D"] if k in self.kinds])
            probe_t = Tensor("", shape, mag=x.mag)
            cfg = self.config_for(kind, probe_t, probe=True)
            if cfg is None:
                continue
            cfg = self.config_for(kind, probe_t)
            if cfg.get("activation") == "exponential":  # a nested model may be called again on larger values
                continue
            if kind == "LSTM":
                cfg["return_state"] = False
            inner = LayerDef("", kind, cfg, self.ctor(kind, cfg))
            out = self.out_shapes(inner, [probe_t])
            if out is None:
                continue
            if kind in ("Dense", "Conv1D", "Conv2D", "LSTM"):
                inner.cfg["in_dim"] = shape[-1]
            chain.append(inner)
            (shape,) = out
        if not chain:
            return False
        name = f"sub{self.n_nested}"
        self.n_nested += 1
        in_shape = keras_shape(x.shape)
        keras = ", ".join("None" if d is None else str(d) for d in in_shape) + ("," if len(in_shape) == 1 else "")
        body = f"{name}_in"
        for inner in chain:
            body = f"{inner.ctor}({body})"
            self.used_kinds.add(inner.kind)
        self.lines.append(f"{name}_in = Input(shape=({keras}))")
        self.lines.append(f'{name} = Model({name}_in, {body}, name="{name}")')
        layer = LayerDef(name, "nested", {"in_shape": in_shape, "chain": chain}, name)
        self.layers.append(layer)
        self.call(layer, [x])
        self.used_kinds.add("nested")
        return True

    # ---- the model
    def finish(self, extra_output: bool) -> ModelCase:
        for t in [t for t in self.tensors if t.is_input and not t.uses]:
            if t.dtype == "int32":
                self.call(self.new_layer("Embedding", self.embedding_config()), [t])
            else:
                kind = "Dense" if isinstance(t.shape[-1], int) else "Activation"
                self.call(self.new_layer(kind, self.config_for(kind, t)), [t])
        outs = [t for t in self.tensors if not t.is_input and not t.uses]
        if extra_output:
            inner = [t for t in self.tensors if not t.is_input and t.uses]
            if inner:
                outs.append(inner[self.int_(0, len(inner) - 1)])
        if self.coin(0.1):  # one tensor given twice as an output
            outs.append(outs[self.int_(0, len(outs) - 1)])
        if self.coin(0.05):  # an input given as an output
            floats = [t for t in self.tensors if t.is_input and t.dtype == "float32"]
            if floats:
                outs.insert(self.int_(0, len(outs)), floats[self.int_(0, len(floats) - 1)])
        inputs = [t for t in self.tensors if t.is_input]
        # constructors: a layer called once is written inline, a shared one gets a variable
        code, defined = [], set()
        for line in self.lines:
            if isinstance(line, str):
                code.append(line)
                continue
            _, targets, layer, args = line
            if layer.kind == "nested":
                code.append(f"{targets} = {layer.var}({args})")
            elif layer.calls == 1:
                code.append(f"{targets} = {layer.ctor}({args})")
            else:
                if layer.var not in defined:
                    code.append(f"{layer.var} = {layer.ctor}")
                    defined.add(layer.var)
                code.append(f"{targets} = {layer.var}({args})")
        ins = inputs[0].var if len(inputs) == 1 else "[" + ", ".join(t.var for t in inputs) + "]"
        out = outs[0].var if len(outs) == 1 else "[" + ", ".join(t.var for t in outs) + "]"
        weight_seed = self.int_(0, 2 ** 16)
        code.append(f'model = Model({ins}, {out}, name="fuzz")')
        code.append(f"randomize_weights(model, seed={weight_seed})")
        code.append("return model")
        source = "def build():\n" + "".join(f"    {line}\n" for line in code)
        return ModelCase(source, [(t.var, t.shape, t.dtype) for t in inputs], [t.shape for t in outs],
                         dict(self.free), dict(self.ties), tuple(sorted(self.used_kinds)), self.n_calls)

    def embedding_config(self) -> dict:
        return {"input_dim": self.int_(2, 12), "output_dim": self.units()}


@st.composite
def model_cases(draw, max_inputs: int = 3, max_steps: int = 8, small: bool = False,
                step_kinds: tuple[str, ...] | None = None) -> ModelCase:
    """A random valid model. ``small`` keeps sizes tiny (for finite-difference gradient checks)."""
    kinds = list(step_kinds or STEP_KINDS)
    g = _Gen(draw, small, kinds)
    for i in range(draw(st.integers(1, max_inputs))):
        g.add_input(i)
    # integer inputs feed Embeddings first, so that float tensors exist
    for t in [t for t in g.tensors if t.dtype == "int32"]:
        if not any(u.dtype == "float32" for u in g.tensors) or g.coin(0.7):
            g.call(g.new_layer("Embedding", g.embedding_config()), [t])
    for _ in range(draw(st.integers(1, max_steps))):
        kind = g.pick(kinds)
        if not g.step(kind):
            g.step("Activation")
    return g.finish(extra_output=g.coin(0.2))


@st.composite
def data_specs(draw, case: ModelCase, max_batch: int = 3) -> DataSpec:
    lengths = {var: draw(st.integers(lo, hi)) for var, (lo, hi) in sorted(case.free.items())}
    lengths.update({axis: lengths[var] for axis, var in sorted(case.ties.items())})
    return DataSpec(draw(st.integers(0, 2 ** 16)), draw(st.integers(1, max_batch)), lengths)


@st.composite
def cases_with_data(draw, **kwargs) -> tuple[ModelCase, DataSpec]:
    case = draw(model_cases(**kwargs))
    return case, draw(data_specs(case))


# ---- weights and data ----------------------------------------------------------------------------

def randomize_weights(model, seed: int) -> None:
    """Random weights from a seeded RNG, in get_weights() order: kernels N(0, 1/fan_in) (so values
    keep about unit size), biases N(0, 0.2^2), embeddings N(0, 1); one weight in eight is a copy of an
    earlier weight of the same shape (content-equal parameters for deduplication)."""
    rng = np.random.default_rng(seed)
    new: list[np.ndarray] = []
    for var in model.weights:
        shape, name = tuple(var.shape), var.path.rsplit("/", 1)[-1]
        same = [w for w in new if w.shape == shape]
        if same and rng.random() < 0.125:
            new.append(same[int(rng.integers(0, len(same)))].copy())
            continue
        if name == "bias":
            scale = 0.2
        elif name == "embeddings":
            scale = 1.0
        elif name == "recurrent_kernel":
            scale = 1 / math.sqrt(shape[0])
        else:  # kernels: (..., fan_in, units)
            scale = 1 / math.sqrt(max(1, math.prod(shape[:-1])))
        new.append((rng.standard_normal(shape) * scale).astype("float32"))
    model.set_weights(new)


def make_inputs(model, seed: int, batch: int, lengths: dict[str, int]) -> list[np.ndarray]:
    """Arrays for the model's inputs: free axis ``a`` of input ``name`` takes ``lengths[f"{name}_{a}"]``;
    floats are N(0, 1), integers uniform below the smallest input_dim of the Embeddings reading them."""
    from gcomp.frontend.data import embedding_index_limits
    rng = np.random.default_rng(seed)
    limits = embedding_index_limits(model._inference_graph())
    arrays = []
    for t, name in zip(model.inputs, model.input_names):
        shape = [batch] + [lengths[f"{name}_{axis}"] if d is None else d for axis, d in enumerate(t.shape) if axis]
        if t.dtype.startswith("int"):
            limit = min(dim for _, dim in limits[name])
            arrays.append(rng.integers(0, limit, size=shape).astype(t.dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(t.dtype))
    return arrays
