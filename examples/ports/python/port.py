#!/usr/bin/env python3
"""An example port for `mil conform` (docs/conform.md) in Python with numpy: reads DIR/case.json and
DIR/case.safetensors (and DIR/model/ for `model`), computes the op, writes DIR/out.safetensors; exits 77
("unsupported", the reason on stderr) for what it does not implement. Every op the harness draws: the forward
kernels (kernels.py), the backward ops (grads.py), the whole model and speculative sampling (model.py).
    npx mil conform --op selective_scan --port "python3 examples/ports/python/port.py"
"""
import json, os, struct, sys
import numpy as np
from grads import GRADS
from kernels import KERNELS
from model import Unsupported, model_op, speculative

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


def model_folder():
    js = lambda f: json.load(open(f"{DIR}/model/{f}")) if os.path.exists(f"{DIR}/model/{f}") else None
    return js("config.json"), js("mamba_config.json"), js("mil_config.json"), read_safetensors(f"{DIR}/model/model.safetensors")


OPS = {**KERNELS, **GRADS, "speculative": speculative, "model": lambda a, **I: model_op(a, folder=model_folder, **I)}
try:
    if case["op"] not in OPS:
        raise Unsupported(f"op {case['op']} is not implemented by this example port")
    with np.errstate(over="ignore", invalid="ignore"):
        out = OPS[case["op"]](a, **I)
except Unsupported as e:
    print(e, file=sys.stderr)
    sys.exit(77)
write_safetensors(f"{DIR}/out.safetensors", out)
