/**
 * koffi prototypes for Debian's PocketSphinx 0.8+5prealpha (`libpocketsphinx.so.3` + `libsphinxbase.so.3`).
 * Everything that may take more than a few microseconds (model load, decoding, end of utterance, the
 * lattice behind the segment iterator) goes through koffi `.async`, which runs on the libuv threadpool.
 * Only flag reads and the segment walk over an already-built lattice run synchronously.
 */

/** The Debian packages the embedded engine needs at run time. */
export const POCKETSPHINX_PACKAGES = ['libpocketsphinx3', 'pocketsphinx-en-us'] as const

const SPHINXBASE_SONAME = 'libsphinxbase.so.3'
const POCKETSPHINX_SONAME = 'libpocketsphinx.so.3'
/** PocketSphinx 5.x (Debian forky/sid `libpocketsphinx5`): a different, incompatible API. */
const POCKETSPHINX_5_SONAME = 'libpocketsphinx.so.5'

/**
 * koffi runs native code on its own stack; the default for async calls is 128 KiB. The end-of-utterance
 * passes (fwdflat, bestpath, posteriors) were measured with the 2 MiB sync stack, so async calls get the
 * same. It only reserves address space: untouched pages cost no memory.
 */
const ASYNC_STACK_BYTES = 2 * 1024 * 1024

/** Thrown when the native library, the model or koffi is missing or incompatible. */
export class PocketsphinxUnavailableError extends Error {
  readonly code = 'POCKETSPHINX_UNAVAILABLE'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PocketsphinxUnavailableError'
  }
}

declare const handleBrand: unique symbol
/** An opaque C pointer handed back by koffi; only the library may look inside. */
export type NativeHandle<Kind extends string> = { readonly [handleBrand]: Kind }
export type ConfigHandle = NativeHandle<'cmd_ln_t'>
export type DecoderHandle = NativeHandle<'ps_decoder_t'>
/** A decoder's live cepstral mean normalisation (CMN) state: `ps_get_feat(ps)->cmn_struct`. */
export interface CmnHandle {
  readonly pointer: NativeHandle<'cmn_t'>
  /** Coefficients in the mean (`-ceplen`, 13). */
  readonly length: number
}

/**
 * Everything live CMN carries from one utterance to the next (sphinxbase `cmn_live.c`): each frame is
 * normalised by `mean`; `sum` and `frames` accumulate the frames heard since, and at the end of an utterance
 * (or past 800 frames) the mean becomes `sum / frames`.
 */
export interface CmnState {
  readonly mean: readonly number[]
  readonly sum: readonly number[]
  readonly frames: number
}

/** One entry of the segment iterator, before filtering. */
export interface RawSegment {
  /** As the dictionary spells it, e.g. `for(2)`, `<s>`, `[NOISE]`. */
  word: string
  /** First and last frame, counted from `ps_start_stream`. */
  startFrame: number
  endFrame: number
  /** `logmath_exp(ps_seg_prob())`: the posterior after an utterance ends; 1 (a placeholder) before. */
  probability: number
}

/** The subset of the C API the engine uses, typed, with async calls as promises. */
export interface PocketsphinxBinding {
  readonly libraries: { sphinxbase: string; pocketsphinx: string }
  /** `cmd_ln_init(NULL, ps_args(), TRUE, "-key", "value", ..., NULL)`: parses only, so it is synchronous. */
  createConfig(args: ReadonlyArray<readonly [string, string]>): ConfigHandle
  configInt(config: ConfigHandle, name: string): number
  freeConfig(config: ConfigHandle): void
  /** `ps_init`: loads the model (about 0.6 s). The decoder retains the config. */
  init(config: ConfigHandle): Promise<DecoderHandle>
  free(decoder: DecoderHandle): Promise<void>
  startStream(decoder: DecoderHandle): Promise<number>
  startUtt(decoder: DecoderHandle): Promise<number>
  endUtt(decoder: DecoderHandle): Promise<number>
  /** `pcm` is read in place on the threadpool: keep it referenced and unchanged until this settles. */
  processRaw(decoder: DecoderHandle, pcm: Int16Array): Promise<number>
  /** `ps_get_in_speech`: reads the VAD state flag. */
  inSpeech(decoder: DecoderHandle): boolean
  /** `ps_seg_iter` (async: it may build the lattice and posteriors), then a synchronous walk. */
  segments(decoder: DecoderHandle): Promise<RawSegment[]>
  /**
   * The decoder's live CMN state. The library has no accessor for it, so it is read from `feat_t` (whose
   * layout has not changed since sphinxbase 0.7), and checked: its length must be `-ceplen` and its mean
   * at load the model's `-cmninit`, else this throws PocketsphinxUnavailableError. Call right after `init`.
   */
  cmn(decoder: DecoderHandle): CmnHandle
  /** The live CMN state now: a copy (microseconds; never while the decoder is decoding). */
  cmnState(cmn: CmnHandle): CmnState
  /** Puts back a state `cmnState` returned, exactly (microseconds; never while the decoder is decoding). */
  setCmnState(cmn: CmnHandle, state: CmnState): void
}

