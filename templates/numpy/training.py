# ---- gcomp NumPy training runtime: the Program object, fit/evaluate loops, progress bars --------
# Copied verbatim into generated training modules after the kernels, losses and optimizers. The
# module defines CONFIG, PARAM_SHAPES and the step functions forward / test_step / train_step.
import os as _os
import sys as _sys
import time as _time


# glibc hands every freed block of 128 KiB or more back to the kernel (and trims the heap's top), so
# each training step's arrays come back as fresh pages, faulted in and zeroed one by one: half of an
# LSTM step's time on a virtual machine. Keeping freed memory in the heap lets the next step reuse
# it, as the frameworks' caching allocators do; the process then keeps the memory of its largest
# step. Process-wide and glibc-only; GCOMP_KEEP_FREED_MEMORY=0 leaves malloc as it is.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_MMAP_ABOVE = 512 << 20  # blocks this large still get their own mapping (and go back when freed)
_TRIM_ABOVE = 1 << 30  # the heap's top goes back to the kernel once this much of it is free
_freed_memory_kept = False


def keep_freed_memory(libc=None):
    """Tune glibc's malloc once per process, as the comment above says; True when it took effect.
    libc: the C library to call (default: the process's glibc)."""
    global _freed_memory_kept
    if _freed_memory_kept or _os.environ.get("GCOMP_KEEP_FREED_MEMORY", "1") == "0":
        return _freed_memory_kept
    try:
        if libc is None:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")  # OSError where there is no glibc (macOS, Windows, musl)
        _freed_memory_kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE)
                                  and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE))
    except (OSError, AttributeError):
        pass
    return _freed_memory_kept


def loss_value(name, y_true, y_pred, sample_weight, from_logits=False, reduction="sum_over_batch_size"):
    """The reduced loss (see loss_and_grad), without its gradient."""
    per = per_sample_loss(name, y_true, y_pred, from_logits)
    values, weights = _weights_for(per, sample_weight, per.dtype)
    weighted = values if weights is None else values * weights
    divisor = reduction_divisor(reduction, max(weighted.size, 1))
    return per.dtype.type(np.sum(weighted, dtype=per.dtype) / per.dtype.type(divisor))


def _as_list(data, names, what):
    """Data for several named arrays: one array, a list in order, or a dict by name."""
    if isinstance(data, dict):
        unknown = [k for k in data if k not in names]
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise InputDataError(f"{what}: expected keys {names}; unknown {unknown}, missing {missing}")
        return [np.asarray(data[n]) for n in names]
    if isinstance(data, (list, tuple)) and (len(names) > 1 or (len(data) == 1 and hasattr(data[0], "shape"))):
        if len(data) != len(names):
            raise InputDataError(f"{what}: expected {len(names)} arrays {names}, got {len(data)}")
        return [np.asarray(d) for d in data]
    if len(names) > 1:
        raise InputDataError(f"{what}: expected {len(names)} arrays {names} as a list or dict")
    return [np.asarray(data)]


