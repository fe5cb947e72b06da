"""The catalogue of mistakes a Keras user makes, and what gcomp says about each.

Every test makes one mistake and checks the exception's type (a gcomp.errors class, which also
derives from the built-in exception Keras raises, or ValueError/TypeError/RuntimeError where Keras
raises those) and that the message names what is wrong: the layer, the input or output, the shape,
the index, the file. Layer calls' messages also give this file and the line of the call.

Sections: graph construction (shapes and ranks; layer arguments; the graph itself; calls on things
that are not tensors), the seed notes' own typos, data given to predict, data given to fit, compile
and fit misuse, and the command line. Layers get explicit names so that messages can be matched
without depending on global name counters.
"""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import gcomp
from gcomp import Input, Model, Sequential, callbacks, layers
from gcomp.cli import main
from gcomp.errors import (EmbeddingIndexError, GcompError, GraphError, InputDataError, LayerConfigError,
                          ShapeError)

from conftest import ROOT

THIS_FILE = __file__


def here() -> int:
    """The line number of the caller's next line (where the failing layer call sits)."""
    return sys._getframe(1).f_lineno + 1


def assert_call_site(message: str, line: int) -> None:
    assert f"{THIS_FILE}:{line}" in message, f"expected {THIS_FILE}:{line} in {message!r}"


def test_error_class_hierarchy():
    assert issubclass(ShapeError, ValueError) and issubclass(ShapeError, GcompError)
    assert issubclass(GraphError, ValueError)
    assert issubclass(LayerConfigError, ValueError)
    assert issubclass(InputDataError, ValueError)
    assert issubclass(EmbeddingIndexError, InputDataError) and issubclass(EmbeddingIndexError, IndexError)


# ---- models and data the catalogue reuses ---------------------------------------------------------
def seed_multi_output(embedding=(256, 16)):
    """The seed's three-output model (smaller convolutions). The seed itself writes the Embedding's
    arguments reversed: Embedding(256, vocabulary_size=50000)."""
    posts = Input(shape=(None,), dtype="int32", name="posts")
    x = layers.Embedding(*embedding, name="posts_embedding")(posts)
    x = layers.Conv1D(8, 5, activation="relu", name="conv")(x)
    x = layers.GlobalMaxPooling1D(name="pool")(x)
    x = layers.Dense(8, activation="relu", name="features")(x)
    age = layers.Dense(1, name="age")(x)
    income = layers.Dense(10, activation="softmax", name="income")(x)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(x)
    return Model(posts, [age, income, gender], name="seed_multi")


def seed_multi_data(n=8, vocabulary=256, seed=0):
    rng = np.random.default_rng(seed)
    posts = rng.integers(1, vocabulary, size=(n, 20))
    targets = {"age": rng.normal(size=(n, 1)).astype("float32"),
               "income": np.eye(10, dtype="float32")[rng.integers(0, 10, n)],
               "gender": rng.integers(0, 2, size=(n, 1)).astype("float32")}
    return posts, targets


SEED_LOSSES = {"age": "mse", "income": "categorical_crossentropy", "gender": "binary_crossentropy"}


def classifier(loss="categorical_crossentropy", name="clf"):
    """4 features -> 3 classes, compiled with ``loss`` (None: not compiled)."""
    x = Input(shape=(4,), name="feats")
    h = layers.Dense(8, activation="relu", name="hidden")(x)
    model = Model(x, layers.Dense(3, activation="softmax", name="probs")(h), name=name)
    if loss is not None:
        model.compile(optimizer="sgd", loss=loss)
    return model


def classifier_data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    labels = rng.integers(0, 3, n)
    return x, np.eye(3, dtype="float32")[labels], labels


# =====================================================================================================
# Graph construction: shapes and ranks, checked where the layer is called
# =====================================================================================================
def _inception(padding: str):
    x = Input(shape=(32, 32, 64), name="features")
    branch_a = layers.Conv2D(128, 1, activation="relu", strides=2, padding=padding)(x)
    branch_b = layers.Conv2D(128, 1, activation="relu", padding=padding)(x)
    branch_b = layers.Conv2D(128, 3, activation="relu", strides=2, padding=padding)(branch_b)
    branch_c = layers.AveragePooling2D(3, strides=2, padding=padding)(x)
    branch_c = layers.Conv2D(128, 3, activation="relu", padding=padding)(branch_c)
    branch_d = layers.Conv2D(128, 1, activation="relu", padding=padding)(x)
    branch_d = layers.Conv2D(128, 3, activation="relu", padding=padding)(branch_d)
    branch_d = layers.Conv2D(128, 3, activation="relu", strides=2, padding=padding)(branch_d)
    return x, [branch_a, branch_b, branch_c, branch_d]


def test_inception_valid_padding_fails_at_concatenate():
    # The seed's Inception module with Keras's default padding="valid": 16x16 against 15x15.
    x, branches = _inception("valid")
    assert branches[0].shape == (None, 16, 16, 128)
    assert branches[1].shape == (None, 15, 15, 128)
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.concatenate(branches, axis=-1)
    msg = str(e.value)
    assert "concatenate" in msg
    assert re.search(r"\b16, 16, 128\b", msg) and re.search(r"\b15, 15, 128\b", msg)
    assert_call_site(msg, line)


def test_inception_same_padding_works():
    x, branches = _inception("same")
    out = layers.concatenate(branches, axis=-1)
    model = Model(x, out)
    assert model.output_shape == (None, 16, 16, 512)
    y = model.predict(np.zeros((1, 32, 32, 64), "float32"))
    assert y.shape == (1, 16, 16, 512)


def test_dense_on_rank1_batch_shape():
    x = Input(batch_shape=(4,), name="vec")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Dense(3, name="dense_r1")(x)
    msg = str(e.value)
    assert '"dense_r1"' in msg and "Dense" in msg
    assert "rank" in msg and "(4)" in msg
    assert_call_site(msg, line)


def test_dense_on_rank1_free_batch():
    # Input(shape=()) is (batch,): rank 1. Keras: "expected min_ndim=2, found ndim=1".
    x = Input(shape=(), name="scalar_per_sample")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Dense(3, name="dense_r1b")(x)
    msg = str(e.value)
    assert '"dense_r1b"' in msg
    assert_call_site(msg, line)
    assert "rank" in msg  # the problem is the rank, not an undefined last dim


def test_dense_on_free_last_dim():
    # Dense straight on a token sequence: its last dim (the length) is free, so no kernel can be made.
    x = Input(shape=(None,), name="seq")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Dense(3, name="dense_free")(x)
    msg = str(e.value)
    assert '"dense_free"' in msg and "last dimension" in msg and "seq_len" in msg
    assert_call_site(msg, line)


def test_dense_after_flatten_of_free_length():
    # Flatten on a variable-length sequence, then Dense: Keras's "should be defined. Found None".
    flat = layers.Flatten(name="flat")(Input(shape=(None, 3), name="frames"))
    with pytest.raises(ShapeError) as e:
        layers.Dense(2, name="after_flat")(flat)
    msg = str(e.value)
    assert '"after_flat"' in msg and "frames_len" in msg and "defined" in msg


