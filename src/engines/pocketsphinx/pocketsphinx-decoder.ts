import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { KeywordBoost } from '../engine.js'
import {
  type CmnHandle,
  type CmnState,
  type ConfigHandle,
  type DecoderHandle,
  loadPocketsphinxBinding,
  POCKETSPHINX_PACKAGES,
  type PocketsphinxBinding,
  PocketsphinxUnavailableError,
  type RawSegment,
} from './pocketsphinx-binding.js'
import { createKeywordSearch, type KeywordSearch } from './pocketsphinx-keywords.js'

/** Where Debian's `pocketsphinx-en-us` puts the US English model. */
export const DEFAULT_MODEL_DIR = '/usr/share/pocketsphinx/model/en-us'

/**
 * A live cepstral mean measured for typical input: the average cepstrum of real read speech as PocketSphinx's
 * live CMN sees it (speech frames only, after the VAD), from pocketsphinx-testdata's goforward.raw, numbers.raw
 * and something.raw (10 s). The model's own `-cmninit` (`feat.params`: 41.00, -5.29, …) is a batch mean over
 * whole utterances, silence included, so its energy term (c0) sits about 9 below. As a stream's baseline
 * (`cmnInit`, with no warm-up state kept) it took the held-apart set from 17.3 % to 14.9 % WER, short real
 * recordings from 48 % to 19 %, but a few flite first utterances got worse (docs/benchmarks.md, "Word error
 * rate"); not the default until the suites that assert flite transcripts were run against it.
 */
export const SPEECH_CMN_INIT: readonly number[] = [
  50.43, -2.96, -3.82, 8.27, 5.11, -2.12, -3.64, -2.94, -5.74, 1.46, -6.14, -1.31, 1.04,
]

/** How one decoder is configured. Defaults are the tuned settings of pocketsphinx-notes.md §4–5. */
export interface PocketsphinxDecoderOptions {
  /** Holds `en-us/` (acoustic model), `en-us.lm.bin` and `cmudict-en-us.dict`. Default: {@link DEFAULT_MODEL_DIR}. */
  modelDir?: string
  /** `-hmm`; default `<modelDir>/en-us`. */
  hmm?: string
  /** `-lm`; default `<modelDir>/en-us.lm.bin`. */
  lm?: string
  /** `-dict`; default `<modelDir>/cmudict-en-us.dict`. */
  dict?: string
  /** `-maxhmmpf`, default 3000 (library: 30000): about 30 % less CPU for the same WER on the notes' sets. */
  maxHmmsPerFrame?: number
  /** `-pl_window`, default 10 (library: 5). */
  phoneLoopWindow?: number
  /** `-fwdflat`, default true. false makes finals 25–45 ms instead of 100–400 ms, but hurts real speech. */
  fwdflat?: boolean
  /**
   * The cepstral mean a stream starts from, `-ceplen` (13) values, e.g. {@link SPEECH_CMN_INIT}. Default
   * `'model'`: the model's `-cmninit` (`feat.params`: 41.00,-5.29,-0.12,5.09,2.48,-4.07,-1.37,-1.78,-5.08,
   * -2.05,-6.45,-1.42,1.17). Written into the CMN state at load: a `-cmninit` argument would not do,
   * `feat.params` wins over it. A warm-up kept with `keepAsBaseline` replaces it (its utterance's end sets the
   * mean to the warm-up's own average).
   */
  cmnInit?: readonly number[] | 'model'
  /** `-vad_postspeech`, default 50: frames (10 ms) of silence before the VAD declares the end of speech. */
  vadPostspeechFrames?: number
  /** `-vad_prespeech`, default 20: frames kept from before the onset. */
  vadPrespeechFrames?: number
  /** `-vad_startspeech`, default 10: frames of speech before the VAD declares speech. */
  vadStartspeechFrames?: number
  /** `-vad_threshold`, default 2.0 (dB above the noise floor). */
  vadThreshold?: number
  /** Further `-key value` arguments, applied last (they override the above). */
  extraArgs?: Readonly<Record<string, string>>
}

