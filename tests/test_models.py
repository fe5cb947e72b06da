"""Model-level behaviour of gcomp's Keras-style frontend: structure, weights, predict, summary.

Expectations mirror Keras 3: model.layers order (keras/src/ops/function.py map_graph), get_weights order,
count_params formulas, the summary table. Every layer that a test names gets an explicit name so the
tests do not depend on gcomp's global name counters (the one test that checks Keras's automatic names
resets the counters for its own duration only).
"""
from __future__ import annotations

import re
import runpy
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import gcomp
from gcomp import Input, Model, Sequential, layers
from gcomp.frontend import naming
from gcomp.ir import TensorType, print_graph

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def fresh_names(monkeypatch):
    """Keras's automatic names as in a fresh session, without disturbing other tests' counters."""
    monkeypatch.setattr(naming, "_uids", defaultdict(int))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def run_example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / name))


def summary_text(model, **kwargs) -> str:
    lines: list[str] = []
    model.summary(print_fn=lines.append, **kwargs)
    return "\n".join(lines)


def names(model) -> list[str]:
    return [layer.name for layer in model.layers]


def dense_np(x, kernel, bias, activation=None):
    y = x @ kernel + bias
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
    return y


# ---- Keras's parameter formulas ------------------------------------------------------------------
def dense_params(n_in, units):
    return n_in * units + units


def conv_params(kernel, n_in, filters):
    return int(np.prod(kernel)) * n_in * filters + filters


def lstm_params(n_in, units):
    return 4 * units * (n_in + units + 1)


def embedding_params(input_dim, output_dim):
    return input_dim * output_dim


# ---- small models used by several tests ------------------------------------------------------------
def small_qa(vocab_text=50, vocab_question=40):
    """The QA model of examples/qa_two_inputs.py, small, with Keras's fresh names given explicitly."""
    text = Input(shape=(None,), dtype="int32", name="text")
    embedded_text = layers.Embedding(vocab_text, 8, name="embedding")(text)
    encoded_text = layers.LSTM(5, name="lstm")(embedded_text)
    question = Input(shape=(None,), dtype="int32", name="question")
    embedded_question = layers.Embedding(vocab_question, 6, name="embedding_1")(question)
    encoded_question = layers.LSTM(4, name="lstm_1")(embedded_question)
    concatenated = layers.concatenate([encoded_text, encoded_question], axis=-1, name="concatenate")
    answer = layers.Dense(7, activation="softmax", name="dense")(concatenated)
    return Model([text, question], answer, name="qa")


def small_mlp(prefix="m"):
    inp = Input(shape=(6,), name=f"{prefix}_in")
    x = layers.Dense(5, activation="relu", name=f"{prefix}_d1")(inp)
    x = layers.Dense(4, activation="relu", name=f"{prefix}_d2")(x)
    out = layers.Dense(3, activation="softmax", name=f"{prefix}_d3")(x)
    return Model(inp, out, name=f"{prefix}_model")


def shared_lstm_model():
    lstm = layers.LSTM(4, name="shared_lstm")
    left = Input(shape=(None, 3), name="left")
    right = Input(shape=(None, 3), name="right")
    left_out = lstm(left)
    right_out = lstm(right)
    merged = layers.concatenate([left_out, right_out], axis=-1, name="merged")
    pred = layers.Dense(1, activation="sigmoid", name="similarity")(merged)
    return lstm, (left, right), (left_out, right_out), Model([left, right], pred, name="siamese")


