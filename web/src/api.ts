// The one module that talks to the node's local API (api/openapi.json):
// JSON over fetch, the bearer token, and the WebSocket of live events.

export type NodeState = 'new' | 'locked' | 'unlocked';

export type FriendStatus = 'pending_out' | 'pending_in' | 'accepted' | 'blocked' | 'key_changed';

export type MessageStatus = 'pending' | 'sent' | 'delivered' | 'read' | 'failed';

export type Path = 'direct' | 'relay' | 'mailbox' | '';

export interface Me {
  user_id: string;
  name: string;
  peer_id: string;
  addrs: string[];
  invite: string;
  fingerprint: string;
}

export interface NodeInfo {
  peer_id: string;
  addrs: string[];
  connected_peers: string[];
  reachability: string;
}

export interface Friend {
  user_id: string;
  name: string;
  status: FriendStatus;
  verified: boolean;
  online: boolean;
  safety_number: string;
  /** Their key signed two different histories: sending is held until they are verified again. */
  key_fork?: boolean;
  /** Their key in use follows from their first key by a verified chain of rotations; the safety number stays. */
  key_rotated?: boolean;
}

export interface Message {
  msg_id: string;
  from: string;
  to: string;
  text: string;
  sent_at: string;
  received_at: string | null;
  status: MessageStatus;
  direction: 'in' | 'out';
  path: Path;
  error?: string;
}

export interface LastMessage {
  msg_id: string;
  text: string;
  at: string;
  direction: 'in' | 'out';
  status: MessageStatus;
}

export interface Conversation {
  with: string;
  name: string;
  last_message: LastMessage | null;
  unread: number;
}

export interface MessagesPage {
  messages: Message[];
  next: string | null;
}

export interface StatusChange {
  msg_id: string;
  with: string;
  status: MessageStatus;
  path: Path;
  error?: string;
}

export interface Presence {
  user_id: string;
  peer_id: string;
}

/** One user who claims a searched name (GET /api/v1/directory/search). */
export interface SearchResult {
  user_id: string;
  name: string;
  /** Tells apart users who claim the same name. */
  fingerprint: string;
  /** Already on the friend list. */
  friend: boolean;
}

/** A user's verified directory record (GET /api/v1/directory/{user_id}). */
export interface DirectoryEntry {
  user_id: string;
  name: string;
  fingerprint: string;
  devices: string[];
  seq: number;
  expires_at: string;
}

export type ServerEvent =
  | { type: 'message'; data: Message }
  | { type: 'message_status'; data: StatusChange }
  | {
      type:
        | 'friend_request'
        | 'friend_accepted'
        | 'friend_removed'
        | 'friend_key_rotated'
        | 'friend_key_changed'
        | 'key_fork';
      data: Friend;
    }
  | { type: 'peer_online' | 'peer_offline'; data: Presence }
  | { type: 'overflow' };

/** The largest message text the API takes, in bytes of UTF-8. */
export const MAX_TEXT_BYTES = 32 * 1024;

/** The shortest passphrase register takes, in characters. */
export const MIN_PASSPHRASE_CHARS = 10;

/** An error answer of the API: {"error": {"code", "message"}} and its status. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds to wait, from Retry-After (throttled answers). */
  readonly retryAfter?: number;

  constructor(status: number, code: string, message: string, retryAfter?: number) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The error of a request that never got an answer (node down). */
export class NetworkError extends Error {
  constructor(message = 'The node does not answer. Is parley run still running?') {
    super(message);
    this.name = 'NetworkError';
  }
}

const tokenKey = 'parley.token';

// The token lives in memory and in sessionStorage (a reload keeps the
// session in this tab); never in a URL, a cookie or localStorage.
let token: string | null = readStoredToken();

function readStoredToken(): string | null {
  try {
    return globalThis.sessionStorage?.getItem(tokenKey) ?? null;
  } catch {
    return null;
  }
}

export function getToken(): string | null {
  return token;
}

export function setToken(t: string | null): void {
  token = t;
  try {
    if (t) sessionStorage.setItem(tokenKey, t);
    else sessionStorage.removeItem(tokenKey);
  } catch {
    // Storage may be unavailable (private mode): memory still holds it.
  }
}

type UnauthorizedHandler = () => void;
let onUnauthorized: UnauthorizedHandler = () => {};

