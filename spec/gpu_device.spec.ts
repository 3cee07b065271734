/**
 * The GPU decoder's bad cases on the webgpu backend (here Dawn's CPU adapter), in a file of their own (vitest runs
 * each file in its own worker: the device destroyed here is no other file's):
 *   - a model past the device's limits: DeviceLimitError naming the limit, what the model needs and the device's
 *     value, before anything is uploaded; the float64 reference still runs the model;
 *   - a device lost mid-run (destroyed under a step): the step and every later one reject with a KernelError
 *     saying so — none hangs —, and a decoder built afterwards runs on a fresh device.
 * Mutation seen failing: the chain's waits not wrapped (Dawn's own rejection instead of a KernelError). Dawn rejects
 * a pending mapAsync when its device is destroyed, so the race of every wait against device.lost (for a driver
 * that would leave it pending) cannot be told apart here: taking it out still passes. Cost: ~5 s on the loaded box.
 */
import { describe, expect, vi } from 'vitest';
import { DeviceLimitError, KernelError } from '../lib/errors.js';
import { generate } from '../lib/model/generate.js';
import { GpuDecoder } from '../lib/model/gpu_decode.js';
import { randomLlama } from '../lib/model/random.js';
import { getOps } from '../lib/ops.js';
import { ResidentChain } from '../lib/ops_resident.js';
import { webgpuIt as run } from './gpu_helpers.js';

const small = () => randomLlama({ vocab: 30, hidden: 8, intermediate: 8, layers: 1, heads: 2, kvHeads: 1 }, 2);

describe('the GPU decoder on a small device and a lost one (webgpu)', () => {
  run('a model past the buffer limits: DeviceLimitError before any upload; the reference still runs it', async () => {
    const t = small();
    const chains: ResidentChain[] = [];
    const create = ResidentChain.create.bind(ResidentChain);
    const spy = vi.spyOn(ResidentChain, 'create').mockImplementation(async () => {
      const c = await create();
      chains.push(c);
      return c;
    });
    try {
      // a vocabulary whose embedding is past the device's binding limit (the check reads the config only)
      const probe = await create();
      const max = probe.device.limits.maxStorageBufferBindingSize;
      probe.destroy();
      const huge = { ...t, llama: { ...t.llama, vocabSize: Math.ceil(max / 4 / 8) + 1 } };
      const e = await GpuDecoder.create(huge, { capacity: 4 }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DeviceLimitError);
      expect((e as DeviceLimitError).limit).toMatch(/^max(StorageBufferBindingSize|BufferSize)$/);
      expect((e as Error).message).toMatch(/the model needs \d+ bytes for the embedding \(vocab × hidden\)/);
      expect(chains[0].deviceElements, 'nothing uploaded').toBe(0);
      // fewer storage bindings than the widest kernel's 7
      spy.mockImplementation(async () => {
        const c = await create();
        chains.push(c);
        const limits: Record<string, number> = {};
        for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize']) limits[k] = c.device.limits[k];
        limits.maxStorageBuffersPerShaderStage = 6;
        Object.defineProperty(c, 'device', { value: { limits } });
        return c;
      });
      await expect(GpuDecoder.create(t, { capacity: 4 })).rejects.toThrow(
        /maxStorageBuffersPerShaderStage is 6, and the model needs 7 storage buffers/,
      );
    } finally {
      spy.mockRestore();
    }
    const ref = await generate(await getOps('reference'), t, [1, 2], { maxNewTokens: 2, eos: [] });
    expect(ref.tokens).toHaveLength(2);
  });

  run(
    'a device lost under a step: a KernelError, not a hang; a new decoder gets a fresh device',
    async () => {
      const t = small();
      const dec = await GpuDecoder.create(t, { capacity: 8 });
      const ok = (await dec.step(1)).token;
      const pending = dec.step(2);
      (dec.chain.device as unknown as { destroy(): void }).destroy();
      await expect(pending).rejects.toThrow(KernelError);
      await expect(dec.step(3)).rejects.toThrow(/the WebGPU device was lost/);
      dec.destroy();
      const again = await GpuDecoder.create(t, { capacity: 8 });
      try {
        expect((await again.step(1)).token).toBe(ok);
      } finally {
        again.destroy();
      }
    },
    60_000,
  );
});
