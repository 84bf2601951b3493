#!/usr/bin/python3
"""ucr_torch_twin: a PyTorch twin of seqattn's real-data recipe on the UCR/UEA archive.

The same model, data, standardization, batches and training schedule as benchmarks/ucr_accuracy.cpp
(examples/time_series_classifier/recipe.hpp, model.hpp, train.hpp, data.hpp), written independently in PyTorch,
to show that the C++ accuracies agree with another implementation within seed noise and to measure the
training-time ratio. Single thread (torch.set_num_threads(1)), as ucr_accuracy.

    /usr/bin/python3 benchmarks/ucr_torch_twin.py /work/shared/data/ucr
    /usr/bin/python3 benchmarks/ucr_torch_twin.py DIR --seeds 5 --datasets GunPoint,JapaneseVowels --csv out.csv

Needs only Debian's python3-torch (1.13) and python3-numpy. Reads <Name>/<Name>_TRAIN.ts and <Name>_TEST.ts of
every subfolder of DIR (or DIR itself when it holds them). Output: the table of ucr_accuracy (dataset, train and
test sizes, length min-max, channels, classes, test accuracy mean +- sample std over seeds 1..seeds, training
seconds per seed) and, with --csv, one row per run "dataset,seed,accuracy,seconds,epochs" (ucr_accuracy's columns).

What is the same as the C++ recipe
  data       .ts files, classes in @classLabel order (test loaded with the training classes); every channel
             standardized with the mean and (biased) std of the valid steps of TRAIN (std 1 when var <= 1e-12),
             applied to TRAIN and TEST; padded steps are 0.
  model      [Conv1d(64, k, same padding, no bias), BatchNorm, ReLU] for k = 7, 5, 3; AvgPool(ceil(T/64)) with
             partial windows when T > 64; sinusoidal positions (PE[p,2i] = sin(p/10000^(2i/d)), PE[p,2i+1] = cos);
             Residual(MultiheadAttention(4 heads)), LayerNorm; Residual(Dense(128, relu), Dense(64)), LayerNorm;
             mean over the valid steps; Dense(classes).
  masks      batches padded to their longest sequence: each convolution reads zeros past a sequence's length
             (its "same" padding is the per-sequence one: k // 2 zeros on the left for odd k, as seqattn with
             stride 1), BatchNorm statistics over the valid steps only (BatchNorm1d on the (N, F) matrix of valid
             steps: momentum 0.1, eps 1e-5, unbiased running variance), average-pool windows average only their
             valid steps (a window that starts at a valid step is kept; new length ceil(len / s)), attention
             ignores padded keys (key_padding_mask), mean pooling over the valid steps.
  training   AdamW (betas 0.9, 0.999, eps 1e-8, decoupled weight decay 1e-2 on every parameter, as seqattn),
             peak lr 1e-3, linear warm-up over int(0.05 * total) steps (lr = peak (k+1)/warm) then cosine decay to 0
             at the last step (optim/lr_schedule.hpp, per optimizer step), cross entropy with label smoothing 0.1,
             batch size clamp(N/10, 4, 32), epochs clamp(ceil(1500 / steps per epoch), 30, 400), the last batch
             of an epoch smaller. The shuffle is the C++ one bit for bit: a port of seqattn::Rng (xoshiro256**
             seeded through splitmix64) with the same Fisher-Yates loop and seed, so every epoch sees the same
             batches in the same order as ucr_accuracy for the same seed.
  evaluation model.eval() (BatchNorm running statistics), batches of 256 in file order, argmax; accuracy on TEST.
  timing     seconds of the training loop only (not loading, model construction or evaluation), as ucr_accuracy.

Unavoidable differences (so results agree within seed noise, not bit for bit)
  * Initial weights: the same families (Glorot uniform kernels for the convolutions with Keras' fans
    k*in / k*filters, for each of Wq, Wk, Wv, Wo of the attention (each 64x64 block on its own, as seqattn's
    separate matrices; torch's default would use the fans of the stacked 192x64 in_proj_weight) and for the
    Dense layers; zero biases; BatchNorm and LayerNorm gamma 1, beta 0), but drawn from torch's generator
    (torch.manual_seed(seed)), not from seqattn's Rng: different initial values for the same seed.
  * Floating-point order: torch's kernels (oneDNN convolution, BLAS GEMMs, its softmax) round differently from
    seqattn's, so the trajectories diverge after a few steps; only the statistics over seeds are comparable.
  * Padded steps: torch's attention outputs its output bias at padded query steps and the positional encoding
    is added there too, where seqattn outputs 0 / passes x through. Those steps never reach a valid output
    (every later layer is per step or masked), so valid outputs and gradients are unaffected.
  * BLAS: Debian's torch 1.13 calls the system libblas.so.3 for its matrix products. If that is the netlib
    reference BLAS (libblas3, the default when no OpenBLAS is installed), torch's Linear / attention products
    run unoptimized and the time ratio is unfair to torch: the script says so at start. Install OpenBLAS first
    (`apt-get install libopenblas0-pthread`: Debian's alternatives then point libblas.so.3 at it); the script
    prints the OpenBLAS core (openblas_get_corename) and tells when it is the slow generic Prescott core (set
    OPENBLAS_CORETYPE to the best core the CPU supports then). Convolutions go through oneDNN (mkldnn), not BLAS.
    Without root, OpenBLAS for this run only:
        apt-get download libopenblas0-pthread && dpkg-deb -x libopenblas0-pthread_*.deb /tmp/ob
        LD_LIBRARY_PATH=/tmp/ob/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 ucr_torch_twin.py DIR
  * Python overhead: with batches of 4-32 short sequences most of torch's time per step is operator dispatch
    and autograd bookkeeping, not arithmetic; the time ratio measures that too (it is what a torch user pays).
"""

