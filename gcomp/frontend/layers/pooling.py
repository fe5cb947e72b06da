"""Pooling layers: max/average over windows, and global max/average over all spatial axes."""
from __future__ import annotations

from gcomp.frontend.layer import Layer

_NO_DEFAULT = object()


class _Pooling(Layer):
    rank = 0
    default_pool_size = _NO_DEFAULT

    def __init__(self, pool_size=_NO_DEFAULT, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        if pool_size is _NO_DEFAULT:
            pool_size = self.default_pool_size
            if pool_size is _NO_DEFAULT:
                raise self._config_error("pool_size is required (AveragePooling has no default)")
        self.pool_size = self._int_tuple(pool_size, self.rank, "pool_size")
        self.strides = self.pool_size if strides is None else self._int_tuple(strides, self.rank, "strides")
        self.padding = padding.lower() if isinstance(padding, str) else padding
        if self.padding not in ("valid", "same"):
            raise self._config_error(f"padding must be 'valid' or 'same', got {padding!r}")
        if data_format not in (None, "channels_last"):
            raise self._config_error(f"data_format={data_format!r} is not supported; gcomp is channels-last")

    def op_attrs(self):
        return {"rank": self.rank, "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}


class MaxPooling1D(_Pooling):
    op, rank, default_pool_size = "max_pool", 1, 2


class MaxPooling2D(_Pooling):
    op, rank, default_pool_size = "max_pool", 2, (2, 2)


class AveragePooling1D(_Pooling):
    op, rank = "avg_pool", 1


class AveragePooling2D(_Pooling):
    op, rank = "avg_pool", 2


class _GlobalPooling(Layer):
    rank = 0

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise self._config_error(f"data_format={data_format!r} is not supported; gcomp is channels-last")
        self.keepdims = bool(keepdims)

    def op_attrs(self):
        return {"rank": self.rank, "keepdims": self.keepdims}


class GlobalMaxPooling1D(_GlobalPooling):
    op, rank = "global_max_pool", 1


class GlobalMaxPooling2D(_GlobalPooling):
    op, rank = "global_max_pool", 2


class GlobalAveragePooling1D(_GlobalPooling):
    op, rank = "global_avg_pool", 1


class GlobalAveragePooling2D(_GlobalPooling):
    op, rank = "global_avg_pool", 2


MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D = MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