/** Sets what happens when an authenticated request answers 401. */
export function setUnauthorizedHandler(h: UnauthorizedHandler): void {
  onUnauthorized = h;
}

/** Ends the session in this tab (the token was refused) and tells the UI. */
export function sessionEnded(): void {
  setToken(null);
  onUnauthorized();
}

const base = '/api/v1';

async function request<T>(method: string, path: string, body?: unknown, auth = true): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && token) headers['Authorization'] = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new NetworkError();
  }
  if (res.status === 204) return undefined as T;
  let data: unknown = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = (data as { error?: { code?: string; message?: string } } | null)?.error;
    const retry = res.headers.get('Retry-After');
    const e = new ApiError(
      res.status,
      err?.code ?? 'http_' + res.status,
      err?.message ?? `The node answered ${res.status} ${res.statusText}`.trim(),
      retry ? Number(retry) : undefined,
    );
    if (auth && res.status === 401 && e.code === 'unauthorized') sessionEnded();
    throw e;
  }
  return data as T;
}

const q = encodeURIComponent;

export const api = {
  health: () => request<{ status: string; state: NodeState }>('GET', '/health', undefined, false),
  register: (name: string, passphrase: string) =>
    request<{ user_id: string; peer_id: string; token: string }>('POST', '/register', { name, passphrase }, false),
  login: (passphrase: string) =>
    request<{ token: string; user_id: string }>('POST', '/login', { passphrase }, false),
  logout: () => request<void>('POST', '/logout'),
  me: () => request<Me>('GET', '/me'),
  node: () => request<NodeInfo>('GET', '/node'),
  friends: async () => (await request<{ friends: Friend[] }>('GET', '/friends')).friends,
  addFriendByInvite: (invite: string) => request<Friend>('POST', '/friends', { invite }),
  /** Adds a user by ID (through the directory), or accepts their pending request. */
  addFriendByID: (userID: string) => request<Friend>('POST', '/friends', { user_id: userID }),
  removeFriend: (userID: string) => request<void>('DELETE', `/friends/${q(userID)}`),
  blockFriend: (userID: string) => request<Friend>('POST', `/friends/${q(userID)}/block`),
  /** Marks a friend verified; safetyNumber is the number the user compared (the node refuses a stale one, 409). */
  verifyFriend: (userID: string, safetyNumber?: string) =>
    request<void>(
      'POST',
      `/friends/${q(userID)}/verify`,
      safetyNumber === undefined ? undefined : { safety_number: safetyNumber },
    ),
  send: (to: string, text: string) =>
    request<{ msg_id: string; status: MessageStatus }>('POST', '/send_message', { to, text }),
  messages: (withID: string, before?: string, limit = 50) => {
    let p = `/get_messages?with=${q(withID)}&limit=${limit}`;
    if (before) p += `&before=${q(before)}`;
    return request<MessagesPage>('GET', p);
  },
  conversations: async () =>
    (await request<{ conversations: Conversation[] }>('GET', '/conversations')).conversations,
  markRead: (withID: string, upTo?: string) =>
    request<void>('POST', '/read', upTo ? { with: withID, up_to: upTo } : { with: withID }),
  searchDirectory: async (name: string) =>
    (await request<{ results: SearchResult[] }>('GET', `/directory/search?name=${q(name)}`)).results ?? [],
  lookupUser: (userID: string) => request<DirectoryEntry>('GET', `/directory/${q(userID)}`),
};

export type Api = typeof api;

// ---- Live events ----

/** The state of the events socket, as the UI shows it. */
export type LiveState = 'connecting' | 'live' | 'reconnecting';

/** The wait before reconnect attempt n (0-based): 0.5 s doubling to 10 s, with jitter. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(500 * 2 ** attempt, 10_000);
  return Math.round(base * (0.75 + 0.5 * random()));
}

/** The close code of a socket whose token is missing, bad, logged out or expired. */
export const CLOSE_UNAUTHORIZED = 4401;

export interface EventSocketOptions {
  onEvent: (e: ServerEvent) => void;
  onState: (s: LiveState) => void;
  /** Called when the socket is refused for its token (close 4401). */
  onUnauthorized: () => void;
  /** Called after each (re)connection is ready, so the UI can refetch what it missed. */
  onReady?: (reconnected: boolean) => void;
  getToken?: () => string | null;
  makeSocket?: (url: string) => WebSocket;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
  url?: string;
}

