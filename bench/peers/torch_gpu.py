"""The PyTorch peer of bench/gpu.ts: greedy decode of one token after a prompt on a CUDA GPU, three ways —
eager, torch.compile(mode="reduce-overhead") and a hand-captured CUDA graph — for the same model shapes as the
TypeScript side (a Llama, or a hybrid whose non-attention layers are Mamba-2), float32, random weights.

One decode step (shape-static, so it can be captured):
  h = E[id];  per layer: n = rmsnorm(h);  attention: q, k = rope(W_q n, W_k n, pos), v = W_v n, K[pos] = k, V[pos] = v,
  h += W_o softmax(q K^T / sqrt(hd), masked to j <= pos) V  (grouped-query);  Mamba-2: [z|xBC|dt] = W_in n,
  conv window shift + depthwise conv + silu, dt = softplus(dt + dt_bias), ssm = exp(dt A) ssm + dt x B^T,
  y = ssm C + D x, h += W_out gated_rmsnorm(y, z);  then n = rmsnorm(h), h += W_down(silu(W_gate n) * W_up n);
  id' = argmax(lm_head rmsnorm(h)).
Every step ends with the id read back to the host (int(...)), as a decode loop must; caches stay on the GPU.

A window of s tokens at positions pos .. pos+s-1 (Algorithm 2's VERIFY, and the prefill of the prompt):
  every product over the s rows at once, attention over the cache with the window's rows written first (causal),
  the Mamba-2 conv over [old window | the s inputs] at once and the SSM recurrence row after row (eager torch:
  no fused scan kernel here — mamba_ssm's would be faster), then the greedy acceptance on the GPU (argmax of row
  m against token m+1, the accepted count by a cumulative product) and [count, next] read back. The states are
  advanced by all s rows (a timing peer: what the TypeScript side commits is checked there, not here).
Verify windows are measured eager and as CUDA graphs (one capture per s; torch.compile would recompile per s),
the prefill (s = the prompt) the same way.

usage: python3 bench/peers/torch_gpu.py SPEC_JSON     (SPEC_JSON: {"models": [{"name", "vocab", "hidden",
       "intermediate", "layers", "heads", "kv_heads", "head_dim", "attn_layers", "mamba": {...} | null}],
       "prompt": 64, "tokens": 32, "modes": ["eager", "compile", "cudagraph"], "windows": [1, ..., 9],
       "verify_reps": 20})
prints JSON lines: first {"torch": version, "device": name}, then one per (model, mode) as it is measured:
{"model", "mode", "ms_per_token", "tokens"} or {"model", "mode", "error"}; then per (model, mode in eager,
cudagraph): {"model", "mode", "kind": "prefill", "ms"} and {"model", "mode", "kind": "verify", "s", "ms"}
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class Model:
    def __init__(self, s, cap, dev, seed=0):
        g = torch.Generator(device="cpu").manual_seed(seed)
        self.s, self.cap, self.dev = s, cap, dev
        d, V, F_, H, Hkv, hd = s["hidden"], s["vocab"], s["intermediate"], s["heads"], s["kv_heads"], s["head_dim"]
        self.d, self.V, self.H, self.Hkv, self.hd = d, V, H, Hkv, hd

        def mat(r, c, std=None):
            return (torch.randn(r, c, generator=g) * (std if std is not None else 1 / math.sqrt(c))).to(dev)

        def norm(n):
            return (1 + 0.1 * torch.randn(n, generator=g)).to(dev)

        self.emb = mat(V, d, 1.0)
        self.head = mat(V, d)
        self.fnorm = norm(d)
        self.attn = set(s["attn_layers"])
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = torch.arange(cap, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos = torch.cat([ang.cos(), ang.cos()], -1).float().to(dev)  # (cap, hd)
        self.sin = torch.cat([ang.sin(), ang.sin()], -1).float().to(dev)
        self.ar = torch.arange(cap, device=dev)
        mc = s.get("mamba")
        self.layers = []
        for i in range(s["layers"]):
            L = {"ln1": norm(d), "ln2": norm(d), "gate": mat(F_, d), "up": mat(F_, d), "down": mat(d, F_)}
            if i in self.attn:
                L.update(q=mat(H * hd, d), k=mat(Hkv * hd, d), v=mat(Hkv * hd, d), o=mat(d, H * hd))
                L["kc"] = torch.zeros(cap, Hkv, hd, device=dev)
                L["vc"] = torch.zeros(cap, Hkv, hd, device=dev)
            else:
                I, X, N, Hm, K = mc["d_inner"], mc["d_xb"], mc["d_state"], mc["n_heads"], mc["d_conv"]
                conv_dim = I + 2 * X
                L.update(
                    inp=mat(2 * I + 2 * X + Hm, d),
                    convw=mat(conv_dim, K, 0.5),
                    convb=mat(conv_dim, 1, 0.1)[:, 0],
                    A=-torch.exp(torch.rand(Hm, generator=g)).to(dev),
                    dtb=mat(Hm, 1, 0.1)[:, 0],
                    D=torch.ones(Hm, device=dev),
                    norm=norm(I),
                    out=mat(d, I),
                    conv=torch.zeros(conv_dim, K - 1, device=dev),
                    ssm=torch.zeros(Hm, N, N, device=dev),
                    idx_x=torch.tensor([(c // N // (I // X)) * N + c % N for c in range(I)], device=dev),
                )
                self.mdims = (I, X, N, Hm, K, conv_dim)
            self.layers.append(L)

    def reset(self):
        for L in self.layers:
            for k in ("kc", "vc", "conv", "ssm"):
                if k in L:
                    L[k].zero_()

    def rope(self, x, pos):  # x (heads, hd)
        # index_select, not t[pos]: a 0-d index tensor may be read on the host (a sync, refused inside a capture)
        c, s = torch.index_select(self.cos, 0, pos.view(1))[0], torch.index_select(self.sin, 0, pos.view(1))[0]
        h = self.hd // 2
        return x * c + torch.cat([-x[:, h:], x[:, :h]], -1) * s

    def step(self, tok, pos):  # tok (1,) int64, pos () int64, both on the device
        H, Hkv, hd = self.H, self.Hkv, self.hd
        h = torch.index_select(self.emb, 0, tok)[0]
        for i, L in enumerate(self.layers):
            n = rms(h, L["ln1"])
            if i in self.attn:
                q = self.rope((L["q"] @ n).view(H, hd), pos)
                k = self.rope((L["k"] @ n).view(Hkv, hd), pos)
                v = (L["v"] @ n).view(Hkv, hd)
                L["kc"].index_copy_(0, pos.view(1), k[None])
                L["vc"].index_copy_(0, pos.view(1), v[None])
                K = L["kc"].repeat_interleave(H // Hkv, 1)  # (cap, H, hd)
                Vv = L["vc"].repeat_interleave(H // Hkv, 1)
                s = torch.einsum("hd,chd->hc", q, K) / math.sqrt(hd)
                s = s.masked_fill(self.ar[None, :] > pos, float("-inf"))
                y = torch.einsum("hc,chd->hd", torch.softmax(s, -1), Vv).reshape(H * hd)
                h = h + L["o"] @ y
            else:
                I, X, N, Hm, K_, conv_dim = self.mdims
                zx = L["inp"] @ n
                z, xBC, dt = zx[:I], zx[I : I + conv_dim], zx[I + conv_dim :]
                win = torch.cat([L["conv"], xBC[:, None]], 1)  # (conv_dim, K)
                L["conv"].copy_(win[:, 1:])
                xs = F.silu((win * L["convw"]).sum(-1) + L["convb"])
                x = xs[:X][L["idx_x"]].view(Hm, N)
                B = xs[X : 2 * X][L["idx_x"]].view(Hm, N)
                C = xs[2 * X :].view(Hm, N)
                delta = F.softplus(dt + L["dtb"])
                L["ssm"].copy_(torch.exp(delta * L["A"])[:, None, None] * L["ssm"] + (delta[:, None] * x)[:, :, None] * B[:, None, :])
                y = (L["ssm"] @ C[:, :, None]).squeeze(-1) + L["D"][:, None] * x
                gt = y * F.silu(z.view(Hm, N))
                yn = (gt * torch.rsqrt(gt.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(I) * L["norm"]
                h = h + L["out"] @ yn
            n = rms(h, L["ln2"])
            h = h + L["down"] @ (F.silu(L["gate"] @ n) * (L["up"] @ n))
        return (self.head @ rms(h, self.fnorm)).argmax().view(1)

    def window(self, toks, pos, verify=True):  # toks (s,) int64, pos () the first row's position -> [count, next]
        H, Hkv, hd = self.H, self.Hkv, self.hd
        S = toks.shape[0]
        ps = pos + torch.arange(S, device=toks.device)  # (s,)
        h = torch.index_select(self.emb, 0, toks)  # (s, d)
        half = hd // 2
        c, sn = torch.index_select(self.cos, 0, ps)[:, None], torch.index_select(self.sin, 0, ps)[:, None]

        def rope(x):  # (s, heads, hd)
            return x * c + torch.cat([-x[..., half:], x[..., :half]], -1) * sn

        for i, L in enumerate(self.layers):
            n = rms(h, L["ln1"])
            if i in self.attn:
                q = rope((n @ L["q"].T).view(S, H, hd))
                k = rope((n @ L["k"].T).view(S, Hkv, hd))
                v = (n @ L["v"].T).view(S, Hkv, hd)
                L["kc"].index_copy_(0, ps, k)
                L["vc"].index_copy_(0, ps, v)
                K = L["kc"].repeat_interleave(H // Hkv, 1)  # (cap, H, hd)
                Vv = L["vc"].repeat_interleave(H // Hkv, 1)
                sc = torch.einsum("shd,chd->hsc", q, K) / math.sqrt(hd)
                sc = sc.masked_fill(self.ar[None, None, :] > ps[None, :, None], float("-inf"))
                y = torch.einsum("hsc,chd->shd", torch.softmax(sc, -1), Vv).reshape(S, H * hd)
                h = h + y @ L["o"].T
            else:
                I, X, N, Hm, K_, conv_dim = self.mdims
                zx = n @ L["inp"].T  # (s, R)
                z, xBC, dt = zx[:, :I], zx[:, I : I + conv_dim], zx[:, I + conv_dim :]
                win = torch.cat([L["conv"], xBC.T], 1)  # (conv_dim, K-1+s)
                L["conv"].copy_(win[:, S:])
                xs = F.silu((win.unfold(1, K_, 1) * L["convw"][:, None, :]).sum(-1) + L["convb"][:, None]).T  # (s, C)
                delta = F.softplus(dt + L["dtb"])  # (s, Hm)
                ys = []
                for t in range(S):
                    x = xs[t, :X][L["idx_x"]].view(Hm, N)
                    B = xs[t, X : 2 * X][L["idx_x"]].view(Hm, N)
                    C = xs[t, 2 * X :].view(Hm, N)
                    L["ssm"].copy_(torch.exp(delta[t] * L["A"])[:, None, None] * L["ssm"] + (delta[t][:, None] * x)[:, :, None] * B[:, None, :])
                    ys.append((L["ssm"] @ C[:, :, None]).squeeze(-1) + L["D"][:, None] * x)
                gt = torch.stack(ys) * F.silu(z.view(S, Hm, N))
                yn = (gt * torch.rsqrt(gt.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(S, I) * L["norm"]
                h = h + yn @ L["out"].T
            n = rms(h, L["ln2"])
            h = h + (F.silu(n @ L["gate"].T) * (n @ L["up"].T)) @ L["down"].T
        am = (rms(h, self.fnorm) @ self.head.T).argmax(-1)  # (s,)
        if not verify:  # a prefill: every row committed, the greedy id after the last
            return torch.stack([torch.full_like(am[0], S), am[-1]])
        count = 1 + torch.cumprod((am[:-1] == toks[1:]).long(), 0).sum()
        return torch.stack([count, torch.index_select(am, 0, (count - 1).view(1))[0]])


def decode(model, fn, prompt, tokens, dev):
    """Feed the prompt, then time `tokens` greedy steps; fn(tok, pos) -> next id tensor (1,). ms per token."""
    model.reset()
    tok = torch.zeros(1, dtype=torch.int64, device=dev)
    pos = torch.zeros((), dtype=torch.int64, device=dev)
    nxt = None
    for p, t in enumerate(prompt):
        tok.fill_(t)
        pos.fill_(p)
        nxt = int(fn(tok, pos))
    out = []
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(tokens):
        out.append(nxt)
        tok.fill_(nxt)
        pos.fill_(len(prompt) + k)
        nxt = int(fn(tok, pos))
    ms = (time.perf_counter() - t0) * 1000 / tokens
    return ms, out


def main():
    spec = json.loads(sys.argv[1])
    dev = torch.device(spec.get("device", "cuda"))  # "cpu": a check of the eager path where there is no GPU
    prompt_len, tokens = spec["prompt"], spec["tokens"]
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    print(json.dumps({"torch": torch.__version__, "device": name}), flush=True)
    rows = []
    for ms_ in spec["models"]:
        cap = prompt_len + tokens + 1
        model = Model(ms_, cap, dev)
        prompt = [(i * 7919) % ms_["vocab"] for i in range(prompt_len)]
        for mode in spec["modes"]:
            try:
                with torch.no_grad():
                    if mode == "eager":
                        fn = model.step
                    elif mode == "compile":
                        fn = torch.compile(model.step, mode="reduce-overhead")
                    else:
                        st_tok = torch.zeros(1, dtype=torch.int64, device=dev)
                        st_pos = torch.zeros((), dtype=torch.int64, device=dev)
                        side = torch.cuda.Stream()
                        side.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(side):
                            for _ in range(3):
                                model.step(st_tok, st_pos)
                        torch.cuda.current_stream().wait_stream(side)
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            st_out = model.step(st_tok, st_pos)

                        def fn(tok, pos, graph=graph, st_tok=st_tok, st_pos=st_pos, st_out=st_out):
                            st_tok.copy_(tok)
                            st_pos.copy_(pos)
                            graph.replay()
                            return st_out

                    decode(model, fn, prompt[:4], 4, dev)  # warm-up (compilation, capture)
                    ms, out = decode(model, fn, prompt, tokens, dev)
                rows.append({"model": ms_["name"], "mode": mode, "ms_per_token": ms, "tokens": out})
            except Exception as e:  # one mode failing (e.g. compile without a toolchain) leaves the others
                rows.append({"model": ms_["name"], "mode": mode, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
            print(json.dumps(rows[-1]), flush=True)  # row by row: a run cut short keeps what it measured
        for mode in [m for m in spec["modes"] if m in ("eager", "cudagraph")]:
            try:
                with torch.no_grad():
                    windows(model, mode, prompt, spec, dev, ms_["name"])
            except Exception as e:
                print(json.dumps({"model": ms_["name"], "mode": mode, "kind": "verify", "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}), flush=True)


def runner(model, mode, s, dev, verify=True):
    """fn(toks (s,), pos ()) -> [count, next]: eager, or a CUDA graph captured for windows of s tokens."""
    if mode == "eager":
        return lambda toks, pos: model.window(toks, pos, verify)
    st_tok = torch.zeros(s, dtype=torch.int64, device=dev)
    st_pos = torch.zeros((), dtype=torch.int64, device=dev)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model.window(st_tok, st_pos, verify)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        st_out = model.window(st_tok, st_pos, verify)

    def fn(toks, pos):
        st_tok.copy_(toks)
        st_pos.copy_(pos)
        graph.replay()
        return st_out

    return fn


def windows(model, mode, prompt, spec, dev, name):
    """The prompt as one window, then verify windows of s = 1 .. 9 tokens after it; ms each (read back included)."""
    P = len(prompt)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model.reset()
    fn = runner(model, mode, P, dev, verify=False)
    toks = torch.tensor(prompt, dtype=torch.int64, device=dev)
    pos0 = torch.zeros((), dtype=torch.int64, device=dev)
    fn(toks, pos0).tolist()  # warm-up
    model.reset()
    sync()
    t0 = time.perf_counter()
    fn(toks, pos0).tolist()
    print(json.dumps({"model": name, "mode": mode, "kind": "prefill", "ms": (time.perf_counter() - t0) * 1000}), flush=True)
    for s in spec.get("windows", []):
        fn = runner(model, mode, s, dev)
        wt = torch.tensor([prompt[-1]] + [(7 * j + 3) % model.V for j in range(s - 1)], dtype=torch.int64, device=dev)
        pos = torch.full((), P - 1, dtype=torch.int64, device=dev)
        fn(wt, pos).tolist()
        reps = spec.get("verify_reps", 20)
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(wt, pos).tolist()
        ms = (time.perf_counter() - t0) * 1000 / reps
        print(json.dumps({"model": name, "mode": mode, "kind": "verify", "s": s, "ms": ms}), flush=True)


if __name__ == "__main__":
    main()
