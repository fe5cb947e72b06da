"""The seed's Inception module on a 32x32x64 feature map.

Seed fix: the seed's branches use padding "valid", which makes branch_a 16x16 and branch_b 15x15, so
`concatenate` cannot join them (examples/seed_mistakes.py shows gcomp's error). With padding="same"
every branch is 16x16. The seed also leaves `x` undefined; here it is an Input.
"""
import numpy as np

from gcomp import Input, layers
from gcomp.models import Model

x = Input(shape=(32, 32, 64), name="features")

branch_a = layers.Conv2D(128, 1, activation="relu", strides=2, padding="same")(x)

branch_b = layers.Conv2D(128, 1, activation="relu", padding="same")(x)
branch_b = layers.Conv2D(128, 3, activation="relu", strides=2, padding="same")(branch_b)

branch_c = layers.AveragePooling2D(3, strides=2, padding="same")(x)
branch_c = layers.Conv2D(128, 3, activation="relu", padding="same")(branch_c)

branch_d = layers.Conv2D(128, 1, activation="relu", padding="same")(x)
branch_d = layers.Conv2D(128, 3, activation="relu", padding="same")(branch_d)
branch_d = layers.Conv2D(128, 3, activation="relu", strides=2, padding="same")(branch_d)

output = layers.concatenate([branch_a, branch_b, branch_c, branch_d], axis=-1)

model = Model(x, output, name="inception")

if __name__ == "__main__":
    model.summary()
    features = np.random.default_rng(0).normal(size=(2, 32, 32, 64)).astype("float32")
    print(model.predict(features).shape)  # (2, 16, 16, 512)
