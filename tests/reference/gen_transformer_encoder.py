"""Reference for TransformerEncoderBlock: torch.nn.TransformerEncoderLayer (batch_first, dropout 0) with the
same weights. Writes tests/data/transformer_encoder.txt: for each config, x, lengths, R (the output gradient),
the seqattn-layout weights, y (valid rows), dx and every parameter gradient of L = sum(y * R) over valid rows.
Windowed configs (attention_window w): a float src_mask (B*H, T, T) of -inf where s >= length, s > t or
s < t - w + 1, holding the key padding too (no src_key_padding_mask); padded query rows get no -inf (torch would
give NaN rows whose NaN reaches every gradient; R is 0 there).

Then writes tests/data/transformer_encoder_no_bias.txt: the same for torch's bias=False (torch >= 2.1: no bias in
the attention projections, linear1, linear2, and LayerNorms without bias), post- and pre-norm, causal, on the
same padded batch shape; only the tensors that exist without biases. On an older torch (Debian's 1.13 has no
`bias` argument) the layer is built with biases set to zero, which is the same function with the same gradients
for every remaining tensor. These cases run after the ones above, so the first file is unchanged by them.

Run from tests/reference:  /usr/bin/python3 gen_transformer_encoder.py   (Debian's python3-torch)"""
import torch

import refdata

torch.manual_seed(0)
B, T, D, H, FF = 2, 5, 8, 2, 16
lengths = [5, 3]
CONFIGS = [("post_relu", False, "relu", False, None), ("pre_gelu", True, "gelu", False, None),
           ("post_gelu_causal", False, "gelu", True, None), ("pre_relu_causal", True, "relu", True, None),
           ("post_gelu_window", False, "gelu", True, 2), ("pre_relu_window", True, "relu", True, 3)]


def window_mask(w):
    t = torch.arange(T)[:, None]
    s = torch.arange(T)[None, :]
    masks = []
    for length in lengths:
        m = (s >= length) | (s > t) | (s < t - w + 1)
        m[length:] = False
        masks += [torch.zeros(T, T, dtype=torch.double).masked_fill(m, float("-inf"))] * H
    return torch.stack(masks)


out = {}
for name, norm_first, act, causal, window in CONFIGS:
    layer = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=act, batch_first=True,
                                             norm_first=norm_first).double()
    with torch.no_grad():  # non-trivial norms
        for ln in (layer.norm1, layer.norm2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.3, 0.3)
        layer.self_attn.in_proj_bias.uniform_(-0.2, 0.2)
        layer.self_attn.out_proj.bias.uniform_(-0.2, 0.2)
    layer.train()  # dropout is 0; train mode avoids the fused inference fast path
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    pad = torch.tensor([[t >= l for t in range(T)] for l in lengths])
    src_mask = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.double), 1) if causal else None
    if window is None:
        y = layer(x, src_mask=src_mask, src_key_padding_mask=pad)
    else:
        y = layer(x, src_mask=window_mask(window))
    valid = (~pad).unsqueeze(-1).double()
    R = torch.randn(B, T, D, dtype=torch.double) * valid
    (y * R).sum().backward()
    W = layer.self_attn.in_proj_weight
    b = layer.self_attn.in_proj_bias
    params = {
        "mha.Wq": W[:D].T, "mha.bq": b[:D], "mha.Wk": W[D:2 * D].T, "mha.bk": b[D:2 * D],
        "mha.Wv": W[2 * D:].T, "mha.bv": b[2 * D:], "mha.Wo": layer.self_attn.out_proj.weight.T,
        "mha.bo": layer.self_attn.out_proj.bias, "ln1.gamma": layer.norm1.weight, "ln1.beta": layer.norm1.bias,
        "ffn1.W": layer.linear1.weight.T, "ffn1.b": layer.linear1.bias, "ffn2.W": layer.linear2.weight.T,
        "ffn2.b": layer.linear2.bias, "ln2.gamma": layer.norm2.weight, "ln2.beta": layer.norm2.bias,
    }
    grads = {
        "mha.Wq": W.grad[:D].T, "mha.bq": b.grad[:D], "mha.Wk": W.grad[D:2 * D].T, "mha.bk": b.grad[D:2 * D],
        "mha.Wv": W.grad[2 * D:].T, "mha.bv": b.grad[2 * D:], "mha.Wo": layer.self_attn.out_proj.weight.grad.T,
        "mha.bo": layer.self_attn.out_proj.bias.grad, "ln1.gamma": layer.norm1.weight.grad,
        "ln1.beta": layer.norm1.bias.grad, "ffn1.W": layer.linear1.weight.grad.T, "ffn1.b": layer.linear1.bias.grad,
        "ffn2.W": layer.linear2.weight.grad.T, "ffn2.b": layer.linear2.bias.grad,
        "ln2.gamma": layer.norm2.weight.grad, "ln2.beta": layer.norm2.bias.grad,
    }
    out[name + ".x"] = x
    out[name + ".R"] = R
    out[name + ".y"] = y * valid
    out[name + ".dx"] = x.grad * valid
    for k, v in params.items():
        out[name + ".param." + k] = v
    for k, v in grads.items():
        out[name + ".grad." + k] = v
