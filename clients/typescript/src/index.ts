// @darkroom/client: Darkroom's HTTP API and realtime hub for web apps.
//
// - REST: typed from the served /openapi.json (src/openapi.ts, `npm run gen`). Every
//   refusal is thrown as a `DarkroomError` carrying the JSON error shape
//   `{error, code, message, ...}`. Reads see the caller's own earlier writes without
//   passing anything (the server's session consistency, docs/API.md).
// - Live: `subscribe(topic, {onSnapshot, onChange, onError})` over ONE websocket per
//   client: a snapshot, then every change after it, in order. A dropped connection is
//   reopened with exponential back-off and jitter and every topic resumed with `since`
//   (its last applied position): nothing lost, nothing twice. The token comes from a
//   callback, asked again on every (re)connection and before a JWT's `exp`.
//
// No runtime dependencies: the platform's `fetch` and `WebSocket` (browsers, Node >= 22,
// Node 20 with --experimental-websocket), or ones passed in the options.
import type { components, paths } from "./openapi.js";

export type { components, operations, paths } from "./openapi.js";
export type Schemas = components["schemas"];
export type ErrorBody = Schemas["Error"] & { [field: string]: unknown };
/** A create command's answer: the new `id`, its `position`, more ids by route. */
export type Created = Schemas["Written"] & { id: string };

/** A token, or a function giving the current one (called for every connection). */
export type TokenSource = string | (() => string | Promise<string>);

/** The part of the WebSocket API the client uses (browsers' and Node's both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketFactory = new (url: string) => WebSocketLike;

export interface ClientOptions {
  /** The server, e.g. "http://127.0.0.1:8085". */
  baseUrl: string;
  token: TokenSource;
  /** Default: `baseUrl` with the ws(s) scheme and `/ws`. */
  wsUrl?: string;
  fetch?: typeof fetch;
  WebSocket?: WebSocketFactory;
  /** Reconnect back-off: the first delay and the cap, in ms (default 250 and 10,000). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Re-authenticate this many seconds before a JWT's `exp` (default 30). */
  refreshBeforeExpiryS?: number;
}

/** A refusal: the HTTP status (or the websocket's error/close) and the JSON error body. */
export class DarkroomError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: ErrorBody;

  constructor(status: number, body: ErrorBody) {
    super(`${status} ${body.code}: ${body.message}`);
    this.name = "DarkroomError";
    this.status = status;
    this.code = body.code;
    this.body = body;
  }
}

// ---- typed REST ---------------------------------------------------------------------
type Method = "get" | "post" | "put" | "patch" | "delete";
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;
/** The paths that take method M. */
export type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P][M] extends undefined | never ? never : P;
}[keyof paths];
type Content<R> = R extends { content: { "application/json": infer T } } ? T : void;
/** What a route answers on success (2xx). */
export type Answer<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { responses: infer R }
    ? { [S in keyof R]: S extends 200 | 201 | 202 | 204 ? Content<R[S]> : never }[keyof R]
    : unknown;
type Params<O, K extends string> = O extends { parameters: { [key in K]?: infer Q } }
  ? (Q extends undefined | never ? never : Q) : never;
type Body<O> = O extends { requestBody?: { content: { "application/json": infer B } } } ? B : never;