def test_dense_reused_on_other_feature_size():
    shared = layers.Dense(2, name="shared_dense")
    shared(Input(shape=(3,), name="three"))
    with pytest.raises(ShapeError) as e:
        line = here()
        shared(Input(shape=(4,), name="four"))
    msg = str(e.value)
    assert '"shared_dense"' in msg and "(batch, 4)" in msg and "(3, 2)" in msg
    assert_call_site(msg, line)


def test_concatenate_mismatch():
    a = Input(shape=(3, 4), name="ca")
    b = Input(shape=(5, 4), name="cb")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Concatenate(name="cat_bad")([a, b])
    msg = str(e.value)
    assert '"cat_bad"' in msg and "3, 4" in msg and "5, 4" in msg
    assert_call_site(msg, line)


def test_concatenate_axis_mismatch():
    # Concatenating along axis 1 needs equal last dims: 3 against 5.
    a = Input(shape=(4, 3), name="left_seq")
    b = Input(shape=(4, 5), name="right_seq")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Concatenate(axis=1, name="cat_axis1")([a, b])
    msg = str(e.value)
    assert '"cat_axis1"' in msg and "axis 1" in msg and "(batch, 4, 3)" in msg and "(batch, 4, 5)" in msg
    assert_call_site(msg, line)


def test_concatenate_rank_mismatch():
    with pytest.raises(ShapeError, match=r'"cat_rank".*rank'):
        layers.Concatenate(name="cat_rank")([Input(shape=(3, 4)), Input(shape=(5,))])


def test_concatenate_axis_out_of_range():
    with pytest.raises(ShapeError, match=r'"cat_axis".*axis 3'):
        layers.Concatenate(axis=3, name="cat_axis")([Input(shape=(3,)), Input(shape=(3,))])


def test_add_shape_mismatch():
    a = Input(shape=(3,), name="aa")
    b = Input(shape=(4,), name="ab")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Add(name="add_bad")([a, b])
    msg = str(e.value)
    assert '"add_bad"' in msg and "(batch, 3)" in msg and "(batch, 4)" in msg
    assert_call_site(msg, line)


def test_add_via_arithmetic_mismatch():
    a = Input(shape=(3,), name="pa")
    b = Input(shape=(2,), name="pb")
    with pytest.raises(ShapeError) as e:
        line = here()
        a + b
    assert_call_site(str(e.value), line)


def test_merge_dtype_mismatch():
    # Adding token ids to features: Keras refuses to mix dtypes in a merge.
    with pytest.raises(ShapeError) as e:
        layers.add([Input(shape=(3,), name="floats"), Input(shape=(3,), dtype="int32", name="ids")],
                   name="add_dtypes")
    msg = str(e.value)
    assert '"add_dtypes"' in msg and "float32" in msg and "int32" in msg


def test_subtract_three_inputs():
    xs = [Input(shape=(3,), name=f"s{i}") for i in range(3)]
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Subtract(name="sub3")(xs)
    msg = str(e.value)
    assert '"sub3"' in msg and "2" in msg and "3" in msg
    assert_call_site(msg, line)


def test_merge_on_single_tensor():
    with pytest.raises(ShapeError, match=r'"add_one".*list'):
        layers.Add(name="add_one")(Input(shape=(3,)))


def test_conv2d_on_rank2():
    # A Conv2D straight on flat features: Keras's "expected min_ndim=4, found ndim=2".
    x = Input(shape=(10,), name="flat_features")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Conv2D(4, 3, name="conv_r2")(x)
    msg = str(e.value)
    assert '"conv_r2"' in msg and "rank 4" in msg and "rank 2" in msg and "(batch, 10)" in msg
    assert_call_site(msg, line)


def test_conv2d_on_rank3():
    x = Input(shape=(10, 3), name="seq_input")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Conv2D(4, 3, name="conv_r3")(x)
    msg = str(e.value)
    assert '"conv_r3"' in msg and "rank 4" in msg and "rank 3" in msg and "10, 3" in msg
    assert_call_site(msg, line)


def test_conv_channel_mismatch_on_reuse():
    conv = layers.Conv1D(2, 3, name="conv_reuse")
    conv(Input(shape=(10, 3)))
    with pytest.raises(ShapeError, match=r'"conv_reuse".*channels'):
        conv(Input(shape=(10, 5)))


def test_lstm_on_rank2():
    x = Input(shape=(10,), name="flat")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.LSTM(4, name="lstm_r2")(x)
    msg = str(e.value)
    assert '"lstm_r2"' in msg and "rank 3" in msg and "(batch, 10)" in msg
    assert_call_site(msg, line)


def test_reshape_impossible():
    x = Input(shape=(3, 4), name="grid")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Reshape((7,), name="reshape_bad")(x)
    msg = str(e.value)
    assert '"reshape_bad"' in msg and "12" in msg and "(7,)" in msg
    assert_call_site(msg, line)
    with pytest.raises(ShapeError, match=r'"reshape_bad2".*\(5, -1\)'):
        layers.Reshape((5, -1), name="reshape_bad2")(x)


def test_reshape_two_minus_ones():
    with pytest.raises((ShapeError, LayerConfigError), match="reshape_m1"):
        layers.Reshape((-1, -1), name="reshape_m1")(Input(shape=(4,)))


@pytest.mark.parametrize("cls, shape", [(layers.MaxPooling2D, (4, 4, 3)), (layers.AveragePooling2D, (4, 4, 3)),
                                        (layers.MaxPooling1D, (4, 3))])
def test_pool_window_larger_than_input(cls, shape):
    x = Input(shape=shape, name="small_map")
    with pytest.raises(ShapeError) as e:
        line = here()
        cls(8, name="pool_big")(x)
    msg = str(e.value)
    assert '"pool_big"' in msg and ", ".join(str(d) for d in shape) in msg and "8" in msg
    assert_call_site(msg, line)


def test_conv_kernel_larger_than_input():
    with pytest.raises(ShapeError, match=r'"conv_big"'):
        layers.Conv2D(2, 5, name="conv_big")(Input(shape=(3, 3, 1)))


def test_embedding_on_float_input():
    x = Input(shape=(5,), name="float_tokens")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Embedding(10, 3, name="emb_float")(x)
    msg = str(e.value)
    assert '"emb_float"' in msg and "float32" in msg and "int" in msg
    assert_call_site(msg, line)


def test_sequential_add_reports_add_line():
    s = Sequential([Input(shape=(10,))])
    with pytest.raises(ShapeError) as e:
        line = here()
        s.add(layers.LSTM(3, name="seq_lstm"))
    assert '"seq_lstm"' in str(e.value)
    assert_call_site(str(e.value), line)


def test_model_called_on_too_few_inputs():
    a, b = Input(shape=(3,), name="first"), Input(shape=(3,), name="second")
    pair = Model([a, b], layers.Add(name="pair_sum")([a, b]), name="pair_model")
    with pytest.raises(ShapeError) as e:
        line = here()
        pair(Input(shape=(3,)))
    msg = str(e.value)
    assert '"pair_model"' in msg and "first" in msg and "second" in msg and "2 input(s)" in msg
    assert_call_site(msg, line)


def test_unexpected_call_arguments():
    with pytest.raises(TypeError, match="dense_args"):
        layers.Dense(2, name="dense_args")(Input(shape=(3,)), foo=1)


