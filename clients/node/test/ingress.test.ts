// The client against a real `sluice ingress` and redis-server, started by
// tests/clients/test_node_client.py, which passes them in the environment:
// SLUICE_URL, SLUICE_API_KEY (workspace "acme"), SLUICE_ADMIN_KEY, and
// SLUICE_REDIS_PID (paused here to make the ingress answer 503).
// No worker runs: published jobs stay queued, so their state is known.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SluiceClient } from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through pytest tests/clients`);
  return value;
}

const baseUrl = env("SLUICE_URL");
const sluice = new SluiceClient({ baseUrl, apiKey: env("SLUICE_API_KEY") });
const admin = new SluiceClient({ baseUrl, apiKey: env("SLUICE_ADMIN_KEY") });
const inAnHour = new Date(Date.now() + 3_600_000).toISOString();

test("publish, then get the job it made", async () => {
  const published = await sluice.publish("sms.send", { workspace: "acme", data: { to: "+15550100", body: "hi" } });
  assert.ok(published.ok, JSON.stringify(published));
  assert.equal(published.status, 202);
  assert.equal(published.value.duplicate, false);
  const job = await sluice.getJob(published.value.id);
  assert.ok(job.ok, JSON.stringify(job));
  assert.equal(job.value.id, published.value.id);
  assert.equal(job.value.function, "sms.send");
  assert.equal(job.value.workspace, "acme");
  assert.equal(job.value.state, "queued");
  const data = job.value.data as { to: string; body: string };
  assert.deepEqual([data.to, data.body], ["+15550100", "hi"]);
  const listed = await sluice.listJobs({ state: "waiting", function: "sms.send" });
  assert.ok(listed.ok, JSON.stringify(listed));
  assert.ok(listed.value.jobs.some((listedJob) => listedJob.id === published.value.id));
});

test("an id given twice is one job: the second answer is 200, duplicate", async () => {
  const event = { workspace: "acme", data: { to: "+15550100", body: "once" }, id: "order-7" };
  const first = await sluice.publish("sms.send", event);
  const second = await sluice.publish("sms.send", event);
  assert.ok(first.ok && second.ok);
  assert.deepEqual([first.status, second.status], [202, 200]);
  assert.equal(second.value.duplicate, true);
  assert.equal(second.value.id, "order-7");
});

test("scheduleSms as the seed app calls it, then cancel the job", async () => {
  const scheduled = await sluice.scheduleSms({
    phoneNumber: "+15550100",
    message: "Your appointment is tomorrow",
    scheduledFor: inAnHour,
    metadata: { appointment: { id: 42, room: "3B" } },
    workspaceId: "acme",
  });
  assert.ok(scheduled.success, JSON.stringify(scheduled));
  const job = await sluice.getJob(scheduled.jobId);
  assert.ok(job.ok);
  assert.equal(job.value.state, "delayed");
  assert.equal(job.value.due_ms, Date.parse(inAnHour));
  const cancelled = await sluice.cancel(scheduled.jobId);
  assert.ok(cancelled.ok, JSON.stringify(cancelled));
  assert.equal(cancelled.value.state, "cancelled");
  const again = await sluice.cancel(scheduled.jobId);
  assert.ok(again.ok, "cancelling twice is no error");
  assert.equal(again.value.state, "cancelled");
  const missing = await sluice.cancel("no-such-job");
  assert.equal(missing.status, 404);
});

test("tagCounts: a tag's live jobs by function and state, in the key's workspace", async () => {
  const tags = ["campaign:node"];
  for (const delay_ms of [undefined, 3_600_000, 3_600_000]) {
    const event = { workspace: "acme", data: { to: "+15550100", body: "sale" }, tags, delay_ms };
    assert.ok((await sluice.publish("sms.send", event)).ok);
  }
  const counted = await sluice.tagCounts("campaign:node");
  assert.ok(counted.ok, JSON.stringify(counted));
  assert.deepEqual(counted.value.functions, { "sms.send": { delayed: 2, waiting: 1, active: 0 } });
  assert.deepEqual(counted.value.total, { delayed: 2, waiting: 1, active: 0 });
  const named = await admin.tagCounts("campaign:node", { workspace: "acme" });
  assert.ok(named.ok && named.value.total.delayed === 2, JSON.stringify(named));
  const unnamed = await admin.tagCounts("campaign:node");
  assert.ok(!unnamed.ok && unnamed.status === 422, JSON.stringify(unnamed));
});

