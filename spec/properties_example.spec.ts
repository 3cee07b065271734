import fc from 'fast-check';
import { describe, it } from 'vitest';
import { properties, referencePort, type PortFunction } from 'mamba-in-llama/conform';

// Your port: (op, inputs, attrs) → outputs, or null for an option it skips. The reference stands in for it here.
const myPort: PortFunction = (op, inputs, attrs) => referencePort(op, inputs, attrs);

describe('my port conforms to mamba-in-llama', () => {
  for (const [op, p] of Object.entries(properties(myPort, { ops: ['gated_rmsnorm', 'causal_conv1d'], rtol: 1e-4 })))
    it(op, () => fc.assert(p, { numRuns: 20 }));
});
