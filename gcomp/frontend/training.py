"""compile / fit / evaluate for Model: thin, as Keras's API, over the generated NumPy training program.

fit() runs exactly the module `gcomp build --target numpy` writes: the training graph (forward,
losses, backward, optimizer update) rendered from templates/numpy, with its runtime (the fit loop,
progress bar and History keys in templates/numpy/training.py). The model's Variables become views
into the program's flat weight buffer, so get_weights() and callbacks see the weights as they train.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from gcomp.errors import InputDataError, TargetError
from gcomp.losses import SHAPE_RESOLVED, kind_of, resolve_by_shapes


def _per_output(value: Any, outputs: list[str], what: str, single_ok: bool = True) -> dict[str, Any]:
    """Keras's forms for per-output settings: one value (every output), a list in output order, or a
    dict by output name."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in outputs]
        if unknown:
            raise ValueError(f"{what} has key(s) {unknown}, which are not outputs; outputs are {outputs}")
        return dict(value)
    if isinstance(value, (list, tuple)) and not (len(outputs) == 1 and what.endswith("metrics")):
        if len(value) != len(outputs):
            raise ValueError(f"{what} has {len(value)} entries but the model has {len(outputs)} outputs {outputs}")
        return dict(zip(outputs, value))
    if not single_ok and len(outputs) > 1:
        raise ValueError(f"{what}: give a list or dict for the {len(outputs)} outputs {outputs}")
    return {o: value for o in outputs}


