import { readFileSync } from "node:fs";
import semver from "semver";

/** The Node.js versions package.json's `engines` promises (README says the same). */
export const supportedNode: string = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).engines.node;

/** One line saying why this Node.js cannot run the server, or undefined when it can. */
export function nodeVersionProblem(version: string = process.versions.node, supported: string = supportedNode): string | undefined {
  if (semver.satisfies(version, supported)) return undefined;
  return `Node.js ${version} is not supported: the server needs Node.js ${supported} (install a newer Node.js, e.g. the current LTS).`;
}
