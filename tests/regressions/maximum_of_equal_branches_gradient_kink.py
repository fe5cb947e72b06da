"""Found by the differential fuzzer: two Dense layers whose weights are copies (randomize_weights
makes one weight in eight a copy) feed a Maximum, so the branches tie exactly in both samples. The
loss has a kink there: central differences see half the slope, while the analytic gradient gives
each tie wholly to one branch, which check_gradients accepts where the one-sided slopes disagree."""
from gcomp import Input, Model, layers
from model_strategies import randomize_weights

INPUTS = {'seed': 0, 'batch': 2, 'lengths': {'in0_1': 1}}
OUTPUT_SHAPES = [('in0_1', 3), ('in0_1', 1), (1, 2), (1,)]
GRADIENTS = True


def build():
    in0 = Input(shape=(None,), dtype="int32", name="in0")
    in1 = Input(shape=(1,), name="in1")
    in2 = Input(shape=(1, 3), name="in2")
    l0 = layers.Embedding(5, 3)
    t3 = l0(in0)
    t4 = l0(in0)
    t5 = layers.Dense(1, activation='elu')(t4)
    t6 = layers.Dense(2, activation='elu')(in2)
    t7 = layers.Dense(2, activation='elu')(in2)
    t8 = layers.Maximum()([t7, t6])
    t9 = layers.Dense(1, activation='elu')(in1)
    model = Model([in0, in1, in2], [t3, t5, t8, t9], name="fuzz")
    randomize_weights(model, seed=2997)
    return model