# =====================================================================================================
# Graph construction: layer arguments (unknown names, sizes), checked in the constructor
# =====================================================================================================
def test_unknown_activation_dense():
    with pytest.raises(LayerConfigError) as e:
        layers.Dense(3, activation="relux", name="dense_act")
    msg = str(e.value)
    assert "relux" in msg and "relu" in msg  # the bad name and the known ones
    assert "dense_act" in msg  # which layer


def test_unknown_activation_layer():
    with pytest.raises(LayerConfigError) as e:
        layers.Activation("swishy", name="act_bad")
    assert "swishy" in str(e.value)
    assert "act_bad" in str(e.value)


def test_unknown_activation_lstm_recurrent():
    with pytest.raises(LayerConfigError, match="nope") as e:
        layers.LSTM(3, recurrent_activation="nope", name="lstm_act")
    assert "lstm_act" in str(e.value)


@pytest.mark.parametrize("make, match", [
    (lambda: layers.LSTM(3, recurrent_dropout=0.1, name="lstm_rdrop"), r'"lstm_rdrop": recurrent_dropout=0.1'),
    (lambda: layers.Dropout(0.5, noise_shape=(None, 1, 4), name="drop_noise"), r'"drop_noise": noise_shape'),
])
def test_dropouts_training_would_ignore_are_refused(make, match):
    # accepted and ignored, these would train a different model than the user wrote
    with pytest.raises(LayerConfigError, match=match):
        make()
    assert layers.LSTM(3, dropout=0.2, recurrent_dropout=0.0).dropout == 0.2  # input dropout is supported


def test_python_function_activation_refused():
    def my_act(x):
        return x

    with pytest.raises(LayerConfigError, match="my_act"):
        layers.Dense(3, activation=my_act, name="dense_fn")


def test_unknown_initializer_at_construction():
    # Keras resolves initializers in the constructor: Dense(3, kernel_initializer="foo") raises at once.
    with pytest.raises(LayerConfigError) as e:
        layers.Dense(3, kernel_initializer="glorot_unifrom", name="dense_init")
    msg = str(e.value)
    assert "glorot_unifrom" in msg and "glorot_uniform" in msg
    assert "dense_init" in msg


@pytest.mark.parametrize("make", [
    lambda: layers.Dense(3, bias_initializer="zeroes", name="dense_binit"),
    lambda: layers.LSTM(3, recurrent_initializer="zeroes", name="dense_binit"),
    lambda: layers.Embedding(5, 3, embeddings_initializer="zeroes", name="dense_binit"),
    lambda: layers.Conv1D(2, 3, kernel_initializer="zeroes", name="dense_binit"),
])
def test_unknown_initializer_names_layer(make):
    # Whenever it is detected (construction, as Keras, or the first call), the error names the layer.
    with pytest.raises(LayerConfigError) as e:
        make()(Input(shape=(4, 2), dtype="int32"))
    msg = str(e.value)
    assert "zeroes" in msg
    assert "dense_binit" in msg


@pytest.mark.parametrize("make", [
    lambda: layers.Conv2D(3, 3, padding="full", name="pad_layer"),
    lambda: layers.Conv1D(3, 3, padding="reflect", name="pad_layer"),
    lambda: layers.MaxPooling2D(2, padding="causal", name="pad_layer"),
    lambda: layers.AveragePooling1D(2, padding="full", name="pad_layer"),
])
def test_bad_padding(make):
    with pytest.raises(LayerConfigError) as e:
        make()
    msg = str(e.value)
    assert '"pad_layer"' in msg and "padding" in msg and "valid" in msg and "same" in msg


def test_causal_padding_is_conv1d_only():
    layers.Conv1D(2, 3, padding="causal", name="causal_ok")
    with pytest.raises(LayerConfigError, match=r'"causal2d".*causal'):
        layers.Conv2D(2, 3, padding="causal", name="causal2d")


@pytest.mark.parametrize("cls, args", [(layers.Dense, (3,)), (layers.LSTM, (3,)), (layers.Conv2D, (3, 3)),
                                       (layers.Embedding, (10, 3)), (layers.Concatenate, ())])
def test_unknown_kwargs(cls, args):
    with pytest.raises(LayerConfigError) as e:
        cls(*args, foo=1)
    msg = str(e.value)
    assert "foo" in msg and cls.__name__ in msg
    assert isinstance(e.value, ValueError)  # `except ValueError` (Keras's type) still catches it


@pytest.mark.parametrize("make, what", [
    (lambda: layers.Dense(0, name="np_layer"), "units"),
    (lambda: layers.Dense(-3, name="np_layer"), "units"),
    (lambda: layers.Dense(2.5, name="np_layer"), "units"),
    (lambda: layers.Dense("32", name="np_layer"), "units"),
    (lambda: layers.LSTM(0, name="np_layer"), "units"),
    (lambda: layers.Conv1D(0, 3, name="np_layer"), "filters"),
    (lambda: layers.Conv2D(4, 0, name="np_layer"), "kernel_size"),
    (lambda: layers.Conv2D(4, None, name="np_layer"), "kernel_size"),
    (lambda: layers.Conv2D(4, 3, strides=0, name="np_layer"), "strides"),
    (lambda: layers.MaxPooling2D(0, name="np_layer"), "pool_size"),
    (lambda: layers.Embedding(0, 4, name="np_layer"), "input_dim"),
    (lambda: layers.Embedding(10000 / 2, 4, name="np_layer"), "input_dim"),
    (lambda: layers.Embedding(4, -1, name="np_layer"), "output_dim"),
    (lambda: layers.Dropout(1.5, name="np_layer"), "rate"),
    (lambda: layers.Reshape((0, 6), name="np_layer"), "target_shape"),
])
def test_non_positive_sizes(make, what):
    with pytest.raises(LayerConfigError) as e:
        make()
    msg = str(e.value)
    assert '"np_layer"' in msg and what in msg


def test_bad_layer_name():
    with pytest.raises(LayerConfigError, match="a/b"):
        layers.Dense(2, name="a/b")


def test_bad_input_shape():
    with pytest.raises(LayerConfigError, match="bad_in"):
        Input(shape=(3, -2), name="bad_in")
    with pytest.raises(LayerConfigError, match="complex128"):
        Input(shape=(3,), dtype="complex128", name="cplx")


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_input_bad_batch_size(batch_size):
    with pytest.raises(LayerConfigError) as e:
        Input(shape=(3,), batch_size=batch_size, name="bad_batch")
    msg = str(e.value)
    assert '"bad_batch"' in msg and "batch_size" in msg and repr(batch_size) in msg


def test_input_shape_given_as_an_int():
    # Keras 3 refuses input_shape=64 ("Cannot convert '64' to a shape"); gcomp says what to write.
    with pytest.raises(LayerConfigError) as e:
        Sequential([layers.Dense(32, activation="relu", input_shape=64, name="first_dense")])
    msg = str(e.value)
    assert '"first_dense"' in msg and "input_shape" in msg and "(64,)" in msg


# =====================================================================================================
# Graph construction: the graph itself (inputs, outputs, names)
# =====================================================================================================
def test_graph_disconnected_names_input_and_path():
    a = Input(shape=(3,), name="given_in")
    b = Input(shape=(3,), name="forgotten_in")
    hb = layers.Dense(3, name="via_dense")(b)
    out = layers.Add(name="joined")([a, hb])
    out = layers.Dense(1, name="final")(out)
    with pytest.raises(GraphError) as e:
        Model(a, out)
    msg = str(e.value)
    assert "forgotten_in" in msg and "given_in" in msg
    assert "forgotten_in -> via_dense -> joined -> final" in msg
    assert "(None, 3)" in msg