type Koffi = typeof import('koffi')
type KoffiFunction = ReturnType<ReturnType<Koffi['load']>['func']>

/** A koffi function run on the libuv threadpool (`fn.async`), as a promise. */
export function callAsync<T>(fn: KoffiFunction, ...args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, result: T) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)))
      else resolve(result)
    })
  })
}

function packagesHint(): string {
  return `install the Debian packages: apt-get install -y ${POCKETSPHINX_PACKAGES.join(' ')}`
}

async function importKoffi(): Promise<Koffi> {
  try {
    return await import('koffi')
  } catch (cause) {
    throw new PocketsphinxUnavailableError(
      'The koffi package is not installed or its prebuilt binary is missing (npm install koffi; the binary ' +
        'comes from an optional dependency, so do not install with --omit=optional).',
      { cause },
    )
  }
}

function loadLibraries(koffi: Koffi) {
  try {
    koffi.config({ async_stack_size: ASYNC_STACK_BYTES })
  } catch {
    // Another module loaded a library first; koffi then keeps its configuration for the process.
  }
  let sphinxbase: ReturnType<Koffi['load']>
  let pocketsphinx: ReturnType<Koffi['load']>
  try {
    sphinxbase = koffi.load(SPHINXBASE_SONAME)
    pocketsphinx = koffi.load(POCKETSPHINX_SONAME)
  } catch (cause) {
    let newer = false
    try {
      koffi.load(POCKETSPHINX_5_SONAME).unload()
      newer = true
    } catch {
      // not there either
    }
    const message = newer
      ? `Found ${POCKETSPHINX_5_SONAME} (PocketSphinx 5.x), whose API is incompatible; Earmark needs ` +
        `${POCKETSPHINX_SONAME} (0.8+5prealpha): ${packagesHint()}.`
      : `Cannot load ${SPHINXBASE_SONAME} / ${POCKETSPHINX_SONAME}: ${packagesHint()}.`
    throw new PocketsphinxUnavailableError(message, { cause })
  }
  return { sphinxbase, pocketsphinx }
}

