// Helpers of the end-to-end tests: real `parley run` (and `parley relay`) processes on 127.0.0.1
// and a headless Chromium driven by playwright-core.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** The parley binary to run: built with -tags parleytest and the real UI (make e2e builds it). */
export const parleyBin = process.env.PARLEY_BIN ?? new URL('../../bin/parley-e2e', import.meta.url).pathname;

/** Debian's Chromium, or CHROMIUM. */
export const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Flags that let Chromium start headless on this machine's closed network (see the machine notes). */
export const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export function launchBrowser() {
  if (!existsSync(chromiumPath)) {
    throw new Error(`Chromium not found at ${chromiumPath}: apt-get install chromium (or set CHROMIUM)`);
  }
  if (!existsSync(parleyBin)) {
    throw new Error(`parley binary not found at ${parleyBin}: run make e2e (or set PARLEY_BIN)`);
  }
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A temporary directory, removed by cleanup(). */
const tempDirs = [];
export function tempDir(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

const running = new Set();

/**
 * A `parley run` child process on fixed loopback ports (so that a restart
 * keeps its address, and the browser's origin) with cheap test-only keys.
 */
export class ParleyNode {
  constructor(name, dataDir, apiPort, p2pPort, logDir, bootstrap = []) {
    this.name = name;
    this.dataDir = dataDir;
    this.apiPort = apiPort;
    this.p2pPort = p2pPort;
    this.logDir = logDir;
    this.bootstrap = bootstrap;
    this.url = `http://127.0.0.1:${apiPort}/`;
    this.proc = null;
    this.starts = 0;
  }

  /** A node to start; bootstrap lists peer multiaddrs (a relay's) for --bootstrap. */
  static async create(name, { bootstrap = [] } = {}) {
    const root = tempDir(`parley-e2e-${name}-`);
    return new ParleyNode(name, join(root, 'data'), await freePort(), await freePort(), root, bootstrap);
  }

  /** Starts the node and resolves once it prints its URL line. */
  start(timeoutMs = 30_000) {
    const args = [
      'run',
      '--data-dir', this.dataDir,
      '--api', `127.0.0.1:${this.apiPort}`,
      '--listen', `/ip4/127.0.0.1/tcp/${this.p2pPort}`,
      ...this.bootstrap.flatMap((a) => ['--bootstrap', a]),
    ];
    this.starts++;
    const p = spawnParley(args, join(this.logDir, `stderr-${this.starts}.log`));
    this.proc = p;
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        reject(new Error(`${this.name}: no URL line within ${timeoutMs} ms; stdout: ${out}`));
      }, timeoutMs);
      p.stdout.on('data', (b) => {
        out += b.toString();
        const m = out.match(/^Parley is running: open (http:\/\/127\.0\.0\.1:\d+\/)$/m);
        if (m) {
          clearTimeout(timer);
          if (m[1] !== this.url) reject(new Error(`${this.name}: URL ${m[1]}, want ${this.url}`));
          else resolve(this);
        }
      });
      p.on('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${this.name}: parley run exited (${code ?? sig}) before its URL line; see ${this.logDir}`));
      });
    });
  }

  /** Stops the node with SIGTERM (SIGKILL after 20 s) and waits for it to exit. */
  stop() {
    const p = this.proc;
    this.proc = null;
    return stopProcess(p);
  }
}

/**
 * A `parley relay` child process: the DHT server and bootstrap peer of a
 * private network on 127.0.0.1, on a port the system picks.
 */
export class ParleyRelay {
  constructor(dataDir, logDir) {
    this.name = 'relay';
    this.dataDir = dataDir;
    this.logDir = logDir;
    this.proc = null;
    /** The first address the relay printed, /ip4/127.0.0.1/tcp/PORT/p2p/ID: give it to --bootstrap. */
    this.addr = '';
  }

  static create() {
    const root = tempDir('parley-e2e-relay-');
    return new ParleyRelay(join(root, 'data'), root);
  }

  /** Starts the relay and resolves once it prints its first bootstrap address. */
  start(timeoutMs = 30_000) {
    const args = ['relay', '--data-dir', this.dataDir, '--listen', '/ip4/127.0.0.1/tcp/0'];
    const p = spawnParley(args, join(this.logDir, 'stderr-1.log'));
    this.proc = p;
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        reject(new Error(`relay: no address line within ${timeoutMs} ms; stdout: ${out}`));
      }, timeoutMs);
      p.stdout.on('data', (b) => {
        out += b.toString();
        const m = out.match(/^ {2}(\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)$/m);
        if (m && !this.addr) {
          clearTimeout(timer);
          this.addr = m[1];
          resolve(this);
        }
      });
      p.on('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`relay: parley relay exited (${code ?? sig}) before its address; see ${this.logDir}`));
      });
    });
  }

  stop() {
    const p = this.proc;
    this.proc = null;
    return stopProcess(p);
  }
}

/**
 * Spawns the parley binary with args and the test-only environment (cheap
 * keys, debug logs), its stderr into logFile; cleanup() stops it.
 */
function spawnParley(args, logFile) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  Object.assign(env, { PARLEY_TEST_KDF: 'cheap', PARLEY_TEST_KEY_BITS: '2048', PARLEY_LOG_LEVEL: 'debug' });
  const log = createWriteStream(logFile);
  const p = spawn(parleyBin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(p);
  p.stderr.pipe(log);
  p.on('exit', () => running.delete(p));
  return p;
}

function stopProcess(p) {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/**
 * Stops every node still running and removes the temporary directories.
 * After a failure (showLogs) it first prints the end of each node's log.
 */
export async function cleanup({ keepDirs = false, showLogs = false } = {}) {
  await Promise.all([...running].map(stopProcess));
  if (showLogs) {
    for (const d of tempDirs) {
      for (const f of readdirSync(d).filter((n) => n.endsWith('.log'))) {
        const lines = readFileSync(join(d, f), 'utf8').trimEnd().split('\n');
        console.error(`--- ${join(d, f)} (last 40 lines) ---\n${lines.slice(-40).join('\n')}`);
      }
    }
  }
  if (keepDirs) {
    console.error(`e2e: kept ${tempDirs.join(' ')}`);
    return;
  }
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
