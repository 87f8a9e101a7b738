#!/usr/bin/env node
// Interop: teleportd against @grpc/grpc-js, the Node.js gRPC
// implementation, with the service loaded from proto/jobworker.proto by
// @grpc/proto-loader at test time. Every RPC of jobworker.v1.JobWorker and
// every field of its messages, plus grpc.health.v1.Health/Check.
//
// One teleportd for the run, started as the python interop suites start
// theirs (tests/interop/interop_common.py): 127.0.0.1 port 0, a temp data
// dir, --stop-timeout 2s, --max-output-bytes 64K, --max-stop-timeout 3s,
// certificates from JW_TEST_CERTS (tests/make-certs.sh). The last test
// SIGTERMs it and checks it exits 0. Loopback only; every wait is bounded;
// on any exit the server and its jobs' process groups are killed by PID.
//
// The node modules come from tests/interop/grpcjs/package-lock.json
// (`make deps` runs `npm ci` there); when they are missing the run fails
// and says why.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const childProcess = require('child_process');

const HERE = __dirname;
const SOURCE_ROOT = process.env.JW_SOURCE_ROOT || path.resolve(HERE, '..', '..', '..');
const BUILD_ROOT = process.env.JW_BUILD_ROOT || path.join(SOURCE_ROOT, 'build');
const TELEPORTD = path.join(BUILD_ROOT, 'server', 'teleportd');
const GRPC_PROTO = process.env.JW_GRPC_PROTO_DIR || '/usr/share/grpc-proto';
const NPM_LOG = path.join(HERE, 'npm-ci.log');

// The reason npm ci gave (make deps), for a run without the modules: its
// first error lines, which name the failed request.
function npmReason() {
  let log;
  try {
    log = fs.readFileSync(NPM_LOG, 'utf8');
  } catch (_) {
    return '(no ' + NPM_LOG + ': `make deps` did not run here)';
  }
  const errs = log.split('\n').filter((l) => l.startsWith('npm error')).slice(0, 8);
  return (errs.length ? errs : log.split('\n').slice(-15)).join('\n');
}

function noModules(why) {
  process.stderr.write(
    'grpcjs-interop: FAILED: no @grpc/grpc-js / @grpc/proto-loader here (' + why + ').\n' +
    'They are installed by `make deps` (npm ci --no-audit --no-fund --ignore-scripts in ' +
    HERE + ', from the npm registry). npm ci said:\n' + npmReason() + '\n');
  process.exit(1);
}

// npm ci writes this last; without it node_modules is missing or partial.
if (!fs.existsSync(path.join(HERE, 'node_modules', '.package-lock.json'))) {
  noModules('npm ci has not completed in ' + path.join(HERE, 'node_modules'));
}
let grpc, protoLoader;
try {
  grpc = require('@grpc/grpc-js');
  protoLoader = require('@grpc/proto-loader');
} catch (e) {
  noModules(e.message.split('\n')[0]);
}

const CAP = 64 * 1024; // --max-output-bytes below
const STOP_GRACE = 2.0; // --stop-timeout, seconds
const MAX_STOP = 3.0; // --max-stop-timeout, seconds
const MAX_PIDS = 1000; // --max-pids
const RPC_TIMEOUT = 15000; // ms, for every unary call
const INT64_MAX = '9223372036854775807';
const S = grpc.status;

// ---- temp dirs, certificates, cleanup ------------------------------------

const tempDirs = [];
function mktemp(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

function certsDir() {
  const d = process.env.JW_TEST_CERTS;
  if (d && fs.existsSync(path.join(d, 'alice.key'))) return d;
  const out = path.join(mktemp('jw-grpcjs-certs-'), 'c');
  childProcess.execFileSync(path.join(SOURCE_ROOT, 'tests', 'make-certs.sh'), [out],
    {stdio: ['ignore', 'ignore', 'inherit'], timeout: 120000});
  return out;
}

let server = null; // {proc, pid, port, tmp, dataDir, logPath, exited, code}

function childrenOf(ppid) {
  const kids = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let s;
    try {
      s = fs.readFileSync('/proc/' + e + '/stat', 'latin1');
    } catch (_) {
      continue;
    }
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[1]) === ppid) kids.push({pid: Number(e), pgrp: Number(rest[2])});
  }
  return kids;
}

// SIGKILLs teleportd by PID, then the process group of each of its jobs
// (each job leads its own group), which would otherwise outlive it.
function killServer() {
  if (!server || server.exited) return;
  const jobs = childrenOf(server.pid);
  try {
    process.kill(server.pid, 'SIGKILL');
  } catch (_) { /* gone */ }
  for (const j of jobs) {
    if (j.pgrp !== j.pid) continue;
    try {
      process.kill(-j.pid, 'SIGKILL');
    } catch (_) { /* gone */ }
  }
}

function cleanupAll() {
  killServer();
  for (const d of tempDirs) fs.rmSync(d, {recursive: true, force: true});
  tempDirs.length = 0;
}

