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
import { createKeywordSearch, type KeywordSearch, withoutKeywords } from './pocketsphinx-keywords.js'

/** Where Debian's `pocketsphinx-en-us` puts the US English model. */
export const DEFAULT_MODEL_DIR = '/usr/share/pocketsphinx/model/en-us'

/**
 * The cepstral mean every stream and pre-recorded request starts from (docs/speech.md, "The same audio, the
 * same transcript"): the average cepstrum of real read speech as PocketSphinx's live CMN sees it. Measured on
 * pocketsphinx-testdata's goforward.raw, numbers.raw and something.raw (10 s): each decoded as one utterance
 * from a state with no history, the `sum` of the three states over their `frames` (900 frames the VAD let
 * through), rounded to 0.01; test/engines/cmn-baseline.test.ts measures it again. The model's own `-cmninit`
 * (`feat.params`: 41.00, -5.29, …) is the average of goforward.raw alone, quieter than typical input (c0, the
 * energy term, about 54 on the other two). With no frames of history behind it, the end of a stream's first
 * utterance replaces it by that utterance's own average. Against the warmed-up model mean it took the
 * held-apart set from 17.3 % to 14.9 % WER (docs/benchmarks.md, "Word error rate").
 */
export const SPEECH_CMN_INIT: readonly number[] = [
  50.39, -3.08, -3.35, 8.18, 5.09, -1.76, -3.71, -2.92, -5.99, 1.56, -6.11, -1.46, 1.03,
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
   * The cepstral mean every stream starts from, with no history behind it: `-ceplen` (13) values. Default
   * {@link SPEECH_CMN_INIT}; `'model'`: the model's `-cmninit` (`feat.params`: 41.00,-5.29,-0.12,5.09,2.48,
   * -4.07,-1.37,-1.78,-5.08,-2.05,-6.45,-1.42,1.17). Written into the CMN state at load (a `-cmninit`
   * argument would not do: `feat.params` wins over it) and back at every `startStream`.
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
   * Why this decoder cannot boost keywords (its search is not the n-gram one keyword boosting extends, or
   * the library's layout is not the expected one); undefined when it can. Such a decoder ignores keywords
   * and transcribes as without them.
   */
  readonly keywordsUnavailable?: string
  /** The live cepstral mean state now (e.g. after decoding speech): a copy, for tests and measurements. */
  cmnState(): Promise<CmnState>
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
    const mean = options.cmnInit ?? SPEECH_CMN_INIT
    if (mean !== 'model') {
      if (mean.length !== cmn.length) throw new RangeError(`cmnInit must have ${cmn.length} values.`)
      // No frames behind it: the end of a stream's first utterance sets the mean to that utterance's average.
      ps.setCmnState(cmn, { mean, sum: mean.map(() => 0), frames: 0 })
    }
    keywords = await createKeywordSearch(handle).catch((err: unknown) => {
      // Keyword boosting reaches into the decoder's internals; when they are not what it expects, the
      // decoder still transcribes, without it.
      if (err instanceof PocketsphinxUnavailableError) return withoutKeywords(err.message)
      throw err
    })
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
  /** The state at load: what every stream starts from, whatever earlier streams left. */
  const baseline: CmnState = ps.cmnState(cmn)

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
    ...(keywords.unavailable === undefined ? {} : { keywordsUnavailable: keywords.unavailable }),
    startStream: (boost = []) =>
      run(async () => {
        await keywords.use(boost)
        check('ps_start_stream', await ps.startStream(handle))
        ps.setCmnState(cmn, baseline)
      }),
    cmnState: () => run(async () => ps.cmnState(cmn)),
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
