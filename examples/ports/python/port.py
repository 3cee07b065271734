#!/usr/bin/env python3
"""An example port for `mil conform` (docs/conform.md) in Python with numpy: reads DIR/case.json and
DIR/case.safetensors, computes the op, writes DIR/out.safetensors; exits 77 ("unsupported") for ops it
does not implement. Ops: selective_scan, causal_conv1d, gated_rmsnorm, ssd_chunk_scan (as the recurrence).
    npx mil conform --op selective_scan --port "python3 examples/ports/python/port.py"
"""
import json, struct, sys
import numpy as np

DIR = sys.argv[1]
case = json.load(open(f"{DIR}/case.json"))
a = case["attrs"]


def read_safetensors(path):
    buf = open(path, "rb").read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        s, e = t["data_offsets"]
        out[name] = np.frombuffer(buf[8 + n + s : 8 + n + e], dtype="<f8").reshape(t["shape"])
    return out


def write_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for name, t in tensors.items():
        b = np.ascontiguousarray(t, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


I = read_safetensors(f"{DIR}/case.safetensors")
with np.errstate(over="ignore"):
    softplus = lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))  # torch's threshold 20
silu = lambda x: x / (1 + np.exp(-x))


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None):
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


def causal_conv1d(x, weight, bias=None, initial_states=None):
    nb, dim, L = x.shape
    W = weight.shape[1]
    pad = initial_states if initial_states is not None else np.zeros((nb, dim, W - 1))
    row = np.concatenate([pad, x], axis=2)
    out = sum(weight[None, :, k, None] * row[:, :, k : k + L] for k in range(W))
    if bias is not None:
        out = out + bias[:, None]
    return {"out": silu(out) if a.get("activation") else out, "final_states": row[:, :, L:]}


def gated_rmsnorm(x, weight, z=None):
    g = a.get("group_size") or x.shape[-1]
    before = a.get("norm_before_gate", True)
    v = x * silu(z) if z is not None and not before else x
    vg = v.reshape(*v.shape[:-1], -1, g)
    y = (vg / np.sqrt((vg**2).mean(-1, keepdims=True) + a["eps"])).reshape(v.shape) * weight
    return {"out": y * silu(z) if z is not None and before else y}


def ssd_chunk_scan(x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None):
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


OPS = {f.__name__: f for f in (selective_scan, causal_conv1d, gated_rmsnorm, ssd_chunk_scan)}
if case["op"] not in OPS:
    print(f"op {case['op']} is not implemented by this example port", file=sys.stderr)
    sys.exit(77)
with np.errstate(over="ignore", invalid="ignore"):
    write_safetensors(f"{DIR}/out.safetensors", OPS[case["op"]](**I))
