"""The whole-model ops of the Python example port: `model` (logits of a Llama, Mamba-1 or Mamba-2 hybrid from
a checkpoint folder) and `speculative` (speculative sampling with recorded uniforms). The simplest port: each
layer over the whole sequence from scratch, Mamba layers as their recurrences, no caches; speculative decoding
recomputes everything each round, which gives the tokens and states of the project's single-cached-state
Algorithm 2 (that is what the op checks). The math, in the paper's names, is at the top of model.mjs.
"""
import numpy as np
from kernels import silu, softplus


class Unsupported(Exception):
    pass


def linear(x, W, b=None):  # PyTorch's Linear: x Wᵀ + b
    return x @ W.T + (b if b is not None else 0)


def rms(x, w, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * w


def repeat_pieces(x, d_inner, w):  # output channel c reads ⌊⌊c/w⌋/rep⌋·w + c mod w, rep = d_inner / width
    c = np.arange(d_inner)
    return x[..., (c // w // (d_inner // x.shape[-1])) * w + c % w]


def conv(x, weight, bias):  # depthwise causal conv + bias + silu over (L, C) from zero history; the last W−1 inputs
    L, C = x.shape
    W = weight.shape[-1]
    w = weight.reshape(C, W)
    row = np.concatenate([np.zeros((W - 1, C)), x])
    s = sum(w[:, k] * row[k : k + L] for k in range(W)) + (bias if bias is not None else 0)
    return silu(s), row[L:].T


class Model:
    def __init__(self, config, mamba_config, mil, weights):
        if config.get("rope_scaling"):
            raise Unsupported("rope_scaling is not implemented by this example port")
        self.c, self.mc, self.W = config, mamba_config, weights
        self.variant = (mil or {}).get("variant")
        self.clean = (mil or {}).get("semantics") == "clean"

    def attention(self, p, x):
        c, W = self.c, self.W
        L, H = len(x), c["num_attention_heads"]
        Hkv = c.get("num_key_value_heads") or H
        hd = c.get("head_dim") or c["hidden_size"] // H
        b = lambda n: W[f"{p}.self_attn.{n}.bias"] if c.get("attention_bias") else None
        q, k, v = (linear(x, W[f"{p}.self_attn.{n}_proj.weight"], b(f"{n}_proj")).reshape(L, -1, hd) for n in "qkv")
        ang = np.arange(L)[:, None, None] / c.get("rope_theta", 10000) ** (np.arange(hd // 2) * 2 / hd)
        rope = lambda t: np.concatenate([t[..., : hd // 2] * np.cos(ang) - t[..., hd // 2 :] * np.sin(ang), t[..., hd // 2 :] * np.cos(ang) + t[..., : hd // 2] * np.sin(ang)], -1)
        q, k = rope(q), np.repeat(rope(k), H // Hkv, axis=1)  # query head h reads kv head ⌊h/(H/Hkv)⌋
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + np.triu(np.full((L, L), -np.inf), 1)
        e = np.exp(s - s.max(-1, keepdims=True))
        y = np.einsum("hts,shd->thd", e / e.sum(-1, keepdims=True), np.repeat(v, H // Hkv, axis=1))
        return linear(y.reshape(L, -1), W[f"{p}.self_attn.o_proj.weight"], b("o_proj")), None

    def mamba1(self, p, o):
        W, q = self.W, f"{p}.mamba"
        d_inner, N, L = self.mc["d_inner"], self.mc["ssm_cfg"]["d_state"], len(o)
        w = (self.c.get("head_dim") or self.c["hidden_size"] // self.c["num_attention_heads"]) if self.clean else N
        bias = W[f"{q}.dt_proj.bias"]
        x = repeat_pieces(linear(o, W[f"{q}.in_proj_x.weight"]), d_inner, w)
        z = linear(o, W[f"{q}.in_proj_z.weight"])
        per_channel = lambda T: np.repeat(T.reshape(L, d_inner // N, N), N, axis=1)  # channel c: group ⌊c/N⌋
        Bc = per_channel(repeat_pieces(linear(o, W[f"{q}.B_proj.weight"]), d_inner, w))
        Cc = per_channel(linear(o, W[f"{q}.C_proj.weight"]))
        dt = linear(linear(o, W[f"{q}.dt_proj_down.weight"]), W[f"{q}.dt_proj.weight"], None if self.clean else bias)  # upstream: bias twice
        xs, last = conv(x, W[f"{q}.conv1d.weight"], W.get(f"{q}.conv1d.bias"))
        A, delta = -np.exp(W[f"{q}.A_log"]), softplus(dt + bias)
        h, y = np.zeros((d_inner, N)), np.zeros((L, d_inner))
        for t in range(L):
            h = np.exp(delta[t][:, None] * A) * h + (delta[t] * xs[t])[:, None] * Bc[t]
            y[t] = (h * Cc[t]).sum(-1) + W[f"{q}.D"] * xs[t]
        return linear(y * silu(z), W[f"{q}.out_proj.weight"]), (h[None], last[None])

    def mamba2(self, p, o):
        W, q = self.W, f"{p}.mamba"
        d_inner, d_xb, N, L = self.mc["d_inner"], self.mc["d_xb"], self.mc["ssm_cfg"]["d_state"], len(o)
        H, P, CD = d_inner // N, N, d_inner + 2 * d_xb
        zxbcdt = linear(o, W[f"{q}.in_proj.weight"], W.get(f"{q}.in_proj.bias"))
        z, xBC, dt = zxbcdt[:, :d_inner], zxbcdt[:, d_inner : d_inner + CD], zxbcdt[:, d_inner + CD :]
        xs, last = conv(xBC, W[f"{q}.conv1d.weight"], W.get(f"{q}.conv1d.bias"))
        x = repeat_pieces(xs[:, :d_xb], d_inner, P).reshape(L, H, P)  # heads read kv heads as GQA
        B = repeat_pieces(xs[:, d_xb : 2 * d_xb], d_inner, N).reshape(L, H, N)
        C = xs[:, 2 * d_xb :].reshape(L, H, N)
        A, D, delta = -np.exp(W[f"{q}.A_log"]), W[f"{q}.D"], softplus(dt + W[f"{q}.dt_bias"])
        S, y = np.zeros((H, P, N)), np.zeros((L, H, P))
        for t in range(L):
            S = np.exp(delta[t] * A)[:, None, None] * S + (delta[t][:, None] * x[t])[..., None] * B[t][:, None, :]
            y[t] = (S * C[t][:, None, :]).sum(-1) + D[:, None] * x[t]
        v = (y.reshape(L, d_inner) * silu(z)).reshape(L, H, P)  # gated RMSNorm: gate, then norm per group of P
        yn = (v / np.sqrt((v**2).mean(-1, keepdims=True) + 1e-5)).reshape(L, d_inner) * W[f"{q}.norm.weight"]
        return linear(yn, W[f"{q}.out_proj.weight"]), (S.reshape(1, H * P, N), last[None])

    def run(self, ids):
        """One sequence: logits (L, vocab) and {layer: (ssm, conv)} for each Mamba layer after the last token."""
        c, mc, W = self.c, self.mc, self.W
        h = W["model.embed_tokens.weight"][np.asarray(ids, dtype=int)]
        states = {}
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}"
            kind = "attention" if mc is None or i in mc["attn_layers"] else self.variant
            eps = c["rms_norm_eps"] if kind == "attention" else mc.get("rms_norm_eps", 1e-5)
            out, st = getattr(self, kind)(p, rms(h, W[f"{p}.input_layernorm.weight"], eps))
            if st is not None:
                states[i] = st
            h = h + out
            x = rms(h, W[f"{p}.post_attention_layernorm.weight"], eps)
            h = h + linear(silu(linear(x, W[f"{p}.mlp.gate_proj.weight"])) * linear(x, W[f"{p}.mlp.up_proj.weight"]), W[f"{p}.mlp.down_proj.weight"])
        head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
        return linear(rms(h, W["model.norm.weight"], c["rms_norm_eps"]), head), states


def model_op(a, input_ids, folder):
    m = Model(*folder())
    return {"logits": np.stack([m.run(row)[0] for row in input_ids])}


def speculative(a, prompt, uniforms, **weights):
    """Speculative sampling (temperature T > 0; top-k / top-p unsupported) with the recorded uniforms."""
    if a.get("top_k") is not None or a.get("top_p") is not None:
        raise Unsupported("top_k / top_p are not implemented by this example port")
    T = a.get("temperature") or 0
    if not T > 0:
        raise Unsupported("greedy speculative cases are not implemented by this example port")
    part = lambda pre: Model(a[pre]["config"], a[pre].get("mamba_config"), a[pre], {k[len(pre) + 1 :]: v for k, v in weights.items() if k.startswith(pre + "/")})
    target, draft = part("target"), part("draft")
    used = 0

    def uniform():
        nonlocal used
        used += 1
        return uniforms[used - 1]

    def dist(logits):
        e = np.exp((logits - logits.max()) / T)
        return e / e.sum()

    def draw_from(p, u):
        acc, last = 0.0, 0
        for i, v in enumerate(p):
            last = i if v > 0 else last
            acc += v
            if u < acc:
                return i
        return last

    committed, out, accepted, emitted, res = [int(t) for t in prompt.reshape(-1)], [], [], [], {}
    while len(out) < a["max_new_tokens"]:
        K = min(a["K"], a["max_new_tokens"] - len(out) - 1)
        drafts, qs = [], []
        for _ in range(K):
            qs.append(dist(draft.run(committed + drafts)[0][-1]))
            drafts.append(draw_from(qs[-1], uniform()))
        rows = target.run(committed + drafts)[0][len(committed) - 1 :]
        emit = []
        for m in range(K):
            p, q, d = dist(rows[m]), qs[m], drafts[m]
            if uniform() < min(1, p[d] / q[d]):
                emit.append(d)
                continue
            r = np.maximum(p - q, 0)
            u2 = uniform()
            emit.append(draw_from(r / r.sum(), u2) if r.sum() > 0 else draw_from(p, u2))
            break
        else:
            emit.append(draw_from(dist(rows[K]), uniform()))
        accepted.append(len(emit) - 1)
        emitted.append(len(emit))
        out += emit
        committed += emit
        # the target's state after the round: every committed token but the last (the next round consumes it)
        for layer, (ssm, cv) in target.run(committed[:-1])[1].items():
            res[f"round{len(accepted) - 1}/layer{layer}/ssm"], res[f"round{len(accepted) - 1}/layer{layer}/conv"] = ssm, cv
    vec = lambda v: np.asarray(v, dtype=float)
    return {**res, "tokens": vec(out), "accepted": vec(accepted), "emitted": vec(emitted), "uniforms_used": vec([used])}
