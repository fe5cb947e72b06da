"""Pass batch_shared_calls (opt_level=2, device cuda) crashed with "type of
%dense+dense#1/unstacked:1 is unknown: run shape inference first": after stacking the calls of one
shared layer, the next group's calls read the new (untyped) unstack outputs in the same pass. Fixed
in gcomp/passes/batch_calls.py (new ops are typed as they are added)."""
from gcomp import Input, Model, layers
from model_strategies import randomize_weights

INPUTS = {'seed': 0, 'batch': 1, 'lengths': {}}
OUTPUT_SHAPES = [(4,), (4,)]


def build():
    in0 = Input(shape=(5,), name="in0")
    in1 = Input(shape=(5,), name="in1")
    l0 = layers.Dense(4, activation='leaky_relu')
    t2 = l0(in1)
    t3 = l0(in0)
    l1 = layers.Dense(4, activation='sigmoid')
    t4 = l1(t3)
    t5 = l1(t4)
    model = Model([in0, in1], [t2, t5], name="fuzz")
    randomize_weights(model, seed=1)
    return model