# =====================================================================================================
# Inputs and outputs: single tensor, list, dict
# =====================================================================================================
class TestInputOutputStructures:
    def test_single_tensor_in_and_out(self, rng):
        m = small_mlp("single")
        x = rng.normal(size=(5, 6)).astype("float32")
        y = m.predict(x)
        assert isinstance(y, np.ndarray)
        assert y.shape == (5, 3)
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)
        assert m.input_names == ["single_in"]
        assert m.output_names == ["single_d3"]
        assert m.input_shape == (None, 6)
        assert m.output_shape == (None, 3)
        assert len(m.inputs) == 1 and len(m.outputs) == 1
        assert m.input is m.inputs[0] and m.output is m.outputs[0]
        assert m.trainable_variables == m.trainable_weights and m.variables == m.weights

    def test_predict_matches_numpy(self, rng):
        m = small_mlp("np")
        x = rng.normal(size=(4, 6)).astype("float32")
        k1, b1, k2, b2, k3, b3 = m.get_weights()
        expected = dense_np(dense_np(dense_np(x, k1, b1, "relu"), k2, b2, "relu"), k3, b3, "softmax")
        np.testing.assert_allclose(m.predict(x), expected, rtol=1e-5, atol=1e-6)

    def test_list_inputs_and_outputs(self, rng):
        a = Input(shape=(3,), name="list_a")
        b = Input(shape=(2,), name="list_b")
        cat = layers.concatenate([a, b], name="list_cat")
        o1 = layers.Dense(4, name="list_o1")(cat)
        o2 = layers.Dense(1, name="list_o2")(a)
        m = Model([a, b], [o1, o2])
        xa = rng.normal(size=(6, 3)).astype("float32")
        xb = rng.normal(size=(6, 2)).astype("float32")
        out = m.predict([xa, xb])
        assert isinstance(out, list) and len(out) == 2
        assert out[0].shape == (6, 4) and out[1].shape == (6, 1)
        by_name = m.predict({"list_b": xb, "list_a": xa})
        np.testing.assert_array_equal(out[0], by_name[0])
        np.testing.assert_array_equal(out[1], by_name[1])
        by_tuple = m.predict((xa, xb))
        np.testing.assert_array_equal(out[0], by_tuple[0])
        k, bias = m.get_layer("list_o1").get_weights()
        np.testing.assert_allclose(out[0], np.concatenate([xa, xb], -1) @ k + bias, rtol=1e-5, atol=1e-6)
        assert m.input_names == ["list_a", "list_b"]
        assert m.output_names == ["list_o1", "list_o2"]
        assert m.input_shape == [(None, 3), (None, 2)]
        assert m.output_shape == [(None, 4), (None, 1)]

    def test_single_element_lists(self, rng):
        i = Input(shape=(2,), name="one_in")
        m = Model([i], [layers.Dense(3, name="one_out")(i)])
        x = rng.normal(size=(4, 2)).astype("float32")
        out = m.predict([x])
        assert isinstance(out, list) and len(out) == 1 and out[0].shape == (4, 3)
        np.testing.assert_array_equal(out[0], m.predict(x)[0])
        assert isinstance(m.input, list) and m.input[0] is i  # the structure given, as in Keras

    def test_dict_inputs_and_outputs(self, rng):
        p = Input(shape=(2,), name="p")
        q = Input(shape=(3,), name="q")
        cat = layers.concatenate([p, q], name="dict_cat")
        zz = layers.Dense(1, name="zz_dense")(cat)
        aa = layers.Dense(2, name="aa_dense")(cat)
        m = Model({"q": q, "p": p}, {"zz": zz, "aa": aa})
        xp = rng.normal(size=(5, 2)).astype("float32")
        xq = rng.normal(size=(5, 3)).astype("float32")
        out = m.predict({"p": xp, "q": xq})
        assert isinstance(out, dict)
        assert set(out) == {"zz", "aa"}
        assert out["zz"].shape == (5, 1) and out["aa"].shape == (5, 2)
        k, b = m.get_layer("aa_dense").get_weights()
        np.testing.assert_allclose(out["aa"], np.concatenate([xp, xq], -1) @ k + b, rtol=1e-5, atol=1e-6)
        assert sorted(m.input_names) == ["p", "q"]
        assert m.input == {"q": q, "p": p} and m.output == {"zz": zz, "aa": aa}
        assert sorted(m.output_names) == ["aa_dense", "zz_dense"]

    def test_python_lists_as_data(self):
        i = Input(shape=(2,), name="pylist_in")
        d = layers.Dense(1, name="pylist_d", kernel_initializer="ones")
        m = Model(i, d(i))
        np.testing.assert_allclose(m.predict([[1.0, 2.0], [3.0, 4.0]]), [[3.0], [7.0]])

    def test_predict_batches_are_concatenated(self, rng):
        m = small_mlp("batched")
        x = rng.normal(size=(70, 6)).astype("float32")
        whole = m.predict(x, batch_size=100)
        np.testing.assert_allclose(m.predict(x, batch_size=16), whole, rtol=1e-6)
        np.testing.assert_allclose(m.predict(x), whole, rtol=1e-6)

    @pytest.mark.parametrize("kw", [{}, {"backend": "numpy"}], ids=["default-backend", "numpy-backend"])
    def test_output_is_an_input(self, rng, kw):
        # Keras allows a model whose output is one of its inputs (an identity model).
        i = Input(shape=(3,), name="ident")
        x = rng.normal(size=(2, 3)).astype("float32")
        np.testing.assert_array_equal(Model(i, i).predict(x, **kw), x)
        j = Input(shape=(2,), name="passthrough")
        m = Model([i, j], [layers.Dense(1, name="ident_d")(i), j])
        np.testing.assert_array_equal(m.predict([x, x[:, :2]], **kw)[1], x[:, :2])

    def test_int_data_for_float_input(self):
        i = Input(shape=(2,), name="intdata_in")
        m = Model(i, layers.Dense(1, kernel_initializer="ones", name="intdata_d")(i))
        np.testing.assert_allclose(m.predict(np.array([[1, 2]])), [[3.0]])