process.on('exit', cleanupAll);
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    process.stderr.write('grpcjs-interop: ' + sig + ', cleaning up\n');
    cleanupAll();
    process.exit(1);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts teleportd and resolves once its log says where it listens.
async function startServer(certs, extraArgs, timeoutMs) {
  const tmp = mktemp('jw-grpcjs-srv-');
  const dataDir = path.join(tmp, 'data');
  const logPath = path.join(tmp, 'teleportd.log');
  if (!fs.existsSync(TELEPORTD)) {
    throw new Error('no teleportd binary at ' + TELEPORTD + ' (JW_BUILD_ROOT=' + BUILD_ROOT + ')');
  }
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('TELEPORTD_')) env[k] = v;
  }
  env.JW_INTEROP_MARKER = 'server-env-must-not-leak';
  const args = ['--addr', '127.0.0.1:0', '--cacert', path.join(certs, 'ca.cert'),
    '--cert', path.join(certs, 'server.cert'), '--key', path.join(certs, 'server.key'),
    '--data-dir', dataDir, '--stop-timeout', STOP_GRACE + 's', '--log-level', 'debug',
    ...extraArgs];
  const fd = fs.openSync(logPath, 'w');
  const proc = childProcess.spawn(TELEPORTD, args, {stdio: ['ignore', fd, fd], env, cwd: tmp});
  fs.closeSync(fd);
  server = {proc, pid: proc.pid, port: null, tmp, dataDir, logPath, exited: false, code: null};
  const exitP = new Promise((resolve) => {
    proc.on('exit', (code, sig) => {
      server.exited = true;
      server.code = code === null ? 'signal ' + sig : code;
      resolve(server.code);
    });
  });
  server.exitP = exitP;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !server.exited) {
    const m = /event=listening\b.*\bport=(\d+)/.exec(serverLog());
    if (m) {
      server.port = Number(m[1]);
      return server;
    }
    await sleep(50);
  }
  const log = serverLog();
  killServer();
  throw new Error('teleportd did not start listening (exit ' + server.code + '); log:\n' + log);
}

function serverLog() {
  try {
    return fs.readFileSync(server.logPath, 'utf8');
  } catch (_) {
    return '';
  }
}

// ---- gRPC ------------------------------------------------------------------

const LOAD_OPTS = {keepCase: true, longs: String, enums: String, defaults: true, oneofs: true};

function loadServices() {
  const jw = grpc.loadPackageDefinition(protoLoader.loadSync(
    path.join(SOURCE_ROOT, 'proto', 'jobworker.proto'), LOAD_OPTS));
  const healthProto = path.join(GRPC_PROTO, 'grpc', 'health', 'v1', 'health.proto');
  if (!fs.existsSync(healthProto)) {
    throw new Error('no ' + healthProto + ' (Debian package grpc-proto; or set JW_GRPC_PROTO_DIR)');
  }
  const health = grpc.loadPackageDefinition(protoLoader.loadSync(healthProto, LOAD_OPTS));
  return {JobWorker: jw.jobworker.v1.JobWorker, Health: health.grpc.health.v1.Health};
}

// grpc-js would name the server by the target's IP in the TLS SNI, which
// node deprecates (RFC 6066 has no IP names); the test certificate names
// it localhost too (certs/jw-certs), so verification checks that name.
const CHANNEL_OPTS = {'grpc.ssl_target_name_override': 'localhost'};

function creds(certs, who) {
  return grpc.credentials.createSsl(
    fs.readFileSync(path.join(certs, 'ca.cert')),
    fs.readFileSync(path.join(certs, who + '.key')),
    fs.readFileSync(path.join(certs, who + '.cert')));
}

