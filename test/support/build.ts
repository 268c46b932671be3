import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from '../../src/config/paths.js';

/** Whether a spawned process is still running. */
export function isRunning(child: { exitCode: number | null; signalCode: NodeJS.Signals | null }): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * `npx tsc -p tsconfig.json`, serialized with the other test files that build (a lock directory),
 * so no process is started while another build is rewriting dist/.
 */
export async function build(): Promise<void> {
  const lock = join(tmpdir(), `graphql-user-server-build-${createHash('sha256').update(PROJECT_ROOT).digest('hex').slice(0, 16)}.lock`);
  const deadline = Date.now() + 240_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // A lock left by a killed run: a build never takes five minutes.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true });
      } catch {}
      if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${lock}`);
      await sleep(200);
    }
  }
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: PROJECT_ROOT, stdio: 'pipe', timeout: 240_000 });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    const report = `${stdout?.toString() ?? ''}${stderr?.toString() ?? ''}`;
    // tsc still emits on type errors; errors only in files the server never loads (bench/) must
    // not stop this test. Anything in src/ or migrations/ — or no diagnostics at all — does.
    const diagnostics = report.split('\n').filter((line) => /^\S+\(\d+,\d+\): error TS\d+/.test(line));
    const serverFiles = diagnostics.filter((line) => !line.startsWith('bench/'));
    if (diagnostics.length === 0 || serverFiles.length > 0) throw new Error(`npx tsc -p tsconfig.json failed:\n${report}`);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