import os

# One core, as the C++ side: set before torch (OpenMP, OpenBLAS and MKL read these when they load).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------
# .ts files


class DataError(Exception):
    pass


def _label_name(text):
    """Whole-number numeric labels get their integer spelling ("1.0000000e+00" -> "1"), as seqattn's loader."""
    try:
        v = float(text)
    except ValueError:
        return text
    if math.isfinite(v) and v == int(v):
        return str(int(v))
    return text


class Dataset:
    """x (N, T, F) float32 zero-padded, lengths (N), labels (N) class indices, class_names."""

    def __init__(self, x, lengths, labels, class_names):
        self.x, self.lengths, self.labels, self.class_names = x, lengths, labels, class_names

    @property
    def size(self):
        return len(self.labels)

    @property
    def features(self):
        return self.x.shape[2]

    @property
    def classes(self):
        return len(self.class_names)


def load_ts(path, classes=None, classes_from=""):
    """Reads a .ts file (sktime / UEA format). classes: the training set's class names (for a test file)."""
    name = os.path.basename(path)
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot open the file: {e.strerror}") from None
    declared = None
    dims_declared = None
    in_data = False
    records = []  # (line number, [dims] each a list of floats, label)
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        where = f"{name}:{number}"
        if not in_data:
            if line[0] in "#%":
                continue
            if line[0] != "@":
                raise DataError(f"{where}: expected a header line (@keyword ...), a comment (# or %) or @data "
                                f"before the data, but got '{line[:40]}'")
            parts = line.split()
            key = parts[0].lower()
            if key == "@data":
                in_data = True
            elif key == "@classlabel":
                if len(parts) < 2 or parts[1].lower() != "true":
                    raise DataError(f"{where}: @classLabel false: a regression file (no class labels) is not "
                                    "supported")
                declared = [_label_name(p) for p in parts[2:]]
                if not declared:
                    raise DataError(f"{where}: @classLabel true lists no classes")
            elif key == "@timestamps" and len(parts) > 1 and parts[1].lower() == "true":
                raise DataError(f"{where}: timestamped data (@timeStamps true) is not supported")
            elif key == "@targetlabel":
                raise DataError(f"{where}: @targetLabel: regression files are not supported")
            elif key == "@dimensions" and len(parts) > 1:
                try:
                    dims_declared = int(parts[1])
                except ValueError:
                    raise DataError(f"{where}: @dimensions '{parts[1]}' is not a whole number") from None
            continue  # other headers (@problemName, @univariate, @equalLength, @seriesLength, @missing) ignored
        if line[0] in "#%":
            continue
        fields = line.split(":")
        if len(fields) < 2:
            raise DataError(f"{where}: expected dimensions separated by ':' and the class label last "
                            f"(\"1,2,3:4,5,6:A\"), but found no ':'")
        label = _label_name(fields[-1].strip())
        dims = []
        for d, text in enumerate(fields[:-1]):
            values = []
            for v, item in enumerate(text.split(",")):
                item = item.strip()
                if item in ("?", "NaN", "nan", ""):
                    raise DataError(f"{where}: dimension {d + 1}, value {v + 1} is missing ('{item}'); missing "
                                    "values are not supported")
                try:
                    values.append(float(item))
                except ValueError:
                    raise DataError(f"{where}: dimension {d + 1}, value {v + 1} '{item}' is not a number") from None
            dims.append(values)
        if any(len(d) != len(dims[0]) for d in dims):
            raise DataError(f"{where}: the dimensions have different lengths "
                            f"({', '.join(str(len(d)) for d in dims)}); each must have the same")
        if dims_declared is not None and len(dims) != dims_declared:
            raise DataError(f"{where}: {len(dims)} dimensions but @dimensions says {dims_declared}")
        if records and len(dims) != len(records[0][1]):
            raise DataError(f"{where}: {len(dims)} dimensions but the first case has {len(records[0][1])}")
        records.append((number, dims, label))
    if not in_data:
        raise DataError(f"{name}: no @data line")
    if not records:
        raise DataError(f"{name}: no cases after @data")
    if classes is not None:
        class_names = list(classes)
    elif declared is not None:
        class_names = declared
    else:  # the labels found: numeric order when every label is a number, else text order
        found = sorted(set(r[2] for r in records))
        try:
            class_names = sorted(found, key=float)
        except ValueError:
            class_names = found
    index = {c: i for i, c in enumerate(class_names)}
    N, Fdim = len(records), len(records[0][1])
    T = max(len(r[1][0]) for r in records)
    x = np.zeros((N, T, Fdim), dtype=np.float32)
    lengths = np.zeros(N, dtype=np.int64)
    labels = np.zeros(N, dtype=np.int64)
    for i, (number, dims, label) in enumerate(records):
        if label not in index:
            source = f" of {classes_from}" if classes is not None and classes_from else ""
            raise DataError(f"{name}:{number}: label '{label}' is not one of the classes{source} "
                            f"({', '.join(class_names)})")
        L = len(dims[0])
        if L == 0:
            raise DataError(f"{name}:{number}: an empty series")
        x[i, :L, :] = np.asarray(dims, dtype=np.float32).T
        lengths[i] = L
        labels[i] = index[label]
    return Dataset(x, lengths, labels, class_names)