# =====================================================================================================
# model.layers order (Keras 3's map_graph)
# =====================================================================================================
class TestLayerOrder:
    def test_qa_example_fresh_names(self, fresh_names):
        # Keras: DFS from the output dense -> concatenate -> lstm -> embedding -> text, then
        # lstm_1 -> embedding_1 -> question. Depths from the output: dense 0, concatenate 1,
        # lstm/lstm_1 2, embedding/embedding_1 3, text/question 4; deepest first, ties by first visit.
        model = run_example("qa_two_inputs.py")["model"]
        assert names(model) == ["text", "question", "embedding", "embedding_1", "lstm", "lstm_1",
                                "concatenate", "dense"]
        assert model.name == "functional"

    def test_qa_explicit_names(self):
        model = small_qa()
        assert names(model) == ["text", "question", "embedding", "embedding_1", "lstm", "lstm_1",
                                "concatenate", "dense"]
        assert [type(l).__name__ for l in model.layers] == [
            "InputLayer", "InputLayer", "Embedding", "Embedding", "LSTM", "LSTM", "Concatenate", "Dense"]

    def test_ties_by_first_visit_not_creation(self):
        inp = Input(shape=(4,), name="inp")
        p_first = layers.Dense(2, name="p_first")(inp)      # created first
        q_second = layers.Dense(2, name="q_second")(inp)    # created second, but visited first
        out = layers.concatenate([q_second, p_first], name="cat")
        m = Model(inp, out)
        assert names(m) == ["inp", "q_second", "p_first", "cat"]

    def test_depth_is_longest_path_to_output(self):
        # cat 0; e1 and d3 at depth 1; d2 2; d1 3; inp 4. e1 is close to the input but sorts late.
        inp = Input(shape=(4,), name="inp")
        e1 = layers.Dense(2, name="e1")(inp)
        d = layers.Dense(2, name="d1")(inp)
        d = layers.Dense(2, name="d2")(d)
        d3 = layers.Dense(2, name="d3")(d)
        out = layers.concatenate([e1, d3], name="cat")
        m = Model(inp, out)
        assert names(m) == ["inp", "d1", "d2", "e1", "d3", "cat"]

    def test_shared_layer_takes_max_depth(self):
        # out 0; shared#1 1; mid 2; shared#0 3 (via mid) -> shared layer depth 3; inp 4.
        inp = Input(shape=(4,), name="inp")
        shared = layers.Dense(4, name="shared")
        h1 = shared(inp)
        h2 = layers.Dense(4, name="mid")(h1)
        h3 = shared(h2)
        out = layers.Add(name="out")([h3, h1])
        m = Model(inp, out)
        assert names(m) == ["inp", "shared", "mid", "out"]

    def test_layer_with_several_outputs(self):
        s = Input(shape=(None, 3), name="st_in")
        out, h, c = layers.LSTM(4, return_state=True, name="enc")(s)
        m = Model(s, [out, h, c])
        assert names(m) == ["st_in", "enc"]
        assert m.output_names == ["enc", "enc_1", "enc_2"]
        y, hh, cc = m.predict(np.ones((2, 5, 3), "float32"))
        assert y.shape == hh.shape == cc.shape == (2, 4)
        np.testing.assert_allclose(y, hh, rtol=1e-6)  # the last output is the last hidden state

    def test_multi_output_order(self):
        # All three heads at depth 0: ordered by first visit, i.e. the order of the outputs list.
        inp = Input(shape=(4,), name="inp")
        trunk = layers.Dense(3, name="trunk")(inp)
        c = layers.Dense(1, name="c_head")(trunk)
        a = layers.Dense(1, name="a_head")(trunk)
        b = layers.Dense(1, name="b_head")(inp)
        m = Model(inp, [c, b, a])
        assert names(m) == ["inp", "trunk", "c_head", "b_head", "a_head"]
        assert m.output_names == ["c_head", "b_head", "a_head"]

    def test_siamese_order(self):
        _, _, _, m = shared_lstm_model()
        assert names(m) == ["left", "right", "shared_lstm", "merged", "similarity"]

    def test_sequential_excludes_input_layer(self):
        s = Sequential([Input(shape=(3,), name="seq_in"), layers.Dense(2, name="s_a"),
                        layers.Dense(1, name="s_b")])
        assert names(s) == ["s_a", "s_b"]
        assert s.input_names == ["seq_in"]

    def test_functional_includes_input_layers(self):
        m = small_mlp("incl")
        assert names(m)[0] == "incl_in"
        assert type(m.layers[0]).__name__ == "InputLayer"


