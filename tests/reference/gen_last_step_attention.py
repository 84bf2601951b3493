"""Reference values for LastStepAttention (include/seqattn/layers/last_step_attention.hpp): an independent
re-implementation of keras-attention's Attention(units, score='luong'|'bahdanau') (philipperemy/keras-attention,
attention/attention.py) in PyTorch autograd, double. It follows Keras' graph: luong_w = Dense(F, no bias) on every
h_s dotted with h_t; bahdanau: v(tanh(w1(h_t) repeated + w2(h_s))); softmax over time; context = sum a_s h_s;
attention_vector = Dense(units, tanh, no bias)([context; h_t]). Masks (seqattn's extension): keep flags per step,
the query is the last kept step and masked steps get score -inf. Run with Debian's /usr/bin/python3 (torch 1.13):
    cd tests/reference && /usr/bin/python3 gen_last_step_attention.py
"""
import torch

import refdata

torch.manual_seed(20261222)


def uniform(*shape):
    return (torch.rand(*shape, dtype=torch.float64) * 2 - 1)


def case(prefix, B, T, F, units, score, keep):
    x = uniform(B, T, F).requires_grad_(True)
    keep_t = torch.tensor(keep, dtype=torch.bool)
    last = torch.tensor([max(i for i, k in enumerate(row) if k) for row in keep])
    params = {}
    if score == "luong":
        params["luong_w"] = uniform(F, F).requires_grad_(True)
    else:
        params["bahdanau_w1"] = uniform(F, F).requires_grad_(True)
        params["bahdanau_w2"] = uniform(F, F).requires_grad_(True)
        params["bahdanau_v"] = uniform(F, 1).requires_grad_(True)
    params["attention_vector"] = uniform(2 * F, units).requires_grad_(True)
    h_t = x[torch.arange(B), last]                                   # (B, F)
    if score == "luong":
        z = torch.einsum("btf,bf->bt", x @ params["luong_w"], h_t)     # Dot(axes=[1, 2])([h_t, luong_w(h_s)])
    else:
        a1 = (h_t @ params["bahdanau_w1"])[:, None, :]                 # repeated over time
        a2 = x @ params["bahdanau_w2"]
        z = (torch.tanh(a1 + a2) @ params["bahdanau_v"])[:, :, 0]
    a = torch.softmax(z.masked_fill(~keep_t, float("-inf")), dim=1)
    c = torch.einsum("btf,bt->bf", x, a)
    y = torch.tanh(torch.cat([c, h_t], dim=1) @ params["attention_vector"])[:, None, :]
    R = uniform(B, 1, units)
    (y * R).sum().backward()
    out = {"x": x, "keep": torch.tensor(keep, dtype=torch.float64), "R": R, "y": y, "attention": a, "dx": x.grad,
           # keras-attention's intermediate tensors (its KERAS_ATTENTION_DEBUG outputs): the scores, 0 at masked
           # steps (seqattn's scores() convention), and the context vector
           "score": z.detach().masked_fill(~keep_t, 0.0), "context": c}
    for name, p in params.items():
        out[name] = p
        out["d" + name] = p.grad
    return {prefix + "." + k: v for k, v in out.items()}


if __name__ == "__main__":
    tensors = {}
    full = [[1] * 5] * 3
    holes = [[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 1, 1]]
    lengths = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
    tensors.update(case("luong", 3, 5, 4, 3, "luong", full))
    tensors.update(case("luong_steps", 3, 5, 4, 3, "luong", holes))
    tensors.update(case("luong_lengths", 3, 5, 4, 6, "luong", lengths))
    tensors.update(case("bahdanau", 3, 5, 4, 3, "bahdanau", full))
    tensors.update(case("bahdanau_steps", 3, 5, 4, 3, "bahdanau", holes))
    tensors.update(case("bahdanau_lengths", 3, 5, 3, 5, "bahdanau", lengths))
    refdata.write("../data/last_step_attention.txt", tensors,
                  "torch %s autograd re-implementation of keras-attention's Attention, double; see "
                  "gen_last_step_attention.py" % torch.__version__)
