/** A refusal: the HTTP status (or the websocket's error/close) and the JSON error body. */
export class DarkroomError extends Error {
    status;
    code;
    body;
    constructor(status, body) {
        super(`${status} ${body.code}: ${body.message}`);
        this.name = "DarkroomError";
        this.status = status;
        this.code = body.code;
        this.body = body;
    }
}
class Topic {
    topic;
    handlers;
    owner;
    position;
    constructor(topic, handlers, since, owner) {
        this.topic = topic;
        this.handlers = handlers;
        this.owner = owner;
        this.position = since;
    }
    unsubscribe() {
        this.owner.drop(this);
    }
}
const OPEN = 1;
// Closes after which reconnecting cannot help (docs/REALTIME.md): 4500+ and 1009.
const FINAL = (code) => code >= 4500 || code === 1009;
export class DarkroomClient {
    baseUrl;
    wsUrl;
    /** How many times the socket got `ready` (1 + reconnections). */
    connections = 0;
    /** The highest `X-Darkroom-Position` this client's writes were answered with. */
    lastPosition = 0;
    token;
    fetcher;
    Socket;
    initialMs;
    maxMs;
    refreshS;
    topics = new Map();
    socket = null;
    ready = false;
    closed = false;
    attempt = 0;
    refusals = 0;
    reconnectTimer = null;
    refreshTimer = null;
    constructor(options) {
        this.baseUrl = options.baseUrl.replace(/\/+$/, "");
        this.wsUrl = options.wsUrl ?? this.baseUrl.replace(/^http/, "ws") + "/ws";
        this.token = options.token;
        this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
        this.Socket = options.WebSocket ?? globalThis.WebSocket;
        this.initialMs = options.backoff?.initialMs ?? 250;
        this.maxMs = options.backoff?.maxMs ?? 10_000;
        this.refreshS = options.refreshBeforeExpiryS ?? 30;
    }
    /** "closed" after `close()`; "open" while the socket is authenticated; else "connecting"
     *  (or "idle": no socket, nothing subscribed). */
    get state() {
        if (this.closed)
            return "closed";
        if (this.ready)
            return "open";
        return this.socket || this.reconnectTimer ? "connecting" : "idle";
    }
    async currentToken() {
        return typeof this.token === "string" ? this.token : await this.token();
    }
    // ---- REST ---------------------------------------------------------------------------
    /** Any route: `request("get", "/api/generations/{id}", {path: {id}})`. */
    async request(method, path, init = {}) {
        let url = String(path).replace(/\{(\w+)\}/g, (_, name) => {
            const value = init.path?.[name];
            if (value === undefined)
                throw new TypeError(`${String(path)} needs path.${name}`);
            return encodeURIComponent(String(value));
        });
        const query = new URLSearchParams();
        for (const [key, value] of Object.entries((init.query ?? {}))) {
            if (value !== undefined && value !== null)
                query.set(key, String(value));
        }
        if ([...query].length)
            url += `?${query}`;
        const headers = {
            authorization: `Bearer ${await this.currentToken()}`, ...init.headers
        };
        if (init.body !== undefined)
            headers["content-type"] = "application/json";
        const answer = await this.fetcher(this.baseUrl + url, {
            method: method.toUpperCase(), headers, signal: init.signal,
            body: init.body === undefined ? undefined : JSON.stringify(init.body)
        });
        const position = Number(answer.headers.get("x-darkroom-position") ?? 0);
        if (position > this.lastPosition)
            this.lastPosition = position;
        const text = await answer.text();
        const data = text ? JSON.parse(text) : undefined;
        if (!answer.ok) {
            const body = data && typeof data === "object" && "code" in data ? data
                : { error: answer.statusText, code: `http_${answer.status}`, message: text };
            throw new DarkroomError(answer.status, body);
        }
        return data;
    }
    get(path, init) {
        return this.request("get", path, init);
    }
    post(path, init) {
        return this.request("post", path, init);
    }
    put(path, init) {
        return this.request("put", path, init);
    }
    patch(path, init) {
        return this.request("patch", path, init);
    }
    delete(path, init) {
        return this.request("delete", path, init);
    }
    // The routes a gallery app uses most, by name.
    projects() { return this.get("/api/projects"); }
    /** What a command answers: its `position` and the ids it wrote (`id` for a create). */
    createProject(body) {
        return this.post("/api/projects", { body });
    }
    gallery(projectId, query = {}) {
        return this.get("/api/generations", { query: { ...query, projectId } });
    }
    generation(id) { return this.get("/api/generations/{id}", { path: { id } }); }
    createGeneration(body) {
        return this.post("/api/generations", { body });
    }
    credits() { return this.get("/api/credits"); }
    // ---- realtime -------------------------------------------------------------------------
    /** Snapshot, then changes, of one topic (`project:<id>`, `shot:<id>`, `generation:<id>`,
     *  `tasks:<project_id>`, `credits:<user_id>`), on the client's one socket. */
    subscribe(topic, handlers, options = {}) {
        if (this.closed)
            throw new Error("the client is closed");
        if (this.topics.has(topic))
            throw new Error(`already subscribed to ${topic}`);
        const entry = new Topic(topic, handlers, options.since ?? null, this);
        this.topics.set(topic, entry);
        if (this.ready)
            this.sendSubscribe(entry);
        else
            this.connect();
        return entry;
    }
    /** Stops everything: no more callbacks, no reconnection. */
    close() {
        this.closed = true;
        this.topics.clear();
        this.clearTimers();
        const socket = this.socket;
        this.socket = null;
        this.ready = false;
        if (socket)
            socket.close(1000, "client closed");
    }
    /** @internal */
    drop(entry) {
        if (this.topics.get(entry.topic) !== entry)
            return;
        this.topics.delete(entry.topic);
        if (this.ready)
            this.send({ type: "unsubscribe", topic: entry.topic, ref: entry.topic });
    }
    clearTimers() {
        if (this.reconnectTimer)
            clearTimeout(this.reconnectTimer);
        if (this.refreshTimer)
            clearTimeout(this.refreshTimer);
        this.reconnectTimer = this.refreshTimer = null;
    }
    send(frame) {
        if (this.socket && this.socket.readyState === OPEN)
            this.socket.send(JSON.stringify(frame));
    }
    sendSubscribe(entry) {
        this.send({ type: "subscribe", topic: entry.topic, since: entry.position, ref: entry.topic });
    }
    connect() {
        if (this.socket || this.reconnectTimer || this.closed)
            return;
        if (!this.Socket)
            throw new Error("no WebSocket: pass options.WebSocket");
        const socket = new this.Socket(this.wsUrl);
        this.socket = socket;
        socket.onopen = async () => {
            try {
                const token = await this.currentToken();
                if (this.socket === socket)
                    socket.send(JSON.stringify({ type: "auth", token }));
            }
            catch (error) {
                this.fail(new DarkroomError(0, { error: "Unauthenticated", code: "token_unavailable",
                    message: String(error) }));
                socket.close(4000, "no token");
            }
        };
        socket.onmessage = (event) => {
            if (this.socket === socket)
                this.receive(JSON.parse(String(event.data)));
        };
        socket.onerror = () => { };
        socket.onclose = (event) => {
            if (this.socket !== socket)
                return;
            this.socket = null;
            this.ready = false;
            if (this.refreshTimer)
                clearTimeout(this.refreshTimer);
            this.refreshTimer = null;
            if (this.closed)
                return;
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
    scheduleReconnect() {
        if (this.topics.size === 0)
            return; // reconnects with the next subscribe
        const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
        this.attempt += 1;
        const delay = ceiling / 2 + Math.random() * ceiling / 2;
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = null;
            this.connect();
        }, delay);
    }
    fail(error) {
        for (const entry of this.topics.values())
            entry.handlers.onError?.(error);
    }
    scheduleRefresh(expiresAt) {
        if (this.refreshTimer)
            clearTimeout(this.refreshTimer);
        this.refreshTimer = null;
        if (typeof expiresAt !== "number" || typeof this.token === "string")
            return;
        const inMs = Math.max(0, (expiresAt - this.refreshS) * 1000 - Date.now());
        this.refreshTimer = setTimeout(async () => {
            this.refreshTimer = null;
            try {
                this.send({ type: "auth", token: await this.currentToken() });
            }
            catch (error) {
                this.fail(new DarkroomError(0, { error: "Unauthenticated", code: "token_unavailable",
                    message: String(error) }));
            }
        }, inMs);
    }
    receive(frame) {
        switch (frame.type) {
            case "ready":
                this.ready = true;
                this.attempt = this.refusals = 0;
                this.connections += 1;
                this.scheduleRefresh(frame.expires_at);
                for (const entry of this.topics.values())
                    this.sendSubscribe(entry);
                return;
            case "authenticated":
                this.scheduleRefresh(frame.expires_at);
                return;
            case "subscribed": {
                const entry = this.topics.get(String(frame.topic));
                if (!entry || frame.recovered)
                    return;
                entry.position = Number(frame.position);
                entry.handlers.onSnapshot?.(frame.snapshot, entry.position);
                return;
            }
            case "change": {
                const entry = this.topics.get(String(frame.topic));
                const position = Number(frame.position);
                // Before its snapshot a topic takes no change (the snapshot will hold it); one at
                // or below the last applied position was already delivered.
                if (!entry || entry.position === null || position <= entry.position)
                    return;
                entry.position = position;
                entry.handlers.onChange?.(frame);
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
    refused(frame) {
        const error = new DarkroomError(0, { error: "Refused", code: String(frame.code),
            message: String(frame.message ?? "") });
        const entry = typeof frame.topic === "string" ? this.topics.get(frame.topic) : undefined;
        if (!entry) {
            this.fail(error);
            return;
        }
        if (frame.code === "unrecoverable_position") {
            entry.position = null; // the log moved on: start again from a snapshot
            this.sendSubscribe(entry);
        }
        else if (frame.code === "unavailable" || frame.code === "database_unavailable") {
            // The hub could not read (the database is down): the same subscribe again, later.
            const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt++);
            setTimeout(() => { if (this.topics.get(entry.topic) === entry)
                this.sendSubscribe(entry); }, ceiling / 2 + Math.random() * ceiling / 2);
        }
        else {
            this.topics.delete(entry.topic);
            entry.handlers.onError?.(error);
        }
    }
}
