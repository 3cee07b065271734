"""Read a safetensors file (or a sharded checkpoint folder) into numpy arrays with nothing but numpy (Debian's python3-numpy).
BF16 (which numpy lacks) is widened to float32 exactly: its bits are the high half of a float32."""
import json
import os
import struct

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        raw = data[base + b : base + en]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=DTYPES[e["dtype"]]).copy()
        out[name] = a.reshape(e["shape"])
    return out


def load_checkpoint(folder):
    """model.safetensors, or every shard model.safetensors.index.json lists."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        return load_safetensors(os.path.join(folder, "model.safetensors"))
    out = {}
    for shard in sorted(set(json.load(open(index))["weight_map"].values())):
        out.update(load_safetensors(os.path.join(folder, shard)))
    return out