def test_graph_disconnected_every_input_missing():
    # Model(inputs=[a], outputs=f(b)): the outputs do not use the given input at all.
    a = Input(shape=(3,), name="other_in")
    b = Input(shape=(3,), name="real_in")
    with pytest.raises(GraphError) as e:
        Model(inputs=[a], outputs=layers.Dense(1, name="only_b")(b))
    msg = str(e.value)
    assert "Graph disconnected" in msg and '"real_in"' in msg and "real_in -> only_b" in msg


def test_non_input_tensor_as_model_input():
    a = Input(shape=(3,), name="true_in")
    mid = layers.Dense(4, name="middle")(a)
    out = layers.Dense(1, name="top")(mid)
    with pytest.raises(GraphError) as e:
        Model(mid, out)
    msg = str(e.value)
    assert '"middle"' in msg and "Input" in msg


def test_non_tensor_model_input_and_output():
    a = Input(shape=(3,), name="nt_in")
    out = layers.Dense(1, name="nt_out")(a)
    with pytest.raises(GraphError, match="ndarray"):
        Model(np.zeros((1, 3)), out)
    with pytest.raises(GraphError, match="NoneType"):
        Model(a, None)


def test_layer_instead_of_its_output():
    # Model(x, layers.Dense(1)): the layer was never called.
    a = Input(shape=(3,), name="uncalled_in")
    with pytest.raises(GraphError) as e:
        Model(a, layers.Dense(1, name="never_called"))
    assert "Dense" in str(e.value) and "output 0" in str(e.value)


def test_same_input_twice():
    a = Input(shape=(3,), name="twice_in")
    with pytest.raises(GraphError, match="twice"):
        Model([a, a], layers.Dense(1, name="tw")(a))


def test_duplicate_input_names():
    a = Input(shape=(3,), name="tokens_in")
    b = Input(shape=(3,), name="tokens_in")
    with pytest.raises(GraphError) as e:
        Model([a, b], layers.Add(name="sum_ab")([a, b]))
    msg = str(e.value)
    assert '"tokens_in"' in msg and "InputLayer" in msg and "unique" in msg


def test_duplicate_layer_names_in_model():
    x = Input(shape=(3,), name="dup_in")
    y = layers.Dense(2, name="same_name")(x)
    z = layers.Dense(2, name="same_name")(y)
    with pytest.raises(GraphError) as e:
        Model(x, z)
    assert '"same_name"' in str(e.value)


def test_duplicate_layer_names_input_and_layer():
    x = Input(shape=(3,), name="clash")
    with pytest.raises(GraphError, match='"clash"'):
        Model(x, layers.Dense(2, name="clash")(x))


def test_duplicate_names_in_sequential():
    with pytest.raises(GraphError, match='"seq_dup"'):
        Sequential([layers.Dense(2, input_shape=(3,), name="seq_dup"), layers.Dense(2, name="seq_dup")])


def test_same_layer_twice_in_sequential():
    dense = layers.Dense(3, name="reused")
    with pytest.raises(GraphError) as e:
        Sequential([Input(shape=(3,)), dense, dense], name="twice_seq")
    msg = str(e.value)
    assert '"twice_seq"' in msg and '"reused"' in msg and "already in this model" in msg


def test_unbuilt_sequential():
    s = Sequential([layers.Dense(2, name="unb")], name="unbuilt_seq")
    with pytest.raises(GraphError, match="unbuilt_seq"):
        s.inputs  # noqa: B018


# =====================================================================================================
# Graph construction: a layer called on something that is not a tensor
# =====================================================================================================
def test_layer_called_on_none():
    # `embedded_question` undefined in the seed: a variable holding None stands in for it. A symbolic
    # model is being built, so this is a TypeError naming the layer, not an attempt to run on data.
    undefined = None
    with pytest.raises(TypeError) as e:
        line = here()
        layers.LSTM(16, name="lstm_on_none")(undefined)
    msg = str(e.value)
    assert '"lstm_on_none"' in msg and "NoneType" in msg
    assert_call_site(msg, line)


def test_merge_layer_called_with_none_in_list():
    a = Input(shape=(3,), name="ok_in")
    with pytest.raises(TypeError) as e:
        line = here()
        layers.concatenate([a, None], name="cat_none")
    msg = str(e.value)
    assert '"cat_none"' in msg and "input 1" in msg and "NoneType" in msg
    assert_call_site(msg, line)


def test_layer_called_on_list_with_string():
    with pytest.raises(TypeError, match=r'"add_str".*str'):
        layers.Add(name="add_str")([Input(shape=(3,)), "x"])


def test_layer_called_on_a_layer():
    # layers.Dense(2)(layers.Dense(3)): the inner layer was never called on a tensor.
    with pytest.raises(TypeError) as e:
        layers.Dense(2, name="outer")(layers.Dense(3, name="inner"))
    msg = str(e.value)
    assert '"outer"' in msg and "Dense" in msg and "not a symbolic tensor" in msg


def test_add_to_sequential_not_a_layer():
    with pytest.raises(TypeError) as e:
        Sequential(name="cls_seq").add(layers.Dense)  # the class, not an instance
    msg = str(e.value)
    assert '"cls_seq"' in msg and "Dense" in msg


def test_input_layer_not_callable():
    x = Input(shape=(3,), name="not_callable")
    with pytest.raises(TypeError, match="not_callable"):
        x._keras_history.layer(x)


# =====================================================================================================
# The seed notes' own mistakes: Embedding's arguments reversed
# =====================================================================================================
# predict's default backend and the NumPy reference must both check indices (Keras's JAX backend
# silently clamps; gcomp promises an EmbeddingIndexError naming the layer, the index and input_dim).
BACKENDS = [pytest.param({}, id="default-backend"), pytest.param({"backend": "numpy"}, id="numpy-backend")]


@pytest.mark.parametrize("kw", BACKENDS)
def test_reversed_embedding_arguments(kw):
    text_input = Input(shape=(None,), dtype="int32", name="text")
    embedded_text = layers.Embedding(64, 10000, name="embedding_reversed")(text_input)  # the seed's mistake
    encoded_text = layers.LSTM(4, name="encoder")(embedded_text)
    model = Model(text_input, encoded_text)  # building works, as in Keras
    assert model.get_layer("embedding_reversed").get_weights()[0].shape == (64, 10000)
    assert model.predict(np.array([[1, 2, 63]]), **kw).shape == (1, 4)  # in-range indices are fine
    with pytest.raises(EmbeddingIndexError) as e:
        model.predict(np.array([[1, 2, 9999, 5]]), **kw)
    msg = str(e.value)
    assert '"embedding_reversed"' in msg
    assert "9999" in msg
    assert "input_dim=64" in msg and "[0, 64)" in msg
    assert '"text"' in msg
    assert isinstance(e.value, IndexError) and isinstance(e.value, ValueError)