# =====================================================================================================
# Weights
# =====================================================================================================
class TestWeights:
    def test_get_weights_order_and_shapes_qa(self):
        m = small_qa()
        shapes = [w.shape for w in m.get_weights()]
        assert shapes == [
            (50, 8),                      # embedding/embeddings
            (40, 6),                      # embedding_1/embeddings
            (8, 20), (5, 20), (20,),      # lstm: kernel, recurrent_kernel, bias
            (6, 16), (4, 16), (16,),      # lstm_1
            (9, 7), (7,),                 # dense: kernel, bias
        ]
        assert [w.path for w in m.weights] == [
            "embedding/embeddings", "embedding_1/embeddings",
            "lstm/kernel", "lstm/recurrent_kernel", "lstm/bias",
            "lstm_1/kernel", "lstm_1/recurrent_kernel", "lstm_1/bias",
            "dense/kernel", "dense/bias"]
        assert all(w.dtype == np.float32 for w in m.get_weights())

    def test_lstm_bias_has_unit_forget_bias(self):
        m = small_qa()
        bias = m.get_layer("lstm").get_weights()[2]
        u = 5
        np.testing.assert_array_equal(bias[:u], 0)
        np.testing.assert_array_equal(bias[u:2 * u], 1)
        np.testing.assert_array_equal(bias[2 * u:], 0)

    def test_get_weights_follows_layer_order_not_creation(self):
        inp = Input(shape=(4,), name="inp")
        p_first = layers.Dense(2, name="p_first")(inp)
        q_second = layers.Dense(3, name="q_second")(inp)
        m = Model(inp, layers.concatenate([q_second, p_first], name="cat"))
        assert [w.path for w in m.weights] == ["q_second/kernel", "q_second/bias",
                                               "p_first/kernel", "p_first/bias"]

    def test_get_weights_returns_copies(self):
        m = small_mlp("copies")
        w = m.get_weights()
        w[0][...] = 123.0
        assert not np.any(m.get_weights()[0] == 123.0)

    def test_set_weights_round_trip_and_predictions_change(self, rng):
        m = small_mlp("rt")
        x = rng.normal(size=(3, 6)).astype("float32")
        before = m.predict(x)  # compiles and caches the program
        new = [rng.normal(size=w.shape).astype("float32") for w in m.get_weights()]
        m.set_weights(new)
        for got, want in zip(m.get_weights(), new):
            np.testing.assert_array_equal(got, want)
        after = m.predict(x)
        assert not np.allclose(before, after)
        k1, b1, k2, b2, k3, b3 = new
        expected = dense_np(dense_np(dense_np(x, k1, b1, "relu"), k2, b2, "relu"), k3, b3, "softmax")
        np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-6)

    def test_layer_set_weights_after_predict_is_seen(self, rng):
        m = small_mlp("lsw")
        x = rng.normal(size=(2, 6)).astype("float32")
        m.predict(x)
        layer = m.get_layer("lsw_d3")
        k, b = layer.get_weights()
        layer.set_weights([np.zeros_like(k), np.array([0.0, 0.0, 50.0], "float32")])
        np.testing.assert_allclose(m.predict(x)[:, 2], 1.0, rtol=1e-6)

    def test_set_weights_wrong_count(self):
        m = small_mlp("cnt")
        w = m.get_weights()
        with pytest.raises(ValueError) as e:
            m.set_weights(w[:-1])
        msg = str(e.value)
        assert "cnt_model" in msg and "6" in msg and "5" in msg
        with pytest.raises(ValueError, match=r"7"):
            m.set_weights(w + [np.zeros(3)])

    def test_set_weights_wrong_count_names_missing_weight(self):
        # The brief asks that a count mismatch name the weight(s) concerned, as the shape mismatch does
        # (and as Layer.set_weights does by listing its weights). Model.set_weights only gives counts.
        m = small_mlp("cntname")
        with pytest.raises(ValueError) as e:
            m.set_weights(m.get_weights()[:-1])
        assert "cntname_d3/bias" in str(e.value)  # the weight that received no array

    def test_set_weights_wrong_shape_names_weight(self):
        m = small_mlp("shp")
        w = m.get_weights()
        w[2] = np.zeros((4, 4), "float32")  # shp_d2/kernel is (5, 4)
        before = m.get_weights()
        with pytest.raises(ValueError, match=r"shp_d2/kernel") as e:
            m.set_weights(w)
        assert "(5, 4)" in str(e.value) and "(4, 4)" in str(e.value)
        # Nothing changed: shapes are checked before any weight is assigned.
        for got, want in zip(m.get_weights(), before):
            np.testing.assert_array_equal(got, want)

    def test_layer_set_weights_errors(self):
        d = layers.Dense(2, name="lone_dense")
        d(Input(shape=(3,)))
        with pytest.raises(ValueError, match="lone_dense"):
            d.set_weights([np.zeros((3, 2))])
        with pytest.raises(ValueError, match=r"lone_dense.*bias|bias.*lone_dense"):
            d.set_weights([np.zeros((3, 2)), np.zeros(5)])

    def test_frozen_layer_weights_are_non_trainable(self):
        i = Input(shape=(3,), name="fz_in")
        frozen = layers.Dense(2, trainable=False, name="fz_frozen")
        m = Model(i, layers.Dense(1, name="fz_live")(frozen(i)))
        assert [w.path for w in m.trainable_weights] == ["fz_live/kernel", "fz_live/bias"]
        assert [w.path for w in m.non_trainable_weights] == ["fz_frozen/kernel", "fz_frozen/bias"]
        # get_weights keeps model.layers order (per layer: trainable, then non-trainable).
        assert [w.path for w in m.weights] == ["fz_frozen/kernel", "fz_frozen/bias", "fz_live/kernel", "fz_live/bias"]
        text = summary_text(m)
        assert "Trainable params: 3 (12.00 B)" in text
        assert "Non-trainable params: 8 (32.00 B)" in text

    def test_sequential_weights_exclude_nothing(self):
        s = Sequential([layers.Dense(3, input_shape=(2,), name="sw1"), layers.Dense(1, name="sw2")])
        assert [w.path for w in s.weights] == ["sw1/kernel", "sw1/bias", "sw2/kernel", "sw2/bias"]
        assert s.count_params() == dense_params(2, 3) + dense_params(3, 1)


# =====================================================================================================
# count_params of the examples against Keras's formulas
# =====================================================================================================
class TestCountParams:
    def test_mlp(self):
        ns = run_example("mlp.py")
        expected = dense_params(64, 32) + dense_params(32, 32) + dense_params(32, 10)
        assert expected == 3466
        assert ns["model"].count_params() == expected
        assert ns["seq_model"].count_params() == expected

    def test_inception(self):
        m = run_example("inception.py")["model"]
        expected = (conv_params((1, 1), 64, 128)
                    + conv_params((1, 1), 64, 128) + conv_params((3, 3), 128, 128)
                    + conv_params((3, 3), 64, 128)
                    + conv_params((1, 1), 64, 128) + conv_params((3, 3), 128, 128)
                    + conv_params((3, 3), 128, 128))
        assert m.count_params() == expected
        assert m.output_shape == (None, 16, 16, 512)

    def test_multi_output(self):
        m = run_example("multi_output.py")["model"]
        expected = (embedding_params(50000, 256)
                    + conv_params((5,), 256, 128) + conv_params((5,), 128, 256)
                    + 3 * conv_params((5,), 256, 256)
                    + dense_params(256, 128)
                    + dense_params(128, 1) + dense_params(128, 10) + dense_params(128, 1))
        assert m.count_params() == expected
        assert m.output_names == ["age", "income", "gender"]
        assert m.output_shape == [(None, 1), (None, 10), (None, 1)]
        assert m.input_shape == (None, None)

    def test_qa(self):
        m = run_example("qa_two_inputs.py")["model"]
        expected = (embedding_params(10000, 64) + lstm_params(64, 32)
                    + embedding_params(10000, 32) + lstm_params(32, 16)
                    + dense_params(48, 500))
        assert m.count_params() == expected
        assert m.input_names == ["text", "question"]
        assert m.input_shape == [(None, None), (None, None)]
        assert m.output_shape == (None, 500)

    def test_residual(self):
        m = run_example("residual.py")["model"]
        assert m.count_params() == 4 * 2 * conv_params((3, 3), 64, 64)

    def test_siamese(self):
        m = run_example("siamese_lstm.py")["model"]
        # The shared LSTM counts once.
        assert m.count_params() == lstm_params(128, 32) + dense_params(64, 1)
        assert m.input_names == ["left", "right"]
        assert m.output_names == ["similarity"]

    def test_layer_count_params(self):
        m = small_qa()
        assert m.get_layer("lstm").count_params() == lstm_params(8, 5)
        assert m.get_layer("embedding").count_params() == embedding_params(50, 8)
        assert m.get_layer("text").count_params() == 0
        assert m.get_layer("concatenate").count_params() == 0


