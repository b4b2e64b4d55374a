import { availableParallelism } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { CapacityMeasurement, Engine } from '../engine.js'
import type { PocketsphinxDecoder } from './pocketsphinx-decoder.js'
import { transcribeWithDecoder } from './pocketsphinx-transcribe.js'

/**
 * Decodes `pcm` once, as fast as it goes, and returns the real-time factor: decode wall time / audio time
 * (0.2 means a second of audio takes 0.2 s). Given an engine, it measures `transcribe` (one pooled
 * decoder); given a bare decoder (not lent to anything else), it decodes on that decoder directly.
 * Speech with pauses is typical; TTS speech measures about 1.5–2x cheaper than real read speech.
 */
export async function measureRealTimeFactor(
  target: Engine | PocketsphinxDecoder,
  pcm: Int16Array,
): Promise<number> {
  if (pcm.length === 0) throw new RangeError('measureRealTimeFactor needs some audio.')
  const started = performance.now()
  let seconds: number
  if ('transcribe' in target) {
    seconds = (await target.transcribe(pcm, { language: 'en', endpointingMs: 10 }, 0)).duration
  } else {
    const options = { endpointingMs: 10, maxUtteranceMs: 12_000, sliceSamples: 1600 }
    seconds = (await transcribeWithDecoder(target, pcm, options)).duration
  }
  return (performance.now() - started) / 1000 / seconds
}

/**
 * Real-time streams `cpus` cores sustain at `targetLoad` for a measured real-time factor: the composition
 * root's `auto` capacity. Rounds down, at least 1. Measure on speech like the traffic: flite speech decodes
 * 1.5-2x cheaper than real read speech, so an RTF from TTS overstates capacity by that much
 * (pocketsphinx-notes.md §5-6: this 2-vCPU box sustains about 4 tuned streams of real speech).
 */
export function capacityForRealTimeFactor(rtf: number, cpus: number, targetLoad = 0.7): number {
  if (!(rtf > 0)) return 1
  return Math.max(1, Math.floor((cpus * targetLoad) / rtf + 1e-9))
}

/** The most decoders `auto` ever loads: each holds about 100 MB. */
const MAX_AUTO_CAPACITY = 16
/** `auto` with no speech to measure on. */
const FALLBACK_CAPACITY = 2

/**
 * PocketSphinx's `auto` capacity: one probe decoder (made by `create`, closed after) decodes `speech` as
 * fast as it goes, and the pool gets as many decoders as keep this machine's cores at 70 % in real time
 * (at most 16). Without speech to measure on, 2.
 */
export async function measurePocketsphinxCapacity(
  speech: Int16Array | undefined,
  create: () => Promise<PocketsphinxDecoder>,
  cpus = availableParallelism(),
): Promise<CapacityMeasurement> {
  if (!speech || speech.length === 0) {
    return { capacity: FALLBACK_CAPACITY, fallback: 'no warm-up speech to measure with' }
  }
  const probe = await create()
  try {
    const realTimeFactor = await measureRealTimeFactor(probe, speech)
    const capacity = Math.min(MAX_AUTO_CAPACITY, capacityForRealTimeFactor(realTimeFactor, cpus))
    return { capacity, realTimeFactor }
  } finally {
    await probe.close()
  }
}
