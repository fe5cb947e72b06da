"""Deploy an exported model: load it with gcomp.runtime (CUDA when it works, else CPU) and run it on
random data shaped like its inputs.

    gcomp build examples/qa_two_inputs.py -o qa.onnx && python examples/deploy.py qa.onnx
"""
import sys

import numpy as np

from gcomp import runtime


def random_feed(session, batch=2, length=100):
    rng = np.random.default_rng(0)
    feed = {}
    for info in session.inputs:
        shape = [batch if i == 0 else (d if isinstance(d, int) else length) for i, d in enumerate(info.shape)]
        if "int" in info.type:
            feed[info.name] = rng.integers(0, 10, size=shape)  # small indices fit any vocabulary
        else:
            feed[info.name] = rng.normal(size=shape).astype("float32")
    return feed


if __name__ == "__main__":
    session = runtime.load(sys.argv[1] if len(sys.argv) > 1 else "model.onnx")
    outputs = session.run(random_feed(session), as_dict=True)
    print(f"provider: {session.provider}")
    for name, value in outputs.items():
        print(f"{name}: shape {value.shape}, first row {np.round(value[0].ravel()[:4], 4).tolist()}")
