import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { EnvSchema } from "../../src/config.ts";

// Docker cannot run on the CI machines: these checks keep the files consistent with each other and with the server.
const root = path.join(import.meta.dirname, "../..");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");

describe("docker-compose.yml", () => {
  const compose = parse(read("docker-compose.yml"));
  const { postgres, server } = compose.services;

  it("runs the server, built from the Dockerfile, once Postgres is healthy", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["nats", "postgres", "server"]);
    expect(server.build).toBe(".");
    expect(server.depends_on).toEqual({ postgres: { condition: "service_healthy" } });
    expect(postgres.healthcheck.test.join(" ")).toContain("pg_isready");
    expect(compose.volumes).toHaveProperty("postgres-data");
  });

  it("wires the server to the Postgres service and takes its secrets from the environment", () => {
    const env = server.environment as Record<string, string>;
    for (const name of Object.keys(env)) expect(Object.keys(EnvSchema.properties)).toContain(name);
    const url = new URL(env.DATABASE_URL!);
    expect(url.protocol).toBe("postgresql:");
    expect(url.hostname).toBe("postgres");
    expect(url.port).toBe("5432");
    expect(decodeURIComponent(url.username)).toBe(postgres.environment.POSTGRES_USER);
    expect(decodeURIComponent(url.password)).toBe("${POSTGRES_PASSWORD}");
    expect(url.pathname).toBe(`/${postgres.environment.POSTGRES_DB}`);
    // Required: compose refuses to start without them (`:?`), instead of running with a default.
    expect(postgres.environment.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?.+\}$/);
    expect(env.SECRETS_KEY).toMatch(/^\$\{SECRETS_KEY:\?.+\}$/);
    expect(env.ADMIN_TOKEN).toMatch(/^\$\{ADMIN_TOKEN(:?[-?].*)?\}$/);
    expect(env.HOST).toBe("0.0.0.0");
    expect(server.ports).toEqual([`127.0.0.1:${env.PORT}:${env.PORT}`]);
  });

  it("publishes PostgreSQL on 127.0.0.1 only, and no password is written in the file", () => {
    expect(postgres.ports).toEqual(["127.0.0.1:5432:5432"]);
    for (const service of [postgres, server]) {
      for (const value of Object.values(service.environment as Record<string, string>)) {
        expect(value).not.toMatch(/postgres:postgres@|PASSWORD: postgres/);
      }
    }
    expect(read("docker-compose.yml")).not.toMatch(/POSTGRES_PASSWORD: postgres\b/);
  });

  it("offers core NATS under the `nats` profile, on 127.0.0.1 only, at the server's default NATS_URL", () => {
    const { nats } = compose.services;
    expect(nats.profiles).toEqual(["nats"]);
    expect(nats.ports).toEqual(["127.0.0.1:4222:4222"]);
    // No JetStream: the database is the log.
    expect(nats.command).not.toContain("-js");
    expect(server.environment.NATS_URL).toBe("${NATS_URL:-nats://nats:4222}");
    expect(server.environment.NOTIFY_BACKEND).toBe("${NOTIFY_BACKEND:-postgres}");
    // Not a dependency: without the profile the service does not exist, and with it the server waits for NATS itself.
    expect(Object.keys(server.depends_on)).toEqual(["postgres"]);
  });

  it("health-checks the server on /healthz at its port", () => {
    const check = server.healthcheck.test.join(" ");
    expect(server.healthcheck.test[0]).toBe("CMD");
    expect(check).toContain(`127.0.0.1:${server.environment.PORT}/healthz`);
  });
});

describe("Dockerfile", () => {
  const lines = read("Dockerfile")
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"));
  const instructions = lines.map((line) => {
    const [keyword, ...rest] = line.trim().split(/\s+/);
    return { keyword: keyword!.toUpperCase(), args: rest.join(" ") };
  });
  const lastFrom = instructions.map((instruction) => instruction.keyword).lastIndexOf("FROM");
  const finalStage = instructions.slice(lastFrom);

  it("builds in two stages on node:24-slim", () => {
    const stages = instructions.filter((instruction) => instruction.keyword === "FROM").map((instruction) => instruction.args);
    expect(stages).toEqual(["node:24-slim AS deps", "node:24-slim"]);
    expect(instructions.some((instruction) => instruction.keyword === "RUN" && instruction.args.startsWith("npm ci --omit=dev"))).toBe(
      true,
    );
  });

  it("runs as a non-root user, listens on 0.0.0.0, health-checks /healthz and starts the server as npm start does, with node as PID 1", () => {
    const user = finalStage.findIndex((instruction) => instruction.keyword === "USER");
    expect(finalStage[user]?.args).toBe("node");
    expect(user).toBeLessThan(finalStage.findIndex((instruction) => instruction.keyword === "CMD"));
    expect(finalStage.find((instruction) => instruction.keyword === "ENV")?.args).toContain("HOST=0.0.0.0");
    expect(finalStage.find((instruction) => instruction.keyword === "HEALTHCHECK")?.args).toContain("/healthz");
    const start = (JSON.parse(read("package.json")) as { scripts: { start: string } }).scripts.start;
    expect(start.startsWith("node ")).toBe(true);
    expect(JSON.parse(finalStage.find((instruction) => instruction.keyword === "CMD")!.args)).toEqual(start.split(" "));
  });

  it("copies into the image every source the server imports outside src/ (package.json `imports`)", () => {
    const imports = (JSON.parse(read("package.json")) as { imports: Record<string, string> }).imports;
    const copied = finalStage.filter((instruction) => instruction.keyword === "COPY").map((instruction) => instruction.args.split(" ")[0]!);
    const targets = Object.values(imports).map((target) => path.posix.dirname(target.replace(/^\.\//, "")));
    expect(targets).toContain("packages/contract/src");
    for (const target of targets) expect(copied, target).toContain(target);
  });

  it("copies only files that exist and that .dockerignore lets through", () => {
    const ignored = read(".dockerignore").split("\n").filter(Boolean);
    expect(ignored).toEqual(expect.arrayContaining(["node_modules", ".env", ".data", "src/generated"]));
    const sources = instructions
      .filter((instruction) => instruction.keyword === "COPY" && !instruction.args.startsWith("--from"))
      .flatMap((instruction) => instruction.args.split(" ").slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      expect(existsSync(path.join(root, source)), source).toBe(true);
      expect(ignored, source).not.toContain(source);
    }
  });
});