def standardize(fit, targets):
    """Per channel mean and biased std over the valid steps of fit (in double), applied to every target."""
    valid = np.arange(fit.x.shape[1])[None, :] < fit.lengths[:, None]
    values = fit.x[valid].astype(np.float64)  # (valid steps, F)
    if values.shape[0] == 0:
        return
    mean = values.sum(0) / values.shape[0]
    var = np.maximum(0.0, (values * values).sum(0) / values.shape[0] - mean * mean)
    std = np.where(var > 1e-12, np.sqrt(var), 1.0)
    for d in targets:
        m = np.arange(d.x.shape[1])[None, :] < d.lengths[:, None]
        d.x[m] = ((d.x[m].astype(np.float64) - mean) / std).astype(np.float32)


def find_datasets(root):
    def find_in(folder):
        name = os.path.basename(os.path.normpath(folder))
        train = os.path.join(folder, name + "_TRAIN.ts")
        test = os.path.join(folder, name + "_TEST.ts")
        return (name, train, test) if os.path.isfile(train) and os.path.isfile(test) else None

    if not os.path.isdir(root):
        raise DataError(f"{root}: not a folder")
    me = find_in(root)
    if me:
        return [me]
    out = []
    for sub in sorted(os.listdir(root)):
        path = os.path.join(root, sub)
        if os.path.isdir(path):
            f = find_in(path)
            if f:
                out.append(f)
    return out