# =====================================================================================================
# get_layer
# =====================================================================================================
class TestGetLayer:
    def test_by_name_and_index(self):
        m = small_qa()
        assert m.get_layer("lstm_1") is m.layers[5]
        assert m.get_layer(name="dense") is m.layers[-1]
        assert m.get_layer(index=0).name == "text"
        assert m.get_layer(index=-1).name == "dense"
        assert isinstance(m.get_layer("lstm"), layers.LSTM)

    def test_unknown_name(self):
        m = small_qa()
        with pytest.raises(ValueError, match=r"no_such_layer") as e:
            m.get_layer("no_such_layer")
        assert "lstm_1" in str(e.value)  # lists the existing layers

    @pytest.mark.parametrize("index", [8, 100, -9])
    def test_bad_index(self, index):
        m = small_qa()
        with pytest.raises(ValueError, match=rf"{index}.*8|8.*{index}"):
            m.get_layer(index=index)

    def test_neither_or_both(self):
        m = small_qa()
        with pytest.raises(ValueError):
            m.get_layer()
        with pytest.raises(ValueError):
            m.get_layer("lstm", 1)


# =====================================================================================================
# Shared layers
# =====================================================================================================
class TestSharedLayers:
    def test_weights_counted_once(self):
        lstm, _, _, m = shared_lstm_model()
        assert m.count_params() == lstm_params(3, 4) + dense_params(8, 1)
        assert [w.path for w in m.weights] == ["shared_lstm/kernel", "shared_lstm/recurrent_kernel",
                                               "shared_lstm/bias", "similarity/kernel", "similarity/bias"]
        assert len(lstm._inbound_nodes) == 2

    def test_both_calls_match_single_input_models(self, rng):
        lstm, (left, right), (left_out, right_out), _ = shared_lstm_model()
        both = Model([left, right], [left_out, right_out])
        single_left = Model(left, left_out)
        single_right = Model(right, right_out)
        xl = rng.normal(size=(3, 5, 3)).astype("float32")
        xr = rng.normal(size=(3, 7, 3)).astype("float32")  # another length: free time dims
        out_l, out_r = both.predict([xl, xr])
        np.testing.assert_allclose(out_l, single_left.predict(xl), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out_r, single_left.predict(xr), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out_r, single_right.predict(xr), rtol=1e-5, atol=1e-6)
        assert len(lstm._inbound_nodes) == 2  # building models records no new calls

    def test_ir_has_two_lstm_ops_on_same_params(self):
        _, _, _, m = shared_lstm_model()
        g = m._inference_graph()
        lstm_ops = [n for n in g.nodes("op") if g.node(n)["op"] == "lstm"]
        assert lstm_ops == ["shared_lstm", "shared_lstm#1"]
        p0, p1 = g.op_params("shared_lstm"), g.op_params("shared_lstm#1")
        assert p0 == p1 == {"kernel": "shared_lstm/kernel", "recurrent_kernel": "shared_lstm/recurrent_kernel",
                            "bias": "shared_lstm/bias"}
        assert [n for n in g.nodes("param") if n.startswith("shared_lstm")] == list(p0.values())
        text = print_graph(g)
        assert "%shared_lstm = lstm(%left, kernel=%shared_lstm/kernel" in text
        assert "%shared_lstm#1 = lstm(%right, kernel=%shared_lstm/kernel" in text
        assert text.count("param %shared_lstm/kernel") == 1
        assert "concat(%shared_lstm, %shared_lstm#1)" in text

    def test_shared_weights_change_both_calls(self, rng):
        lstm, (left, right), (left_out, right_out), _ = shared_lstm_model()
        both = Model([left, right], [left_out, right_out])
        x = rng.normal(size=(2, 4, 3)).astype("float32")
        before = both.predict([x, x])
        np.testing.assert_allclose(before[0], before[1], rtol=1e-6)
        k, rk, b = lstm.get_weights()
        lstm.set_weights([k * 2, rk, b])
        after = both.predict([x, x])
        assert not np.allclose(before[0], after[0])
        np.testing.assert_allclose(after[0], after[1], rtol=1e-6)


