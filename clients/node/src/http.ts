// One request to the ingress, as a typed result, retried while the ingress says
// "unavailable, retry after": the transport under every method of the client.
import type { components } from "./openapi.js";

/** The ingress's error body (RFC 9457 problem details; `errors` names fields for 422). */
export type Problem = components["schemas"]["ProblemBody"];

/**
 * What every call returns instead of throwing: the decoded answer, or the
 * problem. `status` 0 is an answer that never came (refused connection, timeout).
 */
export type Result<T> =
  | { ok: true; status: number; value: T }
  | { ok: false; status: number; problem: Problem };

export interface Transport {
  baseUrl: string;
  apiKey: string;
  /** Further attempts after a 503 or 429 (default 3). */
  retries: number;
  /** The longest wait honoured (default 30 s): a longer Retry-After ends the retries. */
  maxRetryDelayMs: number;
  /** Each attempt is abandoned after this long (default 10 s). */
  timeoutMs: number;
  fetch: typeof fetch;
  sleep: (ms: number) => Promise<void>;
}

export interface Call {
  method: "GET" | "PUT" | "POST" | "DELETE" | "PATCH";
  path: string;
  query?: Record<string, string | number | string[] | undefined> | undefined;
  body?: unknown;
  headers?: Record<string, string> | undefined;
}

// The answers that say "nothing was done, try again later".
const RETRIED = new Set([429, 503]);
// The wait when a retried answer names none.
const DEFAULT_DELAY_MS = 1_000;

export async function send<T>(transport: Transport, call: Call): Promise<Result<T>> {
  const url = new URL(transport.baseUrl.replace(/\/+$/, "") + call.path);
  for (const [name, value] of Object.entries(call.query ?? {})) {
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
      url.searchParams.append(name, String(one));
    }
  }
  const headers: Record<string, string> = {
    authorization: `Bearer ${transport.apiKey}`,
    accept: "application/json, application/problem+json",
    ...call.headers,
  };
  const init: RequestInit = { method: call.method, headers };
  if (call.body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(call.body);
  }
  for (let attempt = 0; ; attempt++) {
    let response: Response;
    try {
      response = await transport.fetch(url, { ...init, signal: AbortSignal.timeout(transport.timeoutMs) });
    } catch (error) {
      // Not retried: a timed-out write may have been done (give an id to publish again safely).
      return { ok: false, status: 0, problem: unreachable(error) };
    }
    if (RETRIED.has(response.status) && attempt < transport.retries) {
      const delay = retryDelayMs(response.headers.get("retry-after"), Date.now());
      if (delay <= transport.maxRetryDelayMs) {
        await response.body?.cancel();
        await transport.sleep(delay);
        continue;
      }
    }
    return read<T>(response);
  }
}

/** Retry-After's delay: seconds, or an HTTP date; absent or unreadable, one second. */
export function retryDelayMs(header: string | null, nowMs: number): number {
  if (header === null || header.trim() === "") return DEFAULT_DELAY_MS;
  if (/^\s*\d+\s*$/.test(header)) return Number(header) * 1_000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? DEFAULT_DELAY_MS : Math.max(0, at - nowMs);
}

async function read<T>(response: Response): Promise<Result<T>> {
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    body = undefined; // not JSON: a proxy's page, say
  }
  if (response.ok) {
    return { ok: true, status: response.status, value: body as T };
  }
  const problem = isProblem(body)
    ? body
    : { type: "about:blank", title: response.statusText || "Error", status: response.status, detail: text.slice(0, 500) };
  return { ok: false, status: response.status, problem };
}

function isProblem(body: unknown): body is Problem {
  return typeof body === "object" && body !== null && "title" in body && "status" in body;
}

function unreachable(error: unknown): Problem {
  const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
  const detail = error instanceof Error ? `${error.message}${cause}` : String(error);
  return { type: "about:blank", title: timedOut ? "Timed out" : "Unreachable", status: 0, detail };
}

/** A problem in one line, the fields it names included: "Invalid request: $.phoneNumber: ...". */
export function describe(problem: Problem): string {
  const fields = (problem.errors ?? []).map((e) => `${e.path}: ${e.message}`);
  const parts = [problem.title, ...(fields.length > 0 ? fields : problem.detail ? [problem.detail] : [])];
  return parts.join(": ");
}
