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

usage: python3 bench/peers/torch_gpu.py SPEC_JSON     (SPEC_JSON: {"models": [{"name", "vocab", "hidden",
       "intermediate", "layers", "heads", "kv_heads", "head_dim", "attn_layers", "mamba": {...} | null}],
       "prompt": 64, "tokens": 32, "modes": ["eager", "compile", "cudagraph"]})
prints JSON lines: first {"torch": version, "device": name}, then one per (model, mode) as it is measured:
{"model", "mode", "ms_per_token", "tokens"} or {"model", "mode", "error"}
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


if __name__ == "__main__":
    main()
