// `npm run bench`: the auth benchmark (bench/auth.ts), then the speech benchmark (bench/speech.ts). Each
// prints its table to stdout (progress to stderr) and writes its JSON to artifacts/.
//
// BENCH_ONLY selects, as a comma list:
// - auth scenarios: token, bearer, grant, health (`health` is not run by default); `auth` = the defaults;
// - speech parts: `speech` = all but wer, or speech:rtf, speech:sweep, speech:finalize, speech:connect,
//   speech:auto, speech:wer (word error rate, REST against live, and decoder settings: bench/speech-wer.ts);
// - `memory`: server RSS during big and concurrent pre-recorded uploads (bench/memory.ts);
// - `revocation`: revocation-to-close latency of live streams, p50/p99 (bench/revocation.ts);
// - multi-node parts (bench/multinode.ts; PostgreSQL, Redis and nginx): `multinode` = all, or
//   multinode:backends, multinode:nginx, multinode:revocation;
// - `gateway`: added latency and CPU per stream of EARMARK_ENGINE=upstream relaying to a second Earmark,
//   against a direct connection to it (bench/gateway.ts).
// Unset: the default auth scenarios, then every speech part, then memory, revocation, the multi-node parts and
// the gateway.
//
// Other env: BENCH_CPU_PROF (a directory: CPU-profile the server children), BENCH_STRICT=1 (exit 1 when a
// target is not met); the knobs of each benchmark are listed in its file and in docs/benchmarks.md.
import { resolve } from 'node:path'
import { AUTH_SCENARIOS, type AuthScenarioId, DEFAULT_AUTH_SCENARIOS, runAuthBenchmark } from './auth.js'
import { runGatewayBenchmark } from './gateway.js'
import { runMemoryBenchmark } from './memory.js'
import { MULTINODE_PARTS, type MultinodePartId, runMultinodeBenchmark } from './multinode.js'
import { runRevocationBenchmark } from './revocation.js'
import { DEFAULT_SPEECH_PARTS, runSpeechBenchmark, SPEECH_PARTS, type SpeechPartId } from './speech.js'

function selection(raw: string | undefined): {
  auth: AuthScenarioId[]
  speech: SpeechPartId[]
  memory: boolean
  revocation: boolean
  multinode: MultinodePartId[]
  gateway: boolean
} {
  if (raw === undefined || raw.trim() === '')
    return {
      auth: [...DEFAULT_AUTH_SCENARIOS],
      speech: [...DEFAULT_SPEECH_PARTS],
      memory: true,
      revocation: true,
      multinode: [...MULTINODE_PARTS],
      gateway: true,
    }
  const auth = new Set<AuthScenarioId>()
  const speech = new Set<SpeechPartId>()
  const multinode = new Set<MultinodePartId>()
  let memory = false
  let revocation = false
  let gateway = false
  for (const name of raw.split(',').map((s) => s.trim().toLowerCase())) {
    if (name === '') continue
    if (name === 'memory') memory = true
    else if (name === 'revocation') revocation = true
    else if (name === 'gateway') gateway = true
    else if (name === 'auth') for (const id of DEFAULT_AUTH_SCENARIOS) auth.add(id)
    else if (name === 'speech') for (const id of DEFAULT_SPEECH_PARTS) speech.add(id)
    else if (name === 'multinode') for (const id of MULTINODE_PARTS) multinode.add(id)
    else if (name.startsWith('multinode:') && (MULTINODE_PARTS as readonly string[]).includes(name.slice(10)))
      multinode.add(name.slice(10) as MultinodePartId)
    else if ((AUTH_SCENARIOS as readonly string[]).includes(name)) auth.add(name as AuthScenarioId)
    else if (name.startsWith('speech:') && (SPEECH_PARTS as readonly string[]).includes(name.slice(7))) {
      speech.add(name.slice(7) as SpeechPartId)
    } else {
      throw new Error(
        `BENCH_ONLY: unknown name ${JSON.stringify(name)} (known: auth, ${AUTH_SCENARIOS.join(', ')}, speech, ` +
          `${SPEECH_PARTS.map((p) => `speech:${p}`).join(', ')}, memory, revocation, multinode, ` +
          `${MULTINODE_PARTS.map((p) => `multinode:${p}`).join(', ')}, gateway)`,
      )
    }
  }
  if (auth.size === 0 && speech.size === 0 && !memory && !revocation && multinode.size === 0 && !gateway)
    throw new Error(`BENCH_ONLY=${raw} selects nothing`)
  // Run in table order, whatever the order of the list.
  return {
    auth: AUTH_SCENARIOS.filter((id) => auth.has(id)),
    speech: SPEECH_PARTS.filter((id) => speech.has(id)),
    memory,
    revocation,
    multinode: MULTINODE_PARTS.filter((id) => multinode.has(id)),
    gateway,
  }
}

async function main(): Promise<void> {
  const only = selection(process.env.BENCH_ONLY)
  const cpuProfDir = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined
  const options = cpuProfDir ? { cpuProfDir } : {}
  let allMet = true
  if (only.auth.length > 0) allMet = (await runAuthBenchmark(only.auth, options)).allMet && allMet
  if (only.speech.length > 0) allMet = (await runSpeechBenchmark(only.speech, options)).allMet && allMet
  if (only.memory) allMet = (await runMemoryBenchmark(options)).allMet && allMet
  if (only.revocation) allMet = (await runRevocationBenchmark()).allMet && allMet
  if (only.multinode.length > 0)
    allMet = (await runMultinodeBenchmark(only.multinode, options)).allMet && allMet
  if (only.gateway) allMet = (await runGatewayBenchmark(options)).allMet && allMet
  if (process.env.BENCH_STRICT === '1' && !allMet) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: FAILED: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
