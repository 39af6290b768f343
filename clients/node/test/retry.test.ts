// Retries on 503 and 429 against a local HTTP server that answers as told: the
// Retry-After honoured, the attempts bounded, a longer wait than allowed returned.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { retryDelayMs, SluiceClient } from "../src/index.js";

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

let server: Server;
let baseUrl = "";
let answers: Answer[] = [];
let requests: { method: string; url: string; key: string; idempotency: string; body: string }[] = [];

before(async () => {
  server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString()));
    request.on("end", () => {
      requests.push({
        method: request.method ?? "",
        url: request.url ?? "",
        key: request.headers.authorization ?? "",
        idempotency: String(request.headers["idempotency-key"] ?? ""),
        body,
      });
      const answer = answers.shift() ?? { status: 500, body: { title: "no answer left", status: 500 } };
      response.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
      response.end(answer.body === undefined ? "" : JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

function client(waits: number[], retries = 3, maxRetryDelayMs = 30_000): SluiceClient {
  return new SluiceClient({
    baseUrl,
    apiKey: "sk_test",
    retries,
    maxRetryDelayMs,
    sleep: async (ms) => void waits.push(ms),
  });
}

const unavailable = (retryAfter?: string): Answer => ({
  status: 503,
  headers: retryAfter === undefined ? {} : { "retry-after": retryAfter },
  body: { type: "https://sluice.dev/problems/unavailable", title: "Unavailable", status: 503 },
});
const published = { status: 202, body: { id: "j1", duplicate: false, due: null } };

test("a 503 is retried after its Retry-After, with the same request", async () => {
  answers = [unavailable("2"), unavailable("0"), published];
  requests = [];
  const waits: number[] = [];
  const result = await client(waits).publish(
    "sms.send",
    { workspace: "acme", data: { to: "+15550100", body: "hi" } },
    { idempotencyKey: "order-1" },
  );
  assert.deepEqual(result, { ok: true, status: 202, value: { id: "j1", duplicate: false, due: null } });
  assert.deepEqual(waits, [2_000, 0]);
  assert.equal(requests.length, 3);
  for (const request of requests) {
    assert.equal(request.method, "POST");
    assert.equal(request.url, "/v1/events/sms.send");
    assert.equal(request.key, "Bearer sk_test");
    assert.equal(request.idempotency, "order-1");
    assert.deepEqual(JSON.parse(request.body), { workspace: "acme", data: { to: "+15550100", body: "hi" } });
  }
});

test("the attempts are bounded: the last 503 is the result", async () => {
  answers = [unavailable("1"), unavailable("1"), unavailable("1"), published];
  requests = [];
  const waits: number[] = [];
  const result = await client(waits, 2).getJob("j1");
  assert.equal(result.ok, false);
  assert.equal(result.status, 503);
  assert.equal(!result.ok && result.problem.title, "Unavailable");
  assert.deepEqual(waits, [1_000, 1_000]);
  assert.equal(requests.length, 3);
  answers = [];
});

test("a Retry-After beyond maxRetryDelayMs is not waited for", async () => {
  answers = [unavailable("120")];
  requests = [];
  const waits: number[] = [];
  const result = await client(waits, 3, 5_000).cancel("j1");
  assert.equal(result.status, 503);
  assert.deepEqual(waits, []);
  assert.equal(requests.length, 1);
});

test("a 429 is retried too; a 503 without Retry-After waits a second", async () => {
  answers = [{ status: 429, headers: { "retry-after": "3" }, body: { title: "Too many", status: 429 } }, unavailable(), published];
  requests = [];
  const waits: number[] = [];
  const result = await client(waits).publish("sms.send", { workspace: "acme", data: { to: "+15550100", body: "hi" } });
  assert.equal(result.ok, true);
  assert.deepEqual(waits, [3_000, 1_000]);
});

test("scheduleSms keeps the QueueService's {success, error} on a final 503", async () => {
  answers = [unavailable("1")];
  const result = await client([], 0).scheduleSms({ phoneNumber: "+15550100", message: "hi", workspaceId: "acme" });
  assert.equal(result.success, false);
  assert.equal(!result.success && result.status, 503);
  assert.equal(!result.success && result.error, "Unavailable");
});

test("an answer that is not a problem still reads as one; a refused connection is status 0", async () => {
  answers = [{ status: 502, headers: { "content-type": "text/html" } }];
  const proxied = await client([]).getJob("j1");
  assert.equal(proxied.ok, false);
  assert.equal(!proxied.ok && proxied.problem.status, 502);
  const refused = await new SluiceClient({ baseUrl: "http://127.0.0.1:1", apiKey: "k" }).getJob("j1");
  assert.equal(refused.ok, false);
  assert.equal(refused.status, 0);
  assert.equal(!refused.ok && refused.problem.title, "Unreachable");
});

test("Retry-After as seconds or an HTTP date", () => {
  const now = Date.parse("2026-03-01T10:00:00Z");
  assert.equal(retryDelayMs("7", now), 7_000);
  assert.equal(retryDelayMs("Sun, 01 Mar 2026 10:00:05 GMT", now), 5_000);
  assert.equal(retryDelayMs("Sun, 01 Mar 2026 09:00:00 GMT", now), 0);
  assert.equal(retryDelayMs(null, now), 1_000);
  assert.equal(retryDelayMs("soon", now), 1_000);
});
