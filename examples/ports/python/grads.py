"""The backward ops of the Python example port: each runs its forward, keeping what the backward needs, then
walks back through it (the derivative of every line beside it). Inputs are the forward's plus d<output>;
outputs are the forward's outputs and d<input> for every input given.
    σ(x) = 1/(1+e^{−x}),  silu'(x) = σ(x)(1 + x(1 − σ(x))),  softplus'(x) = σ(x), or 1 above torch's threshold 20
"""
import numpy as np
from kernels import silu, softplus

sigmoid = lambda x: 1 / (1 + np.exp(-x))
silu_grad = lambda x: sigmoid(x) * (1 + x * (1 - sigmoid(x)))
softplus_grad = lambda x: np.where(x > 20, 1.0, sigmoid(x))


def selective_scan_grad(a, u, delta, A, B, C, dout, dlast_state, D=None, z=None, delta_bias=None, initial_state=None):
    # h_t = exp(δ_t A) h_{t−1} + δ_t B_t u_t,  y_t = C_t·h_t + D u_t,  out = y silu(z),  δ = softplus(Δ + bias)
    nb, dim, L = u.shape
    raw = delta + (delta_bias[:, None] if delta_bias is not None else 0)
    dt = softplus(raw) if a.get("delta_softplus") else raw
    G = B.shape[1] if B.ndim == 4 else 1
    per_channel = lambda T: np.repeat(T, dim // G, axis=1) if T.ndim == 4 else np.repeat(T[:, None], dim, axis=1)
    Bc, Cc = per_channel(B), per_channel(C)  # (b, dim, N, L)
    hs = [initial_state.copy() if initial_state is not None else np.zeros((nb, dim, A.shape[1]))]
    for t in range(L):
        hs.append(np.exp(dt[:, :, t, None] * A) * hs[-1] + (dt[:, :, t] * u[:, :, t])[..., None] * Bc[..., t])
    y = np.stack([(hs[t + 1] * Cc[..., t]).sum(-1) for t in range(L)], axis=-1) + (D[:, None] * u if D is not None else 0)
    g, dy = {}, dout
    if z is not None:  # out = y silu(z)
        g["dz"], dy = dout * y * silu_grad(z), dout * silu(z)
    du = dy * D[:, None] if D is not None else np.zeros_like(u)
    if D is not None:
        g["dD"] = (dy * u).sum((0, 2))
    dBc, dCc, dA, ddt = np.zeros_like(Bc), np.zeros_like(Cc), np.zeros_like(A), np.zeros_like(dt)
    dh = dlast_state.copy()  # ∂ℓ/∂h_L
    for t in reversed(range(L)):
        dh = dh + dy[:, :, t, None] * Cc[..., t]  # y_t = C_t·h_t
        dCc[..., t] = dy[:, :, t, None] * hs[t + 1]
        e = np.exp(dt[:, :, t, None] * A)
        ddt[:, :, t] = (dh * (A * e * hs[t] + Bc[..., t] * u[:, :, t, None])).sum(-1)
        dA += (dh * dt[:, :, t, None] * e * hs[t]).sum(0)
        dBc[..., t] = dh * (dt[:, :, t] * u[:, :, t])[..., None]
        du[:, :, t] += (dh * dt[:, :, t, None] * Bc[..., t]).sum(-1)
        dh = dh * e  # ∂ℓ/∂h_{t−1}
    draw = ddt * softplus_grad(raw) if a.get("delta_softplus") else ddt
    fold = lambda T: T.reshape(nb, G, dim // G, *T.shape[2:]).sum(2) if B.ndim == 4 else T.sum(1)
    g.update(du=du, ddelta=draw, dA=dA, dB=fold(dBc), dC=fold(dCc))
    if delta_bias is not None:
        g["ddelta_bias"] = draw.sum((0, 2))
    if initial_state is not None:
        g["dinitial_state"] = dh
    return {"out": y * silu(z) if z is not None else y, "last_state": hs[-1], **g}


def causal_conv1d_grad(a, x, weight, dout, bias=None, initial_states=None, dfinal_states=None):
    # s_t = bias + Σ_k w_k row_{t+k} over row = [initial_states | x],  out = silu(s) or s
    nb, dim, L = x.shape
    W = weight.shape[1]
    row = np.concatenate([initial_states if initial_states is not None else np.zeros((nb, dim, W - 1)), x], axis=2)
    s = sum(weight[None, :, k, None] * row[:, :, k : k + L] for k in range(W)) + (bias[:, None] if bias is not None else 0)
    ds = dout * silu_grad(s) if a.get("activation") else dout
    drow = np.zeros_like(row)
    if dfinal_states is not None:
        drow[:, :, L:] += dfinal_states
    dweight = np.zeros_like(weight)
    for k in range(W):
        drow[:, :, k : k + L] += weight[None, :, k, None] * ds
        dweight[:, k] = (ds * row[:, :, k : k + L]).sum((0, 2))
    res = {"out": silu(s) if a.get("activation") else s, "dx": drow[:, :, W - 1 :], "dweight": dweight}
    if bias is not None:
        res["dbias"] = ds.sum((0, 2))
    if initial_states is not None:
        res.update(final_states=row[:, :, L:], dinitial_states=drow[:, :, : W - 1])
    return res


def gated_rmsnorm_grad(a, x, weight, dout, z=None):
    # per group: v = x (or x silu(z) gating first), r = (mean v² + ε)^{−1/2}, n = v r, out = n w (· silu(z));
    # ∂ℓ/∂v = r (dn − n mean(dn n))
    g = a.get("group_size") or x.shape[-1]
    before = a.get("norm_before_gate", True)
    gate = silu(z) if z is not None else 1
    v = x * gate if z is not None and not before else x
    grp = lambda T: T.reshape(*T.shape[:-1], -1, g)
    n = (grp(v) / np.sqrt((grp(v) ** 2).mean(-1, keepdims=True) + a["eps"])).reshape(v.shape)
    r = np.sqrt((grp(v) ** 2).mean(-1, keepdims=True) + a["eps"]) ** -1
    post = gate if z is not None and before else 1
    dn = dout * weight * post
    dv = (r * (grp(dn) - grp(n) * (grp(dn) * grp(n)).mean(-1, keepdims=True))).reshape(x.shape)
    res = {"out": n * weight * post, "dweight": (dout * n * post).reshape(-1, x.shape[-1]).sum(0), "dx": dv}
    if z is not None and before:
        res["dz"] = dout * n * weight * silu_grad(z)
    elif z is not None:
        res.update(dx=dv * gate, dz=dv * x * silu_grad(z))
    return res


def ssd_chunk_scan_grad(a, x, dt, A, B, C, dout, D=None, z=None, dt_bias=None, initial_states=None):
    # as its recurrence (the chunked form computes the same function):
    # S_t = exp(δ_t A) S_{t−1} + δ_t x_t B_tᵀ,  y_t = S_t C_t + D x_t,  out = y silu(z),  δ = softplus(dt + bias)
    nb, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    raw = dt + (dt_bias if dt_bias is not None else 0)
    d = softplus(raw) if a.get("dt_softplus") else raw  # (b, L, H)
    Bh, Ch = (np.repeat(T, H // G, axis=2) for T in (B, C))  # (b, L, H, N)
    Ss = [initial_states.copy() if initial_states is not None else np.zeros((nb, H, P, N))]
    for t in range(L):
        Ss.append(np.exp(d[:, t] * A)[..., None, None] * Ss[-1] + (d[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :])
    y = np.stack([(Ss[t + 1] * Ch[:, t, :, None, :]).sum(-1) for t in range(L)], axis=1) + (D[:, None] * x if D is not None else 0)
    g, dy = {}, dout
    if z is not None:
        g["dz"], dy = dout * y * silu_grad(z), dout * silu(z)
    dx = dy * D[:, None] if D is not None else np.zeros_like(x)
    if D is not None:
        g["dD"] = (dy * x).sum((0, 1, 3))
    dS, dBh, dCh, dA, dd = np.zeros_like(Ss[0]), np.zeros_like(Bh), np.zeros_like(Ch), np.zeros_like(A), np.zeros_like(d)
    for t in reversed(range(L)):
        dS = dS + dy[:, t, :, :, None] * Ch[:, t, :, None, :]
        dCh[:, t] = (dy[:, t, :, :, None] * Ss[t + 1]).sum(2)
        e = np.exp(d[:, t] * A)[..., None, None]
        dd[:, t] = (dS * (A[:, None, None] * e * Ss[t] + x[:, t, :, :, None] * Bh[:, t, :, None, :])).sum((2, 3))
        dA += (dS * d[:, t, :, None, None] * e * Ss[t]).sum((0, 2, 3))
        dBh[:, t] = (dS * (d[:, t, :, None] * x[:, t])[..., None]).sum(2)
        dx[:, t] += (dS * d[:, t, :, None, None] * Bh[:, t, :, None, :]).sum(-1)
        dS = dS * e
    draw = dd * softplus_grad(raw) if a.get("dt_softplus") else dd
    fold = lambda T: T.reshape(nb, L, G, H // G, N).sum(3)
    g.update(dx=dx, ddt=draw, dA=dA, dB=fold(dBh), dC=fold(dCh))
    if dt_bias is not None:
        g["ddt_bias"] = draw.sum((0, 1))
    if initial_states is not None:
        g["dinitial_states"] = dS
    return {"out": y * silu(z) if z is not None else y, **g}


GRADS = {f.__name__: f for f in (selective_scan_grad, causal_conv1d_grad, gated_rmsnorm_grad, ssd_chunk_scan_grad)}