function bind(koffi: Koffi): PocketsphinxBinding {
  const { sphinxbase: sb, pocketsphinx: ps } = loadLibraries(koffi)
  const f = {
    cmd_ln_init: sb.func('void *cmd_ln_init(void *inout, void *defn, int strict, ...)'),
    cmd_ln_int_r: sb.func('long cmd_ln_int_r(void *config, const char *name)'),
    cmd_ln_str_r: sb.func('const char *cmd_ln_str_r(void *config, const char *name)'),
    cmd_ln_free_r: sb.func('int cmd_ln_free_r(void *config)'),
    err_set_logfp: sb.func('void err_set_logfp(void *stream)'),
    logmath_exp: sb.func('double logmath_exp(void *lmath, int logb_p)'),
    // mfcc_t is float in Debian's build (FIXED_POINT is off); the check in cmn() would catch a fixed-point one.
    cmn_live_get: sb.func('void cmn_live_get(void *cmn, _Out_ float *vec)'),
    ps_args: ps.func('void *ps_args(void)'),
    ps_init: ps.func('void *ps_init(void *config)'),
    ps_free: ps.func('int ps_free(void *ps)'),
    ps_start_stream: ps.func('int ps_start_stream(void *ps)'),
    ps_start_utt: ps.func('int ps_start_utt(void *ps)'),
    ps_end_utt: ps.func('int ps_end_utt(void *ps)'),
    ps_process_raw: ps.func(
      'int ps_process_raw(void *ps, const int16_t *data, size_t n_samples, int no_search, int full_utt)',
    ),
    ps_get_in_speech: ps.func('uint8_t ps_get_in_speech(void *ps)'),
    ps_get_logmath: ps.func('void *ps_get_logmath(void *ps)'),
    ps_get_config: ps.func('void *ps_get_config(void *ps)'),
    ps_get_feat: ps.func('void *ps_get_feat(void *ps)'),
    ps_seg_iter: ps.func('void *ps_seg_iter(void *ps)'),
    ps_seg_next: ps.func('void *ps_seg_next(void *seg)'),
    ps_seg_word: ps.func('const char *ps_seg_word(void *seg)'),
    ps_seg_frames: ps.func('void ps_seg_frames(void *seg, _Out_ int *out_sf, _Out_ int *out_ef)'),
    ps_seg_prob: ps.func('int ps_seg_prob(void *seg, _Out_ int *ascr, _Out_ int *lscr, _Out_ int *lback)'),
  }

  // Logging is process-global in sphinxbase. `-logfn` would make every ps_init fopen a new FILE and fclose
  // the previous one while other decoders may be writing to it (a race once decoders load in parallel),
  // so logging is switched off here, once, instead.
  f.err_set_logfp(null)

  const psArgs: unknown = f.ps_args()
  const FeatPrefix = featPrefixType(koffi)
  const Cmn = koffi.struct('earmark_cmn_t', {
    cmn_mean: 'void *',
    cmn_var: 'void *',
    sum: 'void *',
    nframe: 'int32_t',
    veclen: 'int32_t',
  })

  return {
    libraries: { sphinxbase: SPHINXBASE_SONAME, pocketsphinx: POCKETSPHINX_SONAME },
    createConfig(args) {
      const variadic: unknown[] = []
      for (const [key, value] of args) variadic.push('const char *', key, 'const char *', value)
      variadic.push('const char *', null)
      const config: unknown = f.cmd_ln_init(null, psArgs, 1, ...variadic)
      if (!config) throw new PocketsphinxUnavailableError(`PocketSphinx rejected its configuration.`)
      return config as ConfigHandle
    },
    configInt(config, name) {
      return Number(f.cmd_ln_int_r(config, name))
    },
    freeConfig(config) {
      f.cmd_ln_free_r(config)
    },
    async init(config) {
      const decoder = await callAsync<unknown>(f.ps_init, config)
      if (!decoder) {
        throw new PocketsphinxUnavailableError(
          `PocketSphinx could not load its model (ps_init failed): check ${POCKETSPHINX_PACKAGES[1]}.`,
        )
      }
      return decoder as DecoderHandle
    },
    async free(decoder) {
      await callAsync<number>(f.ps_free, decoder)
    },
    startStream: (decoder) => callAsync<number>(f.ps_start_stream, decoder),
    startUtt: (decoder) => callAsync<number>(f.ps_start_utt, decoder),
    endUtt: (decoder) => callAsync<number>(f.ps_end_utt, decoder),
    // koffi hands the typed array's memory to C as is (no copy): it must stay referenced and unchanged until
    // the promise settles. The stream copies what it is pushed, and every caller awaits this call.
    processRaw: (decoder, pcm) => callAsync<number>(f.ps_process_raw, decoder, pcm, pcm.length, 0, 0),
    inSpeech(decoder) {
      return Number(f.ps_get_in_speech(decoder)) !== 0
    },
    async segments(decoder) {
      let seg = await callAsync<unknown>(f.ps_seg_iter, decoder)
      const out: RawSegment[] = []
      if (!seg) return out
      const logmath: unknown = f.ps_get_logmath(decoder)
      const sf = [0]
      const ef = [0]
      const scratch = [0]
      // Walking an already-built iterator is cheap (about 1 ms for 70 words); ps_seg_next frees it at the end.
      while (seg) {
        f.ps_seg_frames(seg, sf, ef)
        const logProb = Number(f.ps_seg_prob(seg, scratch, scratch, scratch))
        out.push({
          word: String(f.ps_seg_word(seg)),
          startFrame: sf[0] ?? 0,
          endFrame: ef[0] ?? 0,
          probability: Number(f.logmath_exp(logmath, logProb)),
        })
        seg = f.ps_seg_next(seg)
      }
      return out
    },
    cmn(decoder) {
      const layoutError = (what: string) =>
        new PocketsphinxUnavailableError(
          `This libsphinxbase build does not have the expected feature layout (${what}); Earmark needs ` +
            `Debian's 0.8+5prealpha float build to reset its cepstral mean: ${packagesHint()}.`,
        )
      const feat: unknown = f.ps_get_feat(decoder)
      if (!feat) throw layoutError('no feature module')
      const { cmn_struct: cmn } = koffi.decode(feat, FeatPrefix) as { cmn_struct: unknown }
      if (!cmn) throw layoutError('no CMN state')
      const config: unknown = f.ps_get_config(decoder)
      const ceplen = Number(f.cmd_ln_int_r(config, '-ceplen'))
      const { veclen } = koffi.decode(cmn, Cmn) as { veclen: number }
      if (veclen !== ceplen || ceplen < 1 || ceplen > 64) throw layoutError(`length ${veclen}, not ${ceplen}`)
      const configured = String(f.cmd_ln_str_r(config, '-cmninit') ?? '')
        .split(',')
        .map(Number)
      const mean = new Float32Array(veclen)
      f.cmn_live_get(cmn, mean)
      // A fresh decoder's mean is -cmninit (the values past those given stay 0).
      const matches = Array.from(mean).every(
        (value, i) => Math.abs(value - (Number.isFinite(configured[i]) ? (configured[i] ?? 0) : 0)) < 1e-3,
      )
      if (!matches) throw layoutError('its mean is not -cmninit')
      return { pointer: cmn as NativeHandle<'cmn_t'>, length: veclen }
    },
    cmnState(cmn) {
      const fields = koffi.decode(cmn.pointer, Cmn) as { cmn_mean: unknown; sum: unknown; nframe: number }
      return {
        mean: koffi.decode(fields.cmn_mean, 'float', cmn.length) as number[],
        sum: koffi.decode(fields.sum, 'float', cmn.length) as number[],
        frames: fields.nframe,
      }
    },
    setCmnState(cmn, state) {
      if (state.mean.length !== cmn.length || state.sum.length !== cmn.length) {
        throw new RangeError('The CMN state has the wrong length.')
      }
      const fields = koffi.decode(cmn.pointer, Cmn) as { cmn_mean: unknown; sum: unknown }
      koffi.encode(fields.cmn_mean, 'float', state.mean, cmn.length)
      koffi.encode(fields.sum, 'float', state.sum, cmn.length)
      koffi.encode(cmn.pointer, koffi.offsetof(Cmn, 'nframe'), 'int32_t', state.frames)
    },
  }
}

