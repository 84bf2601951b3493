"""Writes reference tensors in the text format read by tests/support/reference_data.hpp."""
import numpy as np


def write(path, tensors, comment=""):
    """tensors: dict name -> array-like (torch tensors are converted). Values printed with 17 digits."""
    with open(path, "w") as f:
        for line in comment.splitlines():
            f.write("# " + line + "\n")
        for name, value in tensors.items():
            if hasattr(value, "detach"):
                value = value.detach().cpu().double().numpy()
            a = np.asarray(value, dtype=np.float64)
            f.write("tensor %s %d %s\n" % (name, a.ndim, " ".join(str(d) for d in a.shape)))
            flat = a.reshape(-1)
            for i in range(0, flat.size, 8):
                f.write(" ".join("%.17g" % v for v in flat[i:i + 8]) + "\n")
