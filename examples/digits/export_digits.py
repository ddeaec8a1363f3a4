"""Export scikit-learn's 8x8 digits (1,797 samples, UCI handwritten digits)
as two CSVs with a fixed split: 64 pixel values (integers 0..16), then the
label. Run once: `pip install scikit-learn && python3 examples/digits/export_digits.py`.
"""
import os

import numpy as np
from sklearn.datasets import load_digits

here = os.path.dirname(os.path.abspath(__file__))
d = load_digits()
x = d.data.astype(np.int64)
y = d.target.astype(np.int64)
# A fixed shuffled split: 1,437 train, 360 test (80/20).
perm = np.random.RandomState(0).permutation(len(y))
cut = 1437
for name, idx in [("train.csv", perm[:cut]), ("test.csv", perm[cut:])]:
    with open(os.path.join(here, name), "w") as f:
        f.write(",".join([f"p{i}" for i in range(64)] + ["label"]) + "\n")
        for i in idx:
            f.write(",".join(str(v) for v in x[i]) + f",{y[i]}\n")
    print(name, len(idx))
