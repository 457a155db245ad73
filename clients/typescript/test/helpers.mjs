// Test helpers: HS256 tokens, a TCP proxy whose connections can be killed, waiting.
import { createHmac, randomUUID } from "node:crypto";
import net from "node:net";

export const BASE = process.env.DARKROOM_URL;
export const SECRET = process.env.DARKROOM_JWT_SECRET;
export const SKIP = BASE && SECRET ? false
  : "set DARKROOM_URL and DARKROOM_JWT_SECRET (tests/clients/test_typescript_client.py does)";

const b64 = (value) => Buffer.from(value).toString("base64url");

/** A user's JWT, signed with the server's secret, living `ttlS` seconds. */
export function jwt(user, ttlS = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = b64(JSON.stringify({ sub: user, iat: now, exp: now + ttlS }));
  const signature = createHmac("sha256", SECRET).update(`${head}.${claims}`).digest("base64url");
  return `${head}.${claims}.${signature}`;
}

export const newUser = () => randomUUID();
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check()` is truthy; rejects after `timeoutMs` saying `what`. */
export async function waitFor(check, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A loopback TCP proxy to the server: `kill()` cuts every connection through it at once,
 *  as a crashed server or a dropped network would (the client sees 1006). */
export class KillableProxy {
  constructor(target) {
    this.target = new URL(target);
    this.pairs = new Set();
    this.kills = [];
  }

  async start() {
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(this.target.port), this.target.hostname);
      const pair = { client, upstream };
      this.pairs.add(pair);
      const end = () => { client.destroy(); upstream.destroy(); this.pairs.delete(pair); };
      client.on("error", end).on("close", end);
      upstream.on("error", end).on("close", end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.wsUrl = `ws://127.0.0.1:${this.server.address().port}/ws`;
    return this;
  }

  /** Cuts every open connection; returns how many there were. */
  kill() {
    const cut = this.pairs.size;
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.pairs.clear();
    this.kills.push(cut);
    return cut;
  }

  async close() {
    this.kill();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** The generation ids a project-topic change carries (a `batch` carries several). */
export function generationIds(change) {
  const parts = change.kind === "batch" ? change.data.changes : [change];
  return parts.filter((p) => p.kind === "generation.upserted").map((p) => p.data.id);
}
