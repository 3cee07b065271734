#!/usr/bin/env bash
# Build .device-carry/ for runs on the lent GPU machine (which has no Node and reaches no registry):
# (and Debian's `time`: bench/realsize.ts measures mil init and convert under /usr/bin/time)
# the compiled JavaScript of lib/, kernels/ and bench/, the node binary, the runtime node_modules (webgpu
# with only its linux-x64 Dawn build), packed as bundle.tar.xz, plus Debian's Vulkan loader.
# On the device:  tar xJf .device-carry/bundle.tar.xz -C /tmp/mil; for f in .device-carry/*.deb; do dpkg -x $f /; done; ldconfig
#                 export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json XDG_RUNTIME_DIR=/tmp
#                 cd /tmp/mil && ./node dist/bench/kernels.js --backends webgpu --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device-carry
rm -rf "$out/build" "$out/bundle.tar.xz"
mkdir -p "$out/build/node_modules/webgpu/dist"
npx tsc -p . --noEmit false --outDir "$out/build/dist" --rootDir .
rm -rf "$out/build/dist/spec"
# every runtime import of dist/ (the CLI loads @huggingface/jinja for chat templates; lib/conform fast-check)
for p in gpu.js acorn gpu-mock.js tinybench debug ms @huggingface/jinja fast-check pure-rand; do
  [ -d "node_modules/$p" ] && mkdir -p "$out/build/node_modules/$(dirname "$p")" && cp -r "node_modules/$p" "$out/build/node_modules/$p"
done
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$out/build/node_modules/webgpu/"
cp -r node_modules/webgpu/dist/linux-x64 "$out/build/node_modules/webgpu/dist/"
cp "$(command -v node)" "$out/build/node"
# the tree and this folder travel together under 64 MiB: drop symbols and GPU.js's browser builds (Node reads src/)
strip "$out/build/node" "$out/build/node_modules/webgpu/dist/linux-x64/dawn.node" 2>/dev/null || true
rm -rf "$out/build/node_modules/gpu.js/dist"
mkdir -p "$out/build/asm" && cp asm/*.wasm "$out/build/asm/" # the wasm-simd backend (lib/simd/gemm.ts wasmPath)
echo '{"type":"module"}' > "$out/build/package.json"
XZ_OPT=-9e tar cJf "$out/bundle.tar.xz" -C "$out/build" .
rm -rf "$out/build"
(cd "$out" && for p in libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2 time; do ls ${p}_*_amd64.deb >/dev/null 2>&1 || apt-get download $p:amd64; done)
du -sh "$out"