// A unary call as a promise; rejects with the grpc-js error (.code).
function call(client, method, req, timeoutMs = RPC_TIMEOUT) {
  return new Promise((resolve, reject) => {
    client[method](req, {deadline: new Date(Date.now() + timeoutMs)}, (err, res) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}

// A GetOutput stream read whole: {msgs, data (all bytes in order), code}.
function readStream(client, req, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const msgs = [];
    const st = client.GetOutput(req, {deadline: new Date(Date.now() + timeoutMs)});
    st.on('data', (m) => msgs.push(m));
    st.on('error', (e) => {
      e.msgs = msgs;
      reject(e);
    });
    st.on('end', () => resolve({msgs, data: Buffer.concat(msgs.map((m) => m.data))}));
  });
}

// ---- assertions --------------------------------------------------------------

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

function show(v) {
  if (Buffer.isBuffer(v)) {
    const s = v.length > 80 ? v.subarray(0, 80).toString('latin1') + '...' : v.toString('latin1');
    return 'Buffer(' + v.length + ') ' + JSON.stringify(s);
  }
  return JSON.stringify(v);
}

function eq(got, want, what) {
  const same = Buffer.isBuffer(want) ? Buffer.isBuffer(got) && got.equals(want) :
    JSON.stringify(got) === JSON.stringify(want);
  if (!same) fail(what + ': got ' + show(got) + ', want ' + show(want));
}

function ok(cond, what) {
  if (!cond) fail(what);
}

// fn() must fail with code and a non-empty message; returns the error.
async function code(want, fn, what) {
  let err = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  if (err === null) fail(what + ': succeeded, want ' + (S[want] || want));
  if (err instanceof Failure) throw err;
  if (err.code !== want) {
    fail(what + ': got ' + (S[err.code] || err.code) + ' (' + err.details + '), want ' + S[want]);
  }
  ok(err.details && err.details.length > 0, what + ': ' + S[want] + ' with an empty message');
  return err;
}

// ---- the run -----------------------------------------------------------------

const tests = [];
function test(name, fn) {
  tests.push({name, fn});
}

let alice, bob, health, tmp;
const started = []; // job ids to stop at the end, whatever happened

async function start(req, who = alice) {
  const st = await call(who, 'Start', req);
  started.push({id: st.id, who});
  eq(st.state, 'JOB_STATE_RUNNING', 'Start answers RUNNING');
  return st;
}

function sh(script, extra = {}) {
  return Object.assign({command: 'sh', args: ['-c', script]}, extra);
}

async function status(id, who = alice) {
  return call(who, 'Status', {id});
}

async function waitFinal(id, who = alice, timeoutMs = 30000) {
  return call(who, 'Wait', {id}, timeoutMs);
}

// Polls pred (bounded); returns whether it held.
async function until(pred, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

async function stopQuietly(id, who = alice) {
  try {
    await call(who, 'Stop', {id}, 30000);
  } catch (_) { /* final or gone */ }
}

const ID_RE = /^[0-9a-f]{32}$/;

test('health Check: SERVING for "" and the service, NOT_FOUND for another', async () => {
  for (const service of ['', 'jobworker.v1.JobWorker']) {
    const r = await call(health, 'Check', {service});
    eq(r.status, 'SERVING', 'Check(' + JSON.stringify(service) + ').status');
  }
  const e = await code(S.NOT_FOUND, () => call(health, 'Check', {service: 'nope.v1.Nope'}),
    'Check(nope.v1.Nope)');
  ok(/unknown service/.test(e.details), 'NOT_FOUND says unknown service: ' + e.details);
});

test('Start and Status: every JobStatus field of a running job', async () => {
  const t0 = BigInt(Date.now()) * 1000000n;
  const st = await start({command: 'sleep', args: ['60'], env: ['A=1'], working_dir: tmp});
  try {
    ok(ID_RE.test(st.id), 'id is 32 lowercase hex digits: ' + st.id);
    eq(st.owner, 'alice', 'owner');
    eq(st.command, 'sleep', 'command');
    eq(st.args, ['60'], 'args');
    ok(st.pid > 0, 'pid > 0: ' + st.pid);
    eq([st.exit_code, st.signal], [0, 0], 'exit_code, signal');
    const at = BigInt(st.started_at_unix_nano);
    ok(at >= t0 - 5000000000n && at <= BigInt(Date.now()) * 1000000n + 5000000000n,
      'started_at_unix_nano is now: ' + st.started_at_unix_nano);
    eq(st.ended_at_unix_nano, '0', 'ended_at_unix_nano while running');
    eq(st.end_reason, 'END_REASON_UNSPECIFIED', 'end_reason while running');
    eq(st.output_cap_bytes, String(CAP), 'output_cap_bytes');
    eq(st.timeout_ms, '0', 'timeout_ms');
    eq(st.output_dropped_bytes, '0', 'output_dropped_bytes');
    eq(st.oom_killed, false, 'oom_killed');
    ok(st.limits !== null && typeof st.limits === 'object', 'limits present');
    for (const f of ['memory_bytes', 'cpu_millis', 'io_read_bps', 'io_write_bps', 'pids']) {
      ok(/^\d+$/.test(st.limits[f]), 'limits.' + f + ' is a count: ' + st.limits[f]);
    }
    for (const f of ['cpu_usage_ns', 'memory_peak_bytes', 'output_bytes']) {
      ok(/^\d+$/.test(st[f]), f + ' is a count: ' + st[f]);
    }
    const now = await status(st.id);
    eq([now.id, now.owner, now.command, now.args, now.pid, now.state],
      [st.id, 'alice', 'sleep', ['60'], st.pid, 'JOB_STATE_RUNNING'], 'Status of it');
    eq(now.started_at_unix_nano, st.started_at_unix_nano, 'Status started_at_unix_nano');
  } finally {
    await stopQuietly(st.id);
  }
});

test('Start: env, working_dir and a clean environment; Wait on EXITED', async () => {
  const st = await start(sh('echo "$A|$B|${JW_INTEROP_MARKER-unset}"; pwd; exit 0',
    {env: ['A=one', 'B=two words']}), alice);
  // working_dir "" is the server's own: its temp dir. Then ours.
  const fin = await waitFinal(st.id);
  eq([fin.state, fin.exit_code, fin.end_reason],
    ['JOB_STATE_EXITED', 0, 'END_REASON_EXITED'], 'final status');
  ok(BigInt(fin.ended_at_unix_nano) >= BigInt(fin.started_at_unix_nano),
    'ended_at >= started_at');
  const {data} = await readStream(alice, {id: st.id});
  eq(data.toString(), 'one|two words|unset\n' + fs.realpathSync(server.tmp) + '\n', 'output');
  const wd = await start({command: 'pwd', working_dir: tmp});
  await waitFinal(wd.id);
  eq((await readStream(alice, {id: wd.id})).data.toString(), fs.realpathSync(tmp) + '\n',
    'pwd in working_dir');
  await code(S.INVALID_ARGUMENT, () => call(alice, 'Start', {command: ''}), 'Start with no command');
});

test('List: the caller\'s jobs oldest first, with their fields; not another client\'s', async () => {
  const a = await start({command: 'true', args: ['first']});
  const b = await start({command: 'true', args: ['second']});
  await waitFinal(a.id);
  await waitFinal(b.id);
  const c = await start({command: 'true'}, bob);
  await waitFinal(c.id, bob);
  const jobs = (await call(alice, 'List', {})).jobs;
  const ia = jobs.findIndex((j) => j.id === a.id);
  const ib = jobs.findIndex((j) => j.id === b.id);
  ok(ia >= 0 && ib > ia, 'both listed, oldest first: ' + ia + ', ' + ib);
  eq([jobs[ib].owner, jobs[ib].command, jobs[ib].args, jobs[ib].state, jobs[ib].end_reason],
    ['alice', 'true', ['second'], 'JOB_STATE_EXITED', 'END_REASON_EXITED'], 'listed job');
  eq(jobs[ib].output_cap_bytes, String(CAP), 'listed output_cap_bytes');
  ok(jobs.every((j) => j.owner === 'alice'), 'only alice\'s jobs');
  ok(!jobs.some((j) => j.id === c.id), 'bob\'s job not in alice\'s List');
  ok((await call(bob, 'List', {})).jobs.some((j) => j.id === c.id), 'bob\'s job in his List');
});

test('GetOutput: stdout and stderr byte-exact, tagged, offsets contiguous', async () => {
  // Every byte value, in both streams, in more than one message; 50006
  // bytes in all, under the 64 KiB cap.
  const out = crypto.randomBytes(20000);
  const err = Buffer.concat([Buffer.from('err\0\xff\n', 'latin1'), crypto.randomBytes(10000)]);
  fs.writeFileSync(path.join(tmp, 'out.bin'), out);
  fs.writeFileSync(path.join(tmp, 'err.bin'), err);
  fs.chmodSync(path.join(tmp, 'out.bin'), 0o644);
  fs.chmodSync(path.join(tmp, 'err.bin'), 0o644);
  const st = await start(sh('cat out.bin; cat err.bin >&2; cat out.bin', {working_dir: tmp}));
  const fin = await waitFinal(st.id);
  eq(fin.output_bytes, String(2 * out.length + err.length), 'output_bytes');
  const {msgs, data} = await readStream(alice, {id: st.id});
  const so = [], se = [];
  let end = 0;
  for (const m of msgs) {
    ok(m.stream === 'OUTPUT_STREAM_STDOUT' || m.stream === 'OUTPUT_STREAM_STDERR',
      'stream tag: ' + m.stream);
    eq(m.dropped_bytes, '0', 'dropped_bytes of an uncapped job');
    if (m.data.length === 0) continue;
    eq(m.offset, String(end), 'message offset is where the last one ended');
    end += m.data.length;
    (m.stream === 'OUTPUT_STREAM_STDOUT' ? so : se).push(m.data);
  }
  ok(msgs.length > 2, 'more than two messages: ' + msgs.length);
  eq(Buffer.concat(so), Buffer.concat([out, out]), 'stdout');
  eq(Buffer.concat(se), err, 'stderr');
  eq(end, data.length, 'offsets cover all data');
  // A resume from any offset gets exactly the rest.
  const mid = Number(msgs[Math.floor(msgs.length / 2)].offset) + 7;
  eq((await readStream(alice, {id: st.id, offset: String(mid)})).data, data.subarray(mid),
    'resume from ' + mid);
});

test('GetOutput offset: from 5 of 0123456789 is 56789; at or past the end nothing', async () => {
  const st = await start({command: 'printf', args: ['0123456789']});
  await waitFinal(st.id);
  let r = await readStream(alice, {id: st.id, offset: '5'});
  eq(r.data.toString(), '56789', 'offset 5');
  eq(r.msgs[0].offset, '5', 'first message offset');
  for (const off of ['10', '11', INT64_MAX]) {
    r = await readStream(alice, {id: st.id, offset: off});
    eq(r.data.length, 0, 'offset ' + off + ' of a 10-byte finished output');
  }
});

test('GetOutput tail_lines: last 3 of seq 1 100; from an offset; over the cap refused', async () => {
  const st = await start({command: 'seq', args: ['1', '100']});
  await waitFinal(st.id);
  let r = await readStream(alice, {id: st.id, tail_lines: 3});
  eq(r.data.toString(), '98\n99\n100\n', 'tail 3');
  eq(r.msgs[0].offset, '282', 'offset of "98"');
  r = await readStream(alice, {id: st.id, tail_lines: 1000, offset: '285'});
  eq(r.data.toString(), '99\n100\n', 'tail 1000 from offset 285');
  eq(r.msgs[0].offset, '285', 'offset then');
  await code(S.INVALID_ARGUMENT,
    () => readStream(alice, {id: st.id, tail_lines: 1000001}), 'tail_lines 1000001');
});

test('GetOutput no_follow of a running job ends with what is there', async () => {
  const st = await start(sh('echo one; sleep 60'));
  try {
    ok(await until(async () => (await status(st.id)).output_bytes === '4', 20000),
      'job wrote its line');
    const r = await readStream(alice, {id: st.id, no_follow: true}, 20000);
    eq(r.data.toString(), 'one\n', 'no_follow output');
    eq((await status(st.id)).state, 'JOB_STATE_RUNNING', 'job still running');
  } finally {
    await stopQuietly(st.id);
  }
});

test('GetOutput follows live output and ends OK once the job is final', async () => {
  const gate = path.join(tmp, 'gate-' + crypto.randomBytes(4).toString('hex'));
  // The job waits (bounded) for the gate file we make once "first" came;
  // sh -c SCRIPT NAME GATE: $1 is the gate.
  const job = await start({command: 'sh', args: ['-c', 'echo first; i=0; while [ ! -e "$1" ] ' +
    '&& [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo second', 'sh', gate]});
  const got = await new Promise((resolve, reject) => {
    const msgs = [];
    let gated = false;
    const s = alice.GetOutput({id: job.id}, {deadline: new Date(Date.now() + 40000)});
    s.on('data', (m) => {
      msgs.push(m);
      const all = Buffer.concat(msgs.map((x) => x.data)).toString();
      if (!gated && all === 'first\n') {
        gated = true;
        fs.writeFileSync(gate, '');
      }
    });
    s.on('error', reject);
    s.on('end', () => resolve({msgs, gated}));
  });
  ok(got.gated, 'saw "first" before the job went on');
  eq(Buffer.concat(got.msgs.map((m) => m.data)).toString(), 'first\nsecond\n', 'followed output');
  const fin = await status(job.id);
  eq(fin.state, 'JOB_STATE_EXITED', 'final when the stream ended');
});

test('Wait: final status of exit 7; a 1 s deadline on a running job is DEADLINE_EXCEEDED', async () => {
  const st = await start(sh('sleep 0.2; exit 7'));
  const fin = await waitFinal(st.id);
  eq([fin.id, fin.state, fin.exit_code, fin.end_reason],
    [st.id, 'JOB_STATE_EXITED', 7, 'END_REASON_EXITED'], 'Wait answer');
  eq((await waitFinal(st.id, alice, 5000)).exit_code, 7, 'Wait on a finished job');
  const run = await start({command: 'sleep', args: ['60']});
  try {
    const res = await Promise.all([0, 1, 2, 3, 4].map(async () => {
      const t0 = Date.now();
      try {
        await call(alice, 'Wait', {id: run.id}, 1000);
        return ['OK', Date.now() - t0];
      } catch (e) {
        return [S[e.code], Date.now() - t0];
      }
    }));
    eq(res.map((r) => r[0]), Array(5).fill('DEADLINE_EXCEEDED'), 'five 1 s Waits');
    ok(res.every((r) => r[1] >= 900), 'no Wait ended before its deadline: ' + res.map((r) => r[1]));
    eq((await status(run.id)).state, 'JOB_STATE_RUNNING', 'still running after the Waits');
  } finally {
    await stopQuietly(run.id);
  }
});

test('Signal: USR1 by name reaches a trap; by number; bad signals refused', async () => {
  const st = await start(sh('trap \'echo got USR1; exit 3\' USR1; echo ready; ' +
    'i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done'));
  ok(await until(async () => (await status(st.id)).output_bytes !== '0', 20000), 'job ready');
  const ans = await call(alice, 'Signal', {id: st.id, signal_name: 'USR1'});
  eq(ans.id, st.id, 'Signal answers the job\'s status');
  const fin = await waitFinal(st.id);
  eq([fin.state, fin.exit_code, fin.end_reason],
    ['JOB_STATE_EXITED', 3, 'END_REASON_EXITED'], 'trap exit');
  eq((await readStream(alice, {id: st.id})).msgs
    .filter((m) => m.stream === 'OUTPUT_STREAM_STDOUT').map((m) => m.data.toString()).join(''),
  'ready\ngot USR1\n', 'trap output');
  await code(S.FAILED_PRECONDITION, () => call(alice, 'Signal', {id: st.id, signal: 15}),
    'Signal to a final job');

  const t2 = await start(sh('trap \'echo got it; exit 4\' USR1; echo ready; ' +
    'i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done'));
  ok(await until(async () => (await status(t2.id)).output_bytes !== '0', 20000), 'job 2 ready');
  await call(alice, 'Signal', {id: t2.id, signal: 10}); // SIGUSR1 on Linux
  eq((await waitFinal(t2.id)).exit_code, 4, 'signal 10 reached the trap');

  const run = await start({command: 'sleep', args: ['60']});
  try {
    for (const [req, what] of [[{signal: 65}, 'signal 65'], [{signal: -1}, 'signal -1'],
      [{signal_name: 'FOO'}, 'name FOO'], [{}, 'neither'],
      [{signal: 9, signal_name: 'KILL'}, 'both']]) {
      await code(S.INVALID_ARGUMENT, () => call(alice, 'Signal', Object.assign({id: run.id}, req)),
        'Signal ' + what);
    }
    eq((await status(run.id)).state, 'JOB_STATE_RUNNING', 'bad signals change nothing');
    await call(alice, 'Signal', {id: run.id, signal_name: 'SIGKILL'});
    const f = await waitFinal(run.id);
    eq([f.state, f.signal, f.end_reason], ['JOB_STATE_SIGNALED', 9, 'END_REASON_STOPPED'],
      'SIGKILL by name');
  } finally {
    await stopQuietly(run.id);
  }
});

test('Remove: FAILED_PRECONDITION while running, then the last status, then NOT_FOUND', async () => {
  const st = await start({command: 'sleep', args: ['60']});
  try {
    await code(S.FAILED_PRECONDITION, () => call(alice, 'Remove', {id: st.id}), 'Remove running');
  } finally {
    await stopQuietly(st.id);
  }
  await code(S.PERMISSION_DENIED, () => call(bob, 'Remove', {id: st.id}), 'bob\'s Remove');
  const gone = await call(alice, 'Remove', {id: st.id});
  eq([gone.id, gone.state], [st.id, 'JOB_STATE_STOPPED'], 'Remove answer');
  ok(!fs.existsSync(path.join(server.dataDir, st.id + '.log')), 'log file removed');
  for (const [m, req] of [['Status', {id: st.id}], ['Wait', {id: st.id}],
    ['Remove', {id: st.id}], ['Stop', {id: st.id}], ['Signal', {id: st.id, signal: 9}]]) {
    await code(S.NOT_FOUND, () => call(alice, m, req), m + ' after Remove');
  }
  await code(S.NOT_FOUND, () => readStream(alice, {id: st.id}), 'GetOutput after Remove');
  ok(!(await call(alice, 'List', {})).jobs.some((j) => j.id === st.id), 'not listed');
});

test('Stop: SIGTERM ends sleep, end_reason STOPPED', async () => {
  const st = await start({command: 'sleep', args: ['60']});
  const fin = await call(alice, 'Stop', {id: st.id}, 30000);
  eq([fin.state, fin.signal, fin.end_reason],
    ['JOB_STATE_STOPPED', 15, 'END_REASON_STOPPED'], 'Stop answer');
  ok(fin.ended_at_unix_nano !== '0', 'ended_at set');
  await code(S.INVALID_ARGUMENT, () => call(alice, 'Stop', {id: st.id, timeout_ms: '-1'}),
    'Stop timeout_ms -1');
});

test('Stop timeout_ms is capped by --max-stop-timeout, and STOPPING shows meanwhile', async () => {
  const st = await start(sh('trap \'\' TERM; echo ready; sleep 60'));
  ok(await until(async () => (await status(st.id)).output_bytes !== '0', 20000), 'job ready');
  const t0 = Date.now();
  const stopP = call(alice, 'Stop', {id: st.id, timeout_ms: String(3600 * 1000)}, 60000)
    .then((r) => ({r, took: (Date.now() - t0) / 1000}), (e) => ({e}));
  const seen = await until(async () => (await status(st.id)).state === 'JOB_STATE_STOPPING', 20000);
  const {r, e, took} = await stopP;
  if (e) throw e;
  ok(seen, 'never STOPPING');
  eq([r.state, r.signal, r.end_reason], ['JOB_STATE_STOPPED', 9, 'END_REASON_STOPPED'],
    'Stop answer');
  // The hour asked is cut to 3 s: past the 2 s default grace, and far from
  // the hour even on a loaded host.
  ok(took >= MAX_STOP - 0.1 && took < MAX_STOP + 30, 'Stop took ' + took + ' s');
});

test('Start timeout_ms ends sleep 30 with END_REASON_TIMED_OUT', async () => {
  const t0 = Date.now();
  const st = await start({command: 'sleep', args: ['30'], timeout_ms: '1000'});
  eq(st.timeout_ms, '1000', 'timeout_ms echoed');
  const fin = await waitFinal(st.id, alice, 40000);
  const took = (Date.now() - t0) / 1000;
  eq([fin.state, fin.end_reason, fin.timeout_ms],
    ['JOB_STATE_STOPPED', 'END_REASON_TIMED_OUT', '1000'], 'final status');
  ok(took >= 0.95 && took < 1 + STOP_GRACE + 10, 'took ' + took + ' s');
  await code(S.INVALID_ARGUMENT, () => call(alice, 'Start', {command: 'true', timeout_ms: '-1'}),
    'Start timeout_ms -1');
});

test('end_reason SIGNALED for a signal nobody asked for', async () => {
  const st = await start(sh('kill -9 $$'));
  const fin = await waitFinal(st.id);
  // exit_code means something only for a job that exited: not checked.
  eq([fin.state, fin.signal, fin.end_reason],
    ['JOB_STATE_SIGNALED', 9, 'END_REASON_SIGNALED'], 'final status');
});

test('output cap: output_cap_bytes, output_dropped_bytes, and the stream\'s dropped_bytes', async () => {
  const st = await start({command: 'head', args: ['-c', '100000', '/dev/zero']});
  const fin = await waitFinal(st.id);
  eq([fin.output_cap_bytes, fin.output_bytes, fin.output_dropped_bytes, fin.end_reason],
    [String(CAP), String(CAP), String(100000 - CAP), 'END_REASON_EXITED'], 'final status');
  const {msgs, data} = await readStream(alice, {id: st.id});
  eq(data, Buffer.alloc(CAP), 'kept output');
  const last = msgs[msgs.length - 1];
  eq([last.data.length, last.dropped_bytes], [0, String(100000 - CAP)], 'last message');
  ok(msgs.slice(0, -1).every((m) => m.dropped_bytes === '0'), 'dropped_bytes only on the last');
  // A stream that starts past the kept bytes still says what was dropped.
  const tail = await readStream(alice, {id: st.id, offset: String(CAP)});
  eq(tail.data.length, 0, 'nothing past the cap');
});

test('ownership: bob gets PERMISSION_DENIED on every RPC for alice\'s job; unknown ids NOT_FOUND',
  async () => {
    const st = await start({command: 'sleep', args: ['60']});
    try {
      const id = st.id;
      for (const [m, req] of [['Status', {id}], ['Stop', {id}], ['Wait', {id}],
        ['Signal', {id, signal: 9}], ['Remove', {id}]]) {
        await code(S.PERMISSION_DENIED, () => call(bob, m, req), 'bob ' + m);
      }
      await code(S.PERMISSION_DENIED, () => readStream(bob, {id}), 'bob GetOutput');
      eq((await status(id)).state, 'JOB_STATE_RUNNING', 'still running');
      const unknown = '0'.repeat(32);
      for (const [m, req] of [['Status', {id: unknown}], ['Stop', {id: unknown}],
        ['Wait', {id: unknown}], ['Signal', {id: unknown, signal: 9}],
        ['Remove', {id: unknown}]]) {
        await code(S.NOT_FOUND, () => call(alice, m, req), m + ' of an unknown id');
      }
      await code(S.NOT_FOUND, () => readStream(alice, {id: unknown}), 'GetOutput of an unknown id');
    } finally {
      await stopQuietly(st.id);
    }
  });

test('limits: bad values refused; a valid one runs with it or is refused as unenforceable',
  async () => {
    for (const [lim, what] of [[{pids: '-1'}, 'negative pids'],
      [{pids: String(MAX_PIDS + 1)}, 'pids over --max-pids'],
      [{memory_bytes: '1000'}, 'memory below 1 MiB'], [{cpu_millis: '5'}, 'cpu below 10']]) {
      await code(S.INVALID_ARGUMENT, () => call(alice, 'Start', {command: 'true', limits: lim}),
        what);
    }
    const lim = {memory_bytes: String(256 << 20), cpu_millis: '500', pids: '64'};
    let st;
    try {
      // Some CPU time to account: a bounded shell loop.
      st = await call(alice, 'Start', sh('i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done',
        {limits: lim}));
    } catch (e) {
      if (e.code !== S.FAILED_PRECONDITION || !/cannot enforce|io device/.test(e.details)) throw e;
      console.log('#   this host cannot enforce limits: ' + e.details);
      return;
    }
    started.push({id: st.id, who: alice});
    eq([st.limits.memory_bytes, st.limits.cpu_millis, st.limits.pids],
      [lim.memory_bytes, lim.cpu_millis, lim.pids], 'limits the job runs with');
    const fin = await waitFinal(st.id);
    eq([fin.state, fin.exit_code], ['JOB_STATE_EXITED', 0], 'limited job ran');
    eq([fin.limits.memory_bytes, fin.limits.cpu_millis, fin.limits.pids],
      [lim.memory_bytes, lim.cpu_millis, lim.pids], 'final status limits');
    // Enforced limits mean a cgroup, and a cgroup counts the CPU it used.
    ok(BigInt(fin.cpu_usage_ns) > 0n, 'cpu_usage_ns of a job with a cgroup: ' + fin.cpu_usage_ns);
    ok(/^\d+$/.test(fin.memory_peak_bytes), 'memory_peak_bytes: ' + fin.memory_peak_bytes);
  });

test('isolation: a network namespace of its own has only lo (or refused as the host allows)',
  async () => {
    let st;
    try {
      st = await call(alice, 'Start', {command: 'cat', args: ['/proc/net/dev'],
        isolation: {network: true}});
    } catch (e) {
      if (e.code !== S.FAILED_PRECONDITION) throw e;
      console.log('#   this server refuses isolation: ' + e.details);
      return;
    }
    started.push({id: st.id, who: alice});
    const fin = await waitFinal(st.id);
    const out = (await readStream(alice, {id: st.id})).data.toString();
    if (fin.state !== 'JOB_STATE_EXITED' || fin.exit_code !== 0) {
      fail('isolated job: ' + fin.state + ' exit ' + fin.exit_code + ': ' + out);
    }
    const ifaces = out.split('\n').slice(2).filter((l) => l.trim()).map((l) => l.split(':')[0].trim());
    eq(ifaces, ['lo'], 'interfaces');
    const p = await call(alice, 'Start', {command: 'sh', args: ['-c', 'echo $$'],
      isolation: {pid: true, mount: true}});
    started.push({id: p.id, who: alice});
    eq((await waitFinal(p.id)).exit_code, 0, 'pid+mount isolated job');
    const pid = Number((await readStream(alice, {id: p.id})).data.toString());
    ok(pid >= 1 && pid < 10, 'pid inside its PID namespace is small: ' + pid);
  });

test('teleportd exits 0 on SIGTERM', async () => {
  alice.close();
  bob.close();
  health.close();
  process.kill(server.pid, 'SIGTERM');
  const rc = await Promise.race([server.exitP, sleep((STOP_GRACE + 15) * 1000).then(() => 'timeout')]);
  if (rc !== 0) {
    const log = serverLog();
    killServer();
    fail('exit status after SIGTERM: ' + rc + '; log tail:\n' + log.slice(-4000));
  }
});

async function main() {
  const t0 = Date.now();
  const only = process.argv.slice(2);
  const certs = certsDir();
  const svc = loadServices();
  tmp = mktemp('jw-grpcjs-');
  // Jobs run as their client's own unprivileged user where the server
  // maps users: they read files and work here, as in /tmp.
  fs.chmodSync(tmp, 0o1777);
  await startServer(certs, ['--max-output-bytes', '64K', '--max-stop-timeout', MAX_STOP + 's',
    '--max-pids', String(MAX_PIDS)], 60000);
  const target = '127.0.0.1:' + server.port;
  alice = new svc.JobWorker(target, creds(certs, 'alice'), CHANNEL_OPTS);
  bob = new svc.JobWorker(target, creds(certs, 'bob'), CHANNEL_OPTS);
  health = new svc.Health(target, creds(certs, 'alice'), CHANNEL_OPTS);
  console.log('# teleportd pid ' + server.pid + ' on ' + target + ', @grpc/grpc-js ' +
    require('@grpc/grpc-js/package.json').version + ', node ' + process.version);
  let passed = 0;
  const failed = [];
  for (const t of tests) {
    if (only.length && !only.some((o) => t.name.includes(o)) && !t.name.startsWith('teleportd exits')) {
      continue;
    }
    const t1 = Date.now();
    try {
      await t.fn();
      passed++;
      console.log('ok   ' + t.name + ' (' + ((Date.now() - t1) / 1000).toFixed(1) + 's)');
    } catch (e) {
      const why = e instanceof Failure ? e.message :
        (e.code !== undefined ? 'gRPC ' + (S[e.code] || e.code) + ': ' + e.details : e.stack);
      failed.push(t.name);
      console.log('FAIL ' + t.name + ' (' + ((Date.now() - t1) / 1000).toFixed(1) + 's): ' + why);
    }
    // Whatever a failed test left running is stopped before the next one.
    if (!server.exited) {
      for (const j of started.splice(0)) {
        try {
          const st = await call(j.who, 'Status', {id: j.id}, 5000);
          if (st.state === 'JOB_STATE_RUNNING' || st.state === 'JOB_STATE_STOPPING') {
            await stopQuietly(j.id, j.who);
          }
        } catch (_) { /* removed */ }
      }
    }
  }
  const run = passed + failed.length;
  console.log('\ngrpcjs-interop: ' + run + ' run, ' + passed + ' passed, ' + failed.length +
    ' failed (' + ((Date.now() - t0) / 1000).toFixed(1) + 's)');
  for (const f of failed) console.log('  failed: ' + f);
  if (failed.length) {
    console.log('teleportd log tail:\n' + serverLog().slice(-3000));
  }
  return failed.length === 0 && run > 0 ? 0 : 1;
}

main().then((rc) => {
  cleanupAll();
  process.exit(rc);
}, (e) => {
  console.log('grpcjs-interop: FAILED before or between tests: ' + (e.stack || e));
  cleanupAll();
  process.exit(1);
});
