#!/usr/bin/env bash
# Build the SIMD module from asm/gemm.ts twice (the committed artifacts; spec/simd.spec.ts rebuilds both and
# compares):
#   asm/gemm.wasm      baseline WebAssembly SIMD: every product rounded, then every sum (the same bits on every
#                      machine; the training engine's arithmetic)
#   asm/gemm-fma.wasm  with relaxed SIMD: the products' multiply-adds are f32x4.relaxed_madd, one rounding on a
#                      CPU with fused multiply-add (the inference backend's, where the engine has relaxed SIMD)
# Usage: asm/build.sh [OUT_DIR]   (default asm/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-asm}"
common=(-O3 --runtime stub --importMemory --sharedMemory --maximumMemory 65536 --noAssert)
npx asc asm/gemm.ts --outFile "$out/gemm.wasm" "${common[@]}" --enable simd,threads
npx asc asm/gemm.ts --outFile "$out/gemm-fma.wasm" "${common[@]}" --enable simd,threads,relaxed-simd
