"""Pass conv1x1_to_dense (opt_level >= 1) broke a shared 1x1 Conv1D called twice: it rewrote the first
call to a dense op and reshaped the layer's kernel to 2-D, then refused the second call ("the kernel
is read as a conv kernel elsewhere", seeing the first call now a dense op), leaving a conv reading a
2-D kernel: shape inference raised IndexError. Found and shrunk by bench/fuzz.py (seed 144). Fixed in
gcomp/passes/pointwise.py (calls rewritten in this pass count as convertible readers)."""
from gcomp import Input, Model, layers
from model_strategies import randomize_weights

INPUTS = {'seed': 0, 'batch': 1, 'lengths': {}}
OUTPUT_SHAPES = [(1, 4)]


def build():
    in0 = Input(shape=(1, 1), name="in0")
    t1 = layers.Dense(4, activation='elu')(in0)
    l1 = layers.Conv1D(4, 1)
    t2 = l1(t1)
    t3 = l1(t2)
    model = Model(in0, t3, name="fuzz")
    randomize_weights(model, seed=0)
    return model
