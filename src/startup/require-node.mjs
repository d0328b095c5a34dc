// Preloaded by `npm start` and the Docker image (`node --import ./src/startup/require-node.mjs …`):
// plain JavaScript, run before the server's modules are even linked, so an unsupported Node.js gets
// one line saying what it needs instead of a SyntaxError from deep inside a dependency.
import { readFileSync } from "node:fs";
import semver from "semver";

const supported = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).engines.node;
if (!semver.satisfies(process.versions.node, supported)) {
  console.error(
    `Cannot start: Node.js ${process.versions.node} is not supported: the server needs Node.js ${supported} (install a newer Node.js, e.g. the current LTS)`,
  );
  process.exit(1);
}
