/**
 * Turns one bench run into the table printed on stdout and the section of BENCHMARKS.md for its
 * database (PostgreSQL server or embedded PGlite); the other database's section is kept.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, totalmem, type } from 'node:os';
import type { LoadResult } from './load.js';
import type { ProfileSummary } from './profile.js';

export interface Machine {
  os: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
}

export function machine(): Machine {
  return {
    os: `${type()} ${release()}`,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version,
  };
}

/** A load run with what the server (or baseline) process did meanwhile. */
export interface Measured extends LoadResult {
  /** CPU the measured process used, in cores (all its threads). */
  serverCores: number;
  /** CPU of the local `postgres` processes meanwhile, in cores (NaN where /proc is unavailable). */
  postgresCores: number;
  /** CPU the whole machine used meanwhile, in cores (NaN where /proc is unavailable). */
  machineCores: number;
  /** Longest event-loop stall of the measured process during the run, ms. */
  eldMaxMs: number;
  /** Longest garbage-collection pause of the measured process during the run, ms. */
  gcMaxMs: number;
}

export interface Target {
  label: string;
  /** The figure compared with the goal, formatted. */
  value: string;
  goal: string;
  met: boolean;
  /** Which profile workload explains a miss (none for memory). */
  workload?: Workload;
}

/** The database's share of one login (PostgreSQL runs only), from bench/run.ts's measureLoginCost. */
export interface LoginCost {
  /** Where the rate-limit counters lived. */
  counters: 'PostgreSQL' | 'Redis';
  measured: Measured;
  postgresMsPerLogin: number;
  statementsPerLogin: number;
  roundTripsPerLogin: number;
  transactionsPerLogin: number;
}

export type Workload = 'me' | 'users' | 'login' | 'flood';

export interface ProfileNote {
  workload: Workload;
  description: string;
  main: ProfileSummary;
  /** Busy time of the bcrypt worker threads in the same window, ms. */
  workersBusyMs?: number;
  /** The profiled load run (the profiler itself slows the server down a little). */
  measured: Measured;
}

export interface BenchRun {
  kind: 'postgresql' | 'embedded';
  database: string;
  date: string;
  machine: Machine;
  /** 1-minute load average when the bench started (other work on the machine skews the figures). */
  loadAverage: number;
  /** Cores the machine kept busy during one second before the bench started anything. */
  busyBeforeStart: number;
  wallSeconds: number;
  seededUsers: number;
  bcrypt: { cost: number; samplesMs: number[]; medianMs: number; ceiling: number };
  meOurs: Measured;
  meBaseline: Measured;
  baselineNote: string;
  users: Measured;
  login: Measured;
  loginCost: LoginCost[];
  flood: { me: Measured; login: LoadResult };
  /** Memory of the server around the long `me` run: `before`/`after` right after full GCs, `raw…` as found. */
  rss: {
    requests: number;
    durationS: number;
    rps: number;
    beforeMiB: number;
    afterMiB: number;
    rawBeforeMiB: number;
    rawAfterMiB: number;
    heapBeforeMiB: number;
    heapAfterMiB: number;
    startMiB: number;
  };
  targets: Target[];
  profiles: ProfileNote[];
  profileError?: string;
}

const fmt = (value: number, digits = 0) => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const pct = (value: number) => `${value >= 0 ? '+' : ''}${fmt(value * 100, 1)} %`;
const verdict = (target: Target) => (target.met ? 'met' : 'MISSED');

