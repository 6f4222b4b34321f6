/**
 * Small, fast, platform-independent 32-bit hashes for deterministic tie-breaking and ids
 * (not for security: nothing here resists an adversary choosing inputs).
 */

/** 32-bit FNV-1a of a string's UTF-16 code units, from an optional seed. */
export function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's finaliser: a bijective 32-bit mix with full avalanche. */
export function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 16 hex digits from two independent 32-bit hashes of `s`. */
export function hex64(s: string): string {
  const a = mix32(fnv1a(s));
  const b = mix32(fnv1a(s, 0x01000193) ^ 0x9e3779b9);
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}
