// A client of the Sluice ingress for Node apps (>= 18): the global fetch, no
// dependency. Its types come from the ingress's /openapi.json (src/openapi.ts,
// generated: `npm run generate`), so a field the API renames fails to compile.
import { describe, send, type Problem, type Result, type Transport } from "./http.js";
import type { paths } from "./openapi.js";

export { describe, retryDelayMs, type Problem, type Result } from "./http.js";
export type { components, paths } from "./openapi.js";

type Method = "get" | "put" | "post" | "delete" | "patch";
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;
/** The JSON body an operation takes. */
export type BodyOf<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { requestBody?: { content: { "application/json": infer B } } } ? B : never;
/** The JSON an operation answers with `S`. */
export type ReplyOf<P extends keyof paths, M extends Method, S extends number> =
  Operation<P, M> extends { responses: { [K in S]: { content: { "application/json": infer R } } } } ? R : never;
/** An operation's query parameters. */
export type QueryOf<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

/** The topics this deployment's document lists (`sms.send`, ...). */
export type Topic = keyof paths extends infer P ? (P extends `/v1/events/${infer T}` ? T : never) : never;
type EventPath<T extends Topic> = `/v1/events/${T}` & keyof paths;
/** One event of `topic`: `{workspace, data, id?, delay_ms?, run_at?, ...}`. */
export type EventOf<T extends Topic> = Exclude<BodyOf<EventPath<T>, "post">, readonly unknown[]>;
/** A written event: its job id, whether it existed already, its due time. */
export type Published = Exclude<ReplyOf<EventPath<Topic>, "post", 202>, { jobs: unknown }>;
export type PublishedMany = Extract<ReplyOf<EventPath<Topic>, "post", 202>, { jobs: unknown }>;

export type SmsRequest = BodyOf<"/api/schedule-sms", "post">;
export type EmailRequest = BodyOf<"/api/schedule-email", "post">;
export type Job = ReplyOf<"/v1/jobs/{id}", "get", 200>;
export type JobQuery = QueryOf<"/v1/jobs/{id}", "get">;
export type JobsPage = ReplyOf<"/v1/jobs", "get", 200>;
export type JobsQuery = QueryOf<"/v1/jobs", "get">;
export type TagProgress = ReplyOf<"/v1/tags/{tag}/counts", "get", 200>;
export type TagQuery = QueryOf<"/v1/tags/{tag}/counts", "get">;
export type ScheduleRequest = BodyOf<"/v1/schedules/{function}/{name}", "put">;
export type Schedule = ReplyOf<"/v1/schedules/{function}/{name}", "put", 200>;
export type Schedules = ReplyOf<"/v1/schedules", "get", 200>;
export type SchedulesQuery = QueryOf<"/v1/schedules", "get">;
export type ScheduleQuery = QueryOf<"/v1/schedules/{function}/{name}", "get">;
export type Metrics = ReplyOf<"/v1/metrics", "get", 200>;
export type MetricsReset = BodyOf<"/v1/metrics/reset", "post">;

/**
 * What `scheduleSms` and `scheduleEmail` return, as the BullMQ service's
 * QueueService did: `{success: true, jobId}` or `{success: false, error}`, plus
 * the status and problem for callers that want them.
 */
export type QueueResult =
  | { success: true; jobId: string }
  | { success: false; error: string; status: number; problem: Problem };

export interface ClientOptions {
  /** The ingress, e.g. "https://sluice.example.com". */
  baseUrl: string;
  /** An API key (`sluice keys create`), sent as `Authorization: Bearer`. */
  apiKey: string;
  /** Further attempts after a 503 or 429, each after its Retry-After (default 3). */
  retries?: number;
  /** The longest Retry-After waited for (default 30,000 ms); a longer one is returned. */
  maxRetryDelayMs?: number;
  /** Each attempt is abandoned after this long (default 10,000 ms): status 0, "Timed out". */
  timeoutMs?: number;
  /** Another fetch (a mock, or one with a proxy agent). */
  fetch?: typeof fetch;
  /** How a retry waits (tests replace it). */
  sleep?: (ms: number) => Promise<void>;
}

export interface PublishOptions {
  /** The Idempotency-Key header: the job id when the event names none. */
  idempotencyKey?: string;
}

const segment = encodeURIComponent;

export class SluiceClient {
  readonly #transport: Transport;