/** Builds the list of targets of the issue from a run's figures. */
export function evaluateTargets(run: Omit<BenchRun, 'targets' | 'profiles'>): Target[] {
  const meRatio = run.meOurs.rps / run.meBaseline.rps;
  const loginRatio = run.login.rps / run.bcrypt.ceiling;
  const rssGrowth = run.rss.afterMiB / run.rss.beforeMiB - 1;
  return [
    { label: '`me` req/s, ours ÷ bare-stack baseline (50 connections)', value: fmt(meRatio, 2), goal: '≥ 0.60', met: meRatio >= 0.6, workload: 'me' },
    { label: 'logins/s ÷ ceiling (cores ÷ one bcrypt compare)', value: fmt(loginRatio, 2), goal: '≥ 0.90', met: loginRatio >= 0.9, workload: 'login' },
    { label: `RSS growth over ${fmt(run.rss.requests)} \`me\` requests (after full GC)`, value: pct(rssGrowth), goal: '< 10 %', met: rssGrowth < 0.1 },
    { label: `\`users(first:50)\` p99 as admin (${run.users.connections} connections)`, value: `${fmt(run.users.p99)} ms`, goal: '< 30 ms', met: run.users.p99 < 30, workload: 'users' },
    {
      label: `\`me\` p99 during a login flood (${run.flood.me.connections} + ${run.flood.login.connections} login connections)`,
      value: `${fmt(run.flood.me.p99)} ms`,
      goal: '< 50 ms',
      met: run.flood.me.p99 < 50,
      workload: 'flood',
    },
    // The issue's measure: hashing must not stall the loop. The second row is stricter: the loop is
    // also busy serving `me`, so GC pauses and the OS's scheduling on a shared machine count too.
    { label: 'longest event-loop stall during a login flood', value: `${fmt(run.login.eldMaxMs, 1)} ms`, goal: '< 20 ms', met: run.login.eldMaxMs < 20, workload: 'login' },
    {
      label: `the same, with \`me\` at ${run.flood.me.connections} connections during the flood`,
      value: `${fmt(run.flood.me.eldMaxMs, 1)} ms`,
      goal: '< 20 ms',
      met: run.flood.me.eldMaxMs < 20,
      workload: 'flood',
    },
    ...run.loginCost
      .filter((cost) => cost.counters === 'PostgreSQL')
      .map((cost) => ({
        label: 'PostgreSQL CPU per login (rate-limit counters in PostgreSQL)',
        value: `${fmt(cost.postgresMsPerLogin, 2)} ms`,
        goal: '≤ 1.0 ms',
        met: cost.postgresMsPerLogin <= 1.0,
      })),
  ];
}

const LOGIN_COST_NOTE =
  'A separate server with bcrypt cost 4 (so hashing no longer hides the database) and production rate limits that count but never refuse (`RATE_LIMIT_SCALE=1000`) reaches PostgreSQL through a relay that reads the wire protocol: statements are `Query` and `Execute` messages (a `BEGIN; …; COMMIT` script sent as one `Query` counts once), round trips `ReadyForQuery` answers, transactions those that end idle after work (read-only ones included). PostgreSQL CPU is every local `postgres` process (background writers included) ÷ logins/s.';

function loginCostRows(run: BenchRun): string[][] {
  return run.loginCost.map((cost) => [
    `counters in ${cost.counters}`,
    fmt(cost.measured.rps, 0),
    `${fmt(cost.postgresMsPerLogin, 2)} ms`,
    `${fmt((cost.measured.serverCores / cost.measured.rps) * 1000, 2)} ms`,
    fmt(cost.statementsPerLogin, 1),
    fmt(cost.roundTripsPerLogin, 1),
    fmt(cost.transactionsPerLogin, 1),
  ]);
}

const LOGIN_COST_HEADER = ['login', 'logins/s', 'PostgreSQL CPU per login', 'server CPU per login', 'statements', 'round trips', 'transactions'];

function loadRows(run: BenchRun): Array<[string, Measured | LoadResult]> {
  return [
    ['`me`, ours', run.meOurs],
    ['`me`, bare-stack baseline', run.meBaseline],
    ['`users(first:50)` as admin', run.users],
    ['`login` (valid password)', run.login],
    ['`me` during the login flood', run.flood.me],
    ['`login` during the flood (with `me`)', run.flood.login],
  ];
}