export interface RequestInit<P extends keyof paths, M extends Method> {
  path?: Params<Operation<P, M>, "path"> | Record<string, string>;
  query?: Params<Operation<P, M>, "query">;
  body?: Body<Operation<P, M>>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

// ---- realtime -----------------------------------------------------------------------
export interface Change<T = unknown> {
  type: "change";
  topic: string;
  position: number;
  kind: string;
  data: T;
}

export interface Handlers<S = unknown, T = unknown> {
  /** The topic's state as of `position` (first subscription, or after the log moved on). */
  onSnapshot?(snapshot: S, position: number): void;
  /** Each change after the snapshot (or after `since`), once, in position order. */
  onChange?(change: Change<T>): void;
  /** A refusal for this topic (`forbidden`, ...) or the session (`bad_token`, ...). */
  onError?(error: DarkroomError): void;
}

export interface SubscribeOptions {
  /** Resume after this position instead of starting with a snapshot. */
  since?: number;
}

export interface Subscription {
  readonly topic: string;
  /** The last position applied (null before the snapshot). */
  readonly position: number | null;
  unsubscribe(): void;
}

type Frame = { type: string; [field: string]: unknown };

class Topic implements Subscription {
  position: number | null;
  constructor(readonly topic: string, readonly handlers: Handlers<any, any>,
              since: number | null, private readonly owner: DarkroomClient) {
    this.position = since;
  }
  unsubscribe(): void {
    this.owner.drop(this);
  }
}

const OPEN = 1;
// Closes after which reconnecting cannot help (docs/REALTIME.md): 4500+ and 1009.
const FINAL = (code: number) => code >= 4500 || code === 1009;

export class DarkroomClient {
  readonly baseUrl: string;
  readonly wsUrl: string;
  /** How many times the socket got `ready` (1 + reconnections). */
  connections = 0;
  /** The highest `X-Darkroom-Position` this client's writes were answered with. */
  lastPosition = 0;

  private readonly token: TokenSource;
  private readonly fetcher: typeof fetch;
  private readonly Socket: WebSocketFactory | undefined;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly refreshS: number;
  private readonly topics = new Map<string, Topic>();
  private socket: WebSocketLike | null = null;
  private ready = false;
  private closed = false;
  private attempt = 0;
  private refusals = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.wsUrl = options.wsUrl ?? this.baseUrl.replace(/^http/, "ws") + "/ws";
    this.token = options.token;
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.Socket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    this.initialMs = options.backoff?.initialMs ?? 250;
    this.maxMs = options.backoff?.maxMs ?? 10_000;
    this.refreshS = options.refreshBeforeExpiryS ?? 30;
  }

  /** "closed" after `close()`; "open" while the socket is authenticated; else "connecting"
   *  (or "idle": no socket, nothing subscribed). */
  get state(): "idle" | "connecting" | "open" | "closed" {
    if (this.closed) return "closed";
    if (this.ready) return "open";
    return this.socket || this.reconnectTimer ? "connecting" : "idle";
  }

  private async currentToken(): Promise<string> {
    return typeof this.token === "string" ? this.token : await this.token();
  }

