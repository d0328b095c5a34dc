const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

export const isSemver = (version: string): boolean => SEMVER.test(version);

// BigInt: semver puts no bound on numbers, and beyond 2^53 Number would call distinct versions equal.
function compareNumbers(a: string, b: string): number {
  const diff = BigInt(a) - BigInt(b);
  return diff === 0n ? 0 : diff > 0n ? 1 : -1;
}

function compareIdentifiers(a: string, b: string): number {
  const numeric = /^\d+$/;
  if (numeric.test(a) && numeric.test(b)) return compareNumbers(a, b);
  if (numeric.test(a)) return -1;
  if (numeric.test(b)) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Semver precedence: negative when a < b, 0 when equal, positive when a > b (build metadata ignored). */
export function compareSemver(a: string, b: string): number {
  const [, ...pa] = SEMVER.exec(a) ?? [];
  const [, ...pb] = SEMVER.exec(b) ?? [];
  for (let i = 0; i < 3; i++) {
    const diff = compareNumbers(pa[i]!, pb[i]!);
    if (diff !== 0) return diff;
  }
  const [preA, preB] = [pa[3], pb[3]];
  if (preA === undefined || preB === undefined) return preA === preB ? 0 : preA === undefined ? 1 : -1;
  const [idsA, idsB] = [preA.split("."), preB.split(".")];
  for (let i = 0; i < Math.min(idsA.length, idsB.length); i++) {
    const diff = compareIdentifiers(idsA[i]!, idsB[i]!);
    if (diff !== 0) return diff;
  }
  return Math.sign(idsA.length - idsB.length);
}