  constructor(options: ClientOptions) {
    this.#transport = {
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      retries: options.retries ?? 3,
      maxRetryDelayMs: options.maxRetryDelayMs ?? 30_000,
      timeoutMs: options.timeoutMs ?? 10_000,
      fetch: options.fetch ?? globalThis.fetch,
      sleep: options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
    };
  }

  /** POST /v1/events/{topic}: one event; 202 written, 200 when its id existed already. */
  publish<T extends Topic>(topic: T, event: EventOf<T>, options: PublishOptions = {}): Promise<Result<Published>> {
    return send(this.#transport, {
      method: "POST",
      path: `/v1/events/${segment(topic)}`,
      body: event,
      headers: idempotency(options),
    });
  }

  /** POST /v1/events/{topic} with an array: all written, or none. */
  publishMany<T extends Topic>(
    topic: T,
    events: EventOf<T>[],
    options: PublishOptions = {},
  ): Promise<Result<PublishedMany>> {
    return send(this.#transport, {
      method: "POST",
      path: `/v1/events/${segment(topic)}`,
      body: events,
      headers: idempotency(options),
    });
  }

  /** POST /api/schedule-sms, the BullMQ service's route and answer. */
  scheduleSms(request: SmsRequest, options: PublishOptions = {}): Promise<QueueResult> {
    return this.#queued("/api/schedule-sms", request, options);
  }

  /** POST /api/schedule-email, the BullMQ service's route and answer. */
  scheduleEmail(request: EmailRequest, options: PublishOptions = {}): Promise<QueueResult> {
    return this.#queued("/api/schedule-email", request, options);
  }

  async #queued(path: string, body: unknown, options: PublishOptions): Promise<QueueResult> {
    const result = await send<{ jobId: string }>(this.#transport, {
      method: "POST",
      path,
      body,
      headers: idempotency(options),
    });
    if (result.ok) return { success: true, jobId: result.value.jobId };
    return { success: false, error: describe(result.problem), status: result.status, problem: result.problem };
  }

  /** GET /v1/jobs/{id}: state, attempts, due time, errors, result. */
  getJob(id: string, query: JobQuery = {}): Promise<Result<Job>> {
    return send(this.#transport, { method: "GET", path: `/v1/jobs/${segment(id)}`, query });
  }

  /** GET /v1/jobs: a page of jobs in one state, newest first; `cursor` for the next. */
  listJobs(query: JobsQuery): Promise<Result<JobsPage>> {
    return send(this.#transport, { method: "GET", path: "/v1/jobs", query });
  }

  /** DELETE /v1/jobs/{id}: cancel a job that has not started (409 once it has). */
  cancel(id: string, query: JobQuery = {}): Promise<Result<Job>> {
    return send(this.#transport, { method: "DELETE", path: `/v1/jobs/${segment(id)}`, query });
  }

  /**
   * GET /v1/tags/{tag}/counts: a tag's live jobs in a workspace (the key's, or
   * `workspace`) by function and state, and their total: a campaign's progress.
   */
  tagCounts(tag: string, query: TagQuery = {}): Promise<Result<TagProgress>> {
    return send(this.#transport, { method: "GET", path: `/v1/tags/${segment(tag)}/counts`, query });
  }

  /** Repeatable jobs, by function and name, in a workspace (/v1/schedules). */
  readonly schedules = {
    list: (query: SchedulesQuery = {}): Promise<Result<Schedules>> =>
      send(this.#transport, { method: "GET", path: "/v1/schedules", query }),
    /** Create or replace (its pending run is cancelled). */
    put: (fn: string, name: string, schedule: ScheduleRequest): Promise<Result<Schedule>> =>
      send(this.#transport, { method: "PUT", path: schedulePath(fn, name), body: schedule }),
    get: (fn: string, name: string, query: ScheduleQuery = {}): Promise<Result<Schedule>> =>
      send(this.#transport, { method: "GET", path: schedulePath(fn, name), query }),
    pause: (fn: string, name: string, query: { workspace?: string } = {}): Promise<Result<Schedule>> =>
      send(this.#transport, { method: "POST", path: `${schedulePath(fn, name)}/pause`, query }),
    resume: (fn: string, name: string, query: { workspace?: string } = {}): Promise<Result<Schedule>> =>
      send(this.#transport, { method: "POST", path: `${schedulePath(fn, name)}/resume`, query }),
    delete: (fn: string, name: string, query: { workspace?: string } = {}): Promise<Result<null>> =>
      send(this.#transport, { method: "DELETE", path: schedulePath(fn, name), query }),
  };

  /** Counts and timings per function (/v1/metrics). */
  readonly metrics = {
    /** Every workspace's (an admin key). */
    all: (query: QueryOf<"/v1/metrics", "get"> = {}): Promise<Result<Metrics>> =>
      send(this.#transport, { method: "GET", path: "/v1/metrics", query }),
    workspace: (
      workspace: string,
      query: QueryOf<"/v1/metrics/workspace/{workspace}", "get"> = {},
    ): Promise<Result<Metrics>> =>
      send(this.#transport, { method: "GET", path: `/v1/metrics/workspace/${segment(workspace)}`, query }),
    /** Clear a function's or a workspace's (an admin key). */
    reset: (which: MetricsReset): Promise<Result<null>> =>
      send(this.#transport, { method: "POST", path: "/v1/metrics/reset", body: which }),
  };
}

function schedulePath(fn: string, name: string): string {
  return `/v1/schedules/${segment(fn)}/${segment(name)}`;
}

function idempotency(options: PublishOptions): Record<string, string> | undefined {
  return options.idempotencyKey === undefined ? undefined : { "idempotency-key": options.idempotencyKey };
}
