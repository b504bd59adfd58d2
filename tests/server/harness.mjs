// Starts `pensieve serve` on 127.0.0.1 (a free port) for a test file and stops it with SIGTERM,
// checking that it exits cleanly. PENSIEVE_BIN and PENSIEVE_TEST_MODEL come from
// run_node_tests.sh (ctest).
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';

export const BIN = process.env.PENSIEVE_BIN;
export const MODEL = process.env.PENSIEVE_TEST_MODEL;

export async function startServer(extraArgs = []) {
  assert.ok(BIN && MODEL, 'PENSIEVE_BIN and PENSIEVE_TEST_MODEL must be set (run through run_node_tests.sh)');
  const args = ['serve', '--model', MODEL, '--host', '127.0.0.1', '--port', '0', '--threads', '2', ...extraArgs];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start in 30 s:\n${stderr}`)), 30000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/(http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${stderr}`)); });
  });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    url,
    proc,
    log: () => stderr,
    async stop() {
      proc.kill('SIGTERM');
      const { code, signal } = await exited;
      assert.equal(code, 0, `server exit code ${code} signal ${signal}\n${stderr.slice(-2000)}`);
    },
  };
}

// A number from /metrics ("name value" lines), or undefined.
export async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
}

export async function waitFor(fn, what, ms = 10000) {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