out["lengths"] = torch.tensor(lengths, dtype=torch.double)
refdata.write("../data/transformer_encoder.txt", out,
              "torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0, batch_first=True), lengths [5, 3]")


# ---------------------------------------------------------------------------------------- bias=False (use_bias)
NO_BIAS_CONFIGS = [("post_relu", False, "relu", False), ("pre_gelu", True, "gelu", False),
                   ("pre_relu_causal", True, "relu", True)]


def no_bias_layer(norm_first, act):
    kwargs = dict(dropout=0.0, activation=act, batch_first=True, norm_first=norm_first)
    try:
        layer = torch.nn.TransformerEncoderLayer(D, H, FF, bias=False, **kwargs).double()
    except TypeError:  # torch < 2.1: the same function with every bias held at zero
        layer = torch.nn.TransformerEncoderLayer(D, H, FF, **kwargs).double()
        with torch.no_grad():
            for bias in (layer.self_attn.in_proj_bias, layer.self_attn.out_proj.bias, layer.linear1.bias,
                         layer.linear2.bias, layer.norm1.bias, layer.norm2.bias):
                bias.zero_()
    with torch.no_grad():  # non-trivial norms
        for ln in (layer.norm1, layer.norm2):
            ln.weight.uniform_(0.5, 1.5)
    layer.train()
    return layer


out = {}
for name, norm_first, act, causal in NO_BIAS_CONFIGS:
    layer = no_bias_layer(norm_first, act)
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    pad = torch.tensor([[t >= l for t in range(T)] for l in lengths])
    src_mask = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.double), 1) if causal else None
    y = layer(x, src_mask=src_mask, src_key_padding_mask=pad)
    valid = (~pad).unsqueeze(-1).double()
    R = torch.randn(B, T, D, dtype=torch.double) * valid
    (y * R).sum().backward()
    W = layer.self_attn.in_proj_weight
    tensors = {"mha.Wq": W[:D].T, "mha.Wk": W[D:2 * D].T, "mha.Wv": W[2 * D:].T,
               "mha.Wo": layer.self_attn.out_proj.weight.T, "ln1.gamma": layer.norm1.weight,
               "ffn1.W": layer.linear1.weight.T, "ffn2.W": layer.linear2.weight.T, "ln2.gamma": layer.norm2.weight}
    grads = {"mha.Wq": W.grad[:D].T, "mha.Wk": W.grad[D:2 * D].T, "mha.Wv": W.grad[2 * D:].T,
             "mha.Wo": layer.self_attn.out_proj.weight.grad.T, "ln1.gamma": layer.norm1.weight.grad,
             "ffn1.W": layer.linear1.weight.grad.T, "ffn2.W": layer.linear2.weight.grad.T,
             "ln2.gamma": layer.norm2.weight.grad}
    out[name + ".x"] = x
    out[name + ".R"] = R
    out[name + ".y"] = y * valid
    out[name + ".dx"] = x.grad * valid
    for k, v in tensors.items():
        out[name + ".param." + k] = v
    for k, v in grads.items():
        out[name + ".grad." + k] = v
out["lengths"] = torch.tensor(lengths, dtype=torch.double)
refdata.write("../data/transformer_encoder_no_bias.txt", out,
              "torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0, batch_first=True, bias=False), lengths [5, 3]\n"
              "torch %s (before 2.1: every bias held at zero)" % torch.__version__)
