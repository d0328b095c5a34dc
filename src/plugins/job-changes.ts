import type { ServerResponse } from "node:http";
import fp from "fastify-plugin";
import type { FastifyBaseLogger } from "fastify";
import { channels, type ApiKeyRevokedPayload, type CheckpointCreatedPayload, type ExpertJobChangedPayload } from "../db/channels.ts";
import type { ExpertJob } from "../modules/expert-jobs/expert-jobs.schemas.ts";
import type { ExpertJobsService } from "../modules/expert-jobs/expert-jobs.service.ts";
import type { WatchMarks } from "../modules/expert-jobs/watch-marks.ts";

export interface JobChangesOptions {
  heartbeatMs: number;
  /** Changes of one application that arrive within this time are read and sent together (a busy job posts many steps a second). */
  coalesceMs: number;
  /** A stream whose socket holds more unsent bytes than this is ended: its client reconnects and reads the list again. */
  maxBufferedBytes: number;
  /** Open job-change streams one API key may hold on this instance. */
  maxStreamsPerKey: number;
}

export const jobChangesDefaults = { coalesceMs: 200, maxBufferedBytes: 4 * 1024 * 1024, maxStreamsPerKey: 100 };

// The safety re-read looks this far behind its previous one: a change stamped by another instance's clock,
// or committed a little after its timestamp, is still found.
const CATCH_UP_OVERLAP_MS = 30_000;
// Past this many changed jobs in one re-read, the application's streams end and their clients read the list.
const CATCH_UP_LIMIT = 500;

interface Watcher {
  response: ServerResponse;
  applicationId: string;
  apiKeyId: string;
}

declare module "fastify" {
  interface FastifyInstance {
    jobChanges: JobChangesHub;
  }
}

/**
 * The streams of an application's job changes (`GET …/expert_jobs/stream`): every notification that a
 * job of the application changed (its status, or a checkpoint moving its step, usage and duration) sends
 * the job as GET answers it. Nothing is replayed: a client reads the list when its stream opens, and a
 * stream that may have missed changes (the LISTEN connection came back, the client fell behind) is ended
 * so that its client reconnects and reads the list again.
 */
export class JobChangesHub {
  readonly #watchers = new Map<string, Set<Watcher>>();
  readonly #streamsByKey = new Map<string, number>();
  /** Per application: the jobs that changed since its last read, and the timer of the next read. */
  readonly #pending = new Map<string, { jobIds: Set<string>; timer: NodeJS.Timeout }>();
  /**
   * Per application with streams: since when its changes were last re-read, and the text of each job sent
   * within the overlap (so the re-read sends only what no notification brought).
   */
  readonly #sent = new Map<string, { since: Date; texts: Map<string, { updatedAt: string; text: string }> }>();
  readonly #heartbeat: NodeJS.Timeout;
  #closed = false;
  #catchingUp: Promise<void> | undefined;
  /** Per application: its jobs' watch marks being written for the stream that opened first. */
  readonly #marking = new Map<string, Promise<void>>();

  constructor(
    private readonly expertJobs: ExpertJobsService,
    private readonly marks: WatchMarks,
    private readonly log: FastifyBaseLogger,
    readonly options: JobChangesOptions,
  ) {
    this.#heartbeat = setInterval(() => this.#writeAll(": ping\n\n"), options.heartbeatMs);
    this.#heartbeat.unref();
  }

  streamsOf(apiKeyId: string): number {
    return this.#streamsByKey.get(apiKeyId) ?? 0;
  }

