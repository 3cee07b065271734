"""One training step in PyTorch on the CPU, the peer of bench/train.ts: same weights (a model folder written by
the bench), same ids, same objective (lm for the Llama, distill with stage-1 freezing for the hybrids), Adam.
A minimal re-implementation of the models in eager PyTorch, following the upstream references
(transformers Llama; mamba_ssm selective_scan_ref; the SSD recurrence; rms_norm_ref), float32.

usage: python3 bench/torch_train.py MODEL_DIR IDS.json [TEACHER_DIR] [--threads N] [--dtype float32|float64] [--reps N] [--warmup N]
`warmup` full steps (default 2) warm up the allocator and the thread pool; then `reps` steps (default 3) are timed and their
medians reported: wall-clock ms and the process's CPU ms (all threads; under a loaded machine the fairer figure).
prints one JSON line: {"ms": median step time, "cpu_ms": ..., "loss": ..., "forward_ms": ..., "teacher_ms": ...,
"blas": the BLAS library this process has mapped (OpenBLAS, MKL, or the netlib reference)}
--device=cuda: the same eager step on the GPU (bench/gpu_train.ts's peer), each time mark after
torch.cuda.synchronize().
"""
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_reader import load_safetensors  # noqa: E402  (bench/safetensors_reader.py: numpy only)

args = [a for a in sys.argv[1:] if not a.startswith("--")]
opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
torch.set_num_threads(int(opts.get("threads", "1")))
DT = torch.float64 if opts.get("dtype") == "float64" else torch.float32
DEV = torch.device(opts.get("device", "cpu"))
if DEV.type == "cuda":
    torch.set_default_device(DEV)  # the tensors the model makes as it runs (rope angles, masks, states) too


def mark():
    if DEV.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def load(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    mc = json.load(open(os.path.join(d, "mamba_config.json"))) if os.path.exists(os.path.join(d, "mamba_config.json")) else None
    extra = json.load(open(os.path.join(d, "mil_config.json"))) if os.path.exists(os.path.join(d, "mil_config.json")) else {}
    w = {k: torch.from_numpy(v).to(DT).to(DEV) for k, v in load_safetensors(os.path.join(d, "model.safetensors")).items()}
    return cfg, mc, extra, w


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, inv):  # x (B, H, L, d)
    L = x.shape[2]
    ang = torch.arange(L, dtype=DT)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def attention(cfg, w, p, x):
    B, L, D = x.shape
    H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // H
    q = (x @ w[p + "q_proj.weight"].T).view(B, L, H, hd).transpose(1, 2)
    k = (x @ w[p + "k_proj.weight"].T).view(B, L, Hkv, hd).transpose(1, 2)
    v = (x @ w[p + "v_proj.weight"].T).view(B, L, Hkv, hd).transpose(1, 2)
    theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=DT) / hd)
    q, k = rope(q, inv), rope(k, inv)
    k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    s = s.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
    y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, L, H * hd)
    return y @ w[p + "o_proj.weight"].T


