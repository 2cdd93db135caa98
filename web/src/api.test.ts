import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  api,
  ApiError,
  backoffDelay,
  CLOSE_UNAUTHORIZED,
  EventSocket,
  getToken,
  setToken,
  setUnauthorizedHandler,
  type LiveState,
  type ServerEvent,
} from './api';

/** A stand-in WebSocket that the test drives. */
class FakeSocket {
  static all: FakeSocket[] = [];
  sent: string[] = [];
  closed = false;
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(s: string) {
    this.sent.push(s);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen?.();
  }
  receive(v: unknown) {
    this.onmessage?.({ data: JSON.stringify(v) });
  }
  drop(code = 1006) {
    this.onclose?.({ code });
  }
}

function setup() {
  FakeSocket.all = [];
  const states: LiveState[] = [];
  const events: ServerEvent[] = [];
  const ready = { count: 0 };
  const timers: { fn: () => void; ms: number }[] = [];
  const unauthorized = vi.fn();
  const sock = new EventSocket({
    url: 'ws://node/api/v1/events',
    getToken: () => 'tok',
    makeSocket: (u) => new FakeSocket(u) as unknown as WebSocket,
    setTimer: (fn, ms) => timers.push({ fn, ms }),
    clearTimer: () => {},
    onState: (s) => states.push(s),
    onEvent: (e) => events.push(e),
    onReady: () => ready.count++,
    onUnauthorized: unauthorized,
  });
  return { sock, states, events, ready, timers, unauthorized };
}

describe('EventSocket', () => {
  it('authenticates with a first message, then delivers events', () => {
    const { sock, states, events, ready } = setup();
    sock.start();
    const ws = FakeSocket.all[0];
    ws.open();
    expect(JSON.parse(ws.sent[0])).toEqual({ type: 'auth', token: 'tok' });
    ws.receive({ type: 'ready' });
    ws.receive({ type: 'peer_online', data: { user_id: 'u', peer_id: 'p' } });
    expect(states).toEqual(['connecting', 'live']);
    expect(ready.count).toBe(1);
    expect(events).toEqual([{ type: 'peer_online', data: { user_id: 'u', peer_id: 'p' } }]);
  });

  it('reconnects with growing backoff when the node goes away, and says so', () => {
    const { sock, states, ready, timers } = setup();
    sock.start();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive({ type: 'ready' });
    FakeSocket.all[0].drop(1001);
    expect(states.at(-1)).toBe('reconnecting');
    expect(timers).toHaveLength(1);
    timers[0].fn();
    FakeSocket.all[1].drop(); // node still down
    timers[1].fn();
    expect(timers[1].ms).toBeGreaterThan(timers[0].ms * 1.2);
    const ws = FakeSocket.all[2];
    ws.open();
    ws.receive({ type: 'ready' });
    expect(states.at(-1)).toBe('live');
    expect(ready.count).toBe(2); // the UI refetches after a reconnect too
    // After success the backoff starts again from the bottom.
    ws.drop();
    expect(timers[2].ms).toBeLessThanOrEqual(timers[1].ms);
  });

  it('stops and reports a refused token (close 4401)', () => {
    const { sock, timers, unauthorized } = setup();
    sock.start();
    FakeSocket.all[0].open();
    FakeSocket.all[0].drop(CLOSE_UNAUTHORIZED);
    expect(unauthorized).toHaveBeenCalledOnce();
    expect(timers).toHaveLength(0);
  });

  it('stop closes the socket and reconnects no more', () => {
    const { sock, timers } = setup();
    sock.start();
    sock.stop();
    expect(FakeSocket.all[0].closed).toBe(true);
    FakeSocket.all[0].drop();
    expect(timers).toHaveLength(0);
  });
});

describe('backoffDelay', () => {
  it('doubles from 0.5 s up to 10 s, with jitter', () => {
    expect(backoffDelay(0, () => 0.5)).toBe(500);
    expect(backoffDelay(1, () => 0.5)).toBe(1000);
    expect(backoffDelay(10, () => 0.5)).toBe(10_000);
    expect(backoffDelay(10, () => 1)).toBe(12_500);
    expect(backoffDelay(0, () => 0)).toBe(375);
  });
});

describe('requests', () => {
  beforeEach(() => {
    sessionStorage.clear();
    localStorage.clear();
    setToken(null);
  });
  afterEach(() => vi.unstubAllGlobals());

  function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
    const fetchMock = vi.fn().mockResolvedValue(
      new Response(body === null ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } }),
    );
    vi.stubGlobal('fetch', fetchMock);
    return fetchMock;
  }

  it('keeps the token in memory and sessionStorage only, and sends it as a bearer header', async () => {
    setToken('secret');
    expect(sessionStorage.getItem('parley.token')).toBe('secret');
    expect(localStorage.length).toBe(0);
    expect(document.cookie).toBe('');
    const f = answer(200, { friends: [] });
    await api.friends();
    const req: Request = f.mock.calls[0][0];
    expect(new URL(req.url).pathname).toBe('/api/v1/friends');
    expect(req.url).not.toContain('secret');
    expect(req.headers.get('Authorization')).toBe('Bearer secret');
    expect(req.credentials).toBe('omit');
  });

  it('turns a JSON error into an ApiError with its code; 401 ends the session', async () => {
    setToken('old');
    const onUnauth = vi.fn();
    setUnauthorizedHandler(onUnauth);
    answer(401, { error: { code: 'unauthorized', message: 'invalid or expired token' } });
    await expect(api.me()).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
    expect(onUnauth).toHaveBeenCalledOnce();
    expect(getToken()).toBeNull();
    expect(sessionStorage.getItem('parley.token')).toBeNull();
  });

  it('reads Retry-After of a throttled login', async () => {
    answer(429, { error: { code: 'throttled', message: 'too many' } }, { 'Retry-After': '64' });
    const e = await api.login('x').catch((x) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(e.retryAfter).toBe(64);
    expect(e.code).toBe('throttled');
  });

  it('a wrong passphrase does not end a session', async () => {
    const onUnauth = vi.fn();
    setUnauthorizedHandler(onUnauth);
    answer(401, { error: { code: 'bad_passphrase', message: 'wrong passphrase' } });
    const e = await api.login('x').catch((x) => x);
    expect(e).toMatchObject({ status: 401, code: 'bad_passphrase' });
    expect(onUnauth).not.toHaveBeenCalled();
  });

  it('an unknown route is an ApiError with its code', async () => {
    setToken('t');
    answer(404, { error: { code: 'not_found', message: 'no such API route' } });
    const e = await api.searchDirectory('bob').catch((x) => x);
    expect(e).toMatchObject({ status: 404, code: 'not_found', message: 'no such API route' });
  });

  it('sends JSON with its content type, and no body on body-less routes', async () => {
    setToken('t');
    const f = answer(202, { msg_id: 'm', status: 'pending' });
    await api.send('bob', 'hi');
    const sent: Request = f.mock.calls[0][0];
    expect(sent.method).toBe('POST');
    expect(await sent.text()).toBe('{"to":"bob","text":"hi"}');
    expect(sent.headers.get('Content-Type')).toBe('application/json');
    const g = answer(204, null);
    await api.verifyFriend('a b');
    const verify: Request = g.mock.calls[0][0];
    expect(new URL(verify.url).pathname).toBe('/api/v1/friends/a%20b/verify');
    expect(verify.body).toBeNull();
    expect(verify.headers.get('Content-Type')).toBeNull();
  });
});