  get openStreams(): number {
    let count = 0;
    for (const watchers of this.#watchers.values()) count += watchers.size;
    return count;
  }

  /**
   * Resolves once the application's running jobs are marked as watched, so that their checkpoints are
   * announced (a mark that fails is logged: the safety re-reads still find those changes, and renew it).
   */
  async subscribe(applicationId: string, apiKeyId: string, response: ServerResponse): Promise<void> {
    const watcher: Watcher = { response, applicationId, apiKeyId };
    let watchers = this.#watchers.get(applicationId);
    if (!watchers) {
      this.#watchers.set(applicationId, (watchers = new Set()));
      this.#sent.set(applicationId, { since: new Date(), texts: new Map() });
      const marking = this.marks
        .watchApplications([applicationId])
        .catch((error) => this.log.warn({ err: error, applicationId }, "marking the application's jobs as watched failed"))
        .finally(() => this.#marking.delete(applicationId));
      this.#marking.set(applicationId, marking);
    }
    watchers.add(watcher);
    this.#streamsByKey.set(apiKeyId, this.streamsOf(apiKeyId) + 1);
    response.on("close", () => this.#remove(watcher));
    await this.#marking.get(applicationId);
  }

  jobChanged(applicationId: string | undefined, expertJobId: string): void {
    if (this.#closed || applicationId === undefined || !this.#watchers.has(applicationId)) return;
    const pending = this.#pending.get(applicationId);
    if (pending) {
      pending.jobIds.add(expertJobId);
      return;
    }
    const timer = setTimeout(() => void this.#send(applicationId), this.options.coalesceMs);
    this.#pending.set(applicationId, { jobIds: new Set([expertJobId]), timer });
  }

  /** Notifications may have been missed (the LISTEN connection came back): every client reads its list again. */
  resync(): void {
    for (const watchers of this.#watchers.values()) for (const watcher of [...watchers]) this.#end(watcher);
  }

  /**
   * The safety re-read (every NOTIFY_SAFETY_INTERVAL_MS): each application's jobs changed since its previous
   * one that no notification brought, e.g. a publish lost to a crash between commit and send, are sent now.
   */
  catchUp(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#catchingUp ??= this.#catchUpAll().finally(() => (this.#catchingUp = undefined));
    return this.#catchingUp;
  }

  /** Waits for a re-read in flight (before the database closes). */
  async settled(): Promise<void> {
    await this.#catchingUp;
  }

  async #catchUpAll(): Promise<void> {
    const now = Date.now();
    try {
      await this.marks.watchApplications([...this.#watchers.keys()]);
    } catch (error) {
      this.log.warn({ err: error }, "renewing the watch marks of job-change streams failed; the next re-read does");
    }
    await Promise.all(
      [...this.#sent].map(async ([applicationId, sent]) => {
        const since = sent.since;
        sent.since = new Date(now - CATCH_UP_OVERLAP_MS);
        let jobs: ExpertJob[];
        try {
          jobs = await this.expertJobs.listChangedSince(applicationId, since, CATCH_UP_LIMIT);
        } catch (error) {
          this.log.warn({ err: error, applicationId }, "job changes re-read failed; the next one covers it");
          sent.since = since;
          return;
        }
        if (jobs.length === CATCH_UP_LIMIT) {
          for (const watcher of [...(this.#watchers.get(applicationId) ?? [])]) this.#end(watcher);
          return;
        }
        for (const [jobId, entry] of sent.texts) if (Date.parse(entry.updatedAt) < now - 2 * CATCH_UP_OVERLAP_MS) sent.texts.delete(jobId);
        this.#sendJobs(applicationId, jobs);
      }),
    );
  }

  revokeApiKey(apiKeyId: string): void {
    if (this.streamsOf(apiKeyId) === 0) return;
    for (const watchers of this.#watchers.values())
      for (const watcher of [...watchers]) if (watcher.apiKeyId === apiKeyId) this.#end(watcher);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    for (const { timer } of this.#pending.values()) clearTimeout(timer);
    this.#pending.clear();
    this.resync();
  }

  async #send(applicationId: string): Promise<void> {
    const pending = this.#pending.get(applicationId);
    this.#pending.delete(applicationId);
    if (!pending || this.#closed || !this.#watchers.has(applicationId)) return;
    let jobs: ExpertJob[];
    try {
      // Marked before the read: a job that just started running has its checkpoints announced from now on,
      // and what it committed before the mark is in the read.
      await this.marks.watchJobs([...pending.jobIds]);
      jobs = await this.expertJobs.listByIds(applicationId, [...pending.jobIds]);
    } catch (error) {
      // The changes are lost to these streams: their clients reconnect and read the list again.
      this.log.warn({ err: error, applicationId }, "job changes read failed; ending the application's job-change streams");
      for (const watcher of [...(this.#watchers.get(applicationId) ?? [])]) this.#end(watcher);
      return;
    }
    this.#sendJobs(applicationId, jobs);
  }

  /** Sends each job not already sent as it is now. */
  #sendJobs(applicationId: string, jobs: ExpertJob[]): void {
    const sent = this.#sent.get(applicationId);
    if (!sent || this.#closed) return;
    let frames = "";
    for (const job of jobs) {
      const text = JSON.stringify(job);
      if (sent.texts.get(job.id)?.text === text) continue;
      sent.texts.set(job.id, { updatedAt: job.updatedAt, text });
      frames += `event: message\ndata: ${text}\n\n`;
    }
    if (frames === "") return;
    for (const watcher of [...(this.#watchers.get(applicationId) ?? [])]) this.#write(watcher, frames);
  }

  #write(watcher: Watcher, chunk: string): void {
    const { response } = watcher;
    if (response.writableEnded || response.destroyed) return;
    if (response.writableLength > this.options.maxBufferedBytes) {
      this.log.warn({ applicationId: watcher.applicationId, buffered: response.writableLength }, "job-change stream client cut off");
      response.destroy();
      this.#remove(watcher);
      return;
    }
    response.write(chunk);
  }

  #writeAll(chunk: string): void {
    for (const watchers of this.#watchers.values()) for (const watcher of [...watchers]) this.#write(watcher, chunk);
  }

  #end(watcher: Watcher): void {
    if (!watcher.response.writableEnded && !watcher.response.destroyed) watcher.response.end();
    this.#remove(watcher);
  }

  #remove(watcher: Watcher): void {
    const watchers = this.#watchers.get(watcher.applicationId);
    if (!watchers?.delete(watcher)) return;
    if (watchers.size === 0) {
      this.#watchers.delete(watcher.applicationId);
      this.#sent.delete(watcher.applicationId);
    }
    const count = this.streamsOf(watcher.apiKeyId) - 1;
    if (count > 0) this.#streamsByKey.set(watcher.apiKeyId, count);
    else this.#streamsByKey.delete(watcher.apiKeyId);
  }
}

export const jobChangesPlugin = fp<JobChangesOptions>(
  async (app, options) => {
    const hub = new JobChangesHub(app.expertJobs, app.watchMarks, app.log, options);
    const listen = <T>(channel: string, handle: (payload: T) => void) =>
      app.notifications.on(channel, (payload) => {
        try {
          handle(JSON.parse(payload) as T);
        } catch {
          app.log.warn({ payload }, "ignoring malformed notification payload");
        }
      });
    const stops = [
      listen<ExpertJobChangedPayload>(channels.expertJobChanged, (payload) => hub.jobChanged(payload.applicationId, payload.expertJobId)),
      listen<CheckpointCreatedPayload>(channels.checkpointCreated, (payload) => hub.jobChanged(payload.applicationId, payload.expertJobId)),
      listen<ApiKeyRevokedPayload>(channels.apiKeyRevoked, (payload) => hub.revokeApiKey(payload.apiKeyId)),
      // A reconnect may have missed changes: the streams end and their clients re-read the list. A
      // publish lost to a crash between commit and send is found by the periodic re-read.
      app.notifications.onCatchUp((reason) => {
        if (reason === "reconnected") hub.resync();
        else void hub.catchUp();
      }),
    ];
    app.decorate("jobChanges", hub);
    app.addHook("preClose", async () => {
      for (const stop of stops) stop();
      hub.close();
      await hub.settled();
    });
  },
  { name: "job-changes", dependencies: ["database", "notifications", "services"], fastify: "5.x" },
);