def _seed_qa_model():
    """The seed's question-answering model, typos and all: Embedding(64, 10000), Embedding(32, 10000)."""
    text_input = Input(shape=(None,), dtype="int32", name="text")
    encoded_text = layers.LSTM(32, name="text_lstm")(layers.Embedding(64, 10000, name="text_embedding")(text_input))
    question_input = Input(shape=(None,), dtype="int32", name="question")
    encoded_question = layers.LSTM(16, name="question_lstm")(
        layers.Embedding(32, 10000, name="question_embedding")(question_input))
    concatenated = layers.concatenate([encoded_text, encoded_question], axis=-1)
    answer = layers.Dense(500, activation="softmax", name="answer")(concatenated)
    model = Model([text_input, question_input], answer)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["acc"])
    return model


@pytest.mark.parametrize("as_dict", [False, True], ids=["list", "dict"])
def test_reversed_embedding_arguments_at_fit(as_dict):
    # The seed's training code on its own model: indices up to 9,999 for 64 (and 32) embedding rows.
    model = _seed_qa_model()
    rng = np.random.default_rng(0)
    text = rng.integers(1, 10000, size=(16, 10))
    question = rng.integers(1, 32, size=(16, 10))  # in range: the error must point at "text"
    answers = np.eye(500, dtype="float32")[rng.integers(0, 500, 16)]
    x = {"text": text, "question": question} if as_dict else [text, question]
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(EmbeddingIndexError) as e:
        model.fit(x, answers, epochs=1, batch_size=8, verbose=0)
    msg = str(e.value)
    assert '"text_embedding"' in msg and "input_dim=64" in msg and '"text"' in msg
    assert re.search(r"index (\d+)", msg) and int(re.search(r"index (\d+)", msg).group(1)) >= 64
    for a, b in zip(before, model.get_weights()):  # refused before any step
        np.testing.assert_array_equal(a, b)


def test_reversed_embedding_in_multi_output_seed_at_fit_and_evaluate():
    # The seed's three-output model writes Embedding(256, vocabulary_size=50000), then feeds posts
    # drawn from the 50,000-word vocabulary.
    model = seed_multi_output(embedding=(256, 50000))
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES, loss_weights={"age": 0.25, "income": 1., "gender": 10.})
    posts, targets = seed_multi_data(vocabulary=50000)
    for call in (lambda: model.fit(posts, targets, epochs=1, batch_size=4, verbose=0),
                 lambda: model.evaluate(posts, targets, verbose=0)):
        with pytest.raises(EmbeddingIndexError) as e:
            call()
        msg = str(e.value)
        assert '"posts_embedding"' in msg and "input_dim=256" in msg and '"posts"' in msg


@pytest.mark.parametrize("kw", BACKENDS)
def test_reversed_embedding_random_indices(kw):
    rng = np.random.default_rng(0)
    t = Input(shape=(None,), dtype="int32", name="text")
    model = Model(t, layers.Embedding(64, 8, name="emb_small")(t))
    data = rng.integers(1, 10000, size=(2, 10))
    data[0, 0] = 9999
    with pytest.raises(EmbeddingIndexError) as e:
        model.predict(data, **kw)
    msg = str(e.value)
    bad = int(re.search(r"index (-?\d+)", msg).group(1))
    assert bad >= 64 and bad in data
    assert '"emb_small"' in msg and "input_dim=64" in msg


@pytest.mark.parametrize("kw", BACKENDS)
def test_negative_embedding_index(kw):
    t = Input(shape=(None,), dtype="int32", name="neg_tokens")
    model = Model(t, layers.Embedding(10, 2, name="emb_neg")(t))
    with pytest.raises(EmbeddingIndexError, match=r'"emb_neg".*-1'):
        model.predict(np.array([[0, -1]]), **kw)


def test_eager_embedding_index():
    with pytest.raises(EmbeddingIndexError, match=r'"emb_eager".*12'):
        layers.Embedding(10, 2, name="emb_eager")(np.array([[1, 12]]))


@pytest.mark.parametrize("kw", BACKENDS)
def test_embedding_index_inside_nested_model(kw):
    # The Embedding reads the outer model's input through a nested Sequential.
    encoder = Sequential([Input(shape=(None,), dtype="int32"), layers.Embedding(10, 2, name="nested_emb")],
                         name="encoder_seq")
    tokens = Input(shape=(None,), dtype="int32", name="outer_tokens")
    model = Model(tokens, encoder(tokens))
    with pytest.raises(EmbeddingIndexError) as e:
        model.predict(np.array([[1, 12]]), **kw)
    msg = str(e.value)
    assert "nested_emb" in msg and "12" in msg and "input_dim=10" in msg
    with pytest.raises(EmbeddingIndexError, match="nested_emb"):
        model.predict(np.array([[1, -1]]), **kw)


@pytest.mark.parametrize("kw", BACKENDS)
def test_embedding_index_after_reshape(kw):
    flat = Input(shape=(4,), dtype="int32", name="flat_tokens")
    grid = layers.Reshape((2, 2), name="to_grid")(flat)
    model = Model(flat, layers.Embedding(10, 2, name="grid_emb")(grid))
    with pytest.raises(EmbeddingIndexError) as e:
        model.predict(np.array([[1, 2, 3, 12]]), **kw)
    msg = str(e.value)
    assert '"grid_emb"' in msg and "12" in msg and "input_dim=10" in msg


@pytest.mark.parametrize("kw", BACKENDS)
@pytest.mark.parametrize("value", [2**40, 2**32 + 3, 1e10])
def test_int_input_value_out_of_int32_range(kw, value):
    # Casting to the input's int32 would wrap these to small, valid-looking indices (2**32 + 3 -> 3).
    t = Input(shape=(None,), dtype="int32", name="wide_tokens")
    model = Model(t, layers.Embedding(10, 2, name="wide_emb")(t))
    data = np.array([[1, value]], dtype=np.int64 if isinstance(value, int) else np.float64)
    with pytest.raises(InputDataError) as e:
        model.predict(data, **kw)
    assert "wide_tokens" in str(e.value) or "wide_emb" in str(e.value)


# =====================================================================================================
# Data given to predict
# =====================================================================================================
@pytest.fixture
def two_input_model():
    a = Input(shape=(3,), name="alpha")
    b = Input(shape=(3,), name="beta")
    out = layers.Add(name="merge")([a, b])
    return Model([a, b], out, name="two_in")


@pytest.fixture
def token_model():
    t = Input(shape=(None,), dtype="int32", name="tokens")
    e = layers.Embedding(20, 2, name="tok_emb")(t)
    return Model(t, layers.GlobalAveragePooling1D(name="tok_pool")(e), name="tok_model")


A = np.ones((2, 3), "float32")


def test_missing_dict_key(two_input_model):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict({"alpha": A})
    assert "beta" in str(e.value) and "missing" in str(e.value)


def test_unknown_dict_key(two_input_model):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict({"alpha": A, "beta": A, "gamma": A})
    assert "gamma" in str(e.value) and "unknown" in str(e.value)


def test_misspelled_dict_key(two_input_model):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict({"alpha": A, "betta": A})
    assert "betta" in str(e.value) and "beta" in str(e.value)


@pytest.mark.parametrize("n", [1, 3])
def test_wrong_number_of_list_inputs(two_input_model, n):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict([A] * n)
    msg = str(e.value)
    assert "alpha" in msg and "beta" in msg and str(n) in msg


def test_single_array_for_two_inputs(two_input_model):
    with pytest.raises(InputDataError, match=r"alpha.*beta"):
        two_input_model.predict(A)


