// @darkroom/client against a real `darkroom serve` (DARKROOM_URL), started by
// tests/clients/test_typescript_client.py.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, test } from "node:test";

import { DarkroomClient, DarkroomError } from "../dist/index.js";
import {
  BASE, generationIds, jwt, KillableProxy, newUser, SKIP, sleep, waitFor,
} from "./helpers.mjs";

const clients = [];
function clientFor(user, options = {}) {
  const client = new DarkroomClient({ baseUrl: BASE, token: () => jwt(user), ...options });
  clients.push(client);
  return client;
}
after(() => { for (const client of clients) client.close(); });

/** A subscription's snapshot and changes, as they come. */
function recorder() {
  const seen = { snapshot: null, position: null, changes: [], errors: [] };
  seen.handlers = {
    onSnapshot: (snapshot, position) => { seen.snapshot = snapshot; seen.position = position; },
    onChange: (change) => seen.changes.push(change),
    onError: (error) => seen.errors.push(error),
  };
  seen.ids = () => seen.changes.flatMap(generationIds);
  return seen;
}

async function newProject(client, name = "Gallery") {
  return (await client.createProject({ name })).id;
}

test("REST helpers answer typed bodies and read the caller's own writes", { skip: SKIP }, async () => {
  const client = clientFor(newUser());
  const project = await newProject(client, "Typed");
  assert.equal((await client.get("/api/projects/{id}", { path: { id: project } })).name, "Typed");
  for (let i = 0; i < 10; i++) {
    const made = await client.createGeneration({ project_id: project, location: `/media/r${i}.png` });
    assert.equal((await client.generation(made.id)).id, made.id);  // no min_position passed
  }
  assert.equal((await client.gallery(project, { limit: 100 })).items.length, 10);
  assert.ok(client.lastPosition > 0);
  assert.equal((await client.credits()).balance, 10);
});

test("a refusal is a DarkroomError with the JSON error shape", { skip: SKIP }, async () => {
  const client = clientFor(newUser());
  const missing = randomUUID();
  await assert.rejects(client.generation(missing), (error) => {
    assert.ok(error instanceof DarkroomError);
    assert.equal(error.status, 404);
    assert.match(error.code, /not_found/);
    assert.match(error.body.message, new RegExp(missing));
    return true;
  });
  await assert.rejects(client.createProject({ name: "" }), (error) => {
    assert.equal(error.status, 422);
    assert.equal(error.code, "invalid_fields");
    assert.equal(error.body.errors[0].path, "body.name");
    return true;
  });
  const stranger = new DarkroomClient({ baseUrl: BASE, token: "not-a-token" });
  await assert.rejects(stranger.projects(), (error) => error.status === 401);
});

test("a subscription gets the snapshot, then each change once", { skip: SKIP }, async () => {
  const client = clientFor(newUser());
  const project = await newProject(client);
  const first = await client.createGeneration({ project_id: project, location: "/media/a.png" });
  const seen = recorder();
  client.subscribe(`project:${project}`, seen.handlers);
  await waitFor(() => seen.snapshot, "the snapshot");
  // The caller's own write is in the snapshot (the hub waits for it: session consistency).
  assert.deepEqual(seen.snapshot.generations.map((g) => g.id), [first.id]);
  const second = await client.createGeneration({ project_id: project, location: "/media/b.png" });
  await waitFor(() => seen.ids().includes(second.id), "the second generation's change");
  assert.ok(seen.changes.every((c) => c.position > seen.position));
  assert.equal(client.connections, 1);
});