/** What a decoder was configured with, as the segmentation needs it. */
export interface DecoderSettings {
  /** PCM samples per second (`-samprate`, always 16000 here). */
  sampleRate: number
  /** Feature frames per second (`-frate`, 100): word times are frame / frameRate. */
  frameRate: number
  vadPostspeechFrames: number
  vadPrespeechFrames: number
  vadStartspeechFrames: number
}

/**
 * One PocketSphinx decoder (about 90–120 MB). Every call is queued behind the previous one, so callers may
 * fire calls without awaiting and the C decoder still never sees two at once.
 */
export interface PocketsphinxDecoder {
  readonly settings: DecoderSettings
  /**
   * `ps_start_stream`, and the decoder back to its baseline: word times restart at 0, the VAD's noise
   * estimate is reset (by PocketSphinx) and the live cepstral mean is set to the baseline (here: PocketSphinx
   * keeps adapting it across utterances and streams, so without this a transcript would depend on what the
   * decoder decoded before). Call once per client stream, before the first utterance. `keywords` choose
   * the search: none, the base one; else one biased toward them (pocketsphinx-keywords.ts), so what the
   * previous stream asked for never carries over.
   */
  startStream(keywords?: readonly KeywordBoost[]): Promise<void>
  /** True when the decoder should be replaced rather than lent again (its dictionary grew too large). */
  readonly exhausted?: boolean
  /**
   * The cepstral mean state the decoder has now (e.g. after decoding warm-up speech) becomes the baseline
   * every later `startStream` restores exactly. Until called, the baseline is the state at load: `cmnInit`
   * (by default the model's `-cmninit`), with no history.
   */
  keepAsBaseline(): Promise<void>
  /** The live cepstral mean state now (e.g. after decoding speech): a copy. */
  cmnState(): Promise<CmnState>
  /** `state` becomes the baseline every later `startStream` restores (and the state now). */
  setBaseline(state: CmnState): Promise<void>
  startUtterance(): Promise<void>
  /** Decodes a slice of PCM; resolves with the VAD state afterwards (true: in speech). */
  process(pcm: Int16Array): Promise<boolean>
  /**
   * The best path so far, mid-utterance. Word frames are real (from the backpointer table), but
   * probabilities are placeholders (1): PocketSphinx computes posteriors only when the utterance ends.
   */
  partial(): Promise<RawSegment[]>
  /** `ps_end_utt` (fwdflat and bestpath passes) and the words with their posteriors. */
  endUtterance(): Promise<RawSegment[]>
  /** Frees the decoder once queued calls are done. Further calls reject. */
  close(): Promise<void>
}

const SAMPLE_RATE = 16_000

/** The `-key value` pairs for `cmd_ln_init`. */
export function decoderArguments(options: PocketsphinxDecoderOptions = {}): Array<[string, string]> {
  const modelDir = options.modelDir ?? DEFAULT_MODEL_DIR
  const args: Record<string, string> = {
    '-hmm': options.hmm ?? join(modelDir, 'en-us'),
    '-lm': options.lm ?? join(modelDir, 'en-us.lm.bin'),
    '-dict': options.dict ?? join(modelDir, 'cmudict-en-us.dict'),
    '-samprate': String(SAMPLE_RATE),
    '-maxhmmpf': String(options.maxHmmsPerFrame ?? 3000),
    '-pl_window': String(options.phoneLoopWindow ?? 10),
    '-fwdflat': options.fwdflat === false ? 'no' : 'yes',
    '-vad_postspeech': String(options.vadPostspeechFrames ?? 50),
    '-vad_prespeech': String(options.vadPrespeechFrames ?? 20),
    '-vad_startspeech': String(options.vadStartspeechFrames ?? 10),
    '-vad_threshold': String(options.vadThreshold ?? 2.0),
    ...options.extraArgs,
  }
  return Object.entries(args)
}