def repeat_pieces(x, d_inner, piece):
    d_xb = x.shape[-1]
    rep = d_inner // d_xb
    idx = torch.tensor([(c // piece // rep) * piece + c % piece for c in range(d_inner)])
    return x[..., idx]


def conv(x, weight, bias, act=True):  # x (B, C, L), weight (C, 1, W)
    W = weight.shape[-1]
    y = F.conv1d(x, weight, bias, padding=W - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(y) if act else y


def mamba1(mc, extra, w, p, o):
    B, L, D = o.shape
    I, X = mc["d_inner"], mc["d_xb"]
    N = (mc.get("ssm_cfg") or {}).get("d_state", 16)
    clean = extra.get("semantics") == "clean"
    A = -torch.exp(w[p + "A_log"])
    x = repeat_pieces(o @ w[p + "in_proj_x.weight"].T, I, N)
    z = o @ w[p + "in_proj_z.weight"].T
    Bm = repeat_pieces(o @ w[p + "B_proj.weight"].T, I, N).view(B, L, I // N, N)
    Cm = (o @ w[p + "C_proj.weight"].T).view(B, L, I // N, N)
    dt = (o @ w[p + "dt_proj_down.weight"].T) @ w[p + "dt_proj.weight"].T + (0 if clean else w[p + "dt_proj.bias"])
    u = conv(x.transpose(1, 2), w[p + "conv1d.weight"], w.get(p + "conv1d.bias")).transpose(1, 2)  # (B, L, I)
    delta = F.softplus(dt + w[p + "dt_proj.bias"])
    h = torch.zeros(B, I, N, dtype=DT)
    ys = []
    grp = lambda t: t.repeat_interleave(N, 1)  # (B, G, N) → (B, I, N): channel c uses group c // N  # noqa: E731
    for t in range(L):  # mamba_ssm selective_scan_ref's loop
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * grp(Bm[:, t]) * u[:, t, :, None]
        ys.append((h * grp(Cm[:, t])).sum(-1))
    y = (torch.stack(ys, 1) + u * w[p + "D"]) * F.silu(z)
    return y @ w[p + "out_proj.weight"].T


def mamba2(mc, w, p, o):
    B, L, D = o.shape
    I, X = mc["d_inner"], mc["d_xb"]
    N = (mc.get("ssm_cfg") or {})["d_state"]
    H, P = I // N, N
    zxbcdt = o @ w[p + "in_proj.weight"].T
    z, xBC, dt = zxbcdt[..., :I], zxbcdt[..., I : 2 * I + 2 * X], zxbcdt[..., 2 * I + 2 * X :]
    xs = conv(xBC.transpose(1, 2), w[p + "conv1d.weight"], w.get(p + "conv1d.bias")).transpose(1, 2)
    x = repeat_pieces(xs[..., :X], I, P).view(B, L, H, P)
    Bh = repeat_pieces(xs[..., X : 2 * X], I, N).view(B, L, H, N)
    Ch = xs[..., 2 * X :].view(B, L, H, N)
    delta = F.softplus(dt + w[p + "dt_bias"])  # (B, L, H)
    A = -torch.exp(w[p + "A_log"])
    Hs = torch.zeros(B, H, P, N, dtype=DT)
    ys = []
    for t in range(L):
        d = delta[:, t, :, None, None]
        Hs = torch.exp(d * A[None, :, None, None]) * Hs + d * x[:, t, :, :, None] * Bh[:, t, :, None, :]
        ys.append((Hs * Ch[:, t, :, None, :]).sum(-1) + w[p + "D"][None, :, None] * x[:, t])
    y = torch.stack(ys, 1).reshape(B, L, I)
    g = (y * F.silu(z)).view(B, L, H, P)
    yn = (g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(B, L, I) * w[p + "norm.weight"]
    return yn @ w[p + "out_proj.weight"].T


def model(cfg, mc, extra, w, ids):
    h = w["model.embed_tokens.weight"][ids]
    attn = set(mc["attn_layers"]) if mc else None
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        eps = cfg["rms_norm_eps"] if (mc is None or i in attn) else mc.get("rms_norm_eps", 1e-5)
        n = rms(h, w[p + "input_layernorm.weight"], eps)
        if mc is None or i in attn:
            h = h + attention(cfg, w, p + "self_attn.", n)
        elif extra.get("variant") == "mamba1" or (p + "mamba.in_proj_x.weight") in w:
            h = h + mamba1(mc, extra, w, p + "mamba.", n)
        else:
            h = h + mamba2(mc, w, p + "mamba.", n)
        n = rms(h, w[p + "post_attention_layernorm.weight"], eps)
        h = h + (F.silu(n @ w[p + "mlp.gate_proj.weight"].T) * (n @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return rms(h, w["model.norm.weight"], cfg["rms_norm_eps"]) @ head.T


def main():
    cfg, mc, extra, w = load(args[0])
    ids = torch.tensor(json.load(open(args[1]))).to(DEV)
    teacher = load(args[2]) if len(args) > 2 else None
    trainable = [k for k in w if (mc is None or "mamba" in k)]
    for k in trainable:
        w[k].requires_grad_(True)
    opt = torch.optim.Adam([w[k] for k in trainable], lr=1e-3, betas=(0.9, 0.98), eps=1e-8)
    start = {k: w[k].detach().clone() for k in trainable}
    reps = int(opts.get("reps", "3"))
    warmup = int(opts.get("warmup", "2"))
    runs = []
    for rep in range(warmup + reps):  # the first steps warm up the allocator and the thread pool; the rest are timed
        t0 = mark()
        tl = None
        if teacher:
            with torch.no_grad():
                tl = model(*teacher, ids)
        t1 = mark()
        c1 = time.process_time()
        logits = model(cfg, mc, extra, w, ids)
        V = logits.shape[-1]
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        if teacher:
            loss = loss + 0.1 * F.kl_div(logits.log_softmax(-1), tl.softmax(-1), reduction="batchmean")
        t2 = mark()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w[k] for k in trainable], 0.1)
        opt.step()
        t3 = mark()
        c3 = time.process_time()
        if rep == 0:
            first_loss = loss.item()  # the loss at the shared starting weights: compared with the TypeScript step's
        if rep == warmup - 1:
            for k in trainable:  # the timed steps start from the same weights (as the TypeScript bench's do)
                w[k].data.copy_(start[k])
            opt = torch.optim.Adam([w[k] for k in trainable], lr=1e-3, betas=(0.9, 0.98), eps=1e-8)
        if rep >= warmup:
            runs.append(((t3 - t1) * 1000, (c3 - c1) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000))
    med = lambda i: statistics.median(r[i] for r in runs)  # noqa: E731
    res = {"ms": med(0), "cpu_ms": med(1), "teacher_ms": med(2), "forward_ms": med(3), "reps": reps, "loss": first_loss,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": str(DT), "blas": blas(), "device": str(DEV)}
    print(json.dumps(res))


def blas():
    """The BLAS this process runs: the shared library mapped for it (Debian's torch links libblas.so.3, which the
    alternatives system points at OpenBLAS once libopenblas0-pthread is installed, else at the netlib reference)."""
    libs = sorted({ln.split()[-1] for ln in open("/proc/self/maps") if "blas" in ln.lower() or "mkl" in ln.lower()})
    name = next((x for x in libs if "openblas" in x.lower() or "mkl" in x.lower()), None)
    if name:
        return ("OpenBLAS " if "openblas" in name.lower() else "MKL ") + name
    return ("netlib reference BLAS (" + os.path.basename(libs[0]) + ")") if libs else "none mapped"


main()
