"""Residual connections (the seed describes them without code): 4 blocks of two 3x3 convolutions on
a 32x32x64 feature map, each block's input added to its output."""
import numpy as np

from gcomp import Input, layers
from gcomp.models import Model

inputs = Input(shape=(32, 32, 64), name="features")
x = inputs
for _ in range(4):
    y = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    y = layers.Conv2D(64, 3, padding="same")(y)
    x = layers.add([y, x])  # the shortcut: the block's input joins its output
    x = layers.Activation("relu")(x)

model = Model(inputs, x, name="residual")

if __name__ == "__main__":
    model.summary()
    features = np.random.default_rng(0).normal(size=(2, 32, 32, 64)).astype("float32")
    print(model.predict(features).shape)  # (2, 32, 32, 64)