def test_wrong_rank(two_input_model):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict([A, np.ones((2, 3, 1))])
    msg = str(e.value)
    assert '"beta"' in msg and "rank 2" in msg and "(2, 3, 1)" in msg
    assert "merge" in msg  # the layer reading it


def test_one_sample_without_batch_axis(two_input_model):
    # predict(x[0]) instead of predict(x[:1]): a (3,) array for a (None, 3) input.
    with pytest.raises(InputDataError) as e:
        two_input_model.predict([A[0], A[0]])
    msg = str(e.value)
    assert '"alpha"' in msg and "rank 2" in msg and "(3,)" in msg


def test_wrong_fixed_dim(two_input_model):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict({"alpha": np.ones((2, 4)), "beta": A})
    msg = str(e.value)
    assert '"alpha"' in msg and "(2, 4)" in msg and "(None, 3)" in msg


def test_fixed_batch_dim():
    i = Input(shape=(2,), batch_size=4, name="fixed_batch")
    m = Model(i, layers.Dense(1, name="fb_d")(i))
    with pytest.raises(InputDataError, match=r'"fixed_batch".*axis 0'):
        m.predict(np.ones((3, 2)), batch_size=3)


def test_different_batch_sizes(two_input_model):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict([A, np.ones((5, 3))])
    msg = str(e.value)
    assert "alpha=2" in msg and "beta=5" in msg


def test_strings_as_data(two_input_model):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict([A, np.array([["a", "b", "c"]] * 2)])
    assert '"beta"' in str(e.value)


@pytest.mark.parametrize("data", [np.array([[None, 1.0, 2.0]] * 2, dtype=object), np.ones((2, 3), complex)],
                         ids=["object", "complex"])
def test_object_or_complex_arrays(two_input_model, data):
    with pytest.raises(InputDataError) as e:
        two_input_model.predict({"alpha": A, "beta": data})
    msg = str(e.value)
    assert '"beta"' in msg and str(data.dtype) in msg and "numbers" in msg


def test_strings_for_token_input(token_model):
    with pytest.raises(InputDataError) as e:
        token_model.predict(np.array([["the", "cat"], ["a", "dog"]]))
    assert '"tokens"' in str(e.value)


def test_ragged_data(token_model):
    with pytest.raises(InputDataError, match='"tokens"'):
        token_model.predict([[1, 2, 3], [4, 5]])


def test_non_integer_floats_for_int_input(token_model):
    with pytest.raises(InputDataError) as e:
        token_model.predict(np.array([[1.0, 2.5]]))
    msg = str(e.value)
    assert '"tokens"' in msg and "int" in msg and "tok_emb" in msg
    # Integral floats are accepted.
    assert token_model.predict(np.array([[1.0, 2.0]])).shape == (1, 2)


def test_nan_for_int_input(token_model):
    with pytest.raises(InputDataError, match='"tokens"'):
        token_model.predict(np.array([[1.0, np.nan]]))


def test_none_as_data(token_model):
    with pytest.raises(InputDataError, match="tok_model"):
        token_model.predict(None)


def test_bad_batch_size(token_model):
    with pytest.raises(ValueError, match="batch_size"):
        token_model.predict(np.array([[1, 2]]), batch_size=0)


def test_sequence_shorter_than_the_convolution():
    # The seed's multi-output model on 3-token posts: Conv1D(kernel 5) has nothing to slide over.
    model = seed_multi_output()
    with pytest.raises(InputDataError) as e:
        model.predict(np.ones((2, 3), "int32"))
    msg = str(e.value)
    assert '"conv"' in msg and "(3,)" in msg and "(5,)" in msg


def test_unknown_predict_backend(token_model):
    with pytest.raises(ValueError) as e:
        token_model.predict(np.array([[1, 2]]), backend="tensorflow")
    assert "'tensorflow'" in str(e.value) and "'onnx'" in str(e.value)


# =====================================================================================================
# Data given to fit: targets that do not fit the loss, non-finite values, sample weights
# =====================================================================================================
@pytest.mark.parametrize("labels, bad", [(np.arange(20) % 5, "4"), (-(np.arange(20) % 2), "-1")],
                         ids=["too-large", "negative"])
def test_sparse_labels_out_of_range(labels, bad):
    model = classifier("sparse_categorical_crossentropy")
    x, _, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, labels, verbose=0)
    msg = str(e.value)
    assert 'output "probs"' in msg and f"label {bad}" in msg and "[0, 3)" in msg


def test_sparse_labels_that_are_not_integers():
    model = classifier("sparse_categorical_crossentropy")
    x, _, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, np.full(20, 0.5), verbose=0)
    msg = str(e.value)
    assert 'output "probs"' in msg and "integer" in msg and "0.5" in msg


def test_one_hot_targets_with_sparse_loss():
    model = classifier("sparse_categorical_crossentropy")
    x, one_hot, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, one_hot, verbose=0)
    msg = str(e.value)
    assert 'output "probs"' in msg and "(20, 3)" in msg and "use categorical_crossentropy" in msg


def test_integer_labels_with_categorical_loss_on_one_output():
    # The seed's three-output model, with the income groups given as integers instead of one-hot.
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    targets["income"] = targets["income"].argmax(axis=1)
    with pytest.raises(ValueError) as e:
        model.fit(posts, targets, verbose=0)
    msg = str(e.value)
    assert 'output "income"' in msg and "(8,)" in msg and "(None, 10)" in msg
    assert "sparse_categorical_crossentropy" in msg


def test_binary_targets_outside_zero_one():
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    targets["gender"] = targets["gender"] * 2 - 1  # labels written as -1 / 1
    with pytest.raises(ValueError) as e:
        model.fit(posts, targets, verbose=0)
    msg = str(e.value)
    assert 'output "gender"' in msg and "[0, 1]" in msg and "-1" in msg


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_targets(value):
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    targets["age"][3, 0] = value
    with pytest.raises(ValueError) as e:
        model.fit(posts, targets, verbose=0)
    msg = str(e.value)
    assert 'output "age"' in msg and "NaN or infinity" in msg


def test_infinite_inputs_give_a_nan_loss_naming_the_output():
    # Non-finite inputs are not refused up front (predict passes them through, as Keras does); at
    # fit the first non-finite loss stops training with FloatingPointError naming output and batch.
    model = classifier()
    x, y, _ = classifier_data()
    x[9, 2] = np.inf
    with pytest.raises(FloatingPointError) as e:
        with np.errstate(all="ignore"):
            model.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    msg = str(e.value)
    assert "batch 1" in msg and "output 'probs'" in msg and "NaN or inf" in msg


def test_targets_missing_for_an_output():
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    del targets["gender"]
    with pytest.raises(InputDataError) as e:
        model.fit(posts, targets, verbose=0)
    assert "'gender'" in str(e.value)


def test_target_list_of_wrong_length():
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    with pytest.raises(InputDataError) as e:
        model.fit(posts, [targets["age"], targets["income"]], verbose=0)
    msg = str(e.value)
    assert "2 arrays" in msg and "3 outputs" in msg and "gender" in msg


def test_one_target_array_for_three_outputs():
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    with pytest.raises(InputDataError) as e:
        model.fit(posts, targets["age"], verbose=0)
    msg = str(e.value)
    assert "3 outputs" in msg and "age" in msg and "income" in msg and "gender" in msg