# ----------------------------------------------------------------------------------------------------------------
# seqattn::Rng (core/random.hpp): xoshiro256** seeded through splitmix64, for the same shuffles as the C++ side

_M64 = (1 << 64) - 1


class SeqattnRng:
    def __init__(self, seed):
        sm = seed & _M64
        self.s = []
        for _ in range(4):
            sm = (sm + 0x9E3779B97F4A7C15) & _M64
            z = sm
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & _M64

    def next_u64(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & _M64, 7) * 9) & _M64
        t = (s[1] << 17) & _M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def below(self, n):
        return 0 if n == 0 else self.next_u64() % n


# ----------------------------------------------------------------------------------------------------------------
# The model (examples/time_series_classifier/model.hpp with recipe.hpp's choices)


def valid_mask(lengths, T):
    """(B, T) bool, True at valid steps; None when every sequence fills the batch (no padding)."""
    if bool((lengths == T).all()):
        return None
    return torch.arange(T)[None, :] < lengths[:, None]


class MaskedBatchNorm(nn.Module):
    """torch.nn.BatchNorm1d on the (N, F) matrix of the valid steps; padded steps output 0."""

    def __init__(self, features):
        super().__init__()
        self.bn = nn.BatchNorm1d(features, eps=1e-5, momentum=0.1)

    def forward(self, x, valid):
        B, T, Fd = x.shape
        if valid is None:
            return self.bn(x.reshape(B * T, Fd)).reshape(B, T, Fd)
        out = x.new_zeros(B, T, Fd)
        out[valid] = self.bn(x[valid])
        return out


