#!/usr/bin/env bash
# Build asm/gemm.wasm from asm/gemm.ts (the committed artifact; spec/simd.spec.ts rebuilds and compares).
set -euo pipefail
cd "$(dirname "$0")/.."
npx asc asm/gemm.ts --outFile "${1:-asm/gemm.wasm}" -O3 --runtime stub --importMemory --sharedMemory --maximumMemory 65536 --noAssert --enable simd,threads