def test_strings_as_targets():
    model = classifier()
    x, _, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, np.array([["cat", "dog", "bird"]] * 20), verbose=0)
    msg = str(e.value)
    assert 'output "probs"' in msg and "numbers" in msg


def test_fit_without_targets():
    model = classifier()
    x, _, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, verbose=0)
    msg = str(e.value)
    assert "probs" in msg and "None" in msg


def test_wrong_input_shape_at_fit():
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises(InputDataError) as e:
        model.fit(x[:, :3], y, verbose=0)
    msg = str(e.value)
    assert '"feats"' in msg and "(20, 3)" in msg and "(None, 4)" in msg and "hidden" in msg


def test_sample_weight_of_wrong_length():
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises(InputDataError) as e:
        model.fit(x, y, sample_weight=np.ones(7), verbose=0)
    msg = str(e.value)
    assert "sample_weight" in msg and "'probs'" in msg and "7" in msg and "20" in msg


def test_sample_weight_dict_with_unknown_output():
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    with pytest.raises((InputDataError, ValueError)) as e:
        model.fit(posts, targets, sample_weight={"gendr": np.ones(8)}, verbose=0)
    assert "gendr" in str(e.value)


def test_sample_weight_list_shorter_than_outputs():
    model = seed_multi_output()
    model.compile(optimizer="rmsprop", loss=SEED_LOSSES)
    posts, targets = seed_multi_data()
    with pytest.raises((InputDataError, ValueError)) as e:
        model.fit(posts, targets, sample_weight=[np.ones(8)], verbose=0)
    assert "sample_weight" in str(e.value) and "3" in str(e.value)


# =====================================================================================================
# compile and fit misuse
# =====================================================================================================
@pytest.fixture
def seed_model():
    return seed_multi_output()


def test_loss_dict_key_that_is_not_an_output(seed_model):
    with pytest.raises(ValueError) as e:
        seed_model.compile(optimizer="rmsprop", loss={"age": "mse", "incme": "categorical_crossentropy",
                                                      "gender": "binary_crossentropy"})
    msg = str(e.value)
    assert "'incme'" in msg and "not outputs" in msg and "'income'" in msg


def test_loss_list_shorter_than_outputs(seed_model):
    with pytest.raises(ValueError) as e:
        seed_model.compile(optimizer="rmsprop", loss=["mse", "categorical_crossentropy"])
    msg = str(e.value)
    assert "loss has 2 entries" in msg and "3 outputs" in msg and "gender" in msg


def test_loss_weights_of_wrong_length(seed_model):
    with pytest.raises(ValueError) as e:
        seed_model.compile(optimizer="rmsprop", loss=SEED_LOSSES, loss_weights=[0.25, 1.0])
    msg = str(e.value)
    assert "loss_weights has 2 entries" in msg and "3 outputs" in msg and "age" in msg


def test_loss_weights_dict_with_unknown_output(seed_model):
    with pytest.raises(ValueError) as e:
        seed_model.compile(optimizer="rmsprop", loss=SEED_LOSSES, loss_weights={"agee": 0.25, "income": 1.0})
    msg = str(e.value)
    assert "loss_weights" in msg and "'agee'" in msg and "not outputs" in msg


def test_loss_weight_that_is_not_a_number(seed_model):
    with pytest.raises(ValueError) as e:
        seed_model.compile(optimizer="rmsprop", loss=SEED_LOSSES, loss_weights={"age": "heavy"})
    msg = str(e.value)
    assert "loss_weights" in msg and "age" in msg


def test_metrics_for_unknown_output(seed_model):
    with pytest.raises(ValueError) as e:
        seed_model.compile(optimizer="rmsprop", loss=SEED_LOSSES, metrics={"gendr": ["acc"]})
    msg = str(e.value)
    assert "metrics" in msg and "'gendr'" in msg and "'gender'" in msg


def test_metrics_as_a_bare_string():
    # Keras: "Expected `metrics` argument to be a list, tuple, or dict".
    with pytest.raises(ValueError) as e:
        classifier(loss=None).compile(optimizer="sgd", loss="categorical_crossentropy", metrics="acc")
    assert "metrics" in str(e.value) and "'acc'" in str(e.value)


def test_optimizer_class_instead_of_instance():
    # optimizer=gcomp.optimizers.Adam (the class, not Adam()).
    with pytest.raises(ValueError) as e:
        classifier(loss=None).compile(optimizer=gcomp.optimizers.Adam, loss="mse")
    assert "optimizer" in str(e.value) and "Adam" in str(e.value)


def test_loss_as_a_python_function():
    def my_loss(y_true, y_pred):
        return y_pred

    with pytest.raises(ValueError) as e:
        classifier(loss=None).compile(optimizer="sgd", loss=my_loss)
    msg = str(e.value)
    assert "my_loss" in msg and "'probs'" in msg


@pytest.mark.parametrize("method", ["evaluate", "train_on_batch", "test_on_batch"])
def test_evaluate_before_compile(method):
    model = classifier(loss=None)
    x, y, _ = classifier_data()
    with pytest.raises(RuntimeError) as e:
        getattr(model, method)(x, y)
    assert "compile()" in str(e.value)


def test_compile_without_loss_then_fit():
    model = classifier(loss=None, name="lossless")
    model.compile(optimizer="sgd")
    x, y, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, y, verbose=0)
    msg = str(e.value)
    assert '"lossless"' in msg and "without a loss" in msg


@pytest.mark.parametrize("split", [1.0, -0.1, 20])
def test_validation_split_out_of_range(split):
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, y, validation_split=split, verbose=0)
    assert "validation_split" in str(e.value) and str(split) in str(e.value)


def test_validation_split_leaving_no_training_data():
    model = classifier()
    x, y, _ = classifier_data(n=3)
    with pytest.raises(ValueError) as e:
        model.fit(x, y, validation_split=0.9, verbose=0)
    assert "validation_split" in str(e.value)


@pytest.mark.parametrize("make, error, words", [
    (lambda x, y: x, ValueError, ["validation_data", "(x_val, y_val)"]),
    (lambda x, y: [x, y, None, None], ValueError, ["validation_data", "(x_val, y_val)"]),
    (lambda x, y: (x[:, :3], y), InputDataError, ['"feats"', "(20, 3)"]),
    (lambda x, y: (x, y[:, :2]), ValueError, ['output "probs"', "(20, 2)"]),
    (lambda x, y: (x[:5], y), InputDataError, ["validation data", "5", "20"]),
], ids=["x-only", "four-items", "input-shape", "target-shape", "sample-counts"])
def test_bad_validation_data(make, error, words):
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises(error) as e:
        model.fit(x, y, validation_data=make(x, y), verbose=0)
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_fit_with_non_positive_batch_size(batch_size):
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=batch_size, verbose=0)


def test_class_weight_as_a_list():
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises((ValueError, TypeError)) as e:
        model.fit(x, y, class_weight=[1.0, 2.0, 3.0], verbose=0)
    assert "class_weight" in str(e.value)


