// Seeded PRNG for fuzz tests (mulberry32): failures reproduce with the same seed.
// Set GK_FUZZ_SEED to replay a seed printed by a failing run.

export interface Rng {
  seed: number;
  /** float in [0, 1) */
  next(): number;
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number;
  bool(p?: number): boolean;
  pick<T>(xs: readonly T[]): T;
  bytes(n: number): Buffer;
}

export function fuzzSeed(fallback: number): number {
  const env = process.env.GK_FUZZ_SEED;
  return env !== undefined && /^\d+$/.test(env) ? Number(env) >>> 0 : fallback >>> 0;
}

export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  return {
    seed,
    next,
    int,
    bool: (p = 0.5) => next() < p,
    pick: (xs) => xs[int(0, xs.length - 1)]!,
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = int(0, 255);
      return b;
    },
  };
}