def resolve_loss(identifier: Any, output: str) -> tuple[str, bool, float, str] | None:
    """(loss name, from_logits, label_smoothing, reduction) for a Keras loss string or gcomp.losses
    object or function; None means no loss."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        kind = kind_of(identifier)
        if kind is None:
            raise ValueError(f"unknown loss {identifier!r} for output {output!r}; known: mse, mae, "
                             "binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy, "
                             "their Keras aliases and class names ('MSE', 'bce', 'MeanSquaredError', ...), and "
                             "'crossentropy' (picked by the targets' shape)")
        return kind, False, 0.0, "sum_over_batch_size"
    config = getattr(identifier, "gcomp_loss", None)
    if config is None:
        raise ValueError(f"cannot compile loss {identifier!r} for output {output!r}: use a name such as "
                         f"'mse', a gcomp.losses class or a gcomp.losses function")
    return config


def resolve_metrics(metrics: Any, outputs: list[str], what: str = "metrics") -> dict[str, list[str]]:
    """A list (every output: Keras raises for a flat list on several outputs, gcomp applies it to
    each), a list of lists in output order, or a dict by output name."""
    if metrics is None:
        return {}
    if isinstance(metrics, dict):
        per = _per_output(metrics, outputs, what)
    elif isinstance(metrics, (list, tuple)) and metrics and all(isinstance(m, (list, tuple)) or m is None for m in metrics):
        per = _per_output(list(metrics), outputs, what)
    elif isinstance(metrics, (list, tuple)):
        per = {o: list(metrics) for o in outputs}
    else:
        raise ValueError(f"{what} must be a list or a dict, got {metrics!r}")
    from gcomp.metrics import compile_entry, known_name
    out = {}
    for output, names in per.items():
        if names is None:
            names = []
        elif isinstance(names, str) or not isinstance(names, (list, tuple)):
            names = [names]
        entries = [compile_entry(m) for m in names]
        for m, entry in zip(names, entries):
            if entry is None or (isinstance(entry, str) and not known_name(entry)):
                raise ValueError(f"unknown metric {m!r} in {what} for output {output!r}; known: accuracy/acc, "
                                 "binary_accuracy, categorical_accuracy, sparse_categorical_accuracy, mse, mae, the "
                                 "losses' names, their Keras aliases and class names ('MSE', 'BinaryAccuracy', ...), "
                                 "and gcomp.metrics' objects and functions")
        out[output] = entries
    return out


class TrainingMixin:
    """compile, fit, evaluate, train_on_batch, test_on_batch, save_weights, load_weights."""

    _compile_config: dict | None = None
    optimizer = None  # Keras's attributes before compile()
    loss = None
    _program = None
    _slots_from = None  # a program retired by compile() whose optimizer slots the next one takes
    _program_backend = "numpy"

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Keras's compile: optimizer by name or gcomp.optimizers object; loss and loss_weights as one
        value, a list in output order or a dict by output name; metrics as a list, a list per output
        or a dict."""
        from gcomp import optimizers
        self._ensure_built()
        outputs = self.output_names
        opt = optimizers.get(optimizer)
        losses = {}
        if loss is not None:
            for output, ident in _per_output(loss, outputs, "loss").items():
                resolved = resolve_loss(ident, output)
                if resolved is not None:
                    losses[output] = resolved
        if loss_weights is None:
            weights = {o: 1.0 for o in outputs}
        elif isinstance(loss_weights, (int, float)) and len(outputs) == 1:
            weights = {outputs[0]: float(loss_weights)}
        else:
            weights = {}
            for o, w in _per_output(loss_weights, outputs, "loss_weights", single_ok=False).items():
                if isinstance(w, bool) or not isinstance(w, (int, float, np.floating, np.integer)):
                    raise ValueError(f"loss_weights for output {o!r} must be a number, got {w!r}")
                weights[o] = float(w)
            weights = {o: weights.get(o, 1.0) for o in outputs}
        for output, (kind, *rest) in list(losses.items()):
            if kind == SHAPE_RESOLVED and self._output_shape(output)[-1] == 1:  # binary whatever the targets
                losses[output] = ("binary_crossentropy", *rest)
        self._compile_config = {
            "optimizer": optimizers.serialize(opt),
            "losses": [{"output": o, "loss": losses[o][0], "from_logits": losses[o][1], "weight": weights[o],
                        "label_smoothing": losses[o][2], "reduction": losses[o][3]} for o in outputs if o in losses],
            "metrics": resolve_metrics(metrics, outputs),
            "weighted_metrics": resolve_metrics(weighted_metrics, outputs, "weighted_metrics"),
        }
        # Recompiling with the optimizer instance already training this model keeps its slots, as
        # Keras's optimizer keeps its per-variable state (the new program takes them by weight name)
        retired = self._program
        self._slots_from = retired if retired is not None and retired.optimizer is opt else None
        self.optimizer = opt
        if loss is not None:  # Keras keeps compile()'s loss argument as given
            self.loss = loss
        self._program = None
        self.compiled = True

    # ---- the program ---------------------------------------------------------------------------
    def training_source(self) -> str:
        """The generated training module (what `gcomp build --target numpy` writes as model.py)."""
        from gcomp.backends.numpy_training import render_training_module
        return render_training_module(self, self._training_config())

    def _training_config(self) -> dict | None:
        """compile()'s configuration with the optimizer as it is now (a callback or the user may have
        changed its learning rate since compile), for the code generators; None before compile()."""
        from gcomp import optimizers
        if self._compile_config is None:
            return None
        for entry in self._compile_config["losses"]:
            if entry["loss"] == SHAPE_RESOLVED:
                raise TargetError(f"loss 'crossentropy' for output {entry['output']!r} is categorical or sparse "
                                 "categorical crossentropy by the shape of targets not seen yet: train first, or "
                                 "name the loss ('categorical_crossentropy' or 'sparse_categorical_crossentropy')")
        return dict(self._compile_config, optimizer=optimizers.serialize(self.optimizer))

    def _output_shape(self, output: str) -> tuple:
        return self.outputs[self.output_names.index(output)].shape

    def _resolve_losses_by_targets(self, y) -> None:
        """'crossentropy' becomes binary, categorical or sparse categorical crossentropy by the shape
        of the first targets given, as Keras picks it when it first sees data; it stays so."""
        pending = [e for e in self._compile_config["losses"] if e["loss"] == SHAPE_RESOLVED]
        if not pending or y is None:
            return
        targets = self._targets(y)
        for entry in pending:
            if entry["output"] in targets:
                entry["loss"] = resolve_by_shapes(np.shape(targets[entry["output"]]),
                                                  self._output_shape(entry["output"]))

    def _training_program(self, backend: str = "numpy", y=None):
        """The program fit & co. run: the generated NumPy module's Program, or its subclass whose
        steps run in generated C. Switching backends carries the weights and optimizer state over.
        y: the call's targets, which settle a 'crossentropy' loss."""
        if backend not in ("numpy", "c"):
            raise ValueError(f"unknown training backend {backend!r}; available: 'numpy', 'c'")
        if self._compile_config is None:
            raise RuntimeError("You must call compile() before using the model for training "
                               "(fit, evaluate, train_on_batch, test_on_batch)")
        if not self._compile_config["losses"]:
            raise ValueError(f'model "{self.name}" was compiled without a loss: give compile(loss=...)')
        self._resolve_losses_by_targets(y)
        old = self._program
        if old is None or self._program_backend != backend:
            self._claim_optimizer()
            from gcomp.backends.numpy_backend import load_module
            from gcomp.initializers import training_seed
            # The new program trains with self.optimizer itself (Keras's model.optimizer), which it
            # builds afresh: the old program's slots are read before that.
            source = old if old is not None else self._slots_from
            slots = _optimizer_slots(source) if source is not None else None
            self._slots_from = None
            module = load_module(self.training_source())
            if backend == "c":
                from gcomp.backends.c_training import c_program_class
                program = c_program_class(module)(self._param_values(), self._current_graph(), self._training_config(),
                                                  seed=training_seed(), optimizer=self.optimizer)
            else:
                program = module.Program(self._param_values(), seed=training_seed(), optimizer=self.optimizer)
            if slots is not None:
                _restore_optimizer_slots(program, slots)
            for name, var in self._compile_config_variables().items():
                var._value = program.params[name]  # the Variable now lives in the program's buffer
                var.version += 1
            self._program, self._program_backend = program, backend
        return self._program

    def _claim_optimizer(self) -> None:
        """The optimizer's slots belong to one model's weights: another model still training with
        the same instance is a clear error (Keras refuses the unknown variables too)."""
        owner = getattr(self.optimizer, "_gcomp_model", lambda: None)()
        if owner is not None and owner is not self and owner.optimizer is self.optimizer:
            raise ValueError(f"the optimizer {self.optimizer.name!r} already trains model {owner.name!r}; an "
                             "optimizer keeps state for one model's weights, so give model "
                             f"{self.name!r} its own instance")
        self.optimizer._gcomp_model = weakref.ref(self)

    def _compile_config_variables(self):
        self._inference_graph()
        return self._compiled_cache["variables"]

    def _weights_changed(self) -> None:
        for var in self.weights:
            var.version += 1

    @property
    def stop_training(self) -> bool:
        return bool(self._program is not None and self._program.stop_training)

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        if self._program is not None:
            self._program.stop_training = bool(value)

    def _targets(self, y):
        """y as a dict by output name (Keras accepts an array, a list in output order or a dict)."""
        outputs = self.output_names
        if y is None:
            raise ValueError(f"no targets given (y=None) for output(s) {outputs}: fit, evaluate and train_on_batch "
                             f"need y")
        if isinstance(y, dict):
            return y
        if isinstance(y, (list, tuple)) and len(outputs) > 1:
            if len(y) != len(outputs):
                raise InputDataError(f"y has {len(y)} arrays but the model has {len(outputs)} outputs {outputs}")
            return dict(zip(outputs, y))
        if len(outputs) > 1:
            raise InputDataError(f"the model has {len(outputs)} outputs {outputs}: give y as a list or dict")
        return {outputs[0]: y}

    def _check_sample_weight(self, sample_weight) -> None:
        """Per-output sample weights must name outputs (dict) or give one array per output (list)."""
        outputs = self.output_names
        if isinstance(sample_weight, dict):
            unknown = [k for k in sample_weight if k not in outputs]
            if unknown:
                raise ValueError(f"sample_weight has key(s) {unknown}, which are not outputs; outputs are {outputs}")
        elif isinstance(sample_weight, (list, tuple)) and len(outputs) > 1 and len(sample_weight) != len(outputs):
            raise ValueError(f"sample_weight has {len(sample_weight)} arrays but the model has {len(outputs)} "
                             f"outputs {outputs}")

    # ---- Keras's API ---------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1,
            backend="numpy"):
        """Train the model; returns a History whose `history` has Keras's keys (loss, <output>_loss,
        <output>_<metric>, val_*)."""
        from gcomp.callbacks import History, configure
        from gcomp.frontend.data import batch_size_or_default, prepare_inputs
        if steps_per_epoch is not None or validation_steps is not None:
            raise ValueError("steps_per_epoch and validation_steps are for generators; give arrays instead")
        if not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        batch_size = batch_size_or_default("batch_size", batch_size)
        validation_batch_size = batch_size_or_default("validation_batch_size", validation_batch_size or batch_size)
        if class_weight is not None and not isinstance(class_weight, dict):
            raise ValueError(f"class_weight must be a dict mapping class indices to weights, got {class_weight!r}")
        self._check_sample_weight(sample_weight)
        program = self._training_program(backend, y)
        inputs = prepare_inputs(self, x)
        n = len(inputs[0]) if inputs and np.ndim(inputs[0]) else 0
        if validation_split and int(n * (1.0 - validation_split)) < 1:
            raise ValueError(f"validation_split={validation_split} of {n} samples leaves no sample to train on")
        if validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight)")
            validation_data = (prepare_inputs(self, validation_data[0]), self._targets(validation_data[1]),
                               *validation_data[2:])
        n_train = int(n * (1.0 - validation_split)) if validation_split and validation_data is None else n
        steps = -(-n_train // batch_size)
        user = configure(callbacks, self, verbose, epochs, steps)
        history = configure(History(), self, verbose, epochs, steps)[0]  # after the user's, as in Keras
        bump = _EpochEnd(self)
        try:
            program.fit(inputs, self._targets(y), batch_size=batch_size, epochs=epochs, verbose=verbose,
                        callbacks=[bump] + user + [history], validation_split=validation_split,
                        validation_data=validation_data, shuffle=shuffle, initial_epoch=initial_epoch,
                        sample_weight=sample_weight, class_weight=class_weight,
                        validation_batch_size=validation_batch_size, validation_freq=validation_freq)
        finally:  # also after Ctrl-C or a NaN loss: predict() must not reuse a stale compiled model
            self._weights_changed()
        return history

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, backend="numpy"):
        from gcomp.callbacks import configure
        from gcomp.frontend.data import batch_size_or_default, prepare_inputs
        self._check_sample_weight(sample_weight)
        batch_size = batch_size_or_default("batch_size", batch_size)
        program = self._training_program(backend, y)
        inputs = prepare_inputs(self, x)
        # on_test_begin/end and on_test_batch_begin/end, as in Keras
        callbacks = configure(callbacks, self, verbose, 1, -(-len(inputs[0]) // batch_size))
        return program.evaluate(inputs, self._targets(y), batch_size=batch_size, verbose=verbose,
                                sample_weight=sample_weight, return_dict=return_dict, callbacks=callbacks)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False, backend="numpy"):
        from gcomp.frontend.data import prepare_inputs
        self._check_sample_weight(sample_weight)
        program = self._training_program(backend, y)
        result = program.train_on_batch(prepare_inputs(self, x), self._targets(y), sample_weight=sample_weight,
                                        class_weight=class_weight, return_dict=return_dict)
        self._weights_changed()
        return result

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False, backend="numpy"):
        from gcomp.frontend.data import prepare_inputs
        return self._training_program(backend, y).test_on_batch(prepare_inputs(self, x), self._targets(y),
                                                      sample_weight=sample_weight, return_dict=return_dict)

    def save_weights(self, filepath) -> None:
        """The weights as an .npz file keyed by weight path ("dense/kernel"), written atomically."""
        import io
        from gcomp.fileio import write_atomic
        buffer = io.BytesIO()
        np.savez(buffer, **{f"{i:04d}|{v.path}": v.value for i, v in enumerate(self.weights)})
        write_atomic(filepath, buffer.getvalue())

    def load_weights(self, filepath) -> None:
        """Weights saved by save_weights (no pickle); every name and shape is checked first."""
        from gcomp.fileio import read_npz
        arrays = {k.split("|", 1)[-1]: v for k, v in sorted(read_npz(filepath).items())}
        own = self.weights
        missing = [v.path for v in own if v.path not in arrays]
        if missing:
            raise InputDataError(f"{filepath}: no weights for {missing}")
        self.set_weights([arrays[v.path] for v in own])


