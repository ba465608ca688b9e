#!/usr/bin/env python3
"""Reference values for tests/test_kernels_llama.c, computed by HF transformers itself
(LlamaRotaryEmbedding, apply_rotary_pos_emb, create_causal_mask /
create_sliding_window_causal_mask, eager_attention_forward and sdpa_attention_forward,
LlamaRMSNorm, ACT2FN["silu"]) in float32 on the CPU, with gradients by torch autograd.

    kernels_llama_ref.py OUT.safetensors

Tensors (case i; all F32 unless said):
  attn{i}.dims  I64 [B, T, Hq, Hkv, d, window]   attn{i}.theta F64 [1]
  attn{i}.inv_freq (d/2); attn{i}.cos, attn{i}.sin (T, d) as the rotary module returns them
  attn{i}.q (B, T, Hq*d), attn{i}.k, attn{i}.v (B, T, Hkv*d): q_proj/k_proj/v_proj outputs
  attn{i}.q_rot, attn{i}.k_rot: after apply_rotary_pos_emb, in the same layout
  attn{i}.probs (B, Hq, T, T): eager attention weights
  attn{i}.out_eager, attn{i}.out_sdpa (B, T, Hq*d): attention output (the o_proj input)
  attn{i}.dout (B, T, Hq*d); attn{i}.dq, attn{i}.dk, attn{i}.dv: gradients of sum(dout * out_eager)
      w.r.t. the unrotated q, k and v (through RoPE and eager attention)
  rms{i}.dims I64 [N, C]  rms{i}.eps F64 [1]  rms{i}.x (N, C)  rms{i}.w (C)  rms{i}.y  rms{i}.dy  rms{i}.dx  rms{i}.dw
  mlp.gate, mlp.up, mlp.h = silu(gate) * up, mlp.dh, mlp.dgate, mlp.dup (n)
"""
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, MistralConfig
from transformers.activations import ACT2FN
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.models.llama.modeling_llama import (LlamaAttention, LlamaRMSNorm, LlamaRotaryEmbedding,
                                                      apply_rotary_pos_emb, eager_attention_forward)
from transformers.models.mistral.modeling_mistral import MistralAttention

# B, T, Hq, Hkv, d, hidden, theta, window (0: plain causal; > 0: Mistral's sliding window)
ATTN_CASES = [
    (2, 7, 4, 4, 8, 32, 10000.0, 0),        # MHA (G = 1), head_dim = hidden / heads
    (1, 13, 4, 2, 16, 32, 500000.0, 0),     # G = 2, head_dim given (16 != 32 / 4)
    (2, 19, 8, 2, 32, 64, 1000000.0, 0),    # G = 4 (Qwen2 / Llama-3 theta)
    (2, 33, 6, 3, 64, 96, 10000.0, 5),      # sliding window 5 < T
    (1, 300, 2, 1, 128, 256, 500000.0, 0),  # long positions: angle rounding at t ~ 300
]
RMS_CASES = [(5, 32, 1e-5), (9, 200, 1e-6), (3, 7, 1e-3)]


