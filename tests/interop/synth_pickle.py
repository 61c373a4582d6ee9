"""grokit's pickles against CPython + numpy 1.26.4 (the release's pins):

1. every file grokit synth writes is what `pickle.dumps(pickle.loads(bytes), protocol=4)` writes
   (so grokit's writer is byte-identical to Python's C pickler), for the tiny fixture and a
   fresh synth with another seed;
2. grokit's exact dequantization equals numpy's `q.astype(f32) * repeat(scales)` bit for bit,
   for xAI's tiny12 and the fixture.
"""
import dataclasses
import os
import pickle
import subprocess
import sys

import numpy as np
import ml_dtypes  # noqa: F401  (registers bfloat16 for unpickling)

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, args  # noqa: E402


@dataclasses.dataclass
class QuantizedWeight8bit:
    weight: np.ndarray
    scales: np.ndarray


import __main__  # noqa: E402

__main__.QuantizedWeight8bit = QuantizedWeight8bit
QuantizedWeight8bit.__module__ = "__main__"


def main():
    a = args()
    c = Checks("synth_pickle")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fixture = os.path.join(repo, "fixtures", "tiny")
    other = os.path.join(a.work, "synth_seed7")
    if not os.path.exists(other):
        subprocess.run([a.grokit, "synth", other, "--preset", "tiny", "--seed", "7", "-q"], check=True)
    for root in (fixture, other):
        d = os.path.join(root, "ckpt-0")
        for name in sorted(os.listdir(d)):
            raw = open(os.path.join(d, name), "rb").read()
            obj = pickle.loads(raw)  # our own file: safe to load
            again = pickle.dumps(obj, protocol=4)
            c.check(again == raw, f"{root}/{name}: pickle.dumps differs ({len(again)} vs {len(raw)} bytes)")

    dump = os.path.join(a.examples, "dequant_dump")
    cases = [fixture]
    tiny12 = os.path.join(a.shared, "reference", "tiny12")
    if os.path.isdir(tiny12):
        cases.append(tiny12)
    for ck in cases:
        out = os.path.join(a.work, "dq_" + os.path.basename(ck))
        subprocess.run([dump, ck, out], check=True)
        d = os.path.join(ck, "ckpt-0")
        for name in sorted(os.listdir(d)):
            obj = pickle.loads(open(os.path.join(d, name), "rb").read())
            if isinstance(obj, QuantizedWeight8bit):
                w, s = obj.weight, obj.scales
                rep = w.shape[-2] // s.shape[-2]
                want = w.astype(np.float32) * np.repeat(s.astype(np.float32), rep, axis=-2)
            else:
                want = np.asarray(obj, dtype=np.float32)
            got = np.fromfile(os.path.join(out, name + ".f32"), dtype="<f4")
            c.check(got.size == want.size and np.array_equal(got.view(np.uint32), want.reshape(-1).view(np.uint32)),
                    f"{ck}/{name}: dequantization differs from numpy")
    c.finish()


main()