  // ---- REST ---------------------------------------------------------------------------
  /** Any route: `request("get", "/api/generations/{id}", {path: {id}})`. */
  async request<P extends keyof paths, M extends Method>(
      method: M, path: P, init: RequestInit<P, M> = {}): Promise<Answer<P, M>> {
    let url = String(path).replace(/\{(\w+)\}/g, (_, name: string) => {
      const value = (init.path as Record<string, unknown> | undefined)?.[name];
      if (value === undefined) throw new TypeError(`${String(path)} needs path.${name}`);
      return encodeURIComponent(String(value));
    });
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries((init.query ?? {}) as Record<string, unknown>)) {
      if (value !== undefined && value !== null) query.set(key, String(value));
    }
    if ([...query].length) url += `?${query}`;
    const headers: Record<string, string> = {
      authorization: `Bearer ${await this.currentToken()}`, ...init.headers };
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const answer = await this.fetcher(this.baseUrl + url, {
      method: method.toUpperCase(), headers, signal: init.signal,
      body: init.body === undefined ? undefined : JSON.stringify(init.body) });
    const position = Number(answer.headers.get("x-darkroom-position") ?? 0);
    if (position > this.lastPosition) this.lastPosition = position;
    const text = await answer.text();
    const data = text ? JSON.parse(text) : undefined;
    if (!answer.ok) {
      const body: ErrorBody = data && typeof data === "object" && "code" in data ? data
        : { error: answer.statusText, code: `http_${answer.status}`, message: text };
      throw new DarkroomError(answer.status, body);
    }
    return data as Answer<P, M>;
  }

  get<P extends PathsWith<"get">>(path: P, init?: RequestInit<P, "get">) {
    return this.request("get", path, init);
  }
  post<P extends PathsWith<"post">>(path: P, init?: RequestInit<P, "post">) {
    return this.request("post", path, init);
  }
  put<P extends PathsWith<"put">>(path: P, init?: RequestInit<P, "put">) {
    return this.request("put", path, init);
  }
  patch<P extends PathsWith<"patch">>(path: P, init?: RequestInit<P, "patch">) {
    return this.request("patch", path, init);
  }
  delete<P extends PathsWith<"delete">>(path: P, init?: RequestInit<P, "delete">) {
    return this.request("delete", path, init);
  }

  // The routes a gallery app uses most, by name.
  projects() { return this.get("/api/projects"); }
  /** What a command answers: its `position` and the ids it wrote (`id` for a create). */
  createProject(body: Schemas["ProjectCreate"]): Promise<Created> {
    return this.post("/api/projects", { body }) as Promise<Created>;
  }
  gallery(projectId: string, query: Omit<RequestInit<"/api/generations", "get">["query"] & object, "projectId"> = {}) {
    return this.get("/api/generations", { query: { ...query, projectId } });
  }
  generation(id: string) { return this.get("/api/generations/{id}", { path: { id } }); }
  createGeneration(body: Schemas["GenerationCreate"]): Promise<Created> {
    return this.post("/api/generations", { body }) as Promise<Created>;
  }
  credits() { return this.get("/api/credits"); }

  // ---- realtime -------------------------------------------------------------------------
  /** Snapshot, then changes, of one topic (`project:<id>`, `shot:<id>`, `generation:<id>`,
   *  `tasks:<project_id>`, `credits:<user_id>`), on the client's one socket. */
  subscribe<S = unknown, T = unknown>(topic: string, handlers: Handlers<S, T>,
                                      options: SubscribeOptions = {}): Subscription {
    if (this.closed) throw new Error("the client is closed");
    if (this.topics.has(topic)) throw new Error(`already subscribed to ${topic}`);
    const entry = new Topic(topic, handlers, options.since ?? null, this);
    this.topics.set(topic, entry);
    if (this.ready) this.sendSubscribe(entry);
    else this.connect();
    return entry;
  }

  /** Stops everything: no more callbacks, no reconnection. */
  close(): void {
    this.closed = true;
    this.topics.clear();
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    if (socket) socket.close(1000, "client closed");
  }

  /** @internal */
  drop(entry: Topic): void {
    if (this.topics.get(entry.topic) !== entry) return;
    this.topics.delete(entry.topic);
    if (this.ready) this.send({ type: "unsubscribe", topic: entry.topic, ref: entry.topic });
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.reconnectTimer = this.refreshTimer = null;
  }

  private send(frame: object): void {
    if (this.socket && this.socket.readyState === OPEN) this.socket.send(JSON.stringify(frame));
  }

  private sendSubscribe(entry: Topic): void {
    this.send({ type: "subscribe", topic: entry.topic, since: entry.position, ref: entry.topic });
  }

  private connect(): void {
    if (this.socket || this.reconnectTimer || this.closed) return;
    if (!this.Socket) throw new Error("no WebSocket: pass options.WebSocket");
    const socket = new this.Socket(this.wsUrl);
    this.socket = socket;
    socket.onopen = async () => {
      try {
        const token = await this.currentToken();
        if (this.socket === socket) socket.send(JSON.stringify({ type: "auth", token }));
      } catch (error) {
        this.fail(new DarkroomError(0, { error: "Unauthenticated", code: "token_unavailable",
                                         message: String(error) }));
        socket.close(4000, "no token");
      }
    };
    socket.onmessage = (event) => {
      if (this.socket === socket) this.receive(JSON.parse(String(event.data)) as Frame);
    };
    socket.onerror = () => { /* a close follows */ };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.ready = false;
      if (this.refreshTimer) clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
      if (this.closed) return;
      if (FINAL(event.code)) {
        this.fail(new DarkroomError(event.code, { error: "Closed", code: `closed_${event.code}`,
                                                  message: event.reason }));
        return;
      }
      // A session that ended with its credential reconnects with a fresh token; a second
      // 4401 before `ready` means the callback's tokens are refused: say so.
      if (event.code === 4401 && ++this.refusals > 1) {
        this.fail(new DarkroomError(401, { error: "Unauthenticated", code: "bad_token",
                                           message: event.reason }));
      }
      this.scheduleReconnect();
    };
  }

  /** Exponential back-off with jitter: half the doubled delay, plus up to as much again. */
  private scheduleReconnect(): void {
    if (this.topics.size === 0) return;  // reconnects with the next subscribe
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt += 1;
    const delay = ceiling / 2 + Math.random() * ceiling / 2;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  private fail(error: DarkroomError): void {
    for (const entry of this.topics.values()) entry.handlers.onError?.(error);
  }

  private scheduleRefresh(expiresAt: unknown): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (typeof expiresAt !== "number" || typeof this.token === "string") return;
    const inMs = Math.max(0, (expiresAt - this.refreshS) * 1000 - Date.now());
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      try {
        this.send({ type: "auth", token: await this.currentToken() });
      } catch (error) {
        this.fail(new DarkroomError(0, { error: "Unauthenticated", code: "token_unavailable",
                                         message: String(error) }));
      }
    }, inMs);
  }

  private receive(frame: Frame): void {
    switch (frame.type) {
      case "ready":
        this.ready = true;
        this.attempt = this.refusals = 0;
        this.connections += 1;
        this.scheduleRefresh(frame.expires_at);
        for (const entry of this.topics.values()) this.sendSubscribe(entry);
        return;
      case "authenticated":
        this.scheduleRefresh(frame.expires_at);
        return;
      case "subscribed": {
        const entry = this.topics.get(String(frame.topic));
        if (!entry || frame.recovered) return;
        entry.position = Number(frame.position);
        entry.handlers.onSnapshot?.(frame.snapshot, entry.position);
        return;
      }
      case "change": {
        const entry = this.topics.get(String(frame.topic));
        const position = Number(frame.position);
        // Before its snapshot a topic takes no change (the snapshot will hold it); one at
        // or below the last applied position was already delivered.
        if (!entry || entry.position === null || position <= entry.position) return;
        entry.position = position;
        entry.handlers.onChange?.(frame as unknown as Change);
        return;
      }
      case "ping":
        this.send({ type: "pong" });
        return;
      case "error":
        this.refused(frame);
        return;
      default:
        return;
    }
  }

  private refused(frame: Frame): void {
    const error = new DarkroomError(0, { error: "Refused", code: String(frame.code),
                                         message: String(frame.message ?? "") });
    const entry = typeof frame.topic === "string" ? this.topics.get(frame.topic) : undefined;
    if (!entry) {
      this.fail(error);
      return;
    }
    if (frame.code === "unrecoverable_position") {
      entry.position = null;  // the log moved on: start again from a snapshot
      this.sendSubscribe(entry);
    } else if (frame.code === "unavailable" || frame.code === "database_unavailable") {
      // The hub could not read (the database is down): the same subscribe again, later.
      const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt++);
      setTimeout(() => { if (this.topics.get(entry.topic) === entry) this.sendSubscribe(entry); },
                 ceiling / 2 + Math.random() * ceiling / 2);
    } else {
      this.topics.delete(entry.topic);
      entry.handlers.onError?.(error);
    }
  }
}
