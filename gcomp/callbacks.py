"""Keras-style callbacks for fit(): a base class and History, EarlyStopping, ModelCheckpoint
(weights), CSVLogger, LambdaCallback, TerminateOnNaN, LearningRateScheduler, ReduceLROnPlateau, with
Keras 3's rules (the ones that watch a log value share MonitorCallback, as in Keras).

The fit loop (generated code, templates/numpy/training.py) calls the hooks on_train_begin/end,
on_epoch_begin/end and on_train_batch_begin/end with Keras's arguments; `self.model` is the gcomp
Model, whose get_weights() sees the weights as they train and whose `optimizer` is the one training
them. As in Keras, fit's History comes after the user's callbacks, so it records what they add to an
epoch's logs (the learning-rate callbacks add "learning_rate").
"""
from __future__ import annotations

import csv
import os
import warnings
from typing import Any

import numpy as np


class Callback:
    """Base class: override the hooks you need. `self.model` and `self.params` are set by fit()."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    # Keras: the training batch hooks call the older on_batch_* names by default
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    # evaluate(), and fit's validation: around the test steps and each test batch
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...

    # predict(): around the prediction and each batch
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...


def configure(callbacks, model, verbose, epochs: int, steps: int) -> list:
    """fit/evaluate/predict's `callbacks` (one callback, a list or None) as a list, each given the
    model and Keras's params ({"verbose", "epochs", "steps": batches per epoch})."""
    listed = [callbacks] if callbacks is not None and not isinstance(callbacks, (list, tuple)) else \
        list(callbacks or [])
    for cb in listed:
        cb.set_model(model)
        cb.set_params({"verbose": verbose, "epochs": epochs, "steps": steps})
    return listed


class History(Callback):
    """What fit() returns: `history` maps each metric (loss, val_loss, ...) to one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:  # Keras sets model.history after every epoch
            self.model.history = self


class MonitorCallback(Callback):
    """Base of the callbacks that watch one log value (Keras's MonitorCallback): `best` starts at
    `baseline` (None: the first value counts as an improvement); a value improves on a reference
    when it beats it by more than min_delta, in the direction `mode` gives ("auto": up for
    accuracies, down for losses and errors)."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
            mode = "auto"
        if mode == "auto":
            mode = "max" if any(k in monitor for k in ("acc", "accuracy", "auc")) else "min"
        self.monitor, self.mode, self.best = monitor, mode, baseline
        # current - min_delta is compared with the reference: min_delta counts against the direction
        self.min_delta = abs(min_delta) if mode == "max" else -abs(min_delta)

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        shifted = value - self.min_delta
        return shifted > reference if self.mode == "max" else shifted < reference


class EarlyStopping(MonitorCallback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs; Keras 3's rules,
    down to restoring the best epoch's weights at the end (restore_best_weights) whether or not
    training stopped early. A monitor missing from the logs is warned about and skipped, as in Keras."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, 0, None, 0

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                          f"Available metrics are: {','.join(logs or {})}", stacklevel=2)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0  # only beating both the baseline and the best restarts the wait
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(MonitorCallback):
    """Save the weights after each epoch, or every `save_freq` training batches (an int), to
    `filepath`, which may hold {epoch}, {batch} and log keys such as {val_loss:.2f}; with
    save_best_only, only when `monitor` improves on the best so far (starting from
    initial_value_threshold). gcomp saves weights (npz), so save_weights_only must stay True."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=True,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        if not save_weights_only:
            raise ValueError("gcomp's ModelCheckpoint saves weights only (save_weights_only=True)")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)):
            raise ValueError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or integer values")
        self.filepath, self.verbose, self.save_best_only, self.save_freq = str(filepath), verbose, save_best_only, save_freq
        self._current_epoch, self._since_saving, self._last_batch = 0, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Keras counts batches across epochs: a batch index not above the last one starts an epoch
        fresh = self._last_batch is None or batch <= self._last_batch
        self._since_saving += batch + 1 if fresh else batch - self._last_batch
        self._last_batch = batch
        if self._since_saving >= self.save_freq:
            self._since_saving = 0
            self._save(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _save(self, epoch, batch, logs):
        if batch is None or "batch" in logs:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        else:
            path = self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:  # Keras warns, then saves
                warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            elif not self._is_improvement(current, self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            else:
                if self.verbose > 0:
                    best = "None" if self.best is None else f"{self.best:.5f}"
                    print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, "
                          f"saving model to {path}")
                self.best = current
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)  # as Keras does
        self.model.save_weights(path)  # atomic: an interrupted save leaves the previous checkpoint
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {path}")


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file (epoch first, then the keys in sorted order).

    Unlike gcomp's other files, the log is not written atomically: it is opened at the start of
    training (truncated, or appended to with append=True) and each row is flushed at its epoch's
    end, so an interrupted run keeps the rows of the epochs it finished."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = str(filename), separator, append
        self._keys: list[str] | None = None

    def on_train_begin(self, logs=None):
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator)
        self._keys = None if not (self.append and os.path.getsize(self.filename)) else []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self._keys:
            self._keys = sorted(logs)
            if self._file.tell() == 0:
                self._writer.writerow(["epoch"] + self._keys)
        self._writer.writerow([epoch] + [logs.get(k, "NA") for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        self._file.close()


class LambdaCallback(Callback):
    """A callback from functions: on_epoch_begin(epoch, logs), on_epoch_end(epoch, logs),
    on_train_batch_begin/end(batch, logs), on_train_begin(logs), on_train_end(logs)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_batch_begin=None,
                 on_train_batch_end=None, on_train_begin=None, on_train_end=None, **kwargs: Any):
        super().__init__()
        for name, fn in dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                             on_train_batch_begin=on_train_batch_begin or kwargs.get("on_batch_begin"),
                             on_train_batch_end=on_train_batch_end or kwargs.get("on_batch_end"),
                             on_train_begin=on_train_begin, on_train_end=on_train_end).items():
            if fn is not None:
                setattr(self, name, fn)


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


def _learning_rate_logs(model, logs) -> dict:
    """logs with "learning_rate": the optimizer's rate as Keras reads it (its float32 variable)."""
    logs = logs if logs is not None else {}
    logs["learning_rate"] = float(model.optimizer.learning_rate)
    return logs


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at each epoch's start to schedule(epoch, lr) (or
    schedule(epoch), the older form, where the two-argument call raises TypeError), as Keras does;
    each epoch's logs get "learning_rate"."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        try:
            learning_rate = self.schedule(epoch, float(self.model.optimizer.learning_rate))
        except TypeError:  # Keras's fallback for one-argument schedules
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {learning_rate}")
        self.model.optimizer.learning_rate = learning_rate
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {learning_rate}.")

    def on_epoch_end(self, epoch, logs=None):
        _learning_rate_logs(self.model, logs)


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by `factor` (not below `min_lr`) when `monitor` has not improved by
    more than `min_delta` for `patience` epochs, then wait `cooldown` epochs; Keras 3's rules, down
    to its first epoch always counting as an improvement. Each epoch's logs get "learning_rate"."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor, self.patience, self.verbose, self.cooldown, self.min_lr = factor, patience, verbose, cooldown, min_lr
        self.wait, self.cooldown_counter = 0, 0

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = _learning_rate_logs(self.model, logs)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(self.model.optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0
