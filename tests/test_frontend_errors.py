"""Frontend errors: each mistake raises one of gcomp.errors' classes (which also subclass the built-in
exception a Keras user catches) with a message naming the layer / input / shape and, for layer calls,
this file and the line of the call.

Layers get explicit names so messages can be matched without depending on global name counters.
"""
from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from gcomp import Input, Model, Sequential, layers
from gcomp.errors import (EmbeddingIndexError, GcompError, GraphError, InputDataError, LayerConfigError,
                          ShapeError)

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


# =====================================================================================================
# The seed's Inception snippet
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


# =====================================================================================================
# Shape errors at layer calls
# =====================================================================================================
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


def test_concatenate_mismatch():
    a = Input(shape=(3, 4), name="ca")
    b = Input(shape=(5, 4), name="cb")
    with pytest.raises(ShapeError) as e:
        line = here()
        layers.Concatenate(name="cat_bad")([a, b])
    msg = str(e.value)
    assert '"cat_bad"' in msg and "3, 4" in msg and "5, 4" in msg
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


def test_unexpected_call_arguments():
    with pytest.raises(TypeError, match="dense_args"):
        layers.Dense(2, name="dense_args")(Input(shape=(3,)), foo=1)


# =====================================================================================================
# Layer configuration errors
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
    (lambda: layers.LSTM(0, name="np_layer"), "units"),
    (lambda: layers.Conv1D(0, 3, name="np_layer"), "filters"),
    (lambda: layers.Conv2D(4, 0, name="np_layer"), "kernel_size"),
    (lambda: layers.Embedding(0, 4, name="np_layer"), "input_dim"),
    (lambda: layers.Embedding(4, -1, name="np_layer"), "output_dim"),
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


# =====================================================================================================
# Graph errors
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
    a = Input(shape=(3,), name="other_in")
    b = Input(shape=(3,), name="real_in")
    with pytest.raises(GraphError, match="real_in"):
        Model(a, layers.Dense(1, name="only_b")(b))


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


def test_same_input_twice():
    a = Input(shape=(3,), name="twice_in")
    with pytest.raises(GraphError, match="twice"):
        Model([a, a], layers.Dense(1, name="tw")(a))


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


def test_unbuilt_sequential():
    s = Sequential([layers.Dense(2, name="unb")], name="unbuilt_seq")
    with pytest.raises(GraphError, match="unbuilt_seq"):
        s.inputs  # noqa: B018


# =====================================================================================================
# Calling a layer on something that is not a tensor
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


def test_input_layer_not_callable():
    x = Input(shape=(3,), name="not_callable")
    with pytest.raises(TypeError, match="not_callable"):
        x._keras_history.layer(x)


# =====================================================================================================
# predict data errors
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


# =====================================================================================================
# The seed's reversed Embedding arguments
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