def _optimizer_slots(program) -> dict[str, dict[str, np.ndarray]]:
    """A copy of a program's optimizer slot variables: slot name (momentum, velocity, ... in Keras's
    build order) -> trainable weight name -> its values. A C program keeps them in its library, the
    slots one after another over the flat trainable buffer, once it has run a step."""
    names = list(program.config["trainable"])
    sizes = [program.params[n].size for n in names]
    slot_names = list(program.optimizer._buffers)
    if getattr(program, "library", None) is not None:
        flat, n = program.library.optimizer_slots(), sum(sizes)
        buffers = [flat[k * n:(k + 1) * n] for k in range(len(slot_names))]
    else:
        buffers = [program.optimizer._buffers[s] for s in slot_names]
    slots = {}
    for slot, buffer in zip(slot_names, buffers):
        bounds = np.cumsum([0] + sizes)
        slots[slot] = {n: buffer[lo:hi].copy() for n, lo, hi in zip(names, bounds[:-1], bounds[1:])}
    return slots


def _restore_optimizer_slots(program, slots: dict[str, dict[str, np.ndarray]]) -> None:
    """_optimizer_slots' copy into a program just made, weight by weight where a weight is trainable
    in both (a C program loads its optimizer object's state at its first step)."""
    names = list(program.config["trainable"])
    bounds = np.cumsum([0] + [program.params[n].size for n in names])
    for slot, buffer in program.optimizer._buffers.items():
        saved = slots.get(slot, {})
        for n, lo, hi in zip(names, bounds[:-1], bounds[1:]):
            if n in saved and saved[n].size == hi - lo:
                buffer[lo:hi] = saved[n]


class _EpochEnd:
    """Marks the weights changed after each epoch, so predict() in a callback sees them."""

    def __init__(self, model):
        self.model = model

    def on_epoch_end(self, epoch, logs=None):
        self.model._weights_changed()

