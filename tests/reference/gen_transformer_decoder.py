"""Reference for TransformerDecoderBlock: torch.nn.TransformerDecoderLayer (batch_first, dropout 0) with the
same weights. Writes tests/data/transformer_decoder.txt: for each config, x (targets), memory, their lengths,
R (the output gradient, 0 at padded target rows), the seqattn-layout weights, y (valid rows; torch outputs
garbage at padded target rows), dx, dmemory and every parameter gradient of L = sum(y * R). Then writes
tests/data/transformer_decoder_torch.safetensors: the float64 state_dict of nn.Sequential(<the post_relu_causal
layer>), torch's names and layouts (the torch mapping of the safetensors import).
The targets are padded by tgt_key_padding_mask, the memory by memory_key_padding_mask; causal configs pass
tgt_mask = the upper-triangular -inf mask (torch 1.13 has no tgt_is_causal). No sequence is empty (torch would
give NaN rows). The "no_bias" config holds every bias at zero (torch >= 2.1's bias=False is the same function;
Debian's 1.13 has no `bias` argument) and lists only the tensors that exist without biases.

Run from tests/reference:  /usr/bin/python3 gen_transformer_decoder.py   (Debian's python3-torch)"""
import json
import struct

import torch

import refdata

torch.manual_seed(0)
B, T, TM, D, H, FF = 3, 5, 6, 8, 2, 16
tgt_lengths = [5, 3, 4]
mem_lengths = [6, 4, 2]
# name, norm_first, activation, causal, bias
CONFIGS = [("post_relu_causal", False, "relu", True, True), ("pre_gelu_causal", True, "gelu", True, True),
           ("post_gelu", False, "gelu", False, True), ("pre_relu", True, "relu", False, True),
           ("post_relu_causal_no_bias", False, "relu", True, False)]


def mha_tensors(prefix, mha, grad, bias):
    W = mha.in_proj_weight.grad if grad else mha.in_proj_weight
    b = mha.in_proj_bias.grad if grad else mha.in_proj_bias
    Wo = mha.out_proj.weight.grad if grad else mha.out_proj.weight
    bo = mha.out_proj.bias.grad if grad else mha.out_proj.bias
    t = {prefix + "Wq": W[:D].T, prefix + "Wk": W[D:2 * D].T, prefix + "Wv": W[2 * D:].T, prefix + "Wo": Wo.T}
    if bias:
        t.update({prefix + "bq": b[:D], prefix + "bk": b[D:2 * D], prefix + "bv": b[2 * D:], prefix + "bo": bo})
    return t


def layer_tensors(layer, grad, bias):
    def g(p):
        return p.grad if grad else p
    t = {}
    t.update(mha_tensors("self_mha.", layer.self_attn, grad, bias))
    t.update(mha_tensors("cross_mha.", layer.multihead_attn, grad, bias))
    for i, ln in ((1, layer.norm1), (2, layer.norm2), (3, layer.norm3)):
        t["ln%d.gamma" % i] = g(ln.weight)
        if bias:
            t["ln%d.beta" % i] = g(ln.bias)
    t["ffn1.W"] = g(layer.linear1.weight).T
    t["ffn2.W"] = g(layer.linear2.weight).T
    if bias:
        t["ffn1.b"] = g(layer.linear1.bias)
        t["ffn2.b"] = g(layer.linear2.bias)
    return t


def save_safetensors(path, tensors):
    """The safetensors format (8-byte little-endian header size, JSON header, byte buffer), as gen_safetensors.py
    writes it (no `safetensors` package needed)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().cpu().numpy().astype("<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


layers = {}
out = {}
for name, norm_first, act, causal, bias in CONFIGS:
    layer = torch.nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, activation=act, batch_first=True,
                                             norm_first=norm_first).double()
    with torch.no_grad():  # non-trivial norms and biases
        for ln in (layer.norm1, layer.norm2, layer.norm3):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.3, 0.3)
        for mha in (layer.self_attn, layer.multihead_attn):
            mha.in_proj_bias.uniform_(-0.2, 0.2)
            mha.out_proj.bias.uniform_(-0.2, 0.2)
        if not bias:
            for p in (layer.self_attn.in_proj_bias, layer.self_attn.out_proj.bias, layer.multihead_attn.in_proj_bias,
                      layer.multihead_attn.out_proj.bias, layer.linear1.bias, layer.linear2.bias, layer.norm1.bias,
                      layer.norm2.bias, layer.norm3.bias):
                p.zero_()
    layer.train()  # dropout is 0; train mode avoids any fused inference path
    layers[name] = layer
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    memory = torch.randn(B, TM, D, dtype=torch.double, requires_grad=True)
    tgt_pad = torch.tensor([[t >= l for t in range(T)] for l in tgt_lengths])
    mem_pad = torch.tensor([[t >= l for t in range(TM)] for l in mem_lengths])
    tgt_mask = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.double), 1) if causal else None
    y = layer(x, memory, tgt_mask=tgt_mask, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=mem_pad)
    valid = (~tgt_pad).unsqueeze(-1).double()
    R = torch.randn(B, T, D, dtype=torch.double) * valid
    (y * R).sum().backward()
    out[name + ".x"] = x
    out[name + ".memory"] = memory
    out[name + ".R"] = R
    out[name + ".y"] = y * valid
    out[name + ".dx"] = x.grad * valid
    out[name + ".dmemory"] = memory.grad
    for k, v in layer_tensors(layer, False, bias).items():
        out[name + ".param." + k] = v
    for k, v in layer_tensors(layer, True, bias).items():
        out[name + ".grad." + k] = v
out["tgt_lengths"] = torch.tensor(tgt_lengths, dtype=torch.double)
out["memory_lengths"] = torch.tensor(mem_lengths, dtype=torch.double)
refdata.write("../data/transformer_decoder.txt", out,
              "torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0, batch_first=True), targets (3, 5, 8) lengths "
              "%s, memory (3, 6, 8) lengths %s\ntorch %s" % (tgt_lengths, mem_lengths, torch.__version__))
# The state_dict of nn.Sequential(<the post_relu_causal layer>) as torch names it: loads into a seqattn Sequential
# holding the block with the default name mapping (io/torch_names.hpp) and predicts that config's y.
save_safetensors("../data/transformer_decoder_torch.safetensors",
                 torch.nn.Sequential(layers["post_relu_causal"]).state_dict())
