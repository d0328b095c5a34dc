import path from "node:path";
import type { Reporter, TestModule, Vitest } from "vitest/node";

/**
 * Lists every skipped test at the end of the run with why it was skipped: the default reporter only
 * counts them (`↓ file (1 test | 1 skipped)`). The reason is the `ctx.skip(note)` note, or else the test's
 * name, which by this suite's convention says it, e.g. "(Postgres only: PGlite is single-process)".
 */
export default class SkipReasonsReporter implements Reporter {
  #vitest: Vitest | undefined;

  onInit(vitest: Vitest): void {
    this.#vitest = vitest;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const lines = testModules.flatMap((testModule) =>
      [...testModule.children.allTests("skipped")].map((test) => {
        const result = test.result();
        const note = result.state === "skipped" ? result.note : undefined;
        const file = path.relative(this.#vitest?.config.root ?? process.cwd(), testModule.moduleId);
        return `  ↓ ${file} > ${test.fullName}${note ? ` — ${note}` : ""}`;
      }),
    );
    if (lines.length === 0) return;
    const log = (text: string) => (this.#vitest ? this.#vitest.logger.log(text) : console.log(text));
    log(`\n Skipped (${lines.length}), and why:`);
    for (const line of lines) log(line);
  }
}
