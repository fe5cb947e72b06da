"""Pass merge_sibling_dense (opt_level=2, device cuda) merged sibling Dense layers with a softmax or
log_softmax activation into one wider dense: the softmax then normalized over both siblings' units
together. Silently wrong outputs. Found and shrunk by bench/fuzz.py (seed 64). Fixed in
gcomp/passes/pointwise.py (activations that normalize over the units are never merged)."""
from gcomp import Input, Model, layers
from model_strategies import randomize_weights

INPUTS = {'seed': 0, 'batch': 2, 'lengths': {}}
OUTPUT_SHAPES = [(1, 4), (1, 3), (5,), (5,)]


def build():
    in0 = Input(shape=(1, 1), name="in0")
    in1 = Input(shape=(3,), name="in1")
    t2 = layers.Dense(4, activation='elu')(in0)
    t3 = layers.Dense(4, activation='log_softmax')(t2)
    t4 = layers.Dense(3, activation='log_softmax')(t2)
    t5 = layers.Dense(5, activation='softmax')(in1)
    t6 = layers.Dense(5, activation='softmax')(in1)
    model = Model([in0, in1], [t3, t4, t5, t6], name="fuzz")
    randomize_weights(model, seed=0)
    return model
