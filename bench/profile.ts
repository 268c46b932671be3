/**
 * Reads the `.cpuprofile` files that `node --cpu-prof` writes and condenses them: self time per
 * function and per origin (the application, a dependency, Node internals, GC, idle), inclusive time
 * of the application's and its dependencies' functions, and the largest gap between samples.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  name: string;
  ms: number;
  /** Share of the busy (non-idle) time of the thread. */
  share: number;
}

export interface ProfileSummary {
  /** Whether only the samples inside the requested window were counted. */
  windowed: boolean;
  /** Time covered by the counted samples, ms. */
  totalMs: number;
  /** Time not spent idle, ms. */
  busyMs: number;
  topFunctions: SelfTime[];
  byOrigin: SelfTime[];
  /** Functions of the app and its dependencies by inclusive time (synchronous stacks: async work resumes in new stacks). */
  inclusive: SelfTime[];
  /** Largest gap between two samples, ms: the thread (or the sampler) not running at all. */
  largestGapMs: number;
}

/** A loaded profile, summarized as often as needed for different windows. */
export class Profile {
  private readonly profile: CpuProfile;
  private readonly byId: Map<number, CpuProfileNode>;
  private readonly parent = new Map<number, number>();

  constructor(readonly file: string) {
    this.profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    this.byId = new Map(this.profile.nodes.map((node) => [node.id, node]));
    for (const node of this.profile.nodes) for (const child of node.children ?? []) this.parent.set(child, node.id);
  }

  /**
   * Summarizes the samples inside `window` (µs of the profiled process's monotonic clock, which
   * V8's sample timestamps share), or all of them without a window or when none falls inside
   * (unless `strict`: then an empty window gives an empty summary).
   */
  summarize(
    window?: { fromUs: number; toUs: number },
    options: { top?: number; strict?: boolean; idleFunctions?: readonly string[]; workFunctions?: readonly string[] } = {},
  ): ProfileSummary {
    const top = options.top ?? 15;
    const idleFunctions = new Set(options.idleFunctions ?? []);
    const workFunctions = new Set(options.workFunctions ?? []);
    // A sample is idle when V8 says so, or when the nearest of `idleFunctions` / `workFunctions` on
    // its stack is an idle one: a thread blocked in a synchronous wait, such as piscina's workers in
    // Atomics.wait inside atomicsWaitLoop (which also runs the tasks, through onMessage).
    const idleNodes = new Set<number>();
    for (const node of this.profile.nodes) {
      if (node.callFrame.functionName === '(idle)') idleNodes.add(node.id);
      else if (idleFunctions.size > 0) {
        for (let at: number | undefined = node.id; at !== undefined; at = this.parent.get(at)) {
          const name = this.byId.get(at)?.callFrame.functionName ?? '';
          if (workFunctions.has(name)) break;
          if (idleFunctions.has(name)) {
            idleNodes.add(node.id);
            break;
          }
        }
      }
    }
    const samples = this.profile.samples ?? [];
    const deltas = this.profile.timeDeltas ?? [];
    const collect = (from: number, to: number) => {
      const self = new Map<number, number>();
      let at = this.profile.startTime;
      let counted = 0;
      let largestGap = 0;
      for (let i = 0; i < samples.length; i++) {
        at += deltas[i] ?? 0;
        if (at < from || at > to) continue;
        counted++;
        // A sample's time is the delta to the next sample.
        const micros = deltas[i + 1] ?? 0;
        self.set(samples[i], (self.get(samples[i]) ?? 0) + micros);
        if (i > 0 && counted > 1) largestGap = Math.max(largestGap, deltas[i] ?? 0);
      }
      return { self, counted, largestGap };
    };
    let windowed = window !== undefined;
    let pass = window ? collect(window.fromUs, window.toUs) : collect(-Infinity, Infinity);
    if (pass.counted === 0 && window && !options.strict) {
      windowed = false;
      pass = collect(-Infinity, Infinity);
    }

    const functions = new Map<string, number>();
    const origins = new Map<string, number>();
    const inclusive = new Map<string, number>();
    let idle = 0;
    let total = 0;
    for (const [id, micros] of pass.self) {
      const node = this.byId.get(id);
      if (!node) continue;
      const { functionName } = node.callFrame;
      total += micros;
      if (idleNodes.has(id)) {
        idle += micros;
        continue;
      }
      const name = label(node);
      functions.set(name, (functions.get(name) ?? 0) + micros);
      const from = origin(node.callFrame.url, functionName);
      origins.set(from, (origins.get(from) ?? 0) + micros);
      // Inclusive time: each distinct app/dependency function on this sample's stack, once.
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = this.parent.get(at)) {
        const frame = this.byId.get(at);
        if (!frame || !isOwnOrDependency(frame.callFrame.url)) continue;
        const key = label(frame);
        if (seen.has(key)) continue;
        seen.add(key);
        inclusive.set(key, (inclusive.get(key) ?? 0) + micros);
      }
    }
    const busy = total - idle;
    const rank = (map: Map<string, number>, limit: number): SelfTime[] =>
      [...map.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, limit)
        .map(([name, micros]) => ({ name, ms: micros / 1000, share: busy > 0 ? micros / busy : 0 }));
    return {
      windowed,
      totalMs: total / 1000,
      busyMs: busy / 1000,
      topFunctions: rank(functions, top),
      byOrigin: rank(origins, 12),
      inclusive: rank(inclusive, top),
      largestGapMs: pass.largestGap / 1000,
    };
  }
}

function isOwnOrDependency(url: string): boolean {
  return url.startsWith('file://') || url.startsWith('/');
}

function label(node: CpuProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  return `${functionName || '(anonymous)'} ${shortLocation(url, lineNumber)}`.trim();
}

/** `node_modules/@scope/pkg/…` → `@scope/pkg`; the app's own files → `app: src/…`; Node → `node: internals`. */
function origin(url: string, functionName: string): string {
  if (!url) {
    if (functionName === '(garbage collector)') return '(garbage collector)';
    if (functionName === '(program)') return '(program: native code, not attributed)';
    return '(native / V8 builtins)';
  }
  if (url.startsWith('node:')) return 'node: internals (http, net, streams, crypto…)';
  if (url.startsWith('wasm://')) return 'WebAssembly (PGlite)';
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const parts = path.slice(modules + 'node_modules/'.length).split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  const dist = path.lastIndexOf('/dist/');
  return dist >= 0 ? `app: ${path.slice(dist + 6).split('/').slice(0, 2).join('/')}` : path;
}

function shortLocation(url: string, line: number): string {
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('node_modules/');
  const shown = modules >= 0 ? path.slice(modules + 'node_modules/'.length) : path.includes('/dist/') ? path.slice(path.lastIndexOf('/dist/') + 6) : path;
  return shown ? `${shown}:${line + 1}` : '';
}

/**
 * The profiles written to `directory`: the main thread's and the worker threads' (Node names files
 * `CPU.<date>.<time>.<pid>.<threadId>.<seq>.cpuprofile`; thread 0 is the main one).
 */
export function profilesIn(directory: string): { main: string | undefined; workers: string[] } {
  const files = readdirSync(directory).filter((name) => name.endsWith('.cpuprofile'));
  const thread = (name: string) => name.split('.')[4];
  return {
    main: files.filter((name) => thread(name) === '0').map((name) => join(directory, name))[0],
    workers: files.filter((name) => thread(name) !== '0').map((name) => join(directory, name)),
  };
}
