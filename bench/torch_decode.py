"""Decode in PyTorch (on the CPU, or a GPU with --device=cuda), the peer of bench/models.ts: the same model folder (a Llama, or a Mamba-2
hybrid of it), one token per step with caches — a KV cache for attention layers, the conv window and the
SSM state for Mamba-2 layers (the recurrence of mamba2's step()), float32, eager, torch.no_grad.

usage: python3 bench/torch_decode.py MODEL_DIR PROMPT_LEN NEW_TOKENS [--threads=N] [--device=cuda] [--prefill=batched] [--context=N]
prints one JSON line: {"ms_per_token": ..., "tokens": [...], "threads": N, "device": ...}
The folder may be sharded (model.safetensors.index.json) and bf16 (widened to float32); llama3 rope scaling is
applied as transformers does. --prefill=batched (bench/realsize.ts) runs the prompt through each layer at once
(projections and MLP as matrix products, the attention by query blocks, the Mamba-2 recurrence step by step)
instead of one step per token, and adds load_s, prefill_tok_per_s and max_rss (bytes, this process's peak), and
the CPU seconds (time.process_time, all threads) of loading (load_cpu_s), the prefill and a decoded token (cpu_s);
--context=N measures decoding again after an N-token prompt (ms_per_token_context).
On a GPU every step ends with the next token read back to the host (int(argmax)), as a decode loop must, so
the time per token includes that synchronisation; weights and caches stay on the device (eager, no graphs).
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_reader import load_checkpoint  # noqa: E402

args = [a for a in sys.argv[1:] if not a.startswith("--")]
opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
torch.set_num_threads(int(opts.get("threads", "1")))
dev = torch.device(opts.get("device", "cpu"))

d = args[0]
cfg = json.load(open(os.path.join(d, "config.json")))
mcp = os.path.join(d, "mamba_config.json")
mc = json.load(open(mcp)) if os.path.exists(mcp) else None
t_load, c_load = time.perf_counter(), time.process_time()
w = {k: torch.from_numpy(v).float().to(dev) for k, v in load_checkpoint(d).items()}
load_s, load_cpu_s = time.perf_counter() - t_load, time.process_time() - c_load
D, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
hd = cfg.get("head_dim") or D // H
theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
rs = cfg.get("rope_scaling") or {}
if rs.get("rope_type", rs.get("type")) == "llama3":  # transformers' _compute_llama3_parameters
    lo, hi = rs["original_max_position_embeddings"] / rs["low_freq_factor"], rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    wave = 2 * math.pi / inv
    smooth = (rs["original_max_position_embeddings"] / wave - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
    mid = (1 - smooth) * inv / rs["factor"] + smooth * inv
    inv = torch.where(wave < hi, inv, torch.where(wave > lo, inv / rs["factor"], mid))
inv = inv.float().to(dev)
attn = set(mc["attn_layers"]) if mc else set(range(L))
MAXLEN = int(opts.get("maxlen", "4096"))


def rms(x, wt, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * wt


def rope(x, pos):  # x (heads, hd)
    ang = pos * inv
    c, s = torch.cat([ang.cos(), ang.cos()]), torch.cat([ang.sin(), ang.sin()])
    return x * c + torch.cat([-x[:, hd // 2 :], x[:, : hd // 2]], -1) * s


class AttnCache:
    def __init__(self):
        self.k = torch.zeros(Hkv, MAXLEN, hd, device=dev)
        self.v = torch.zeros(Hkv, MAXLEN, hd, device=dev)


def attention_step(p, x, cache, pos):
    q = rope((x @ w[p + "q_proj.weight"].T).view(H, hd), pos)
    k = rope((x @ w[p + "k_proj.weight"].T).view(Hkv, hd), pos)
    v = (x @ w[p + "v_proj.weight"].T).view(Hkv, hd)
    cache.k[:, pos], cache.v[:, pos] = k, v
    K, Vv = cache.k[:, : pos + 1].repeat_interleave(H // Hkv, 0), cache.v[:, : pos + 1].repeat_interleave(H // Hkv, 0)
    a = torch.softmax((K @ q[:, :, None]).squeeze(-1) / math.sqrt(hd), -1)  # (H, T)
    y = (a[:, None, :] @ Vv).reshape(H * hd)
    return y @ w[p + "o_proj.weight"].T


if mc:
    I, X = mc["d_inner"], mc["d_xb"]
    N = mc["ssm_cfg"]["d_state"]
    Hm, P = I // N, N
    convDim = I + 2 * X
    idx_x = torch.tensor([(c // P // (I // X)) * P + c % P for c in range(I)], device=dev)
    idx_b = torch.tensor([(c // N // (I // X)) * N + c % N for c in range(I)], device=dev)


class MambaCache:
    def __init__(self, Wc):
        self.conv = torch.zeros(convDim, Wc - 1, device=dev)
        self.ssm = torch.zeros(Hm, P, N, device=dev)


def mamba2_step(p, o, cache):
    zxbcdt = o @ w[p + "in_proj.weight"].T
    z, xBC, dt = zxbcdt[:I], zxbcdt[I : I + convDim], zxbcdt[I + convDim :]
    win = torch.cat([cache.conv, xBC[:, None]], 1)  # (convDim, W)
    cache.conv = win[:, 1:]
    xs = F.silu((win * w[p + "conv1d.weight"][:, 0, :]).sum(-1) + w[p + "conv1d.bias"])
    x, B, C = xs[:X][idx_x].view(Hm, P), xs[X : 2 * X][idx_b].view(Hm, N), xs[2 * X :].view(Hm, N)
    delta = F.softplus(dt + w[p + "dt_bias"])  # (Hm)
    A = -torch.exp(w[p + "A_log"])
    cache.ssm = torch.exp(delta * A)[:, None, None] * cache.ssm + (delta[:, None] * x)[:, :, None] * B[:, None, :]
    y = (cache.ssm @ C[:, :, None]).squeeze(-1) + w[p + "D"][:, None] * x  # (Hm, P)
    g = (y.reshape(I) * F.silu(z)).view(Hm, P)
    yn = (g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(I) * w[p + "norm.weight"]
    return yn @ w[p + "out_proj.weight"].T


def step(tok, caches, pos):
    h = w["model.embed_tokens.weight"][tok]
    for i in range(L):
        pfx = f"model.layers.{i}."
        eps = cfg["rms_norm_eps"] if i in attn else mc.get("rms_norm_eps", 1e-5)
        n = rms(h, w[pfx + "input_layernorm.weight"], eps)
        h = h + (attention_step(pfx + "self_attn.", n, caches[i], pos) if i in attn else mamba2_step(pfx + "mamba.", n, caches[i]))
        n = rms(h, w[pfx + "post_attention_layernorm.weight"], eps)
        h = h + (F.silu(n @ w[pfx + "mlp.gate_proj.weight"].T) * (n @ w[pfx + "mlp.up_proj.weight"].T)) @ w[pfx + "mlp.down_proj.weight"].T
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return rms(h, w["model.norm.weight"], cfg["rms_norm_eps"]) @ head.T


def rope_all(x, T):  # x (T, heads, hd): every position at once
    ang = torch.arange(T, device=dev, dtype=torch.float32)[:, None] * inv[None, :]
    c, s = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :], torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    return x * c + torch.cat([-x[..., hd // 2 :], x[..., : hd // 2]], -1) * s


def attention_prefill(p, x, cache):  # x (T, D)
    T = x.shape[0]
    q = rope_all((x @ w[p + "q_proj.weight"].T).view(T, H, hd), T).transpose(0, 1)  # (H, T, hd)
    k = rope_all((x @ w[p + "k_proj.weight"].T).view(T, Hkv, hd), T).transpose(0, 1)
    v = (x @ w[p + "v_proj.weight"].T).view(T, Hkv, hd).transpose(0, 1)
    cache.k[:, :T], cache.v[:, :T] = k, v
    K, Vv = k.repeat_interleave(H // Hkv, 0), v.repeat_interleave(H // Hkv, 0)
    y = torch.empty(H, T, hd, device=dev)
    for a in range(0, T, 256):  # query blocks: scores (H, 256, ≤T), never (H, T, T)
        b = min(T, a + 256)
        sc = (q[:, a:b] @ K[:, :b].transpose(1, 2)) / math.sqrt(hd)
        sc = sc.masked_fill(torch.arange(b, device=dev)[None, :] > torch.arange(a, b, device=dev)[:, None], float("-inf"))
        y[:, a:b] = torch.softmax(sc, -1) @ Vv[:, :b]
    return y.transpose(0, 1).reshape(T, H * hd) @ w[p + "o_proj.weight"].T


def mamba2_prefill(p, o, cache, Wc):  # o (T, D)
    T = o.shape[0]
    zxbcdt = o @ w[p + "in_proj.weight"].T
    z, xBC, dt = zxbcdt[:, :I], zxbcdt[:, I : I + convDim], zxbcdt[:, I + convDim :]
    pad = torch.cat([torch.zeros(Wc - 1, convDim, device=dev), xBC], 0)  # (Wc − 1 + T, convDim)
    cache.conv = pad[-(Wc - 1) :].T.contiguous()
    xs = F.silu(F.conv1d(pad.T[None], w[p + "conv1d.weight"], w[p + "conv1d.bias"], groups=convDim)[0].T)  # (T, convDim)
    x, B, C = xs[:, :X][:, idx_x].view(T, Hm, P), xs[:, X : 2 * X][:, idx_b].view(T, Hm, N), xs[:, 2 * X :].view(T, Hm, N)
    delta = F.softplus(dt + w[p + "dt_bias"])  # (T, Hm)
    dA = torch.exp(delta * -torch.exp(w[p + "A_log"]))
    y = torch.empty(T, Hm, P, device=dev)
    for t in range(T):
        cache.ssm = dA[t][:, None, None] * cache.ssm + (delta[t][:, None] * x[t])[:, :, None] * B[t][:, None, :]
        y[t] = (cache.ssm @ C[t][:, :, None]).squeeze(-1) + w[p + "D"][:, None] * x[t]
    g = (y.reshape(T, I) * F.silu(z)).view(T, Hm, P)
    yn = (g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(T, I) * w[p + "norm.weight"]
    return yn @ w[p + "out_proj.weight"].T


def prefill(prompt, caches, Wc):  # the prompt through each layer at once; the logits of its last position
    h = w["model.embed_tokens.weight"][torch.tensor(prompt, device=dev)]
    for i in range(L):
        pfx = f"model.layers.{i}."
        eps = cfg["rms_norm_eps"] if i in attn else mc.get("rms_norm_eps", 1e-5)
        n = rms(h, w[pfx + "input_layernorm.weight"], eps)
        h = h + (attention_prefill(pfx + "self_attn.", n, caches[i]) if i in attn else mamba2_prefill(pfx + "mamba.", n, caches[i], Wc))
        n = rms(h, w[pfx + "post_attention_layernorm.weight"], eps)
        h = h + (F.silu(n @ w[pfx + "mlp.gate_proj.weight"].T) * (n @ w[pfx + "mlp.up_proj.weight"].T)) @ w[pfx + "mlp.down_proj.weight"].T
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return rms(h[-1], w["model.norm.weight"], cfg["rms_norm_eps"]) @ head.T


prefill_s = [0.0]
cpu_s = {}  # CPU seconds (time.process_time: every thread of this process) of the last run's prefill and decode


def run(prompt_len, new):
    Wc = (mc or {}).get("ssm_cfg", {}).get("d_conv", 4) if mc else 4
    caches = [AttnCache() if i in attn else MambaCache(Wc) for i in range(L)]
    prompt = [(i * 7919) % V for i in range(prompt_len)]
    with torch.no_grad():
        t0, c0 = time.perf_counter(), time.process_time()
        if opts.get("prefill") == "batched":
            logits = prefill(prompt, caches, Wc)
        else:
            for pos, t in enumerate(prompt):
                logits = step(t, caches, pos)
        prefill_s[0] = time.perf_counter() - t0
        cpu_s["prefill"] = time.process_time() - c0
        out = []
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(new):
            tok = int(logits.argmax())
            out.append(tok)
            logits = step(tok, caches, prompt_len + k)
        ms = (time.perf_counter() - t0) * 1000 / new
        cpu_s["decode_per_token"] = (time.process_time() - c0) / new
    return ms, out


run(4, 3)  # warm-up
ms, toks = run(int(args[1]), int(args[2]))
extra = {}
if opts.get("prefill") == "batched":
    import resource

    extra = {"load_s": load_s, "load_cpu_s": load_cpu_s, "prefill_tok_per_s": int(args[1]) / prefill_s[0], "cpu_s": dict(cpu_s)}
    if "context" in opts:
        extra["ms_per_token_context"], _ = run(int(opts["context"]), int(args[2]))
    extra["max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
# which BLAS the products ran on: the shared libraries this process mapped (Debian's torch reports
# BLAS_INFO=generic and links whatever libblas.so.3 the alternatives point at: netlib or OpenBLAS)
blas = sorted({os.path.basename(line.split()[-1]) for line in open("/proc/self/maps") if "blas" in line.lower() and "/" in line}) if os.path.exists("/proc/self/maps") else []
blas_name = "OpenBLAS" if any("openblas" in b for b in blas) else ("netlib reference BLAS" if any(b.startswith("libblas") for b in blas) else "unknown")
print(json.dumps({**extra, "ms_per_token": ms, "tokens": toks, "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(dev), "blas": blas_name, "blas_libs": blas}))