def _batch_size(arrays, what):
    sizes = {int(a.shape[0]) for a in arrays if a.ndim}
    if len(sizes) > 1:
        raise InputDataError(f"{what}: arrays have different numbers of samples {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def _format_logs(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class Progbar:
    """Keras-style progress: a live bar with ETA and running metrics (verbose=1), or one line per
    epoch (verbose=2)."""

    def __init__(self, steps, verbose, stream=None):
        self.steps, self.verbose = steps, verbose
        self.stream = stream or _sys.stdout
        self.start = _time.perf_counter()

    def update(self, step, logs, final=False):
        if self.verbose != 1 and not (final and self.verbose == 2):
            return
        if self.verbose == 1 and not final and not getattr(self.stream, "isatty", lambda: False)():
            return  # a log file, not a terminal: only each epoch's final line
        elapsed = _time.perf_counter() - self.start
        per_step = elapsed / max(step, 1)
        if self.verbose == 2:
            line = f"{self.steps}/{self.steps} - {elapsed:.0f}s - {per_step * 1e3:.0f}ms/step"
        else:
            filled = int(20 * step / max(self.steps, 1))
            bar = "\u2501" * filled + " " * (20 - filled)
            when = f"{elapsed:.0f}s" if final else f"ETA: {per_step * (self.steps - step):.0f}s"
            line = f"\r{step}/{self.steps} {bar} {when} {per_step * 1e3:.0f}ms/step"
        if logs:
            line += " - " + _format_logs(logs)
        self.stream.write(line + ("\n" if final or self.verbose == 2 else ""))
        self.stream.flush()


class Mean:
    """A running mean of per-batch values weighted by batch size (Keras's loss trackers)."""

    def __init__(self):
        self.total, self.count = 0.0, 0.0

    def update(self, value, weight):
        self.total += float(value) * weight
        self.count += weight

    def result(self):
        return self.total / self.count if self.count else 0.0


class Program:
    """The model as a program: weights in one flat float32 buffer, the optimizer inside.

    predict, train_on_batch, test_on_batch, fit, evaluate, save_weights and load_weights follow
    Keras's names, arguments and History keys."""

    def __init__(self, params, config=None, seed=None, optimizer=None):
        """params: the weights by name; config: CONFIG by default; optimizer: an optimizer object to
        train with instead of one made from the config's (gcomp's fit passes the model's own, so that
        model.optimizer.learning_rate and .iterations are those of the training, as in Keras)."""
        self.config = config if config is not None else CONFIG
        names = list(PARAM_SHAPES)
        missing = [n for n in names if n not in params]
        if missing:
            raise InputDataError(f"weights missing for {missing}")
        trainable = list(self.config.get("trainable", ()))
        order = trainable + [n for n in names if n not in trainable]
        sizes = [int(np.prod(PARAM_SHAPES[n], dtype=np.int64)) for n in order]
        self.flat = np.empty(sum(sizes), np.float32)
        self.params, offset, segments = {}, 0, []
        for n, size in zip(order, sizes):
            view = self.flat[offset:offset + size].reshape(PARAM_SHAPES[n])
            value = np.asarray(params[n], dtype=np.float32)
            if value.shape != view.shape:
                raise InputDataError(f"weight {n!r} has shape {value.shape}, expected {view.shape}")
            view[...] = value
            self.params[n] = view
            segments.append((offset, size))
            offset += size
        n_train = sum(sizes[:len(trainable)])
        self._trainable = self.flat[:n_train]
        self._grads = np.zeros(n_train, np.float32)
        self._grad_views = [self._grads[o:o + s].reshape(PARAM_SHAPES[n])
                            for n, (o, s) in zip(trainable, segments)]
        self._in_place = {}  # slot -> BufferGradient, for gradients computed in the buffer
        self.optimizer = optimizer
        if self.optimizer is None and self.config.get("optimizer") is not None:
            self.optimizer = make_optimizer(self.config["optimizer"])
        if self.optimizer is not None:
            self.optimizer.build(n_train, np.float32, segments[:len(trainable)])
        keep_freed_memory()
        self.rng = np.random.default_rng(seed)
        self.dropout = DropoutStream(seed)  # the masks' stream, shared with the C backend
        self.stop_training = False

    # ---- the step functions' context -----------------------------------------------------------
    def gradient_buffer(self, slot):
        """Called by train_step: the flat gradient buffer's place for weight number `slot` (in
        CONFIG['trainable'] order), a BufferGradient, where a large gradient can be computed in
        place. The buffer keeps such a gradient between steps; apply_gradients never writes it."""
        if slot not in self._in_place:
            self._in_place[slot] = BufferGradient(self._grad_views[slot])
        return self._in_place[slot]

    def apply_gradients(self, grads):
        """Called by train_step: one fused optimizer update over the flat buffers."""
        for view, g in zip(self._grad_views, grads):
            if g is not view:  # (a gradient computed in place is there already)
                view[...] = g
        self.optimizer.update(self._trainable, self._grads)
        return self.optimizer.iterations

    # ---- data --------------------------------------------------------------------------------
    def _inputs(self, x):
        arrays = _as_list(x, self.config["inputs"], "x")
        return [a.astype(dt, copy=False) for a, dt in zip(arrays, self.config["input_dtypes"])]

    def _targets(self, y, sample_weight, class_weight):
        """Targets and per-sample weights for each output that has a loss, validated."""
        specs = self.config["losses"]
        if not specs:
            raise InputDataError("the model was not compiled with a loss: it cannot be trained or evaluated")
        outputs = self.config["outputs"]
        arrays = _as_list(y, outputs, "y") if not isinstance(y, dict) else \
            [np.asarray(y[o]) if o in y else None for o in outputs]
        if isinstance(y, dict):
            unknown = [k for k in y if k not in outputs]
            if unknown:
                raise InputDataError(f"y: unknown output name(s) {unknown}; outputs are {outputs}")
        by_name = dict(zip(outputs, arrays))
        if class_weight:  # Keras's refusals, word for word
            if sample_weight is not None:
                raise InputDataError("You cannot `class_weight` and `sample_weight` at the same time.")
            if len(outputs) > 1:
                raise InputDataError("`class_weight` is only supported for Models with a single output.")
        weights = sample_weight if isinstance(sample_weight, dict) else \
            dict(zip(outputs, sample_weight if isinstance(sample_weight, (list, tuple)) else [sample_weight] * len(outputs)))
        targets, sws = [], []
        for spec in specs:
            t = by_name.get(spec["output"])
            if t is None:
                raise InputDataError(f"y: no targets given for output {spec['output']!r}, which has a loss")
            pred_shape = self.config["output_shapes"][spec["output"]]
            t = validate_targets(spec["loss"], t, pred_shape, spec["output"])
            sw = weights.get(spec["output"])
            sw = np.ones(len(t), np.float32) if sw is None else np.asarray(sw, np.float32)
            if sw.ndim > 1 and int(np.prod(sw.shape[1:])) > 1:
                raise InputDataError(f"sample_weight for {spec['output']!r} has shape {sw.shape}: per-step (temporal) "
                                     "sample weights are not supported by gcomp yet; give one weight per sample, "
                                     "which weighs each of its steps")
            sw = sw.reshape(-1)
            if len(sw) != len(t):
                raise InputDataError(f"sample_weight for {spec['output']!r} has {len(sw)} values for {len(t)} samples")
            if class_weight:
                labels = t.reshape(len(t), -1)
                cls = labels.argmax(axis=1) if labels.shape[1] > 1 else np.rint(labels[:, 0]).astype(np.int64)
                sw = sw * np.array([class_weight.get(int(c), 1.0) for c in cls], np.float32)
            targets.append(t)
            sws.append(sw)
        return targets, sws

    def _feeds(self, inputs, targets, sws, order):
        named = dict(zip(self.config["inputs"], inputs))
        for spec, t, w in zip(self.config["losses"], targets, sws):
            # the loss sees smoothed labels, the metrics (_track) the labels as given, as in Keras
            named[spec["output"] + "_target"] = smooth_labels(spec["loss"], t, spec.get("label_smoothing", 0.0))
            named[spec["output"] + "_sample_weight"] = w
        return [named[n] for n in order]

    # ---- one batch -----------------------------------------------------------------------------
    def _run_step(self, step, inputs, targets, sws):
        order = self.config["train_inputs" if step is train_step else "test_inputs"]
        return self._results(step(self.params, self._feeds(inputs, targets, sws, order), self))

    def _results(self, outs):
        """(total loss, each loss, the predictions) from a step's outputs. The total is the losses
        weighted plus the weights' penalties (an output after the predictions), as Keras's loss."""
        k, n_out = len(self.config["losses"]), len(self.config["outputs"])
        losses = [float(v) for v in outs[:k]]
        preds = outs[k:k + n_out]
        total = sum(spec["weight"] * v for spec, v in zip(self.config["losses"], losses))
        if self.config.get("regularized"):
            total += float(outs[k + n_out])
        return total, losses, preds

    def _new_trackers(self):
        trackers = {"loss": Mean()}
        if len(self.config["losses"]) > 1:
            for spec in self.config["losses"]:
                trackers[spec["output"] + "_loss"] = Mean()
        self._metrics = []  # (History key, output index, (metric, threshold), weighted by sample weights)
        self._metric_labels = []  # each metric's own name, in the same order (the list results' order)
        single = len(self.config["outputs"]) == 1
        for weighted, group in ((False, "metrics"), (True, "weighted_metrics")):
            for i, output in enumerate(self.config["outputs"]):
                for entry in self.config.get(group, {}).get(output, ()):
                    # a name, or a metric object's {"name": its History name, "metric", "threshold"}
                    label, metric = (entry, entry) if isinstance(entry, str) else (entry["name"], entry["metric"])
                    threshold = 0.5 if isinstance(entry, str) else entry.get("threshold", 0.5)
                    key = label if single else f"{output}_{label}"
                    if weighted and key in trackers:  # Keras: a weighted metric named like a metric
                        key = f"weighted_{label}" if single else f"{output}_weighted_{label}"
                    trackers[key] = MeanAccumulator()
                    self._metrics.append((key, i, (metric, threshold), weighted))
                    self._metric_labels.append(label)
        return trackers

    def _track(self, trackers, n, total, losses, preds, targets, sws):
        trackers["loss"].update(total, n)
        if len(losses) > 1:
            for spec, value in zip(self.config["losses"], losses):
                trackers[spec["output"] + "_loss"].update(value, n)
        target_of = {spec["output"]: (t, w) for spec, t, w in zip(self.config["losses"], targets, sws)}
        for key, i, (metric, threshold), weighted in self._metrics:  # only weighted_metrics see the sample weights
            output = self.config["outputs"][i]
            t, w = target_of[output]
            try:
                values = metric_values(metric, t, preds[i], threshold=threshold)
            except ValueError as exc:  # e.g. mae against sparse labels: the shapes do not broadcast
                raise InputDataError(f"metric {key!r} of output {output!r} cannot compare targets of shape "
                                     f"{np.shape(t)} with predictions of shape {np.shape(preds[i])}: {exc}") from None
            trackers[key].update(values, w if weighted else None)

    @staticmethod
    def _logs(trackers, prefix=""):
        return {prefix + k: float(t.result()) for k, t in sorted(trackers.items())}

    # ---- Keras's API ---------------------------------------------------------------------------
    def _forward(self, inputs):
        return forward(self.params, inputs)

    def predict(self, x, batch_size=32):
        inputs = self._inputs(x)
        n = _batch_size(inputs, "x")
        batch_size = batch_size or 32
        chunks = [self._forward([a[i:i + batch_size] for a in inputs]) for i in range(0, max(n, 1), batch_size)]
        outs = [np.concatenate([c[j] for c in chunks]) for j in range(len(self.config["outputs"]))]
        return outs[0] if len(outs) == 1 else outs

    def predict_on_batch(self, x):
        outs = self._forward(self._inputs(x))
        return outs[0] if len(outs) == 1 else outs

    def _check_trainable(self):
        if self.optimizer is None:
            raise InputDataError("the model was never compiled: this program can predict but not train "
                                 "(call model.compile(optimizer, loss) before building it)")

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        self._check_trainable()
        inputs, (targets, sws) = self._inputs(x), self._targets(y, sample_weight, class_weight)
        trackers = self._new_trackers()
        total, losses, preds = self._run_step(train_step, inputs, targets, sws)
        self._track(trackers, len(targets[0]), total, losses, preds, targets, sws)
        return self._result(self._logs(trackers), return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        inputs, (targets, sws) = self._inputs(x), self._targets(y, sample_weight, None)
        trackers = self._new_trackers()
        total, losses, preds = self._run_step(test_step, inputs, targets, sws)
        self._track(trackers, len(targets[0]), total, losses, preds, targets, sws)
        return self._result(self._logs(trackers), return_dict)

    def _result(self, logs, return_dict):
        """Keras's evaluate result: the loss alone, or a list in the order of Keras's
        _flatten_metrics_in_order: the logs named by "loss", each metric's own name (metrics, then
        weighted_metrics; with several outputs these are prefixed in the logs, so they match none)
        and each output's loss, repeats included (a weighted metric named like a metric gives that
        metric twice), then the other logs by name."""
        if return_dict:
            return logs
        names = ["loss"] + self._metric_labels + [s["output"] + "_loss" for s in self.config["losses"]]
        values = [logs[k] for k in names if k in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return values[0] if len(values) == 1 else values

    def _epoch(self, step, inputs, targets, sws, batch_size, order, callbacks, progbar, training, ctrl_c=None):
        """One pass over the batches: train steps, or test steps (evaluate, validation), with the
        callbacks' on_train_batch_* or on_test_batch_* hooks."""
        trackers = self._new_trackers()
        hook = "on_train_batch_" if training else "on_test_batch_"
        for b, start in enumerate(range(0, len(order), batch_size)):
            index = order[start:start + batch_size]
            _call(callbacks, hook + "begin", b, {})
            batch = ([a[index] for a in inputs], [t[index] for t in targets], [w[index] for w in sws])
            total, losses, preds = self._run_step(step, *batch)
            self._track(trackers, len(index), total, losses, preds, batch[1], batch[2])
            logs = self._logs(trackers)
            _call(callbacks, hook + "end", b, logs)
            if progbar is not None:
                progbar.update(b + 1, logs)
            if not np.isfinite(total):
                if training and self.stop_training:  # TerminateOnNaN asked to stop
                    break
                self._non_finite(losses, b)
            if ctrl_c is not None and ctrl_c.pressed:
                raise _Interrupted(f"{'batch' if training else 'validation batch'} {b}")
        return self._logs(trackers)

    def _non_finite(self, losses, batch):
        """A NaN or infinite loss: name the output instead of training on garbage."""
        for spec, value in zip(self.config["losses"], losses):
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"batch {batch}: the loss of output {spec['output']!r} ({spec['loss']}) is {value}; check the "
                    f"data for NaN or inf, the targets' range for this loss, or lower the learning rate "
                    f"(TerminateOnNaN stops training quietly instead)")

    def evaluate(self, x, y, batch_size=32, verbose="auto", sample_weight=None, return_dict=False, callbacks=None):
        inputs, (targets, sws) = self._inputs(x), self._targets(y, sample_weight, None)
        n = _batch_size(inputs + targets, "x and y")
        steps = -(-n // (batch_size or 32))
        progbar = Progbar(steps, 1 if verbose == "auto" else verbose) if verbose else None
        logs = self._test(inputs, targets, sws, n, batch_size or 32, list(callbacks or []), progbar)
        if progbar is not None:
            progbar.update(steps, logs, final=True)
        return self._result(logs, return_dict)

    def _test(self, inputs, targets, sws, n, batch_size, callbacks, progbar=None, ctrl_c=None):
        """The test steps over all n samples in order, between on_test_begin and on_test_end."""
        _call(callbacks, "on_test_begin", {})
        logs = self._epoch(test_step, inputs, targets, sws, batch_size, np.arange(n), callbacks, progbar, False, ctrl_c)
        _call(callbacks, "on_test_end", logs)
        return logs

    def fit(self, x, y, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, sample_weight=None, class_weight=None,
            validation_batch_size=None, validation_freq=1):
        """Train for `epochs` epochs; returns the history dict (Keras's keys, one value per epoch, the
        val_ ones per validated epoch: every validation_freq-th, or those listed, counting from 1)."""
        self._check_trainable()
        if isinstance(validation_freq, bool) or not isinstance(validation_freq, (int, list)):
            raise InputDataError("Expected `validation_freq` to be a list or int. Received: "
                                 f"validation_freq={validation_freq!r} of the type {type(validation_freq)}.")
        verbose = 1 if verbose == "auto" else verbose
        batch_size = batch_size or 32
        inputs, (targets, sws) = self._inputs(x), self._targets(y, sample_weight, class_weight)
        n = _batch_size(inputs + targets + sws, "x, y and sample weights")
        if validation_data is None and validation_split:
            split = int(n * (1.0 - validation_split))  # the last fraction, before any shuffling
            val = ([a[split:] for a in inputs], [t[split:] for t in targets], [w[split:] for w in sws])
            inputs, targets, sws = [a[:split] for a in inputs], [t[:split] for t in targets], [w[:split] for w in sws]
            n = split
        elif validation_data is not None:
            vx, vy = validation_data[0], validation_data[1]
            vsw = validation_data[2] if len(validation_data) > 2 else None
            val = (self._inputs(vx),) + self._targets(vy, vsw, None)
        else:
            val = None
        callbacks = list(callbacks or [])
        steps = -(-n // batch_size)
        history = {}
        self.stop_training = False
        ctrl_c = _CtrlC().install()  # Ctrl-C: finish the running step, then stop (see _CtrlC)
        try:
            _call(callbacks, "on_train_begin", {})
            try:
                for epoch in range(initial_epoch, epochs):
                    _call(callbacks, "on_epoch_begin", epoch, {})
                    if verbose:
                        print(f"Epoch {epoch + 1}/{epochs}", file=_sys.stdout)
                    order = self.rng.permutation(n) if shuffle else np.arange(n)
                    progbar = Progbar(steps, verbose) if verbose else None
                    try:
                        logs = self._epoch(train_step, inputs, targets, sws, batch_size, order, callbacks, progbar,
                                           True, ctrl_c)
                        if val is not None and _validates(epoch, validation_freq):
                            vn = _batch_size(val[0] + val[1], "validation data")
                            val_logs = self._test(*val, vn, validation_batch_size or batch_size, callbacks,
                                                  ctrl_c=ctrl_c)
                            logs.update({"val_" + k: v for k, v in val_logs.items()})
                    except _Interrupted as e:
                        raise _Interrupted(f"epoch {epoch + 1}, {e}") from None
                    logs = dict(sorted(logs.items()))
                    if progbar is not None:
                        progbar.update(steps, logs, final=True)
                    _call(callbacks, "on_epoch_end", epoch, logs)
                    for k, v in logs.items():  # after the callbacks, as Keras's History: what they add counts
                        history.setdefault(k, []).append(v)
                    if ctrl_c.pressed:
                        raise _Interrupted(f"the end of epoch {epoch + 1}")
                    if self.stop_training:
                        break
            except (_Interrupted, KeyboardInterrupt) as e:
                ctrl_c.restore()  # a Ctrl-C in on_train_end interrupts it as usual
                _call(callbacks, "on_train_end", {})
                if isinstance(e, _Interrupted):
                    raise KeyboardInterrupt(f"fit stopped by Ctrl-C after {e}; the weights are those "
                                            f"of that last completed step") from None
                raise
        finally:
            ctrl_c.restore()
        _call(callbacks, "on_train_end", {})
        return history

    # ---- weights -------------------------------------------------------------------------------
    def get_weights(self):
        return {n: v.copy() for n, v in self.params.items()}

    def save_weights(self, path):
        """Weights as an .npz file (no pickle), written atomically: to a temporary file beside
        `path`, flushed to disk, then renamed over it; on any failure (Ctrl-C included) the
        temporary file is removed and the old file is left as it was."""
        import io as _io
        import tempfile as _tempfile
        path = _os.fspath(path)
        buffer = _io.BytesIO()
        np.savez(buffer, **{n.replace("/", "|"): v for n, v in self.params.items()})
        folder = _os.path.dirname(path) or "."
        tmp = None
        try:
            fd, tmp = _tempfile.mkstemp(prefix="." + _os.path.basename(path) + ".", suffix=".tmp", dir=folder)
            with _os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                _os.fsync(f.fileno())
            try:
                mode = _os.stat(path).st_mode & 0o7777
            except OSError:
                mode = 0o644
            _os.chmod(tmp, mode)
            _os.replace(tmp, path)
        except BaseException:
            if tmp is not None and _os.path.exists(tmp):
                _os.unlink(tmp)
            raise

    def load_weights(self, path):
        params = read_weights(path)
        for n, view in self.params.items():
            if n not in params:
                raise InputDataError(f"{path}: no weights for {n!r}")
            if params[n].shape != view.shape:
                raise InputDataError(f"{path}: weight {n!r} has shape {params[n].shape}, expected {view.shape}")
        for n, view in self.params.items():
            view[...] = params[n]


def read_weights(path):
    """Weights from an .npz file written by save_weights, without unpickling anything or trusting
    the file: every member must be a .npy array of numbers whose header's shape matches the bytes
    it holds. A missing, truncated or foreign file raises InputDataError naming it."""
    import zipfile as _zipfile
    import zlib as _zlib
    try:
        with _zipfile.ZipFile(path) as archive:
            arrays = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                key = info.filename[:-4].replace("|", "/")
                if key in arrays:
                    raise ValueError(f"member {info.filename!r} appears twice")
                with archive.open(info) as member:
                    arrays[key] = _read_npy(member, info.file_size, info.filename)
            return arrays
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, _zipfile.BadZipFile, _zipfile.LargeZipFile, _zlib.error,
            NotImplementedError) as e:
        raise InputDataError(f"{path}: not a readable weights file ({e or type(e).__name__})") from None


def _read_npy(f, size, name):
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f"{name}: unsupported .npy format version {version}")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
        raise ValueError(f"{name}: holds {dtype} values, not numbers (object arrays would need pickle)")
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    left = size - f.tell()
    if left != nbytes:
        raise ValueError(f"{name}: its header says {tuple(shape)} {dtype} ({nbytes} bytes) but it holds {left}")
    data = f.read(nbytes)  # the zip member's CRC is checked as its end is read
    if len(data) != nbytes:
        raise ValueError(f"{name}: truncated")
    array = np.frombuffer(data, dtype, count)
    if fortran:
        return array.reshape(tuple(shape)[::-1]).transpose().copy()
    return array.reshape(shape).copy()


class _Interrupted(Exception):
    """fit's signal to itself that Ctrl-C was pressed and the running step has finished."""


class _CtrlC:
    """Ctrl-C during fit. The first press only takes note: the running training step finishes,
    its optimizer update applied in full (a press in on_train_batch_begin lets that batch's step
    run), then fit stops, calls on_train_end and raises KeyboardInterrupt, so the weights are those
    of the last completed step. A second press raises KeyboardInterrupt at once (for a step that
    takes too long), except inside the optimizer update, which is always finished first: the
    weights are then those of the last completed step, or of the running one if its update had
    begun; never half updated. Installed only in the main thread and only over Python's default
    handler (a handler of the caller's own, or SIGINT ignored, is left alone); the previous
    handler is put back when fit returns or raises."""

    def __init__(self):
        self.pressed = 0
        self._previous = None

    def install(self):
        import signal as _signal
        import threading as _threading
        if _threading.current_thread() is _threading.main_thread() and \
                _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
            self._previous = _signal.signal(_signal.SIGINT, self._handle)
        return self

    def restore(self):
        if self._previous is not None:
            import signal as _signal
            _signal.signal(_signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame):
        self.pressed += 1
        if self.pressed > 1 and not _in_optimizer_update(frame):
            raise KeyboardInterrupt


def _in_optimizer_update(frame):
    update = Program.apply_gradients.__code__
    while frame is not None:
        if frame.f_code is update:
            return True
        frame = frame.f_back
    return False


def _validates(epoch, validation_freq):
    """Keras's rule: validate after epoch (0-based) when its 1-based number is a multiple of an int
    validation_freq, or is in a list of them."""
    if isinstance(validation_freq, list):
        return epoch + 1 in validation_freq
    return (epoch + 1) % validation_freq == 0


def _call(callbacks, hook, *args):
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(*args)


def load(weights=None, seed=None):
    """The program with its weights: `weights` defaults to weights.npz beside this module."""
    if weights is None:
        weights = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "weights.npz")
    return Program(read_weights(weights), seed=seed)
# ---- end of the gcomp NumPy training runtime ---------------------------------------------------
