import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parse } from "yaml";
import { freePort } from "../helpers/ports.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkpointBody, type Tenant } from "../helpers/fixtures.ts";
import {
  createServerStore,
  seedThroughAdmin,
  startServerProcess,
  type ServerProcess,
  type ServerStore,
} from "../reliability/helpers/server-process.ts";

const root = path.resolve(import.meta.dirname, "../..");
const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((candidate) => existsSync(candidate));
if (!NGINX && process.env.REQUIRE_NGINX) throw new Error("REQUIRE_NGINX is set but nginx is not installed");

/** A fenced block of README's Deploying section. */
async function readmeBlock(language: string): Promise<string> {
  const readme = await readFile(path.join(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Deploying"), readme.indexOf("\n## ", readme.indexOf("## Deploying") + 1));
  const match = new RegExp("```" + language + "\\n([\\s\\S]*?)```").exec(section);
  if (!match) throw new Error(`no ${language} block in README's Deploying section`);
  return match[1]!;
}

describe("README's health checks", () => {
  it("probe routes the server answers, on the port it listens on", async () => {
    const spec = parse(await readmeBlock("yaml")) as {
      containers: Array<{ ports: Array<{ containerPort: number }>; [probe: string]: any }>;
      terminationGracePeriodSeconds: number;
    };
    const [container] = spec.containers;
    expect(container!.ports[0]!.containerPort).toBe(3000);
    expect(container!.livenessProbe.httpGet).toEqual({ path: "/healthz", port: 3000 });
    expect(container!.readinessProbe.httpGet).toEqual({ path: "/readyz", port: 3000 });
    expect(container!.startupProbe.httpGet.path).toBe("/healthz");
    // The graceful shutdown takes at most 2 s; the grace period leaves room.
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(10);
  });
});

describe.skipIf(!NGINX)(
  `README's nginx site in front of a real server${NGINX ? "" : " (skipped: nginx is not installed; apt-get install nginx-light)"}`,
  () => {
    const HEARTBEAT_MS = 300;
    let store: ServerStore;
    let server: ServerProcess;
    let tenant: Tenant;
    let nginx: ChildProcess;
    let dir: string;
    let ca: Buffer;
    let httpsPort: number;
    let httpPort: number;

    /** A request through the proxy over TLS, trusting only the test's certificate. */
    const viaProxy = (pathname: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
      new Promise<http.IncomingMessage>((resolve, reject) => {
        const request = https.request(
          {
            host: "127.0.0.1",
            port: httpsPort,
            path: pathname,
            method: init.method ?? "GET",
            headers: init.headers,
            ca,
            servername: "localhost",
          },
          resolve,
        );
        request.on("error", reject);
        request.end(init.body);
      });
    const bodyOf = async (response: http.IncomingMessage) => {
      let text = "";
      for await (const chunk of response) text += chunk;
      return text;
    };

    beforeAll(async () => {
      store = await createServerStore();
      server = await startServerProcess(store, { SSE_HEARTBEAT_MS: String(HEARTBEAT_MS) });
      tenant = await seedThroughAdmin(server);
      dir = await mkdtemp(path.join(tmpdir(), "ej-nginx-"));
      await mkdir(path.join(dir, "logs"));
      await promisify(execFile)("openssl", [
        ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"],
        ...["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        ...["-keyout", path.join(dir, "privkey.pem"), "-out", path.join(dir, "fullchain.pem")],
      ]);
      ca = await readFile(path.join(dir, "fullchain.pem"));
      [httpsPort, httpPort] = [await freePort(), await freePort()];
      // README's block as it is, but for this machine's addresses, ports, certificate and log folder.
      const site = (await readmeBlock("nginx"))
        .replace(/ {2}server 10\.0\.0\.1:3000;.*\n {2}server 10\.0\.0\.2:3000;\n/, `  server ${new URL(server.url).host};\n`)
        .replace("listen 80;", `listen 127.0.0.1:${httpPort};`)
        .replace("listen 443 ssl http2;", `listen 127.0.0.1:${httpsPort} ssl http2;`)
        .replaceAll("/etc/letsencrypt/live/jobs.example.com/", `${dir}/`)
        .replaceAll("/var/log/nginx/", `${dir}/logs/`);
      expect(site).not.toContain("10.0.0.1:3000");
      await writeFile(
        path.join(dir, "nginx.conf"),
        [
          `pid ${dir}/nginx.pid;`,
          `error_log ${dir}/logs/error.log warn;`,
          "events {}",
          "http {",
          ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((temp) => `  ${temp}_temp_path ${dir}/${temp};`),
          site,
          "}",
        ].join("\n"),
      );
      nginx = spawn(NGINX!, ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-g", "daemon off;"], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      nginx.stderr!.on("data", (chunk) => (stderr += chunk));
      const deadline = Date.now() + 10_000;
      for (;;) {
        const open = await new Promise<boolean>((resolve) => {
          const socket = net.connect(httpsPort, "127.0.0.1", () => (socket.end(), resolve(true)));
          socket.on("error", () => resolve(false));
        });
        if (open) break;
        if (nginx.exitCode !== null || Date.now() > deadline) throw new Error(`nginx did not start: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }, 120_000);

    afterAll(async () => {
      nginx?.kill("SIGTERM");
      server?.child.kill("SIGTERM");
      await server?.exited;
      await store?.drop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("redirects plain HTTP to HTTPS, and answers over TLS with the proxy's request id", async () => {
      const redirect = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http
          .get({ host: "127.0.0.1", port: httpPort, path: "/readyz", headers: { host: "jobs.example.com" } }, resolve)
          .on("error", reject),
      );
      expect(redirect.statusCode).toBe(301);
      expect(redirect.headers.location).toBe("https://jobs.example.com/readyz");
      const ready = await viaProxy("/readyz");
      expect(ready.statusCode).toBe(200);
      expect(await bodyOf(ready)).toBe('{"status":"ok"}');
      // nginx's $request_id (32 hex digits) became the server's request id.
      expect(ready.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
      expect(ready.headers["strict-transport-security"]).toMatch(/^max-age=/);
    });

    it("keeps /metrics from the public", async () => {
      expect((await viaProxy("/metrics")).statusCode).toBe(403);
    });

    it("passes a stream through unbuffered: pings while idle, each event as it is posted, then complete", async () => {
      const started = await viaProxy("/api/studio/v1/expert_jobs", {
        method: "POST",
        headers: { authorization: `Bearer ${tenant.clientKey}`, "content-type": "application/json" },
        body: JSON.stringify({ expertKey: tenant.expert.key, query: "Through the proxy" }),
      });
      expect(started.statusCode).toBe(200);
      const jobId = JSON.parse(await bodyOf(started)).data.expertJob.id as string;
      const stream = await viaProxy(`/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream?access_token=${tenant.clientKey}`);
      expect(stream.statusCode).toBe(200);
      expect(stream.headers["content-type"]).toMatch(/^text\/event-stream/);
      expect(stream.headers["content-encoding"]).toBeUndefined();
      let received = "";
      const waiters: Array<() => void> = [];
      stream.on("data", (chunk) => {
        received += chunk;
        for (const wake of waiters.splice(0)) wake();
      });
      const until = async (check: () => boolean, what: string) => {
        const deadline = Date.now() + 10_000;
        while (!check()) {
          if (Date.now() > deadline) throw new Error(`no ${what} through the proxy within 10 s; got:\n${received}`);
          await new Promise<void>((resolve) => {
            waiters.push(resolve);
            setTimeout(resolve, 100);
          });
        }
      };
      // Idle: heartbeats come through one by one, not held back in a buffer.
      await until(() => (received.match(/^: ping$/gm) ?? []).length >= 2, "heartbeat");
      const post = (body: unknown) =>
        fetch(`${server.url}/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, {
          method: "POST",
          headers: { authorization: `Bearer ${tenant.runtimeKey}`, "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      expect((await post(checkpointBody(tenant, { stepNumber: 1 }))).status).toBe(200);
      // The first event arrives while the job still runs: the proxy does not wait for the response to end.
      await until(() => /^id: 1$/m.test(received), "first event");
      expect(received).not.toContain("event: complete");
      expect((await post(checkpointBody(tenant, { stepNumber: 2, status: "completed" }))).status).toBe(200);
      await until(() => received.includes("event: complete"), "complete event");
      await new Promise((resolve) => stream.once("end", resolve));
      expect(received).toMatch(/^id: 2$/m);

      // nginx logs a request once it has finished it, which can be just after the client saw the end.
      const streamLine = `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;
      const readLog = () => readFile(path.join(dir, "logs/expert-jobs.log"), "utf8");
      let log = await readLog();
      for (const deadline = Date.now() + 5_000; !log.includes(streamLine) && Date.now() < deadline; log = await readLog()) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(log).toContain(streamLine);
      expect(log).not.toContain(tenant.clientKey);
    });

    it("keeps idle streams open far longer than the heartbeat", async () => {
      const site = await readmeBlock("nginx");
      const streamLocation = site.slice(site.indexOf("location ~ /checkpoints/stream$"));
      const timeout = /proxy_read_timeout (\d+)([smh]);/.exec(streamLocation)!;
      const seconds = Number(timeout[1]) * { s: 1, m: 60, h: 3600 }[timeout[2] as "s" | "m" | "h"];
      expect(seconds * 1000).toBeGreaterThan(4 * 15_000);
    });
  },
);