/** CPU columns of a run: the measured process, PostgreSQL, the load generator, everything else. */
function cpuColumns(r: Measured | LoadResult): [string, string, string, string] {
  if (!('serverCores' in r)) return ['', '', '', ''];
  const known = Number.isFinite(r.machineCores);
  const other = known ? Math.max(0, r.machineCores - r.serverCores - r.postgresCores - r.loadgenCores) : Number.NaN;
  return [fmt(r.serverCores, 2), known ? fmt(r.postgresCores, 2) : '', fmt(r.loadgenCores, 2), known ? fmt(other, 2) : ''];
}

function profileHeadline(note: ProfileNote): string {
  const r = note.measured;
  const [server, postgres, loadgen, other] = cpuColumns(r);
  const main = note.main;
  return [
    `${fmt(r.rps, r.rps < 100 ? 2 : 0)} req/s, p99 ${fmt(r.p99)} ms while profiled`,
    `CPU cores: server ${server}, PostgreSQL ${postgres || '?'}, load generator ${loadgen}, other ${other || '?'}`,
    `main thread busy ${fmt(main.busyMs)} of ${fmt(main.totalMs)} ms (${fmt((100 * main.busyMs) / Math.max(1, main.totalMs), 0)} %)`,
    `largest gap between two samples ${fmt(main.largestGapMs, 1)} ms (thread not running), longest event-loop stall ${fmt(r.eldMaxMs, 1)} ms, longest GC pause ${fmt(r.gcMaxMs, 1)} ms`,
    ...(note.workersBusyMs !== undefined ? [`bcrypt workers busy ${fmt(note.workersBusyMs)} ms in all`] : []),
  ].join('; ');
}

/**
 * Logins per CPU-second the server process actually got, against bcrypt compares per CPU-second:
 * separates "the server wastes CPU" from "the server did not get the CPU" (another process took it).
 */
function loginEfficiency(run: BenchRun): string {
  const perCpuSecond = run.login.rps / run.login.serverCores;
  const bcryptPerCpuSecond = 1000 / run.bcrypt.medianMs;
  return `login per CPU-second the server got: ${fmt(perCpuSecond, 2)} (${fmt(run.login.serverCores, 2)} cores for ${fmt(run.login.rps, 2)} logins/s) ÷ ${fmt(bcryptPerCpuSecond, 2)} compares per CPU-second = ${fmt(perCpuSecond / bcryptPerCpuSecond, 2)}`;
}