def attn_case(i, B, T, Hq, Hkv, d, hidden, theta, window, gen, out):
    common = dict(vocab_size=16, hidden_size=hidden, intermediate_size=8, num_hidden_layers=1, num_attention_heads=Hq,
                  num_key_value_heads=Hkv, head_dim=d, max_position_embeddings=max(T, 8),
                  rope_parameters={"rope_type": "default", "rope_theta": theta})
    config = MistralConfig(**common, sliding_window=window) if window else LlamaConfig(**common)
    module = (MistralAttention if window else LlamaAttention)(config, 0).eval()
    rotary = LlamaRotaryEmbedding(config)
    pos = torch.arange(T)[None]
    x = torch.zeros(B, T, hidden)
    cos, sin = rotary(x, pos)  # (1, T, d)

    q = torch.randn(B, T, Hq * d, generator=gen)
    k = torch.randn(B, T, Hkv * d, generator=gen)
    v = torch.randn(B, T, Hkv * d, generator=gen)
    qp, kp, vp = (t.clone().requires_grad_(True) for t in (q, k, v))
    # as LlamaAttention.forward: view (B, T, H, d), transpose to (B, H, T, d)
    qs = qp.view(B, T, Hq, d).transpose(1, 2)
    ks = kp.view(B, T, Hkv, d).transpose(1, 2)
    vs = vp.view(B, T, Hkv, d).transpose(1, 2)
    qr, kr = apply_rotary_pos_emb(qs, ks, cos, sin)

    mask_fn = create_sliding_window_causal_mask if window else create_causal_mask
    outs = {}
    for impl in ("eager", "sdpa"):
        config._attn_implementation = impl
        mask = mask_fn(config=config, inputs_embeds=x, attention_mask=None, past_key_values=None, position_ids=pos)
        fn = eager_attention_forward if impl == "eager" else sdpa_attention_forward
        o, w = fn(module, qr, kr, vs, mask, dropout=0.0, scaling=module.scaling,
                  sliding_window=window if window else None)
        outs[impl] = (o.reshape(B, T, Hq * d), w)
    o_eager, probs = outs["eager"]
    dout = torch.randn(B, T, Hq * d, generator=gen)
    (o_eager * dout).sum().backward()

    p = f"attn{i}."
    out[p + "dims"] = torch.tensor([B, T, Hq, Hkv, d, window], dtype=torch.int64)
    out[p + "theta"] = torch.tensor([theta], dtype=torch.float64)
    out[p + "inv_freq"] = rotary.inv_freq.detach().clone()
    out[p + "cos"] = cos[0].contiguous()
    out[p + "sin"] = sin[0].contiguous()
    out[p + "q"], out[p + "k"], out[p + "v"] = q, k, v
    out[p + "q_rot"] = qr.detach().transpose(1, 2).reshape(B, T, Hq * d).contiguous()
    out[p + "k_rot"] = kr.detach().transpose(1, 2).reshape(B, T, Hkv * d).contiguous()
    out[p + "probs"] = probs.detach().contiguous()
    out[p + "out_eager"] = o_eager.detach().contiguous()
    out[p + "out_sdpa"] = outs["sdpa"][0].detach().contiguous()
    out[p + "dout"] = dout
    out[p + "dq"], out[p + "dk"], out[p + "dv"] = qp.grad, kp.grad, vp.grad


def rms_case(i, N, C, eps, gen, out):
    norm = LlamaRMSNorm(C, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(C, generator=gen))
    x = (2 * torch.randn(N, C, generator=gen)).requires_grad_(True)
    y = norm(x)
    dy = torch.randn(N, C, generator=gen)
    (y * dy).sum().backward()
    p = f"rms{i}."
    out[p + "dims"] = torch.tensor([N, C], dtype=torch.int64)
    out[p + "eps"] = torch.tensor([eps], dtype=torch.float64)
    out[p + "x"], out[p + "w"], out[p + "y"] = x.detach().clone(), norm.weight.detach().clone(), y.detach()
    out[p + "dy"], out[p + "dx"], out[p + "dw"] = dy, x.grad, norm.weight.grad


def mlp_case(gen, out):
    n = 4000
    # a wide range, the tails included (silu saturates: exp(-x) over/underflows in float beyond |x| ~ 88)
    gate = torch.cat([6 * torch.randn(n - 8, generator=gen),
                      torch.tensor([-100.0, -88.0, -30.0, -1e-6, 0.0, 1e-6, 30.0, 100.0])]).requires_grad_(True)
    up = torch.randn(n, generator=gen).requires_grad_(True)
    h = ACT2FN["silu"](gate) * up  # LlamaMLP: act_fn(gate_proj(x)) * up_proj(x)
    dh = torch.randn(n, generator=gen)
    (h * dh).sum().backward()
    out.update({"mlp.gate": gate.detach().clone(), "mlp.up": up.detach().clone(), "mlp.h": h.detach(),
                "mlp.dh": dh, "mlp.dgate": gate.grad, "mlp.dup": up.grad})


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1234)
    out = {}
    for i, c in enumerate(ATTN_CASES):
        attn_case(i, *c, gen, out)
    for i, c in enumerate(RMS_CASES):
        rms_case(i, *c, gen, out)
    mlp_case(gen, out)
    out["n_attn"] = torch.tensor([len(ATTN_CASES)], dtype=torch.int64)
    out["n_rms"] = torch.tensor([len(RMS_CASES)], dtype=torch.int64)
    save_file({k: v.contiguous() for k, v in out.items()}, argv[1])
    print(f"kernels_llama_ref.py: {len(out)} tensors, {len(ATTN_CASES)} attention and {len(RMS_CASES)} RMSNorm "
          f"cases -> {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