# =====================================================================================================
# Nested models
# =====================================================================================================
class TestNestedModels:
    @staticmethod
    def inner_model():
        x = Input(shape=(4,), name="inner_in")
        h = layers.Dense(3, activation="relu", name="inner_dense")(x)
        return Model(x, h, name="inner")

    def test_functional_as_layer(self, rng):
        inner = self.inner_model()
        a = Input(shape=(4,), name="outer_in")
        head = layers.Dense(2, name="head")
        outer = Model(a, head(inner(a)), name="outer")
        assert names(outer) == ["outer_in", "inner", "head"]
        # Weights are the inner model's own (shared, not copied).
        assert outer.weights[:2] == inner.weights
        assert outer.count_params() == dense_params(4, 3) + dense_params(3, 2)

        head_in = Input(shape=(3,), name="head_in")
        head_model = Model(head_in, head(head_in))
        x = rng.normal(size=(5, 4)).astype("float32")
        np.testing.assert_allclose(outer.predict(x), head_model.predict(inner.predict(x)), rtol=1e-5, atol=1e-6)

        # Changing the inner model's weights changes the outer model's predictions.
        before = outer.predict(x)
        k, b = inner.get_weights()
        inner.set_weights([k + 1.0, b])
        after = outer.predict(x)
        assert not np.allclose(before, after)
        np.testing.assert_allclose(after, head_model.predict(inner.predict(x)), rtol=1e-5, atol=1e-6)

    def test_nested_model_called_twice(self, rng):
        inner = self.inner_model()
        a = Input(shape=(4,), name="a")
        b = Input(shape=(4,), name="b")
        outer = Model([a, b], layers.add([inner(a), inner(b)], name="sum"))
        assert outer.count_params() == dense_params(4, 3)
        xa = rng.normal(size=(2, 4)).astype("float32")
        xb = rng.normal(size=(2, 4)).astype("float32")
        np.testing.assert_allclose(outer.predict([xa, xb]), inner.predict(xa) + inner.predict(xb),
                                   rtol=1e-5, atol=1e-6)

    def test_sequential_inside_functional(self, rng):
        seq = Sequential([Input(shape=(3,)), layers.Dense(5, activation="relu", name="s1"),
                          layers.Dense(2, name="s2")], name="seqm")
        i = Input(shape=(3,), name="i2")
        head = layers.Dense(1, name="h2")
        m = Model(i, head(seq(i)), name="m2")
        assert names(m) == ["i2", "seqm", "h2"]
        assert m.count_params() == dense_params(3, 5) + dense_params(5, 2) + dense_params(2, 1)
        x = rng.normal(size=(4, 3)).astype("float32")
        k, b = head.get_weights()
        np.testing.assert_allclose(m.predict(x), seq.predict(x) @ k + b, rtol=1e-5, atol=1e-6)

    def test_unbuilt_sequential_inside_functional(self, rng):
        seq = Sequential([layers.Dense(2, name="late_d")], name="lateseq")
        i = Input(shape=(5,), name="late_in")
        m = Model(i, seq(i))
        assert seq.input_shape == (None, 5)
        x = rng.normal(size=(3, 5)).astype("float32")
        k, b = seq.get_weights()
        np.testing.assert_allclose(m.predict(x), x @ k + b, rtol=1e-5, atol=1e-6)

    def test_summary_shows_nested_as_one_row(self):
        inner = self.inner_model()
        seq = Sequential([Input(shape=(3,)), layers.Dense(2, name="seq_inner_dense")], name="seqm")
        a = Input(shape=(4,), name="outer_in")
        out = layers.Dense(2, name="head")(seq(inner(a)))
        text = summary_text(Model(a, out, name="outer"))
        assert re.search(r"inner \(Functional\)\s+│ \(None, 3\)\s+│\s+15 │", text)
        assert re.search(r"seqm \(Sequential\)\s+│ \(None, 2\)\s+│\s+8 │", text)
        assert "inner_dense" not in text
        assert "seq_inner_dense" not in text
        assert "Total params: 29 " in text  # 15 + 8 + head 6

    def test_nested_ir_is_inlined(self):
        inner = self.inner_model()
        a = Input(shape=(4,), name="outer_in")
        outer = Model(a, layers.Dense(2, name="head")(inner(a)), name="outer")
        g = outer._inference_graph()
        ops = list(g.nodes("op"))
        assert ops == ["inner/inner_dense", "head"]
        assert g.op_params("inner/inner_dense") == {"kernel": "inner_dense/kernel", "bias": "inner_dense/bias"}

    def test_inner_input_shape_checked(self):
        inner = self.inner_model()
        with pytest.raises(gcomp.errors.ShapeError, match=r"inner_in"):
            inner(Input(shape=(5,), name="wrong_width"))