def glorot_(w, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        w.uniform_(-limit, limit)


def dense(i, o):
    layer = nn.Linear(i, o)
    glorot_(layer.weight, i, o)
    nn.init.zeros_(layer.bias)
    return layer


def sinusoidal_table(T, d):
    p = np.arange(T, dtype=np.float64)[:, None]
    c = np.arange(d)
    angle = p / np.power(10000.0, (2 * (c // 2)) / d)[None, :]
    return torch.from_numpy(np.where(c % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32))


class Twin(nn.Module):
    def __init__(self, features, classes, downsample, d_model=64, heads=4, ffn=128, kernels=(7, 5, 3)):
        super().__init__()
        self.downsample = downsample
        self.d_model = d_model
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        channels = features
        for k in kernels:
            if k % 2 != 1:
                raise ValueError("the twin's same padding assumes odd kernel sizes")
            conv = nn.Conv1d(channels, d_model, k, padding=k // 2, bias=False)
            glorot_(conv.weight, k * channels, k * d_model)  # Keras' fans, as seqattn's Conv1D
            self.convs.append(conv)
            self.norms.append(MaskedBatchNorm(d_model))
            channels = d_model
        self.attention = nn.MultiheadAttention(d_model, heads, batch_first=True)
        with torch.no_grad():
            for block in range(3):  # Wq, Wk, Wv: each its own d x d Glorot matrix, as seqattn's
                glorot_(self.attention.in_proj_weight[block * d_model:(block + 1) * d_model], d_model, d_model)
            glorot_(self.attention.out_proj.weight, d_model, d_model)
            nn.init.zeros_(self.attention.in_proj_bias)
            nn.init.zeros_(self.attention.out_proj.bias)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.ffn1 = dense(d_model, ffn)
        self.ffn2 = dense(ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.out = dense(d_model, classes)
        self._pe = sinusoidal_table(64, d_model)

    def positions(self, T):
        if self._pe.shape[0] < T:
            self._pe = sinusoidal_table(T, self.d_model)
        return self._pe[:T]

    def forward(self, x, lengths):
        """x (B, T, F) zero-padded, lengths (B) int64 -> logits (B, classes)."""
        B, T, _ = x.shape
        valid = valid_mask(lengths, T)
        for conv, norm in zip(self.convs, self.norms):
            # the input is 0 at padded steps (zero-padded data, then BatchNorm's zeros and ReLU(0) = 0), so each
            # convolution reads zeros past a sequence's length, as seqattn's masked same convolution
            x = F.relu(norm(conv(x.transpose(1, 2)).transpose(1, 2), valid))
        if self.downsample > 1:  # AvgPool1D(s, partial windows): windows average their valid steps only
            s = self.downsample
            T_out = (T + s - 1) // s
            m = torch.ones(B, T, 1) if valid is None else valid.unsqueeze(-1).to(x.dtype)
            pad = T_out * s - T
            sums = F.pad(x * m, (0, 0, 0, pad)).reshape(B, T_out, s, -1).sum(2)
            counts = F.pad(m, (0, 0, 0, pad)).reshape(B, T_out, s, 1).sum(2).clamp(min=1.0)
            x = sums / counts
            lengths = (lengths + s - 1) // s
            T = T_out
            valid = valid_mask(lengths, T)
        x = x + self.positions(T)
        a, _ = self.attention(x, x, x, key_padding_mask=None if valid is None else ~valid, need_weights=False)
        x = self.norm1(x + a)
        x = self.norm2(x + self.ffn2(F.relu(self.ffn1(x))))
        if valid is None:
            pooled = x.mean(1)
        else:
            pooled = (x * valid.unsqueeze(-1).to(x.dtype)).sum(1) / lengths.unsqueeze(-1).to(x.dtype)
        return self.out(pooled)


# ----------------------------------------------------------------------------------------------------------------
# Recipe, training, evaluation (recipe.hpp, train.hpp)


def recipe(train):
    T = max(1, int(train.lengths.max()))
    N = train.size
    batch = min(max(N // 10, 4), 32)
    steps_per_epoch = (N + batch - 1) // batch
    epochs = min(max((1500 + steps_per_epoch - 1) // steps_per_epoch, 30), 400)
    return dict(downsample=(T + 63) // 64 if T > 64 else 1, batch=batch, epochs=epochs, lr=1e-3, warmup=0.05,
                weight_decay=1e-2, label_smoothing=0.1)


def schedule_lr(k, peak, warm, total):
    """WarmupCosineSchedule (optim/lr_schedule.hpp) with final_lr 0."""
    if k < warm:
        return peak * (k + 1) / warm
    if k >= total:
        return 0.0
    p = (k - warm) / (total - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * p))


def make_batch(X, L, Y, idx):
    lengths = L[idx]
    T = max(1, int(lengths.max()))
    return X[idx, :T], lengths, Y[idx]


def train_model(model, data, r, seed):
    X = torch.from_numpy(data.x)
    L = torch.from_numpy(data.lengths)
    Y = torch.from_numpy(data.labels)
    N, B = data.size, r["batch"]
    steps = (N + B - 1) // B
    total = max(1, steps * r["epochs"])
    warm = min(total - 1, int(r["warmup"] * total))
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=r["weight_decay"])
    rng = SeqattnRng(seed)
    order = list(range(N))
    k = 0
    model.train()
    for epoch in range(1, r["epochs"] + 1):
        for i in range(N - 1, 0, -1):  # Fisher-Yates, as train.hpp
            j = rng.below(i + 1)
            order[i], order[j] = order[j], order[i]
        for step in range(steps):
            idx = torch.tensor(order[step * B:min(step * B + B, N)])
            x, lengths, y = make_batch(X, L, Y, idx)
            lr = schedule_lr(k, r["lr"], warm, total)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x, lengths), y, label_smoothing=r["label_smoothing"])
            if not torch.isfinite(loss):
                raise RuntimeError(f"the training loss is {loss.item()} at epoch {epoch}, batch {step + 1} of "
                                   f"{steps}: training diverged")
            loss.backward()
            opt.step()
            k += 1


@torch.no_grad()
def evaluate(model, data, batch=256):
    model.eval()
    X = torch.from_numpy(data.x)
    L = torch.from_numpy(data.lengths)
    Y = torch.from_numpy(data.labels)
    correct = 0
    for begin in range(0, data.size, batch):
        idx = torch.arange(begin, min(begin + batch, data.size))
        x, lengths, y = make_batch(X, L, Y, idx)
        correct += int((model(x, lengths).argmax(1) == y).sum())
    return correct / max(1, data.size)


# ----------------------------------------------------------------------------------------------------------------
# Environment report: which BLAS torch calls, the OpenBLAS core, oneDNN


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def suggested_coretype(flags):
    if "avx512_bf16" in flags:
        return "Cooperlake"
    if "avx512f" in flags:
        return "SkylakeX"
    if "avx2" in flags:
        return "Haswell"
    return None


def cpu_capability():
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "?"


def environment_report():
    lines = [f"torch {torch.__version__}, threads {torch.get_num_threads()}, numpy {np.__version__}, "
             f"oneDNN (mkldnn) available: {torch.backends.mkldnn.is_available()}, "
             f"torch kernels: {cpu_capability()}"]
    mapped = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and ".so" in parts[-1] and parts[-1] not in mapped:
                    mapped.append(parts[-1])
    except OSError:
        pass
    blas = [p for p in mapped if any(s in os.path.basename(p).lower() for s in ("blas", "lapack", "mkl_"))]
    core = None
    for path in blas:
        try:
            lib = ctypes.CDLL(path)
            get = lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        get.restype = ctypes.c_char_p
        core = get().decode()
        try:
            cfg = lib.openblas_get_config
            cfg.restype = ctypes.c_char_p
            config = cfg().decode()
        except AttributeError:
            config = "?"
        try:
            lib.openblas_set_num_threads(1)
        except AttributeError:
            pass
        lines.append(f"BLAS: OpenBLAS, core {core} ({config}), from {path}")
        break
    flags = cpu_flags()
    want = suggested_coretype(flags)
    if core is None:
        names = ", ".join(os.path.realpath(p) for p in blas) or "none found in /proc/self/maps"
        lines.append(f"BLAS: NOT OpenBLAS (no openblas_get_corename in the loaded libraries: {names}).")
        if any("/blas/libblas.so" in os.path.realpath(p) for p in blas):
            lines.append("  WARNING: this is the netlib reference BLAS (Debian libblas3): torch's Linear and "
                         "attention matrix products run unoptimized, so the time ratio is unfair to torch. Install "
                         "libopenblas0-pthread, or run with LD_LIBRARY_PATH=<dir with OpenBLAS' libblas.so.3>.")
    elif core.lower() in ("prescott", "core2", "katmai", "northwood", "banias", "generic"):
        env = os.environ.get("OPENBLAS_CORETYPE")
        lines.append(f"  WARNING: OpenBLAS uses the generic {core} kernels on this CPU"
                     + (f" (OPENBLAS_CORETYPE={env} was set)" if env else "")
                     + (f"; rerun with OPENBLAS_CORETYPE={want} (the CPU has "
                        f"{'avx512_bf16' if want == 'Cooperlake' else 'avx512f' if want == 'SkylakeX' else 'avx2'})"
                        if want else ""))
    else:
        env = os.environ.get("OPENBLAS_CORETYPE")
        lines.append(f"  OPENBLAS_CORETYPE={env}" if env else "  (core detected by OpenBLAS; OPENBLAS_CORETYPE not set)")
    lines.append(f"CPU: avx2 {'avx2' in flags}, avx512f {'avx512f' in flags}, avx512_bf16 {'avx512_bf16' in flags}"
                 + (f" -> best OpenBLAS core {want}" if want else ""))
    # Which kernels the model's operators use: the profiler names oneDNN convolutions "mkldnn_convolution".
    conv = nn.Conv1d(8, 64, 7, padding=3, bias=False)
    with torch.autograd.profiler.profile() as prof:
        conv(torch.randn(4, 8, 50)).sum().backward()
    ops = sorted(set(e.name for e in prof.function_events if "conv" in e.name.lower()))
    lines.append(f"Conv1d runs through: {', '.join(ops)}"
                 + (" (oneDNN, not BLAS)" if any("mkldnn" in o for o in ops) else " (im2col + BLAS GEMM)"))
    a = torch.randn(256, 256)
    b = torch.randn(256, 256)
    a @ b
    t0 = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    gflops = 2 * 256 ** 3 * reps / (time.perf_counter() - t0) / 1e9
    lines.append(f"Linear / attention products go through BLAS sgemm: 256x256x256 at {gflops:.1f} GFLOP/s "
                 "(one core)")
    return lines


# ----------------------------------------------------------------------------------------------------------------


def mean_of(v):
    return sum(v) / len(v)


def stddev_of(v):
    if len(v) < 2:
        return 0.0
    m = mean_of(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def main():
    parser = argparse.ArgumentParser(description="PyTorch twin of seqattn's UCR recipe (benchmarks/ucr_accuracy)")
    parser.add_argument("folder", help="archive folder (or one dataset's folder) with <Name>_TRAIN.ts / _TEST.ts")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per dataset (1..seeds)")
    parser.add_argument("--datasets", default="", help="only these datasets (comma-separated names)")
    parser.add_argument("--csv", default="", help="write every run (dataset, seed, accuracy, seconds, epochs)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    torch.set_num_threads(1)
    for line in environment_report():
        print(line)
    print(flush=True)
    only = [d for d in args.datasets.split(",") if d]
    datasets = find_datasets(args.folder)
    if only:
        unknown = [d for d in only if d not in [n for n, _, _ in datasets]]
        if unknown:
            raise DataError(f"--datasets: {', '.join(unknown)} not found under {args.folder}")
    csv = open(args.csv, "w") if args.csv else None
    if csv:
        csv.write("dataset,seed,accuracy,seconds,epochs\n")
    print("%-18s %5s %5s %7s %3s %3s  %-15s %7s" % ("dataset", "train", "test", "length", "ch", "cls",
                                                     "test accuracy", "s/seed"), flush=True)
    all_means = []
    for name, train_path, test_path in datasets:
        if only and name not in only:
            continue
        train_file = load_ts(train_path)
        test_file = load_ts(test_path, train_file.class_names, os.path.basename(train_path))
        if test_file.features != train_file.features:
            raise DataError(f"{test_path} has {test_file.features} channels but {train_path} has "
                            f"{train_file.features}")
        train = Dataset(train_file.x.copy(), train_file.lengths, train_file.labels, train_file.class_names)
        test = Dataset(test_file.x.copy(), test_file.lengths, test_file.labels, test_file.class_names)
        standardize(train, [train, test])  # the same for every seed (seqattn standardizes a fresh copy per seed)
        r = recipe(train)
        accuracies, seconds = [], []
        for seed in range(1, args.seeds + 1):
            torch.manual_seed(seed)
            model = Twin(train.features, train.classes, r["downsample"])
            t0 = time.perf_counter()
            train_model(model, train, r, seed)
            seconds.append(time.perf_counter() - t0)
            accuracies.append(evaluate(model, test))
            if csv:
                csv.write(f"{name},{seed},{accuracies[-1]:.6g},{seconds[-1]:.6g},{r['epochs']}\n")
                csv.flush()
        lo, hi = int(train.lengths.min()), int(train.lengths.max())
        length = str(hi) if lo == hi else f"{lo}-{hi}"
        acc = "%.3f +- %.3f" % (mean_of(accuracies), stddev_of(accuracies))
        print("%-18s %5d %5d %7s %3d %3d  %-15s %7.1f" % (name, train.size, test.size, length, train.features,
                                                           train.classes, acc, mean_of(seconds)), flush=True)
        all_means.append(mean_of(accuracies))
    if all_means:
        print("%-18s %45.3f" % ("mean", mean_of(all_means)))
    if csv:
        csv.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as e:
        print(f"ucr_torch_twin: {e}", file=sys.stderr)
        sys.exit(1)
