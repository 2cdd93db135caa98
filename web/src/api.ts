// The one module that talks to the node's local API: typed calls through
// openapi-fetch on the types generated from api/openapi.json (make api
// writes src/api-types.gen.ts; the Go types of package api are the one
// source), the bearer token, and the WebSocket of live events.

import createClient from 'openapi-fetch';
import type { components, paths } from './api-types.gen';

type Schemas = components['schemas'];

export type NodeState = Schemas['State'];
export type FriendStatus = Schemas['Friend']['status'];
export type MessageStatus = Schemas['Message']['status'];
export type Path = Schemas['Message']['path'];
/** Every error code the API answers with (the "code" of an error). */
export type ErrorCode = Schemas['Code'];
export type EventType = Schemas['EventType'];

export type Me = Schemas['Me'];
export type NodeInfo = Schemas['NodeInfo'];
/** key_fork: their key signed two histories (sending is held until they are verified again); key_rotated: their key follows from their first by a verified chain of rotations. */
export type Friend = Schemas['Friend'];
export type Message = Schemas['Message'];
export type LastMessage = Schemas['LastMessage'];
export type Conversation = Schemas['Conversation'];
export type MessagesPage = Schemas['MessagesPage'];
export type StatusChange = Schemas['StatusChange'];
export type Presence = Schemas['Presence'];
/** One user who claims a searched name (GET /api/v1/directory/search). */
export type SearchResult = Schemas['SearchResult'];
/** A user's verified directory record (GET /api/v1/directory/{user_id}). */
export type DirectoryEntry = Schemas['DirectoryEntry'];

/** A group chat (GET /api/v1/groups/{group_id}); removed: I was removed from it, or left. */
export type Group = Schemas['Group'];
export type GroupMember = Schemas['GroupMember'];
/** One message of a group, with its sender's name as my node knows it. */
export type GroupMessage = Schemas['GroupMessage'];
export type GroupMessagesPage = Schemas['GroupMessagesPage'];
export type MessageDeleted = Schemas['MessageDeleted'];

type GroupEventType = 'group_message' | 'group_updated' | 'group_removed';

/** The friend events: their data is a Friend. */
type FriendEventType = Exclude<
  EventType,
  'message' | 'message_status' | 'message_deleted' | 'peer_online' | 'peer_offline' | 'overflow' | GroupEventType
>;

/** One event of the WebSocket (Event in the document), by its type. */
export type ServerEvent =
  | { type: 'message'; data: Message }
  | { type: 'message_status'; data: StatusChange }
  | { type: 'message_deleted'; data: MessageDeleted }
  | { type: FriendEventType; data: Friend }
  | { type: 'peer_online' | 'peer_offline'; data: Presence }
  | { type: 'group_message'; data: GroupMessage }
  | { type: 'group_updated' | 'group_removed'; data: Group }
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

/** The API's origin: the page's own (the node serves the UI), or the default address outside a browser. */
function apiOrigin(): string {
  return typeof location !== 'undefined' && /^https?:$/.test(location.protocol) ? location.origin : 'http://127.0.0.1:7733';
}

const client = createClient<paths>({
  baseUrl: apiOrigin(),
  // Looked up at each call (tests stub it).
  fetch: (req: Request) => globalThis.fetch(req),
  cache: 'no-store',
  credentials: 'omit',
});

/** The Authorization header of an authenticated call. */
function authHeader(auth: boolean): Record<string, string> {
  return auth && token ? { Authorization: `Bearer ${token}` } : {};
}