/**
 * EventSocket keeps the WebSocket of live events open: it authenticates
 * with a first message, and when the socket drops (the node stopped or
 * restarted) it reconnects with backoff, reporting "reconnecting".
 */
export class EventSocket {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: unknown = null;
  private stopped = false;
  private everReady = false;
  private readonly o: Required<Omit<EventSocketOptions, 'onReady'>> & Pick<EventSocketOptions, 'onReady'>;

  constructor(opts: EventSocketOptions) {
    this.o = {
      getToken,
      makeSocket: (url) => new WebSocket(url),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
      url: defaultEventsURL(),
      ...opts,
    };
  }

  start(): void {
    this.stopped = false;
    this.o.onState('connecting');
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.o.clearTimer(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.onopen = null;
      ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
  }

  private connect(): void {
    if (this.stopped) return;
    const t = this.o.getToken();
    if (!t) {
      this.o.onUnauthorized();
      return;
    }
    let ws: WebSocket;
    try {
      ws = this.o.makeSocket(this.o.url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token: t }));
    ws.onmessage = (ev: MessageEvent) => {
      let msg: { type?: string };
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (msg.type === 'ready') {
        const reconnected = this.everReady;
        this.everReady = true;
        this.attempt = 0;
        this.o.onState('live');
        this.o.onReady?.(reconnected);
        return;
      }
      this.o.onEvent(msg as ServerEvent);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === CLOSE_UNAUTHORIZED) {
        this.stopped = true;
        this.o.onUnauthorized();
        return;
      }
      this.retry();
    };
  }

  private retry(): void {
    if (this.stopped) return;
    this.o.onState('reconnecting');
    const delay = backoffDelay(this.attempt++);
    this.timer = this.o.setTimer(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }
}

function defaultEventsURL(): string {
  if (typeof location === 'undefined') return 'ws://127.0.0.1:7733/api/v1/events';
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${base}/events`;
}

/** A user-facing sentence for any error a call may throw. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.code === 'throttled' && e.retryAfter) {
      return `Too many wrong passphrases. Try again in ${formatWait(e.retryAfter)}.`;
    }
    if (e.code === 'bad_passphrase') return 'Wrong passphrase.';
    if (e.status === 404 && e.code === 'not_found' && /no such API route/.test(e.message)) {
      return `This node does not offer that yet (${e.message}).`;
    }
    return e.message;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

/** A wait in seconds as words: "45 s", "3 min 5 s". */
export function formatWait(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const r = s % 60;
  return r ? `${m} min ${r} s` : `${m} min`;
}

// ---- Operations: backup and the audit log (api/ops_routes.go) ----

/** One line of the node's audit log: a security event, never content. */
export interface AuditEvent {
  time: string;
  event: string;
  fields?: Record<string, string>;
}

/** A backup file as the node streamed it, and the name it suggests. */
export interface BackupFile {
  blob: Blob;
  filename: string;
}

export const opsApi = {
  /**
   * Downloads an encrypted backup of the whole node. The passphrase is the
   * node's; a wrong one is ApiError 403 `forbidden` and nothing is sent.
   */
  backup: async (passphrase: string): Promise<BackupFile> => {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    const t = getToken();
    if (t) headers['Authorization'] = `Bearer ${t}`;
    let res: Response;
    try {
      res = await fetch(base + '/backup', {
        method: 'POST',
        headers,
        body: JSON.stringify({ passphrase }),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new NetworkError();
    }
    if (!res.ok) {
      let err: { code?: string; message?: string } | undefined;
      try {
        err = ((await res.json()) as { error?: { code?: string; message?: string } }).error;
      } catch {
        err = undefined;
      }
      const retry = res.headers.get('Retry-After');
      const e = new ApiError(
        res.status,
        err?.code ?? 'http_' + res.status,
        err?.message ?? `The node answered ${res.status}`,
        retry ? Number(retry) : undefined,
      );
      if (res.status === 401 && e.code === 'unauthorized') sessionEnded();
      throw e;
    }
    const cd = res.headers.get('Content-Disposition') ?? '';
    const filename = /filename="([^"]+)"/.exec(cd)?.[1] ?? 'parley-backup.age';
    return { blob: await res.blob(), filename };
  },
  /** The newest audit events, newest first. */
  audit: async (limit = 50) =>
    (await request<{ events: AuditEvent[] }>('GET', `/audit?limit=${limit}`)).events,
};