/** The plain-text table printed at the end of `npm run bench`. */
export function textReport(run: BenchRun): string {
  const lines: string[] = [];
  const m = run.machine;
  lines.push('');
  lines.push(`Benchmark on ${run.database}`);
  lines.push(
    `${run.date} · ${m.os} · ${m.cpu} · ${m.cores} cores · ${fmt(m.memoryGiB, 1)} GiB · Node ${m.node} · load average at start ${fmt(run.loadAverage, 2)}, ${fmt(run.busyBeforeStart, 2)} cores busy before it · ${fmt(run.wallSeconds)} s`,
  );
  lines.push('');
  lines.push('Ratios and targets');
  const width = Math.max(...run.targets.map((t) => t.label.replaceAll('`', '').length));
  for (const target of run.targets) {
    lines.push(`  ${target.label.replaceAll('`', '').padEnd(width)}  ${target.value.padStart(9)}  ${target.goal.padEnd(8)}  ${verdict(target)}`);
  }
  lines.push('');
  lines.push('Absolute numbers');
  lines.push(
    `  ${'run'.padEnd(36)} ${'conns'.padStart(5)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'failed'.padStart(6)}  | CPU cores: ${'server'.padStart(6)} ${'postgres'.padStart(8)} ${'loadgen'.padStart(7)} ${'other'.padStart(6)}`,
  );
  for (const [name, r] of loadRows(run)) {
    const [server, postgres, loadgen, other] = cpuColumns(r);
    lines.push(
      `  ${name.replaceAll('`', '').padEnd(36)} ${String(r.connections).padStart(5)} ${fmt(r.rps, r.rps < 100 ? 2 : 0).padStart(8)} ${fmt(r.p50).padStart(7)} ${fmt(r.p99).padStart(7)} ${fmt(r.failed).padStart(6)}  |            ${server.padStart(6)} ${postgres.padStart(8)} ${loadgen.padStart(7)} ${other.padStart(6)}`,
    );
  }
  lines.push('');
  lines.push(
    `  bcrypt compare at cost ${run.bcrypt.cost}: ${fmt(run.bcrypt.medianMs, 1)} ms (median of ${run.bcrypt.samplesMs.length}) → ceiling ${m.cores} ÷ ${fmt(run.bcrypt.medianMs / 1000, 3)} s = ${fmt(run.bcrypt.ceiling, 2)} logins/s`,
  );
  lines.push(`  ${loginEfficiency(run)}`);
  lines.push(
    `  server CPU per me request: ours ${fmt((run.meOurs.serverCores / run.meOurs.rps) * 1000, 2)} ms, baseline ${fmt((run.meBaseline.serverCores / run.meBaseline.rps) * 1000, 2)} ms`,
  );
  lines.push(
    `  longest event-loop stall: login flood ${fmt(run.login.eldMaxMs, 1)} ms (longest GC pause ${fmt(run.login.gcMaxMs, 1)} ms), login flood + me ${fmt(run.flood.me.eldMaxMs, 1)} ms (GC ${fmt(run.flood.me.gcMaxMs, 1)} ms)`,
  );
  lines.push(
    `  RSS after full GC: ${fmt(run.rss.beforeMiB, 1)} MiB before → ${fmt(run.rss.afterMiB, 1)} MiB after ${fmt(run.rss.requests)} me requests (${fmt(run.rss.rps)} req/s); as found ${fmt(run.rss.rawBeforeMiB, 1)} → ${fmt(run.rss.rawAfterMiB, 1)} MiB; heap ${fmt(run.rss.heapBeforeMiB, 1)} → ${fmt(run.rss.heapAfterMiB, 1)} MiB; ${fmt(run.rss.startMiB, 1)} MiB right after start-up and seeding`,
  );
  lines.push(`  "other" CPU = whole machine − server − PostgreSQL − load generator: anything else running on the machine.`);
  if (run.loginCost.length > 0) {
    lines.push('');
    lines.push('Database cost per login (bcrypt cost 4, production rate limits)');
    for (const row of [LOGIN_COST_HEADER, ...loginCostRows(run)]) lines.push(`  ${row[0].padEnd(26)} ${row.slice(1).map((cell) => cell.padStart(12)).join(' ')}`);
  }
  for (const note of run.profiles) {
    lines.push('');
    lines.push(`Profile, ${note.description.replaceAll('`', '')}: ${profileHeadline(note)}`);
    lines.push('  main thread self time by origin:');
    for (const entry of note.main.byOrigin.slice(0, 8)) lines.push(`  ${fmt(entry.share * 100, 1).padStart(5)} %  ${entry.name}`);
    lines.push('  top functions, self time:');
    for (const entry of note.main.topFunctions.slice(0, 8)) lines.push(`  ${fmt(entry.share * 100, 1).padStart(5)} %  ${entry.name}`);
    lines.push('  top functions, inclusive (synchronous part):');
    for (const entry of note.main.inclusive.slice(0, 8)) lines.push(`  ${fmt(entry.share * 100, 1).padStart(5)} %  ${entry.name}`);
  }
  if (run.profileError) lines.push(`Profiling failed: ${run.profileError}`);
  lines.push('');
  return lines.join('\n');
}

/** The markdown section of BENCHMARKS.md for this run's database. */
export function markdownSection(run: BenchRun): string {
  const m = run.machine;
  const out: string[] = [];
  out.push(`## ${run.kind === 'postgresql' ? 'PostgreSQL server' : 'Embedded PGlite'}`);
  out.push('');
  out.push(
    `Measured ${run.date} by \`npm run bench\` (${fmt(run.wallSeconds)} s wall time) on ${m.os}, ${m.cpu}, ${m.cores} cores, ${fmt(m.memoryGiB, 1)} GiB RAM, Node ${m.node}; when it started the load average was ${fmt(run.loadAverage, 2)} and other processes kept ${fmt(run.busyBeforeStart, 2)} cores busy.`,
  );
  out.push(`Database: ${run.database}; ${run.seededUsers} rows in \`users\`.`);
  out.push('');
  out.push('### Ratios and targets');
  out.push('');
  out.push('| measure | result | target | |');
  out.push('| --- | ---: | --- | --- |');
  for (const target of run.targets) out.push(`| ${target.label} | ${target.value} | ${target.goal} | ${verdict(target)} |`);
  out.push('');
  out.push('### Absolute numbers');
  out.push('');
  out.push('| run | connections | req/s | p50 | p99 | failed | CPU: server | CPU: PostgreSQL | CPU: load generator | CPU: other |');
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, r] of loadRows(run)) {
    const [server, postgres, loadgen, other] = cpuColumns(r);
    out.push(`| ${name} | ${r.connections} | ${fmt(r.rps, r.rps < 100 ? 2 : 0)} | ${fmt(r.p50)} ms | ${fmt(r.p99)} ms | ${fmt(r.failed)} | ${server} | ${postgres} | ${loadgen} | ${other} |`);
  }
  out.push('');
  out.push(
    `CPU in cores (${m.cores} = the whole machine). "Server" is the measured process with all its threads (for the baseline row, the baseline process); "PostgreSQL" every local \`postgres\` process; "other" the rest of the machine's busy time (anything else running). The two runs of the flood share one measurement, shown on the \`me\` row. Latencies have autocannon's 1 ms resolution.`,
  );
  out.push('');
  out.push(
    `- bcrypt: one \`bcryptjs.compareSync\` at cost ${run.bcrypt.cost} takes ${fmt(run.bcrypt.medianMs, 1)} ms (median of ${run.bcrypt.samplesMs.length}: ${run.bcrypt.samplesMs.map((v) => fmt(v, 1)).join(', ')}), so the ceiling is ${m.cores} ÷ ${fmt(run.bcrypt.medianMs / 1000, 3)} s = **${fmt(run.bcrypt.ceiling, 2)} logins/s**.`,
  );
  out.push(`- ${loginEfficiency(run).replace(/^l/, 'L')}: the share of the server's CPU that went into bcrypt.`);
  out.push(
    `- CPU per \`me\` request: ours ${fmt((run.meOurs.serverCores / run.meOurs.rps) * 1000, 2)} ms of server CPU, the baseline ${fmt((run.meBaseline.serverCores / run.meBaseline.rps) * 1000, 2)} ms (server-process cores ÷ req/s).`,
  );
  out.push(
    `- Longest event-loop stall of the server (monitorEventLoopDelay, 1 ms resolution): ${fmt(run.login.eldMaxMs, 1)} ms during the login-only flood (longest GC pause meanwhile ${fmt(run.login.gcMaxMs, 1)} ms), ${fmt(run.flood.me.eldMaxMs, 1)} ms during login flood + \`me\` (longest GC pause ${fmt(run.flood.me.gcMaxMs, 1)} ms).`,
  );
  out.push(
    `- Memory: RSS ${fmt(run.rss.beforeMiB, 1)} MiB before and ${fmt(run.rss.afterMiB, 1)} MiB after ${fmt(run.rss.requests)} \`me\` requests at 50 connections (${fmt(run.rss.durationS, 1)} s, ${fmt(run.rss.rps)} req/s), each read right after a full garbage collection (the server runs with \`--expose-gc\` for this; nothing else calls it); as found, without collecting: ${fmt(run.rss.rawBeforeMiB, 1)} → ${fmt(run.rss.rawAfterMiB, 1)} MiB. V8 heap after GC ${fmt(run.rss.heapBeforeMiB, 1)} → ${fmt(run.rss.heapAfterMiB, 1)} MiB. "Before" is taken after the other runs, with the server warm; right after start-up and seeding the RSS was ${fmt(run.rss.startMiB, 1)} MiB.`,
  );
  out.push(`- Baseline: ${run.baselineNote}`);
  if (run.loginCost.length > 0) {
    out.push('');
    out.push('### Database cost per login');
    out.push('');
    out.push(`| ${LOGIN_COST_HEADER.join(' | ')} |`);
    out.push(`| --- | ${LOGIN_COST_HEADER.slice(1).map(() => '---:').join(' | ')} |`);
    for (const row of loginCostRows(run)) out.push(`| ${row.join(' | ')} |`);
    out.push('');
    out.push(LOGIN_COST_NOTE);
  }
  if (run.profiles.length > 0 || run.profileError) {
    out.push('');
    // BENCH_PROFILE=auto profiles the workloads of missed targets only; =always, every workload.
    out.push('### Profiles');
    out.push('');
    out.push(
      'After the measured runs a second server on the same database, started with `--cpu-prof`, served each workload below (2 s warm-up, then the measured window). The tables count main-thread samples inside that window only, as a share of its busy time. Inclusive time covers synchronous stacks: code resuming after an `await` starts a new stack, so it does not add up across awaits.',
    );
    if (run.profileError) out.push(`\nProfiling failed: ${run.profileError}`);
    for (const note of run.profiles) {
      out.push('');
      out.push(`**${note.description}** — ${profileHeadline(note)}.`);
      out.push('');
      out.push('| self time by origin | | top functions, self time | | top functions, inclusive | |');
      out.push('| --- | ---: | --- | ---: | --- | ---: |');
      for (let i = 0; i < 8; i++) {
        const a = note.main.byOrigin[i];
        const b = note.main.topFunctions[i];
        const c = note.main.inclusive[i];
        const cell = (entry: { name: string; share: number } | undefined, code: boolean) =>
          entry ? `${code ? `\`${entry.name.replaceAll('|', '\\|')}\`` : entry.name} | ${fmt(entry.share * 100, 1)} %` : ' | ';
        out.push(`| ${cell(a, false)} | ${cell(b, true)} | ${cell(c, true)} |`);
      }
    }
  }
  return out.join('\n');
}

const INTRO = `# Benchmarks

\`npm run bench\` builds the project and runs \`dist/bench/run.js\`: the real server (\`createApp\` +
\`listen\`, \`NODE_ENV=production\`, \`RATE_LIMIT_SCALE=0\`, \`LOG_LEVEL=warn\`) in a child process, loaded
over loopback by [autocannon](https://github.com/mcollina/autocannon) from the bench process. With
\`DATABASE_URL\` set it creates a fresh database on that server and drops it afterwards; without it the
server runs on its embedded PGlite in a temporary \`DATA_DIR\`. See \`bench/run.ts\` for every step.
Each run rewrites only its own section below (PostgreSQL server or embedded).
`;

const marker = (kind: BenchRun['kind'], edge: 'start' | 'end') => `<!-- bench:${kind}:${edge} -->`;

/** Replaces this run's section of BENCHMARKS.md (creating the file when missing), keeping the rest. */
export function updateBenchmarksFile(path: string, run: BenchRun): void {
  let text = existsSync(path)
    ? readFileSync(path, 'utf8')
    : `${INTRO}\n${marker('postgresql', 'start')}\n${marker('postgresql', 'end')}\n\n${marker('embedded', 'start')}\n${marker('embedded', 'end')}\n`;
  const start = marker(run.kind, 'start');
  const end = marker(run.kind, 'end');
  const section = `${start}\n${markdownSection(run)}\n${end}`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from >= 0 && to > from) text = text.slice(0, from) + section + text.slice(to + end.length);
  else text = `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, text);
}