# =====================================================================================================
# Sequential
# =====================================================================================================
class TestSequential:
    def test_add_with_input_shape(self, rng):
        s = Sequential(name="seq_add")
        s.add(layers.Dense(4, activation="relu", input_shape=(3,), name="sa1"))
        s.add(layers.Dense(2, name="sa2"))
        assert s.input_shape == (None, 3)
        assert s.output_shape == (None, 2)
        assert names(s) == ["sa1", "sa2"]
        assert s.predict(rng.normal(size=(5, 3)).astype("float32")).shape == (5, 2)

    def test_list_constructor_with_input_first(self):
        s = Sequential([Input(shape=(6,), name="sin"), layers.Dense(3, name="sd")])
        assert s.input_names == ["sin"]
        assert s.output_names == ["sd"]
        assert names(s) == ["sd"]
        assert s.input_shape == (None, 6) and s.output_shape == (None, 3)

    def test_deferred_build_from_predict_data(self, rng):
        s = Sequential([layers.Dense(4, name="da"), layers.Dense(2, name="db")])
        assert names(s) == ["da", "db"]
        assert s.weights == []
        x = rng.normal(size=(3, 5)).astype("float32")
        y = s.predict(x)
        assert y.shape == (3, 2)
        assert s.input_shape == (None, 5)
        assert [w.shape for w in s.weights] == [(5, 4), (4,), (4, 2), (2,)]
        k1, b1, k2, b2 = s.get_weights()
        np.testing.assert_allclose(y, (x @ k1 + b1) @ k2 + b2, rtol=1e-5, atol=1e-6)

    def test_embedding_first_gets_int_input(self):
        s = Sequential([layers.Embedding(10, 3, input_shape=(None,), name="emb_first")])
        assert s.inputs[0].dtype == "int32"
        assert s.predict(np.array([[1, 2, 9]])).shape == (1, 3, 3)

    def test_pop(self, rng):
        s = Sequential([layers.Dense(4, input_shape=(3,), name="p1"), layers.Dense(2, name="p2")])
        x = rng.normal(size=(2, 3)).astype("float32")
        assert s.predict(x).shape == (2, 2)
        popped = s.pop()
        assert popped.name == "p2"
        assert names(s) == ["p1"]
        assert s.output_shape == (None, 4)
        k, b = s.get_weights()
        np.testing.assert_allclose(s.predict(x), x @ k + b, rtol=1e-5, atol=1e-6)
        s.add(layers.Dense(7, name="p3"))
        assert names(s) == ["p1", "p3"]
        assert s.predict(x).shape == (2, 7)

    def test_pop_empty(self):
        s = Sequential([layers.Dense(2, input_shape=(3,), name="only")])
        s.pop()
        with pytest.raises(gcomp.errors.GraphError):
            s.pop()

    def test_duplicate_names(self):
        with pytest.raises(gcomp.errors.GraphError, match=r'"dup"'):
            Sequential([layers.Dense(2, input_shape=(3,), name="dup"), layers.Dense(2, name="dup")])
        s = Sequential()
        s.add(layers.Dense(2, name="dup2"))
        with pytest.raises(ValueError, match="dup2"):
            s.add(layers.Dense(2, name="dup2"))

    def test_add_non_layer(self):
        with pytest.raises(TypeError):
            Sequential().add("dense")

    def test_sequential_equals_functional_after_copying_weights(self, rng):
        ns = run_example("mlp.py")
        model, seq = ns["model"], ns["seq_model"]
        seq.set_weights(model.get_weights())
        x = rng.normal(size=(4, 64)).astype("float32")
        np.testing.assert_array_equal(model.predict(x), seq.predict(x))
        # And back the other way, with fresh weights.
        new = [rng.normal(size=w.shape).astype("float32") for w in seq.get_weights()]
        seq.set_weights(new)
        model.set_weights(seq.get_weights())
        np.testing.assert_array_equal(model.predict(x), seq.predict(x))

    def test_sequential_summary_has_no_input_row(self):
        s = Sequential([Input(shape=(3,), name="sum_in"), layers.Dense(2, name="sum_d")], name="seqsum")
        text = summary_text(s)
        assert 'Model: "seqsum"' in text
        assert "sum_d (Dense)" in text
        assert "InputLayer" not in text
        assert "Connected to" not in text