def test_class_weight_refusals_follow_keras():
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises(InputDataError, match="You cannot `class_weight` and `sample_weight` at the same time"):
        model.fit(x, y, class_weight={0: 2.0}, sample_weight=np.ones(len(x)), verbose=0)
    inputs = Input(shape=(4,))
    two = Model(inputs, [layers.Dense(2, activation="softmax")(inputs), layers.Dense(1)(inputs)])
    two.compile("sgd", ["categorical_crossentropy", "mse"])
    with pytest.raises(InputDataError, match="only supported for Models with a single output"):
        two.train_on_batch(np.ones((2, 4)), [np.eye(2), np.ones((2, 1))], class_weight={0: 2.0})


def test_single_callback_not_in_a_list():
    model = classifier()
    x, y, _ = classifier_data()
    logger = callbacks.History()
    model.fit(x, y, callbacks=logger, verbose=0)
    assert logger.history


def test_unknown_training_backend():
    model = classifier()
    x, y, _ = classifier_data()
    with pytest.raises(ValueError) as e:
        model.fit(x, y, backend="onnx", verbose=0)
    assert "'onnx'" in str(e.value) and "'numpy'" in str(e.value)


# =====================================================================================================
# The command line: one line on stderr, a non-zero exit, never a traceback
# =====================================================================================================
# test_cli.py holds the first mistakes (missing file, syntax error, undefined name, no model, two
# models, a shape error, SystemExit, an unknown --model, a missing or locked output folder).
def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "gcomp.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def assert_one_line_error(run, *words, status=1):
    assert run.returncode == status, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


GOOD_MODEL = "from gcomp import Input, Model, layers\ni = Input(shape=(3,))\nmodel = Model(i, layers.Dense(2)(i))\n"


def test_cli_unknown_target(tmp_path):
    (tmp_path / "model.py").write_text(GOOD_MODEL)
    run = run_cli("build", "model.py", "-o", "model.tflite", "--target", "tflite", cwd=tmp_path)
    assert_one_line_error(run, "gcomp build: error:", "--target", "'tflite'", "'onnx'", "'numpy'", "'c'", status=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]


def test_cli_bad_max_batch(tmp_path):
    (tmp_path / "model.py").write_text(GOOD_MODEL)
    run = run_cli("build", "model.py", "-o", "out", "--target", "c", "--max-batch", "0", cwd=tmp_path)
    assert_one_line_error(run, "--max-batch", "positive integer", "0", status=2)
    assert not (tmp_path / "out").exists()


def test_cli_missing_output_option(tmp_path):
    (tmp_path / "model.py").write_text(GOOD_MODEL)
    assert_one_line_error(run_cli("build", "model.py", cwd=tmp_path), "-o/--output", status=2)


def test_cli_folder_given_as_model_file(tmp_path):
    (tmp_path / "models").mkdir()
    assert_one_line_error(run_cli("summary", "models", cwd=tmp_path), "models: not a file")


def test_cli_model_file_not_text(tmp_path):
    (tmp_path / "model.py").write_bytes(b"\xff\xfe\x00binary")
    assert_one_line_error(run_cli("summary", "model.py", cwd=tmp_path), "model.py: cannot read")


def test_cli_the_seed_notes_as_model_file(tmp_path):
    # Markdown is not Python: the first line Python cannot read is named.
    (tmp_path / "functional_api.md").write_text("# Functional API\n\nIn the functional API, you directly "
                                                "manipulate tensors, and you use layers as *functions*\n")
    run = run_cli("build", "functional_api.md", "-o", "m.onnx", cwd=tmp_path)
    assert_one_line_error(run, "functional_api.md:3: syntax error")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_model_file_raising_a_multi_line_error(tmp_path):
    (tmp_path / "model.py").write_text("def check():\n    raise ValueError('first line\\nsecond line')\ncheck()\n")
    assert_one_line_error(run_cli("summary", "model.py", cwd=tmp_path),
                          "model.py:2: ValueError: first line", "second line")


def test_cli_model_file_still_importing_keras(tmp_path):
    (tmp_path / "model.py").write_text("from keras import Input, layers\nfrom keras.models import Model\n")
    assert_one_line_error(run_cli("summary", "model.py", cwd=tmp_path),
                          "model.py:1:", "keras", "replace `keras` with `gcomp`")


def test_cli_model_file_defining_only_keras_models(tmp_path):
    # Where Keras is installed, the seed's code runs and defines Keras models, not gcomp ones. A
    # stand-in `keras` package beside the file plays Keras here (model files' folders are importable).
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "__init__.py").write_text("class Model:\n    pass\n\n\nclass Sequential(Model):\n    pass\n")
    (tmp_path / "model.py").write_text("import keras\nseq_model = keras.Sequential()\n")
    assert_one_line_error(run_cli("summary", "model.py", cwd=tmp_path),
                          "no gcomp Model", "Keras models (seq_model)", "from gcomp")


def test_cli_model_file_whose_own_predict_fails(tmp_path):
    (tmp_path / "model.py").write_text(
        "import numpy as np\nfrom gcomp import Input, Model, layers\n"
        "t = Input(shape=(None,), dtype='int32', name='text')\n"
        "model = Model(t, layers.Embedding(64, 10000, name='text_embedding')(t))\n"
        "model.predict(np.array([[9999]]))\n")
    assert_one_line_error(run_cli("summary", "model.py", cwd=tmp_path),
                          "model.py:5:", '"text_embedding"', "9999", "input_dim=64")


def test_cli_output_path_below_a_file(tmp_path):
    (tmp_path / "model.py").write_text(GOOD_MODEL)
    run = run_cli("build", "model.py", "-o", "model.py/model.onnx", cwd=tmp_path)
    assert_one_line_error(run, "model.py/model.onnx", "cannot write")
    assert (tmp_path / "model.py").read_text() == GOOD_MODEL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]


@pytest.mark.parametrize("failing, code", [("replace", errno.EACCES), ("fsync", errno.ENOSPC)],
                         ids=["permission-denied", "disk-full"])
def test_cli_unwritable_output_keeps_the_old_file(tmp_path, monkeypatch, capsys, failing, code):
    # Root may write anywhere, so the refusal is simulated where the file system would give it.
    from gcomp import fileio
    model_file = tmp_path / "model.py"
    model_file.write_text(GOOD_MODEL)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous build")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(fileio.os, failing, refuse)
    assert main(["build", str(model_file), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gcomp: error: ") and "Traceback" not in err[0]
    assert str(out) in err[0] and "cannot write" in err[0] and os.strerror(code) in err[0]
    assert out.read_bytes() == b"the previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.py"]


def test_cli_failing_model_file_keeps_an_existing_numpy_build(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(GOOD_MODEL)
    assert run_cli("build", "good.py", "-o", "program", "--target", "numpy", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "program").iterdir()}
    (tmp_path / "bad.py").write_text(GOOD_MODEL + "raise RuntimeError('half way')\n")
    run = run_cli("build", "bad.py", "-o", "program", "--target", "numpy", cwd=tmp_path)
    assert_one_line_error(run, "bad.py:4: RuntimeError: half way")
    assert {p.name: p.read_bytes() for p in (tmp_path / "program").iterdir()} == before


def test_a_layer_gcomp_lacks_is_an_attribute_error_listing_its_layers():
    from gcomp import layers
    assert not hasattr(layers, "BatchNormalization") and hasattr(layers, "LeakyReLU")
    with pytest.raises(AttributeError) as e:
        layers.Lstm(4)
    assert "gcomp.layers has no 'Lstm' (did you mean LSTM?" in str(e.value) and "Conv2D" in str(e.value)
