"""Training in C: the training graph of a compiled model rendered as C entry points (forward,
test_step, train_step with the optimizer inside), and the Program that runs them for
fit/evaluate/train_on_batch(backend="c").

The C program and the NumPy program are built from the same three graphs (inference, evaluation,
training), keep the weights in the same order (trainable first) and draw the same dropout masks,
so the NumPy program's fit loop, History and callbacks serve both: only the steps run in C.
"""
from __future__ import annotations

import numpy as np

from gcomp.autodiff import add_losses, compiled_losses, training_graph
from gcomp.backends.c_backend import CFunction, c_prefix, program_params, render_program
from gcomp.ir.graph import Graph

_OPTIMIZER_KINDS = {"SGD": "GK_OPT_SGD", "RMSprop": "GK_OPT_RMSPROP", "Adam": "GK_OPT_ADAM",
                    "AdamW": "GK_OPT_ADAMW", "Adagrad": "GK_OPT_ADAGRAD"}
# gk_optimizer fields set from the Keras config (None and False keep gk_optimizer_defaults' values:
# off, for the options)
_OPTIMIZER_FIELDS = ("learning_rate", "momentum", "nesterov", "rho", "epsilon", "centered", "beta_1", "beta_2",
                     "amsgrad", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "loss_scale_factor",
                     "initial_accumulator_value")


def optimizer_c(serialized: dict) -> dict:
    """The C statements that set up `m->opt` for a serialized Keras optimizer, and a description.
    The C optimizer holds one learning rate: for a schedule, its rate at step 0, which fit(backend="c")
    replaces before every step (the standalone program refuses schedules: gcomp.build)."""
    from gcomp.optimizers import get
    optimizer = get(serialized)  # validates, and fills in Keras's defaults
    schedule = optimizer.learning_rate_schedule
    rate = optimizer.learning_rate if schedule is None else float(schedule(0))
    config = dict(optimizer.get_config(), learning_rate=rate)
    kind = _OPTIMIZER_KINDS[optimizer._class_name]
    lines = [f"gk_optimizer_defaults(&m->opt, {kind});"]
    for field in _OPTIMIZER_FIELDS:
        value = config.get(field)
        if value is None or value is False:
            continue
        if isinstance(value, bool):
            lines.append(f"m->opt.{field} = 1;")
        else:
            lines.append(f"m->opt.{field} = {float(value)!r};")
    shown = rate if schedule is None else type(schedule).__name__
    return {"init": "\n    ".join(lines), "description": f"{optimizer._class_name}(learning_rate={shown})"}


def training_functions(graph: Graph, compile_config: dict | None) -> tuple[list[CFunction], list[str]]:
    """forward (and, for a model compiled with a loss, test_step and train_step), and the
    trainable weights in the order the optimizer sees them."""
    functions = [CFunction("forward", graph, "Inference: the model's outputs.")]
    if not (compile_config and compile_config["losses"]):
        return functions, []
    specs, loss_scale = compiled_losses(compile_config)
    train, layout = training_graph(graph, specs, loss_scale)
    test, _ = add_losses(graph, specs)
    penalty = ", then the weights' regularization penalty" if layout.regularization else ""
    functions += [CFunction("test_step", test, f"Evaluation: each loss, then the predictions{penalty}."),
                  CFunction("train_step", train, "One training step: forward, losses, backward and the optimizer "
                                                 f"update; returns each loss, then the predictions{penalty}.")]
    return functions, layout.trainable


def render_training_c(graph: Graph, compile_config: dict | None, max_batch: int, max_len: int,
                      functions: tuple[list[CFunction], list[str]] | None = None) -> dict[str, str]:
    """The C sources of a model with its training step (inference only if never compiled);
    ``functions``: training_functions' result, when the caller already has it."""
    functions, trainable = functions or training_functions(graph, compile_config)
    optimizer = optimizer_c(compile_config["optimizer"]) if trainable else None
    params = program_params(graph, trainable)
    return render_program(graph.name, functions, params, max_batch, max_len, trainable, optimizer)


def round_up(n: int, least: int) -> int:
    """The next power of two at or above max(n, least): a few builds serve every size."""
    return 1 << (max(int(n), least, 1) - 1).bit_length()


def c_program_class(module):
    """A subclass of the generated NumPy module's Program whose steps run in C."""
    from gcomp.backends.c_runtime import CLibrary

    class CTrainingProgram(module.Program):
        """The NumPy program's loops, History and callbacks; forward, test_step and train_step in C.
        The C model computes on this program's weight buffer (self.flat); the optimizer's state lives
        in the C model. The C code is rebuilt larger (state carried over) when a batch or length
        outgrows it."""

        def __init__(self, params, graph: Graph, compile_config: dict, seed=None, optimizer=None):
            super().__init__(params, seed=seed, optimizer=optimizer)
            self._graph, self._compile_config = graph, compile_config
            self._functions = training_functions(graph, compile_config)
            self._input_shapes = {name: fn.graph.node(name)["outputs"][0].shape
                                  for fn in self._functions[0] for name in fn.graph.inputs}
            self.library = None  # built at the first step, for the sizes it needs

        def _build(self, max_batch: int, max_len: int) -> None:
            old = self.library
            sources = render_training_c(self._graph, self._compile_config, max_batch, max_len, self._functions)
            library = CLibrary(sources, c_prefix(self._graph.name), {f.name: f.graph for f in self._functions[0]},
                               max_batch, max_len)
            library.use_weights(self.flat)  # the weights stay in this program's buffer: views stay valid
            if old is not None:
                library.optimizer_slots()[...] = old.optimizer_slots()
            else:
                _load_slots(self.optimizer, library.optimizer_slots())
            library.iterations = self.optimizer.iterations
            library.random_state = old.random_state if old is not None else (self.dropout.key, self.dropout.counter)
            self.library = library

        def _fit(self, arrays: list[np.ndarray], graph_inputs: list[str]) -> None:
            """Build (or rebuild, larger) the C code for this batch and these lengths."""
            n = max((a.shape[0] for a in arrays if a.ndim), default=1)
            free = [a.shape[axis] for a, name in zip(arrays, graph_inputs)
                    for axis, d in enumerate(self._input_shapes[name]) if axis and not isinstance(d, int)]
            batch, length = round_up(n, 32), round_up(max(free, default=1), 8)
            if self.library is None:
                self._build(batch, length)
            elif batch > self.library.max_batch or length > self.library.max_len:
                self._build(max(batch, self.library.max_batch), max(length, self.library.max_len))

        def _run_step(self, step, inputs, targets, sws):
            training = step is module.train_step
            name = "train_step" if training else "test_step"
            order = self.config["train_inputs" if training else "test_inputs"]
            feeds = self._feeds(inputs, targets, sws, order)
            self._fit(feeds, order)
            if training:
                self.library.learning_rate = self.optimizer.learning_rate  # callbacks may change it
            outs = self.library.call(name, feeds)
            if training:
                self.optimizer.iterations = self.library.iterations
            return self._results(outs)

        def _forward(self, inputs):
            self._fit(inputs, self.config["inputs"])
            return self.library.call("forward", inputs)

    return CTrainingProgram


def _load_slots(optimizer, slots: np.ndarray) -> None:
    """The NumPy optimizer's slot buffers (its initial state: Adagrad's starts non-zero) into C's."""
    buffers = list(optimizer._buffers.values())
    if buffers and sum(b.size for b in buffers) == slots.size:
        slots[...] = np.concatenate(buffers)

