"""The forward kernel ops of the Python example port (docs/conform.md), vectorised over batch and channels
with numpy: selective_scan, selective_state_update, causal_conv1d, causal_conv1d_update, gated_rmsnorm,
ssd_chunk_scan (as the recurrence), ssd_minimal_discrete, multistep. Each takes (attrs, **inputs) and
returns {output name: array}.
"""
import numpy as np

softplus = lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))  # torch's threshold 20
silu = lambda x: x / (1 + np.exp(-x))


def selective_scan(a, u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None):
    nb, dim, L = u.shape
    dt = delta + (delta_bias[:, None] if delta_bias is not None else 0)
    if a.get("delta_softplus"):
        dt = softplus(dt)
    if B.ndim == 4:  # grouped (b, G, N, L): channel d uses group d // (dim / G)
        B, C = (np.repeat(T, dim // T.shape[1], axis=1) for T in (B, C))
    else:  # (b, N, L): the same for every channel
        B, C = (T[:, None] for T in (B, C))
    h = initial_state.copy() if initial_state is not None else np.zeros((nb, dim, A.shape[1]))
    out = np.zeros_like(u)
    for t in range(L):
        h = np.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * B[:, :, :, t]
        out[:, :, t] = (h * C[:, :, :, t]).sum(-1)
    if D is not None:
        out += D[:, None] * u
    if z is not None:
        out *= silu(z)
    return {"out": out, "last_state": h}


def causal_conv1d(a, x, weight, bias=None, initial_states=None):
    nb, dim, L = x.shape
    W = weight.shape[1]
    pad = initial_states if initial_states is not None else np.zeros((nb, dim, W - 1))
    row = np.concatenate([pad, x], axis=2)
    out = sum(weight[None, :, k, None] * row[:, :, k : k + L] for k in range(W))
    if bias is not None:
        out = out + bias[:, None]
    return {"out": silu(out) if a.get("activation") else out, "final_states": row[:, :, L:]}


def gated_rmsnorm(a, x, weight, z=None):
    g = a.get("group_size") or x.shape[-1]
    before = a.get("norm_before_gate", True)
    v = x * silu(z) if z is not None and not before else x
    vg = v.reshape(*v.shape[:-1], -1, g)
    y = (vg / np.sqrt((vg**2).mean(-1, keepdims=True) + a["eps"])).reshape(v.shape) * weight
    return {"out": y * silu(z) if z is not None and before else y}


def ssd_chunk_scan(a, x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None):
    nb, L, H, P = x.shape
    G = B.shape[2]
    dt = dt + (dt_bias if dt_bias is not None else 0)
    if a.get("dt_softplus"):
        dt = softplus(dt)
    Bh, Ch = (np.repeat(T, H // G, axis=2) for T in (B, C))  # (b, L, H, N)
    S = initial_states.copy() if initial_states is not None else np.zeros((nb, H, P, B.shape[3]))
    out = np.zeros_like(x)
    for t in range(L):  # the chunked form equals this recurrence
        S = np.exp(dt[:, t] * A)[..., None, None] * S + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        out[:, t] = (S * Ch[:, t, :, None, :]).sum(-1)
    if D is not None:
        out += D[:, None] * x
    if z is not None:
        out *= silu(z)
    return {"out": out, "final_state": S}


def selective_state_update(a, state, x, dt, A, B, C, D=None, z=None, dt_bias=None):
    nb, N = state.shape[0], state.shape[-1]
    xs, dts = x.reshape(nb, -1), dt.reshape(nb, -1)  # channels c = h·P + p in either layout
    dim = xs.shape[1]
    P = state.shape[2] if state.ndim == 4 else dim
    G = B.shape[1] if B.ndim == 3 else 1
    g = (np.arange(dim) // P) // ((dim // P) // G)  # the B/C group of each channel
    Bc, Cc = (T.reshape(nb, G, N)[:, g] for T in (B, C))  # (b, dim, N)
    d = dts + (dt_bias.reshape(-1) if dt_bias is not None else 0)
    if a.get("dt_softplus"):
        d = softplus(d)
    h = np.exp(d[..., None] * A.reshape(dim, N)) * state.reshape(nb, dim, N) + (d * xs)[..., None] * Bc
    y = (h * Cc).sum(-1) + (D.reshape(-1) * xs if D is not None else 0)
    if z is not None:
        y = y * silu(z.reshape(nb, -1))
    return {"out": y.reshape(x.shape), "state_after": h.reshape(state.shape)}


def causal_conv1d_update(a, x, conv_state, weight, bias=None, cache_seqlens=None):
    nb, dim, steps = x.shape
    S, W = conv_state.shape[2], weight.shape[1]
    if cache_seqlens is None:  # shifted left: the window is the last W − 1 entries
        pos = np.tile(np.arange(S - W + 1, S), (nb, 1))
    else:  # circular buffer written at cache_seqlens % S
        pos = (cache_seqlens.astype(int)[:, None] - (W - 1) + np.arange(W - 1)) % S
    window = np.take_along_axis(conv_state, np.repeat(pos[:, None, :], dim, axis=1), axis=2)
    row = np.concatenate([window, x], axis=2)
    out = sum(weight[None, :, k, None] * row[:, :, k : k + steps] for k in range(W))
    if bias is not None:
        out = out + bias[:, None]
    new = conv_state.copy()
    if cache_seqlens is None:
        new = np.concatenate([conv_state, x], axis=2)[:, :, steps:]
    else:
        for b in range(nb):
            new[b][:, (int(cache_seqlens[b]) + np.arange(steps)) % S] = x[b]
    return {"out": silu(out) if a.get("activation") else out, "conv_state_after": new}


def ssd_minimal_discrete(a, X, A, B, C, initial_states=None):
    nb, L, H, P = X.shape
    S = initial_states[:, 0].copy() if initial_states is not None else np.zeros((nb, H, P, B.shape[3]))
    Y = np.zeros_like(X)
    for t in range(L):  # already discretised: S = exp(A_t) S + X_t B_tᵀ, Y_t = S C_t
        S = np.exp(A[:, t])[..., None, None] * S + X[:, t, :, :, None] * B[:, t, :, None, :]
        Y[:, t] = (S * C[:, t, :, None, :]).sum(-1)
    return {"Y": Y, "final_state": S}


def multistep(a, h_i, x_cache, dt_cache, B_cache, x, dt, B, C, A, z=None, D=None, dt_bias=None):
    r, dim = a["recompute_steps"], h_i.shape[1]
    G = B.shape[2] if B.ndim == 4 else 1
    grp = lambda T: np.repeat(T.reshape(*T.shape[:2], G, -1), dim // G, axis=2)  # (b, steps, dim, N)

    def delta(v):
        v = v + (dt_bias if dt_bias is not None else 0)
        return softplus(v) if a.get("dt_softplus") else v

    h = h_i.copy()
    for t in range(r):  # replayed without output
        d = delta(dt_cache[:, t])
        h = np.exp(d[..., None] * A) * h + (d * x_cache[:, t])[..., None] * grp(B_cache)[:, t]
    h_j = h.copy()
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        d = delta(dt[:, t])
        h = np.exp(d[..., None] * A) * h + (d * x[:, t])[..., None] * grp(B)[:, t]
        out[:, t] = (h * grp(C)[:, t]).sum(-1) + (D * x[:, t] if D is not None else 0)
    if z is not None:
        out *= silu(z)
    return {"out": out, "h_j": h_j, "h_k": h}


KERNELS = {f.__name__: f for f in (selective_scan, selective_state_update, causal_conv1d, causal_conv1d_update, gated_rmsnorm, ssd_chunk_scan, ssd_minimal_discrete, multistep)}