test("killed 5 times while changes are written, the client ends with every change exactly once, in order",
     { skip: SKIP, timeout: 120_000 }, async () => {
  const user = newUser();
  const proxy = await new KillableProxy(BASE).start();
  try {
    const writer = clientFor(user);
    const project = await newProject(writer, "Resume");
    const client = clientFor(user, { wsUrl: proxy.wsUrl, backoff: { initialMs: 50, maxMs: 400 } });
    const seen = recorder();
    client.subscribe(`project:${project}`, seen.handlers);
    await waitFor(() => seen.snapshot, "the snapshot");
    const start = seen.position;

    const written = [];
    let killing = true;
    const writing = (async () => {
      while (killing || written.length < 40) {
        const made = await writer.createGeneration({ project_id: project,
                                                     location: `/media/k${written.length}.png` });
        written.push(made.id);
        await sleep(20);
      }
    })();
    for (let kill = 1; kill <= 5; kill++) {
      await waitFor(() => client.connections === kill && client.state === "open",
                    `connection ${kill}`);
      await sleep(150 + Math.random() * 150);  // some changes flow, then the cut
      assert.ok(proxy.kill() >= 1, `kill ${kill} found the connection`);
    }
    killing = false;
    await writing;
    await waitFor(() => written.every((id) => seen.ids().includes(id)),
                  "every written generation on the killed client", 30_000);

    // What the log says happened after the snapshot: a fresh client resuming from it.
    const reference = recorder();
    clientFor(user).subscribe(`project:${project}`, reference.handlers, { since: start });
    await waitFor(() => written.every((id) => reference.ids().includes(id)),
                  "every written generation on the reference client", 30_000);
    await sleep(300);  // anything later than the writes would show up now

    const positions = seen.changes.map((c) => c.position);
    assert.deepEqual(positions, reference.changes.map((c) => c.position));
    assert.deepEqual(seen.changes.map((c) => c.kind), reference.changes.map((c) => c.kind));
    assert.ok(positions.every((p, i) => i === 0 || p > positions[i - 1]), "in order, no repeats");
    assert.equal(new Set(positions).size, positions.length, "each change once");
    assert.deepEqual([...new Set(seen.ids())].sort(), [...written].sort());
    assert.equal(proxy.kills.length, 5);
    assert.equal(client.connections, 6);
    assert.deepEqual(seen.errors, []);
  } finally {
    await proxy.close();
  }
});

test("a session re-authenticates with a fresh token from the callback before exp",
     { skip: SKIP, timeout: 30_000 }, async () => {
  const user = newUser();
  let issued = 0;
  const client = clientFor(user, {
    token: () => { issued += 1; return jwt(user, 4); },  // lives 4 s
    refreshBeforeExpiryS: 3,
  });
  const project = await newProject(client);
  issued = 0;
  const seen = recorder();
  client.subscribe(`project:${project}`, seen.handlers);
  await waitFor(() => seen.snapshot, "the snapshot");
  await sleep(5_500);  // past the first token's exp: without a fresh auth frame, closed 4401
  const later = await client.createGeneration({ project_id: project, location: "/media/l.png" });
  await waitFor(() => seen.ids().includes(later.id), "a change after the first token's exp");
  assert.equal(client.connections, 1, "the same socket all along");
  assert.ok(issued >= 3, `the callback gave ${issued} tokens`);
  assert.deepEqual(seen.errors, []);
});

test("a session closed at its token's exp reconnects with a fresh token and resumes",
     { skip: SKIP, timeout: 30_000 }, async () => {
  const user = newUser();
  const writer = clientFor(user);
  const project = await newProject(writer);
  const client = clientFor(user, {
    token: () => jwt(user, 2), refreshBeforeExpiryS: 0, backoff: { initialMs: 50 } });
  const seen = recorder();
  client.subscribe(`project:${project}`, seen.handlers);
  await waitFor(() => seen.snapshot, "the snapshot");
  const written = [];
  const deadline = Date.now() + 4_500;  // the server closes the session 4401 at exp
  while (Date.now() < deadline) {
    written.push((await writer.createGeneration({ project_id: project,
                                                  location: "/media/e.png" })).id);
    await sleep(100);
  }
  await waitFor(() => written.every((id) => seen.ids().includes(id)), "every generation");
  assert.ok(client.connections >= 2, `${client.connections} connections`);
  const positions = seen.changes.map((c) => c.position);
  assert.ok(positions.every((p, i) => i === 0 || p > positions[i - 1]), "in order, no repeats");
  assert.deepEqual(seen.errors, []);
});

test("unsubscribe stops one topic; close stops the socket and every callback", { skip: SKIP }, async () => {
  const client = clientFor(newUser());
  const [left, kept] = [await newProject(client, "Left"), await newProject(client, "Kept")];
  const a = recorder();
  const b = recorder();
  const leaving = client.subscribe(`project:${left}`, a.handlers);
  client.subscribe(`project:${kept}`, b.handlers);
  await waitFor(() => a.snapshot && b.snapshot, "both snapshots");
  leaving.unsubscribe();
  await client.createGeneration({ project_id: left, location: "/media/gone.png" });
  const mark = await client.createGeneration({ project_id: kept, location: "/media/kept.png" });
  await waitFor(() => b.ids().includes(mark.id), "the kept topic's change");
  await sleep(200);
  assert.equal(a.changes.length, 0);

  client.close();
  assert.equal(client.state, "closed");
  const before = b.changes.length;
  await client.createGeneration({ project_id: kept, location: "/media/after.png" });
  await sleep(700);
  assert.equal(b.changes.length, before);
  assert.equal(client.connections, 1);
  assert.throws(() => client.subscribe(`project:${kept}`, {}), /closed/);
});