function checkModelFiles(args: ReadonlyArray<readonly [string, string]>): void {
  const get = (key: string) => args.find(([k]) => k === key)?.[1]
  const missing = [get('-hmm') && join(get('-hmm') ?? '', 'mdef'), get('-lm'), get('-dict')].filter(
    (path): path is string => typeof path === 'string' && !existsSync(path),
  )
  if (missing.length > 0) {
    throw new PocketsphinxUnavailableError(
      `PocketSphinx model files are missing (${missing.join(', ')}): install the Debian package ` +
        `${POCKETSPHINX_PACKAGES[1]} or set the model paths.`,
    )
  }
}

function check(call: string, code: number): void {
  if (code < 0) throw new Error(`${call} failed (${code})`)
}

/** Loads one decoder on the threadpool (about 0.6 s, mostly the language model). */
export async function createPocketsphinxDecoder(
  options: PocketsphinxDecoderOptions = {},
  binding?: PocketsphinxBinding,
): Promise<PocketsphinxDecoder> {
  const args = decoderArguments(options)
  checkModelFiles(args)
  const ps = binding ?? (await loadPocketsphinxBinding())
  const config: ConfigHandle = ps.createConfig(args)
  let handle: DecoderHandle
  let settings: DecoderSettings
  try {
    settings = {
      sampleRate: SAMPLE_RATE,
      frameRate: ps.configInt(config, '-frate'),
      vadPostspeechFrames: ps.configInt(config, '-vad_postspeech'),
      vadPrespeechFrames: ps.configInt(config, '-vad_prespeech'),
      vadStartspeechFrames: ps.configInt(config, '-vad_startspeech'),
    }
    handle = await ps.init(config)
  } finally {
    // ps_init retains the config, so ours can go either way.
    ps.freeConfig(config)
  }
  let cmn: CmnHandle
  let keywords: KeywordSearch
  try {
    cmn = ps.cmn(handle)
    const mean = options.cmnInit ?? 'model'
    if (mean !== 'model') {
      if (mean.length !== cmn.length) throw new RangeError(`cmnInit must have ${cmn.length} values.`)
      // No frames behind it: the end of a stream's first utterance sets the mean to that utterance's average.
      ps.setCmnState(cmn, { mean, sum: mean.map(() => 0), frames: 0 })
    }
    keywords = await createKeywordSearch(handle)
  } catch (err) {
    await ps.free(handle)
    throw err
  }
  return wrapDecoder(ps, handle, cmn, keywords, settings)
}

function wrapDecoder(
  ps: PocketsphinxBinding,
  handle: DecoderHandle,
  cmn: CmnHandle,
  keywords: KeywordSearch,
  settings: DecoderSettings,
) {
  let tail: Promise<unknown> = Promise.resolve()
  let closed = false
  let baseline: CmnState = ps.cmnState(cmn)

  /** The promise queue: one native call at a time per decoder. */
  const run = <T>(op: () => Promise<T>): Promise<T> => {
    if (closed) return Promise.reject(new Error('The decoder is closed.'))
    const result = tail.then(op)
    tail = result.catch(() => undefined)
    return result
  }

  const decoder: PocketsphinxDecoder = {
    settings,
    get exhausted() {
      return keywords.exhausted
    },
    startStream: (boost = []) =>
      run(async () => {
        await keywords.use(boost)
        check('ps_start_stream', await ps.startStream(handle))
        ps.setCmnState(cmn, baseline)
      }),
    keepAsBaseline: () =>
      run(async () => {
        baseline = ps.cmnState(cmn)
      }),
    cmnState: () => run(async () => ps.cmnState(cmn)),
    setBaseline: (state) =>
      run(async () => {
        ps.setCmnState(cmn, state)
        baseline = ps.cmnState(cmn)
      }),
    startUtterance: () => run(async () => check('ps_start_utt', await ps.startUtt(handle))),
    process: (pcm) =>
      run(async () => {
        check('ps_process_raw', await ps.processRaw(handle, pcm))
        return ps.inSpeech(handle)
      }),
    partial: () => run(() => ps.segments(handle)),
    endUtterance: () =>
      run(async () => {
        check('ps_end_utt', await ps.endUtt(handle))
        return ps.segments(handle)
      }),
    close() {
      const done = run(() => ps.free(handle))
      closed = true
      return done
    },
  }
  return decoder
}