/**
 * sphinxbase's `feat_t` up to `cmn_struct` (include/sphinxbase/feat.h, unchanged since 0.7): only the
 * offset of that pointer matters, and koffi computes it with the C alignment rules.
 */
function featPrefixType(koffi: Koffi) {
  return koffi.struct('earmark_feat_t_prefix', {
    refcount: 'int',
    name: 'void *',
    cepsize: 'int32_t',
    n_stream: 'int32_t',
    stream_len: 'void *',
    window_size: 'int32_t',
    n_sv: 'int32_t',
    sv_len: 'void *',
    subvecs: 'void *',
    sv_buf: 'void *',
    sv_dim: 'int32_t',
    cmn: 'int', // cmn_type_t (an enum)
    varnorm: 'int32_t',
    agc: 'int', // agc_type_t (an enum)
    compute_feat: 'void *',
    cmn_struct: 'void *',
  })
}

let loading: Promise<PocketsphinxBinding> | undefined

/**
 * Loads koffi and the two libraries, once per process (dlopen and sphinxbase's logging are process-wide
 * anyway). Rejects with `PocketsphinxUnavailableError` naming the missing piece.
 */
export function loadPocketsphinxBinding(): Promise<PocketsphinxBinding> {
  loading ??= importKoffi()
    .then(bind)
    .catch((err: unknown) => {
      loading = undefined
      throw err
    })
  return loading
}
