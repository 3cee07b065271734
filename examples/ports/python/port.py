#!/usr/bin/env python3
"""An example port for `mil conform` (docs/conform.md) in Python with numpy, in both protocols:
  files  `port.py DIR`: reads DIR/case.json and DIR/case.safetensors (and DIR/model/ for `model`), computes the
         op, writes DIR/out.safetensors; exits 77 ("unsupported", the reason on stderr) for what it does not do.
  lines  `port.py --lines`: answers one JSON request per stdin line with one JSON reply per stdout line,
         tensors as base64 float64 little-endian; {"id", "unsupported": why} for what it does not do.
Every op the harness draws: the forward kernels (kernels.py), the backward ops (grads.py), the whole model
and speculative sampling (model.py).
    npx mil conform --op selective_scan --port "python3 examples/ports/python/port.py" [--protocol lines]
"""
import base64, json, os, struct, sys, traceback
import numpy as np
from grads import GRADS
from kernels import KERNELS
from model import Unsupported, model_op, speculative


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


def model_folder(path):
    js = lambda f: json.load(open(f"{path}/{f}")) if os.path.exists(f"{path}/{f}") else None
    return lambda: (js("config.json"), js("mamba_config.json"), js("mil_config.json"), read_safetensors(f"{path}/model.safetensors"))


def run(op, a, I, model_dir):
    """The outputs of one case (a dict of arrays); raises Unsupported for what this port does not do."""
    ops = {**KERNELS, **GRADS, "speculative": speculative, "model": lambda a, **I: model_op(a, folder=model_folder(model_dir), **I)}
    if op not in ops:
        raise Unsupported(f"op {op} is not implemented by this example port")
    with np.errstate(over="ignore", invalid="ignore"):
        return ops[op](a, **I)


def serve_lines():
    decode = lambda t: np.frombuffer(base64.b64decode(t["data_b64"]), dtype="<f8").reshape(t["shape"])
    encode = lambda x: {"shape": list(np.shape(x)), "dtype": "F64", "data_b64": base64.b64encode(np.ascontiguousarray(x, dtype="<f8").tobytes()).decode()}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            out = run(req["op"], req["options"], {k: decode(t) for k, t in req["inputs"].items()}, req.get("model_dir"))
            reply = {"id": req["id"], "outputs": {k: encode(v) for k, v in out.items()}}
        except Unsupported as e:
            reply = {"id": req["id"], "unsupported": str(e)}
        except Exception:
            reply = {"id": req["id"], "error": traceback.format_exc(limit=-2)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if sys.argv[1] == "--lines":
    serve_lines()
else:
    DIR = sys.argv[1]
    case = json.load(open(f"{DIR}/case.json"))
    try:
        out = run(case["op"], case["attrs"], read_safetensors(f"{DIR}/case.safetensors"), f"{DIR}/model")
    except Unsupported as e:
        print(e, file=sys.stderr)
        sys.exit(77)
    write_safetensors(f"{DIR}/out.safetensors", out)