/** The answer of an openapi-fetch call: its data, or an ApiError or NetworkError thrown. */
async function call<T>(
  pending: Promise<{ data?: T; error?: unknown; response: Response }>,
  auth = true,
): Promise<T> {
  let r: { data?: T; error?: unknown; response: Response };
  try {
    r = await pending;
  } catch {
    throw new NetworkError();
  }
  const res = r.response;
  if (!res.ok) {
    const err = (r.error as { error?: { code?: string; message?: string } } | null)?.error;
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
  return r.data as T;
}

const user = (userID: string) => ({ path: { user_id: userID } });

export const api = {
  health: () => call(client.GET('/api/v1/health'), false),
  register: (name: string, passphrase: string) =>
    call(client.POST('/api/v1/register', { body: { name, passphrase } }), false),
  login: (passphrase: string) => call(client.POST('/api/v1/login', { body: { passphrase } }), false),
  logout: () => call<void>(client.POST('/api/v1/logout', { headers: authHeader(true) })),
  me: () => call(client.GET('/api/v1/me', { headers: authHeader(true) })),
  node: () => call(client.GET('/api/v1/node', { headers: authHeader(true) })),
  friends: async () => (await call(client.GET('/api/v1/friends', { headers: authHeader(true) }))).friends,
  addFriendByInvite: (invite: string) =>
    call(client.POST('/api/v1/friends', { headers: authHeader(true), body: { invite } })),
  /** Adds a user by ID (through the directory), or accepts their pending request. */
  addFriendByID: (userID: string) =>
    call(client.POST('/api/v1/friends', { headers: authHeader(true), body: { user_id: userID } })),
  removeFriend: (userID: string) =>
    call<void>(client.DELETE('/api/v1/friends/{user_id}', { headers: authHeader(true), params: user(userID) })),
  blockFriend: (userID: string) =>
    call(client.POST('/api/v1/friends/{user_id}/block', { headers: authHeader(true), params: user(userID) })),
  /** Marks a friend verified; safetyNumber is the number the user compared (the node refuses a stale one, 409). */
  verifyFriend: (userID: string, safetyNumber?: string) =>
    call<void>(
      client.POST('/api/v1/friends/{user_id}/verify', {
        headers: authHeader(true),
        params: user(userID),
        body: safetyNumber === undefined ? undefined : { safety_number: safetyNumber },
      }),
    ),
  send: (to: string, text: string) =>
    call(client.POST('/api/v1/send_message', { headers: authHeader(true), body: { to, text } })),
  messages: (withID: string, before?: string, limit = 50) =>
    call(
      client.GET('/api/v1/get_messages', {
        headers: authHeader(true),
        params: { query: before ? { with: withID, limit, before } : { with: withID, limit } },
      }),
    ),
  conversations: async () =>
    (await call(client.GET('/api/v1/conversations', { headers: authHeader(true) }))).conversations,
  markRead: (withID: string, upTo?: string) =>
    call<void>(
      client.POST('/api/v1/read', { headers: authHeader(true), body: upTo ? { with: withID, up_to: upTo } : { with: withID } }),
    ),
  searchDirectory: async (name: string) =>
    (await call(client.GET('/api/v1/directory/search', { headers: authHeader(true), params: { query: { name } } })))
      .results ?? [],
  lookupUser: (userID: string) =>
    call(client.GET('/api/v1/directory/{user_id}', { headers: authHeader(true), params: user(userID) })),
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
  onReady?: () => void;
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
        this.attempt = 0;
        this.o.onState('live');
        this.o.onReady?.();
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

const message = (id: string) => ({ path: { msg_id: id } });

/** POST /api/v1/messages/{msg_id}/retry: sends a failed message of mine again (202). */
export function retryMessage(id: string): Promise<{ msg_id: string; status: MessageStatus }> {
  return call(client.POST('/api/v1/messages/{msg_id}/retry', { headers: authHeader(true), params: message(id) }));
}

/** DELETE /api/v1/messages/{msg_id}: deletes a message on this device only (204). */
export function deleteMessage(id: string): Promise<void> {
  return call<void>(client.DELETE('/api/v1/messages/{msg_id}', { headers: authHeader(true), params: message(id) }));
}

/** The calls above as one object (tests replace its methods). */
export const messageApi = { retryMessage, deleteMessage };

// ---- Operations: backup and the audit log ----

/** One line of the node's audit log: a security event, never content. */
export type AuditEvent = Schemas['AuditEvent'];

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
    const blob = await call<Blob>(
      client.POST('/api/v1/backup', { headers: authHeader(true), body: { passphrase }, parseAs: 'blob' }),
    );
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    return { blob, filename: `parley-backup-${stamp}.age` };
  },
  /** The newest audit events, newest first. */
  audit: async (limit = 50) =>
    (await call(client.GET('/api/v1/audit', { headers: authHeader(true), params: { query: { limit } } }))).events,
};

// ---- Groups ----

const group = (id: string) => ({ path: { group_id: id } });

export const groupApi = {
  groups: async (): Promise<Group[]> => (await call(client.GET('/api/v1/groups', { headers: authHeader(true) }))).groups,
  group: (id: string): Promise<Group> =>
    call(client.GET('/api/v1/groups/{group_id}', { headers: authHeader(true), params: group(id) })),
  /** Creates a group of friends with me as its admin (201). */
  create: (name: string, members: string[]): Promise<Group> =>
    call(client.POST('/api/v1/groups', { headers: authHeader(true), body: { name, members } })),
  /** Adds a friend (admins only: 403 not_admin otherwise). */
  addMember: (id: string, userID: string): Promise<Group> =>
    call(client.POST('/api/v1/groups/{group_id}/members', { headers: authHeader(true), params: group(id), body: { user_id: userID } })),
  /** Removes a member (admins only); my own user ID is leaving. */
  removeMember: (id: string, userID: string): Promise<void> =>
    call<void>(
      client.DELETE('/api/v1/groups/{group_id}/members/{user_id}', {
        headers: authHeader(true),
        params: { path: { group_id: id, user_id: userID } },
      }),
    ),
  send: (id: string, text: string) =>
    call(client.POST('/api/v1/groups/{group_id}/messages', { headers: authHeader(true), params: group(id), body: { text } })),
  messages: (id: string, before?: string, limit = 50) =>
    call(
      client.GET('/api/v1/groups/{group_id}/messages', {
        headers: authHeader(true),
        params: { path: { group_id: id }, query: before ? { limit, before } : { limit } },
      }),
    ),
  markRead: (id: string, upTo?: string): Promise<void> =>
    call<void>(
      client.POST('/api/v1/groups/{group_id}/read', { headers: authHeader(true), params: group(id), body: upTo ? { up_to: upTo } : {} }),
    ),
};