# =====================================================================================================
# Symbolic dims in the IR
# =====================================================================================================
class TestSymbolicDims:
    def test_qa_input_types(self):
        g = small_qa()._inference_graph()
        assert g.inputs == ["text", "question"]
        assert str(g.node("text")["outputs"][0]) == "int32[batch, text_len]"
        assert g.node("question")["outputs"][0] == TensorType(("batch", "question_len"), "int32")
        assert g.value_type(g.outputs[0][1]) == TensorType(("batch", 7), "float32")
        text = print_graph(g)
        assert "input %text: int32[batch, text_len]" in text
        assert "float32[batch, text_len, 8]" in text  # the embedding's output keeps the symbol

    def test_conv_on_free_length_gives_expression(self):
        i = Input(shape=(None, 8), name="sig")
        y = layers.Conv1D(4, 3, name="cv")(i)
        m = Model(i, layers.MaxPooling1D(2, name="mp")(y))
        g = m._inference_graph()
        conv_out = g.node("cv")["outputs"][0]
        assert conv_out.shape[0] == "batch" and conv_out.shape[2] == 4
        assert conv_out.shape[1] == "sig_len - 2"
        pooled = g.node("mp")["outputs"][0].shape[1]
        assert isinstance(pooled, str) and "sig_len" in pooled
        assert m.output_shape == (None, None, 4)
        # The expression agrees with the data.
        for n in (9, 12):
            assert m.predict(np.zeros((1, n, 8), "float32")).shape == (1, (n - 2) // 2, 4)

    def test_fixed_batch_size_is_an_int(self):
        i = Input(shape=(5,), batch_size=7, name="fixed")
        m = Model(i, layers.Dense(2, name="fd")(i))
        g = m._inference_graph()
        assert str(g.node("fixed")["outputs"][0]) == "float32[7, 5]"
        assert g.node("fd")["outputs"][0] == TensorType((7, 2), "float32")
        assert m.input_shape == (7, 5)

    def test_several_free_dims(self):
        i = Input(shape=(None, None, 3), name="img")
        m = Model(i, layers.Conv2D(2, 3, padding="same", name="c2")(i))
        g = m._inference_graph()
        assert str(g.node("img")["outputs"][0]) == "float32[batch, img_d1, img_d2, 3]"
        assert str(g.node("c2")["outputs"][0]) == "float32[batch, img_d1, img_d2, 2]"


# =====================================================================================================
# summary()
# =====================================================================================================
class TestSummary:
    def test_seed_mlp_functional(self):
        text = summary_text(run_example("mlp.py")["model"])
        assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
        assert "Connected to" not in text  # a plain chain
        assert "(InputLayer)" in text
        assert re.search(r"\(Dense\)\s+│ \(None, 32\)\s+│\s+2,080 │", text)
        assert re.search(r"\(Dense\)\s+│ \(None, 32\)\s+│\s+1,056 │", text)
        assert re.search(r"\(Dense\)\s+│ \(None, 10\)\s+│\s+330 │", text)
        assert "Total params: 3,466 (13.54 KB)" in text
        assert "Trainable params: 3,466 (13.54 KB)" in text
        assert "Non-trainable params: 0 (0.00 B)" in text

    def test_seed_mlp_sequential(self):
        text = summary_text(run_example("mlp.py")["seq_model"])
        assert "Total params: 3,466 (13.54 KB)" in text
        assert "Connected to" not in text
        assert "InputLayer" not in text

    def test_rows_and_names(self):
        m = small_mlp("sumrow")
        text = summary_text(m)
        assert text.splitlines()[0] == 'Model: "sumrow_model"'
        for row in ("sumrow_in (InputLayer)", "sumrow_d1 (Dense)", "sumrow_d2 (Dense)", "sumrow_d3 (Dense)"):
            assert row in text
        assert text.index("sumrow_in") < text.index("sumrow_d1") < text.index("sumrow_d2") < text.index("sumrow_d3")
        assert "(None, 6)" in text and "(None, 5)" in text

    def test_multi_input_has_connected_to(self):
        text = summary_text(small_qa())
        assert "Connected to" in text
        assert "text[0][0]" in text and "question[0][0]" in text
        lines = text.splitlines()
        cat = next(i for i, l in enumerate(lines) if "concatenate (Concatenate)" in l)
        assert "lstm[0][0]" in lines[cat]
        assert "lstm_1[0][0]" in lines[cat + 1]
        assert re.search(r"embedding \(Embedding\)\s+│ \(None, None, 8\)\s+│\s+400 │ text\[0\]\[0\]", text)

    def test_shared_layer_once_with_both_calls(self):
        _, _, _, m = shared_lstm_model()
        text = summary_text(m)
        lines = text.splitlines()
        rows = [i for i, l in enumerate(lines) if "(LSTM)" in l]
        assert len(rows) == 1
        r = rows[0]
        assert "shared_lstm (LSTM)" in lines[r] and "left[0][0]" in lines[r]
        assert "right[0][0]" in lines[r + 1]
        assert f"{lstm_params(3, 4):,}" in lines[r]
        assert "shared_lstm[0][0]" in text and "shared_lstm[1][0]" in text

    def test_thousands_commas(self):
        i = Input(shape=(100,), name="wide_in")
        m = Model(i, layers.Dense(1000, name="wide")(i))
        text = summary_text(m)
        assert "101,000" in text
        assert "Total params: 101,000 (394.53 KB)" in text

    def test_print_fn_receives_whole_table(self):
        calls = []
        small_mlp("pfn").summary(print_fn=calls.append)
        assert len(calls) >= 1
        assert any("Total params" in c for c in calls)


# =====================================================================================================
# KerasTensor arithmetic, eager calls
# =====================================================================================================
class TestTensorArithmeticAndEager:
    def test_add_builds_add_layer(self, rng):
        a = Input(shape=(3,), name="ar_a")
        b = Input(shape=(3,), name="ar_b")
        s = a + b
        assert isinstance(s._keras_history.layer, layers.Add)
        assert s.shape == (None, 3)
        d = a - b
        p = a * b
        assert isinstance(d._keras_history.layer, layers.Subtract)
        assert isinstance(p._keras_history.layer, layers.Multiply)
        m = Model([a, b], [s, d, p])
        xa = rng.normal(size=(2, 3)).astype("float32")
        xb = rng.normal(size=(2, 3)).astype("float32")
        rs, rd, rp = m.predict([xa, xb])
        np.testing.assert_allclose(rs, xa + xb, rtol=1e-6)
        np.testing.assert_allclose(rd, xa - xb, rtol=1e-6)
        np.testing.assert_allclose(rp, xa * xb, rtol=1e-6)

    def test_eager_dense(self, rng):
        layer = layers.Dense(3, name="eager_dense")
        x = np.ones((2, 4), "float32")
        y = layer(x)
        assert isinstance(y, np.ndarray) and y.shape == (2, 3)
        kernel, bias = layer.get_weights()
        assert kernel.shape == (4, 3) and bias.shape == (3,)
        np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-6)
        x2 = rng.normal(size=(5, 4)).astype("float32")
        np.testing.assert_allclose(layer(x2), x2 @ kernel + bias, rtol=1e-5, atol=1e-6)
        assert layer._inbound_nodes == []  # an eager call records no node

    def test_model_called_on_array_predicts(self, rng):
        m = small_mlp("callarr")
        x = rng.normal(size=(2, 6)).astype("float32")
        np.testing.assert_allclose(m(x), m.predict(x), rtol=1e-6)