test("scheduleEmail answers {success: true, jobId}", async () => {
  const result = await sluice.scheduleEmail({
    to: "ada@example.com",
    subject: "Welcome",
    html: "<p>Hello</p>",
    contactId: "c-1",
    workspaceId: "acme",
    delay: 60_000,
  });
  assert.ok(result.success, JSON.stringify(result));
  const job = await sluice.getJob(result.jobId, { function: "email.send" });
  assert.ok(job.ok);
  assert.equal(job.value.state, "delayed");
});

test("a 422 is a typed problem naming the field", async () => {
  const published = await sluice.publish("sms.send", { workspace: "acme", data: { to: "+15550100", body: "" } });
  assert.equal(published.ok, false);
  assert.equal(published.status, 422);
  if (published.ok) return;
  assert.equal(published.problem.title, "Invalid request");
  assert.equal(published.problem.errors?.[0]?.path, "$.data.body");
  const seed = await sluice.scheduleSms({ phoneNumber: "12", message: "hi", workspaceId: "acme" });
  assert.equal(seed.success, false);
  if (seed.success) return;
  assert.equal(seed.status, 422);
  assert.match(seed.error, /^Invalid request: \$\.phoneNumber: /);
});

test("a job of another workspace is not found", async () => {
  const other = await admin.publish("sms.send", { workspace: "other", data: { to: "+15550100", body: "x" } });
  assert.ok(other.ok);
  const found = await sluice.getJob(other.value.id);
  assert.equal(found.ok, false);
  assert.equal(found.status, 404);
});

test("schedules: put, list, get, pause, resume, delete", async () => {
  const put = await sluice.schedules.put("sms.send", "daily-digest", {
    data: { to: "+15550100", body: "digest" },
    cron: "0 9 * * *",
    zone: "Europe/Berlin",
    limit: 3,
  });
  assert.ok(put.ok, JSON.stringify(put));
  assert.equal(put.value.workspace, "acme");
  assert.equal(put.value.next_runs.length, 3);
  assert.match(put.value.next_runs[0]?.at ?? "", /T09:00:00\+0[12]:00$/); // Berlin's time
  const listed = await sluice.schedules.list({ function: "sms.send" });
  assert.ok(listed.ok);
  assert.deepEqual(
    listed.value.schedules.map((s) => s.name),
    ["daily-digest"],
  );
  const paused = await sluice.schedules.pause("sms.send", "daily-digest");
  assert.ok(paused.ok);
  assert.equal(paused.value.paused, true);
  const resumed = await sluice.schedules.resume("sms.send", "daily-digest");
  assert.ok(resumed.ok);
  assert.equal(resumed.value.paused, false);
  const got = await sluice.schedules.get("sms.send", "daily-digest", { runs: 1 });
  assert.ok(got.ok);
  assert.equal(got.value.next_runs.length, 1);
  const deleted = await sluice.schedules.delete("sms.send", "daily-digest");
  assert.deepEqual(deleted, { ok: true, status: 204, value: null });
  const gone = await sluice.schedules.get("sms.send", "daily-digest");
  assert.equal(gone.status, 404);
});

test("metrics: a workspace's with its key, everything with an admin key", async () => {
  const mine = await sluice.metrics.workspace("acme");
  assert.ok(mine.ok, JSON.stringify(mine));
  assert.ok("sms.send" in mine.value.functions);
  const all = await admin.metrics.all({ function: "sms.send" });
  assert.ok(all.ok, JSON.stringify(all));
  assert.deepEqual(Object.keys(all.value.functions), ["sms.send"]);
  const refused = await sluice.metrics.all();
  assert.equal(refused.status, 403);
  const forbidden = await sluice.metrics.reset({ function: "sms.send" });
  assert.equal(forbidden.status, 403);
  const reset = await admin.metrics.reset({ function: "sms.send" });
  assert.equal(reset.status, 204);
});

test("a 503 from the ingress while Redis is paused is retried after its Retry-After", async () => {
  const redis = Number(env("SLUICE_REDIS_PID"));
  const waits: number[] = [];
  const patient = new SluiceClient({
    baseUrl,
    apiKey: env("SLUICE_API_KEY"),
    retries: 1,
    // The wait is recorded, and Redis resumed instead of sleeping it out.
    sleep: async (ms) => {
      waits.push(ms);
      process.kill(redis, "SIGCONT");
    },
  });
  process.kill(redis, "SIGSTOP");
  let result;
  try {
    // With an id: the paused write may still be done once Redis resumes.
    result = await patient.publish("sms.send", { workspace: "acme", data: { to: "+15550100", body: "later" }, id: "retry-1" });
  } finally {
    process.kill(redis, "SIGCONT");
  }
  assert.deepEqual(waits, [2_000]);
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.value.id, "retry-1");
});
