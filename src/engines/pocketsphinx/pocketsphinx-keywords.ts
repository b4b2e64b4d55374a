import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { KeywordBoost } from '../engine.js'
import { pronunciations } from './letter-to-phone.js'
import { callAsync, type DecoderHandle, PocketsphinxUnavailableError } from './pocketsphinx-binding.js'

/**
 * Keyword boosting for one PocketSphinx 0.8+5prealpha decoder (Deepgram `keywords` and `keyterm`;
 * docs/speech.md "Keywords").
 *
 * The bias: an interpolated language-model set of the decoder's own model (shared, not copied) and a small
 * keyword model (each word a unigram whose probability grows with its intensifier, each next word of a
 * phrase a bigram). It is used in one of two ways:
 * - in place, when every word is one the base search (`_default`) already has: the set becomes a second,
 *   selectable model of that search's own model set. Only scores change; selecting `default` again makes
 *   the base search score exactly as before. The set is built once per decoder (0.3 to 0.9 s, a few MB);
 *   a later keyword set only replaces its keyword model (20 to 60 ms);
 * - a separate n-gram search (`ps_set_lm`), when some word had to be added to the dictionary (with phones
 *   from the letter-to-sound rules): only a search built after the word was added has it in its lexical
 *   tree. Building one walks the whole 134k-word dictionary (0.5 to 2 s, some 45 MB), for every new set.
 * Each decoder keeps the last keyword model of each kind and reuses it for a request with the same
 * keywords. Every stream first goes back to the base search scoring with its own model.
 *
 * What stays behind on the decoder, and why it changes no other result: words added to the dictionary
 * (never removed: the library cannot). The base search was built before they existed, is never
 * re-initialised, and so never sees them; a keyword search includes only words its own models know. And
 * the in-place set, left attached but unselected: with `default` selected, the base search's model set
 * scores with that model alone through its own, untouched column of the word map. The additions are bounded: past {@link MAX_ADDED_WORDS} the decoder reports it should be replaced.
 */
export interface KeywordSearch {
  /**
   * Switches the decoder to a search biased toward `keywords`, or back to the base search when there are
   * none (or none it can use). Never call while an utterance is open.
   */
  use(keywords: readonly KeywordBoost[]): Promise<KeywordUse>
  /** True once the dictionary holds more added words than allowed: release the decoder as broken. */
  readonly exhausted: boolean
  /** Set when keywords are ignored on this decoder: why (see {@link withoutKeywords}). */
  readonly unavailable?: string
}

/** What `use` did, for logs and benchmarks. */
export interface KeywordUse {
  /**
   * `base`: no keywords; `inline`: the base search scoring with the keyword model (every word was already
   * in it); `search`: the separate keyword search (some word was added to the dictionary).
   */
  search: 'base' | 'inline' | 'search'
  /** True when the keyword model of the previous request with the same keywords was reused. */
  cached: boolean
  /** Words added to the dictionary for this request (letter-to-sound). */
  added: string[]
  /** Phrases left out: a word with nothing pronounceable in it. */
  skipped: string[]
  /** Time spent building the keyword model (and search), ms; 0 when cached. */
  buildMs: number
}

/** Dictionary words one decoder may gain before it asks to be replaced (a fresh decoder has none). */
export const MAX_ADDED_WORDS = 20_000

const BASE_SEARCH = '_default'
const KEYWORD_SEARCH = 'earmark-keywords'
/** The name of the keyword set inside the base search's model set. */
const INLINE_MODEL = 'earmark-keywords'
/** The models of the interpolated set, and their weights. */
const SET_NAMES = ['base', 'keywords'] as const
/** ngram_file_type_t: NGRAM_ARPA. */
const NGRAM_ARPA = 1
/** Share of the interpolated probability kept by the base model (the keyword model gets the rest). */
const BASE_WEIGHT = 0.95
const SET_WEIGHTS = [BASE_WEIGHT, 1 - BASE_WEIGHT]
/**
 * log10 probability of a keyword in the keyword model at intensifier 1. Each tenfold intensifier adds 1,
 * up to {@link MAX_LOG10}. Measured on test/engines/keywords.test.ts: -3 recognises the domain words,
 * and adds none to speech without them.
 */
const BASE_LOG10 = -3
const MAX_LOG10 = -1
/** log10 P(next word of a phrase | its previous word) in the keyword model. */
const PHRASE_LOG10 = -0.05

type Koffi = typeof import('koffi')

function bindKeywords(koffi: Koffi) {
  const sb = koffi.load('libsphinxbase.so.3')
  const ps = koffi.load('libpocketsphinx.so.3')
  return {
    koffi,
    ps_get_config: ps.func('void *ps_get_config(void *ps)'),
    ps_get_logmath: ps.func('void *ps_get_logmath(void *ps)'),
    ps_get_fe: ps.func('void *ps_get_fe(void *ps)'),
    ps_get_feat: ps.func('void *ps_get_feat(void *ps)'),
    ps_get_lm: ps.func('void *ps_get_lm(void *ps, const char *name)'),
    ps_set_lm: ps.func('int ps_set_lm(void *ps, const char *name, void *lm)'),
    ps_set_search: ps.func('int ps_set_search(void *ps, const char *name)'),
    ngram_model_set_lookup: sb.func('void *ngram_model_set_lookup(void *set, const char *name)'),
    ngram_model_read: sb.func(
      'void *ngram_model_read(void *config, const char *path, int type, void *lmath)',
    ),
    ngram_model_set_init: sb.func(
      'void *ngram_model_set_init(void *config, void **models, const char **names, const float *weights, int n)',
    ),
    ngram_model_free: sb.func('int ngram_model_free(void *model)'),
    ngram_model_set_add: sb.func(
      'void *ngram_model_set_add(void *set, void *model, const char *name, float weight, int reuse_widmap)',
    ),
    ngram_model_set_remove: sb.func(
      'void *ngram_model_set_remove(void *set, const char *name, int reuse_widmap)',
    ),
    ngram_model_set_select: sb.func('void *ngram_model_set_select(void *set, const char *name)'),
    ngram_model_set_interp: sb.func(
      'void *ngram_model_set_interp(void *set, const char **names, const float *weights)',
    ),
    ngram_wid: sb.func('int ngram_wid(void *model, const char *word)'),
    ngram_unknown_wid: sb.func('int ngram_unknown_wid(void *model)'),
    dict_add_word: ps.func('int dict_add_word(void *dict, const char *word, const int16_t *phones, int n)'),
    dict2pid_add_word: ps.func('int dict2pid_add_word(void *d2p, int wid)'),
    dict_wordid: ps.func('int dict_wordid(void *dict, const char *word)'),
    bin_mdef_ciphone_id: ps.func('int bin_mdef_ciphone_id(void *mdef, const char *phone)'),
    // The library exports no accessor for the decoder's dictionary and dict2pid, so they are read from
    // ps_decoder_t and checked against the fields it does export (pocketsphinx_internal.h, 5prealpha).
    Decoder: koffi.struct('earmark_ps_decoder_prefix', {
      config: 'void *',
      refcount: 'int',
      acmod: 'void *',
      dict: 'void *',
      d2p: 'void *',
      lmath: 'void *',
    }),
    Acmod: koffi.struct('earmark_acmod_prefix', {
      config: 'void *',
      lmath: 'void *',
      strings: 'void *',
      fe: 'void *',
      fcb: 'void *',
      mdef: 'void *',
    }),
    Dict: koffi.struct('earmark_dict_prefix', { refcnt: 'int', mdef: 'void *' }),
  }
}

type KeywordBinding = ReturnType<typeof bindKeywords>

let binding: Promise<KeywordBinding> | undefined
let scratchDir: string | undefined

function loadKeywordBinding(): Promise<KeywordBinding> {
  binding ??= import('koffi').then(bindKeywords).catch((err: unknown) => {
    binding = undefined
    throw err
  })
  return binding
}

/** Phrases as the keyword model takes them: lower-case words, positive boosts, duplicates merged. */
export function normalizeKeywords(keywords: readonly KeywordBoost[]): Map<string, number> {
  const phrases = new Map<string, number>()
  for (const { phrase, boost } of keywords) {
    const words = phrase
      .toLowerCase()
      .split(/\s+/)
      .map((w) => w.replace(/^[^a-z0-9']+|[^a-z0-9']+$/g, ''))
      .filter((w) => w !== '')
    if (words.length === 0 || !(boost > 0)) continue
    const key = words.join(' ')
    phrases.set(key, Math.max(phrases.get(key) ?? 0, boost))
  }
  return phrases
}

/** log10 P(first word) in the keyword model for an intensifier. */
export function keywordLog10(boost: number): number {
  return Math.min(MAX_LOG10, BASE_LOG10 + Math.log10(boost))
}

/** The keyword model in ARPA format: every word a unigram, each phrase a chain of bigrams. */
export function keywordArpa(phrases: ReadonlyMap<string, number>): string {
  const unigrams = new Map<string, number>()
  const bigrams = new Map<string, number>()
  for (const [phrase, boost] of phrases) {
    const words = phrase.split(' ')
    const log10 = keywordLog10(boost)
    words.forEach((word, i) => {
      // Later words of a phrase come mostly through their bigram; alone they get the phrase's unigram too.
      unigrams.set(word, Math.max(unigrams.get(word) ?? -99, log10))
      const previous = words[i - 1]
      if (previous !== undefined) bigrams.set(`${previous} ${word}`, PHRASE_LOG10)
    })
  }
  const lines = ['\\data\\', `ngram 1=${unigrams.size + 2}`]
  if (bigrams.size > 0) lines.push(`ngram 2=${bigrams.size}`)
  lines.push('', '\\1-grams:', '-99.0000 <s> 0.0000', '-99.0000 </s> 0.0000')
  for (const [word, log10] of unigrams) lines.push(`${log10.toFixed(4)} ${word} 0.0000`)
  if (bigrams.size > 0) {
    lines.push('', '\\2-grams:')
    for (const [pair, log10] of bigrams) lines.push(`${log10.toFixed(4)} ${pair}`)
  }
  lines.push('', '\\end\\', '')
  return lines.join('\n')
}

/** The cache key of a keyword set: the same phrases and boosts in any order give the same key. */
function keyOf(phrases: ReadonlyMap<string, number>): string {
  return JSON.stringify([...phrases].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/**
 * The stand-in for a decoder whose layout check failed: keywords are ignored, the decoder stays on the
 * search it was loaded with, and `unavailable` says why.
 */
export function withoutKeywords(reason: string): KeywordSearch {
  return {
    exhausted: false,
    unavailable: reason,
    use: async () => ({ search: 'base', cached: true, added: [], skipped: [], buildMs: 0 }),
  }
}

/**
 * The keyword searches of one decoder. Call once, right after `ps_init`; it checks the decoder's layout
 * and throws PocketsphinxUnavailableError when this build does not have the expected one.
 */
export async function createKeywordSearch(decoder: DecoderHandle): Promise<KeywordSearch> {
  const f = await loadKeywordBinding()
  const { koffi } = f
  const same = (a: unknown, b: unknown) => !!a && !!b && koffi.address(a) === koffi.address(b)
  const layoutError = (what: string) =>
    new PocketsphinxUnavailableError(
      `This libpocketsphinx build does not have the expected decoder layout (${what}); keyword boosting ` +
        'needs Debian 0.8+5prealpha.',
    )
  const fields = koffi.decode(decoder, f.Decoder) as Record<
    'config' | 'acmod' | 'dict' | 'd2p' | 'lmath',
    unknown
  >
  if (!same(fields.config, f.ps_get_config(decoder)) || !same(fields.lmath, f.ps_get_logmath(decoder)))
    throw layoutError('config and logmath')
  const acmod = koffi.decode(fields.acmod, f.Acmod) as Record<'fe' | 'fcb' | 'mdef', unknown>
  if (!same(acmod.fe, f.ps_get_fe(decoder)) || !same(acmod.fcb, f.ps_get_feat(decoder)))
    throw layoutError('acoustic model')
  const dict = koffi.decode(fields.dict, f.Dict) as { mdef: unknown }
  if (!same(dict.mdef, acmod.mdef) || !fields.d2p) throw layoutError('dictionary')
  // Null when the decoder's default search is not an n-gram one (e.g. `-allphone`): nothing to boost.
  const baseSet: unknown = f.ps_get_lm(decoder, BASE_SEARCH)
  const baseModel: unknown = baseSet ? f.ngram_model_set_lookup(baseSet, 'default') : null
  if (!baseModel) {
    throw new PocketsphinxUnavailableError(
      "The decoder's default search has no n-gram language model; keyword boosting needs one.",
    )
  }

  /** The keyword set inside the base search's model set (`INLINE_MODEL`), and of the separate search. */
  let inlineKey: string | undefined
  let searchKey: string | undefined
  /** Dictionary words this decoder gained: the base search was built before them and never knows them. */
  const addedWords = new Set<string>()
  const unknownWid = Number(f.ngram_unknown_wid(baseModel))
  const phoneIds = new Map<string, number>()

  const phoneId = (phone: string) => {
    let id = phoneIds.get(phone)
    if (id === undefined) {
      id = Number(f.bin_mdef_ciphone_id(acmod.mdef, phone))
      phoneIds.set(phone, id)
    }
    return id
  }

  /** Adds `word` (and a second pronunciation) when the dictionary lacks it; false when it cannot. */
  const ensureWord = (word: string, addedNow: string[]): boolean => {
    if (Number(f.dict_wordid(fields.dict, word)) >= 0) return true
    // The rules spell out letters only: a word with digits or symbols the dictionary lacks is left out.
    if (!/^[a-z']+$/.test(word)) return false
    const prons = pronunciations(word)
    if (prons.length === 0) return false
    for (const [i, phones] of prons.entries()) {
      const ids = Int16Array.from(phones.map(phoneId))
      if (ids.some((id) => id < 0)) return i > 0
      const wid = Number(f.dict_add_word(fields.dict, i === 0 ? word : `${word}(${i + 1})`, ids, ids.length))
      if (wid < 0) return i > 0
      f.dict2pid_add_word(fields.d2p, wid)
      addedWords.add(word)
    }
    addedNow.push(word)
    return true
  }

  /** Whether the base search can recognise `word` already: in its dictionary and its language model. */
  const baseKnows = (word: string) =>
    !addedWords.has(word) && Number(f.ngram_wid(baseModel, word)) !== unknownWid

  const switchTo = (name: string) => {
    if (Number(f.ps_set_search(decoder, name)) < 0) throw new Error(`ps_set_search(${name}) failed`)
  }

  /** The base search scores with its own model alone again (the keyword set stays attached, unused). */
  const selectBaseModel = () => {
    if (!f.ngram_model_set_select(baseSet, 'default')) throw new Error('The base language model is gone.')
  }

  /** The keyword model, read from ARPA text (the caller owns the reference). */
  const keywordModel = async (phrases: ReadonlyMap<string, number>): Promise<unknown> => {
    scratchDir ??= mkdtempSync(join(tmpdir(), 'earmark-keywords-'))
    const path = join(scratchDir, `${process.pid}-${Math.random().toString(36).slice(2)}.arpa`)
    writeFileSync(path, keywordArpa(phrases), { mode: 0o600 })
    let model: unknown
    try {
      model = await callAsync<unknown>(
        f.ngram_model_read,
        f.ps_get_config(decoder),
        path,
        NGRAM_ARPA,
        fields.lmath,
      )
    } finally {
      rmSync(path, { force: true })
    }
    if (!model) throw new Error('The keyword language model was not accepted.')
    return model
  }

  /** The keyword model interpolated with the decoder's own, as a new set (the caller owns a reference). */
  const interpolated = async (phrases: ReadonlyMap<string, number>): Promise<unknown> => {
    const model = await keywordModel(phrases)
    // The set takes its own reference to both models.
    const set = await callAsync<unknown>(
      f.ngram_model_set_init,
      f.ps_get_config(decoder),
      [baseModel, model],
      SET_NAMES,
      SET_WEIGHTS,
      2,
    )
    f.ngram_model_free(model)
    if (!set) throw new Error('The keyword language-model set was not built.')
    return set
  }

  /** The interpolated set attached to the base search's model set, once built (it stays, unselected). */
  let inline: unknown
  /**
   * In place: the interpolated set is a second model of the base search's own set, selected by name. Only
   * the scores change, so this serves words the base search already has in its lexical tree; going back is
   * selecting `default` again, after which the base search scores exactly as before. The set is built once
   * (its word map over the 134k words is most of the cost); a new keyword set only replaces its keyword
   * model, whose words the map already has (they are all in the decoder's own model).
   */
  const attachInline = async (phrases: ReadonlyMap<string, number>) => {
    selectBaseModel()
    inlineKey = undefined
    if (!inline) {
      const set = await interpolated(phrases)
      // Takes over our reference; the new column of the word map is filled by name (reuse_widmap).
      await callAsync<unknown>(f.ngram_model_set_add, baseSet, set, INLINE_MODEL, 1, 1)
      inline = set
      return
    }
    // ngram_model_set_remove hands back the reference the set held; ngram_model_set_add takes over ours.
    const old: unknown = f.ngram_model_set_remove(inline, SET_NAMES[1], 1)
    if (old) f.ngram_model_free(old)
    const model = await keywordModel(phrases)
    await callAsync<unknown>(f.ngram_model_set_add, inline, model, SET_NAMES[1], 1 - BASE_WEIGHT, 1)
    // Adding renormalises the weights its own way: set them exactly, as a fresh set has them.
    if (!f.ngram_model_set_interp(inline, SET_NAMES, SET_WEIGHTS))
      throw new Error('The keyword weights were refused.')
  }

  /** A separate search over the interpolated set: its lexical tree includes the words added to the dictionary. */
  const buildSearch = async (phrases: ReadonlyMap<string, number>) => {
    searchKey = undefined
    const set = await interpolated(phrases)
    try {
      // Replaces (and frees) the previous keyword search of this decoder, if any.
      const rc = await callAsync<number>(f.ps_set_lm, decoder, KEYWORD_SEARCH, set)
      if (rc < 0) throw new Error('ps_set_lm failed for the keyword search.')
    } finally {
      f.ngram_model_free(set)
    }
  }

  return {
    get exhausted() {
      return addedWords.size > MAX_ADDED_WORDS
    },
    async use(keywords) {
      // Whatever this request asks, it starts from the base search scoring with its own model.
      switchTo(BASE_SEARCH)
      selectBaseModel()
      const phrases = normalizeKeywords(keywords)
      const addedNow: string[] = []
      const skipped: string[] = []
      for (const phrase of [...phrases.keys()]) {
        if (!phrase.split(' ').every((word) => ensureWord(word, addedNow))) {
          skipped.push(phrase)
          phrases.delete(phrase)
        }
      }
      const done = (search: KeywordUse['search'], cached: boolean, started: number): KeywordUse => ({
        search,
        cached,
        added: addedNow,
        skipped,
        buildMs: cached ? 0 : performance.now() - started,
      })
      const started = performance.now()
      if (phrases.size === 0) return done('base', true, started)
      const key = keyOf(phrases)
      const inline = [...phrases.keys()].every((phrase) => phrase.split(' ').every(baseKnows))
      if (inline) {
        const cached = key === inlineKey
        if (!cached) {
          await attachInline(phrases)
          inlineKey = key
        }
        if (!f.ngram_model_set_select(baseSet, INLINE_MODEL)) throw new Error('The keyword model is gone.')
        return done('inline', cached, started)
      }
      const cached = key === searchKey
      if (!cached) {
        await buildSearch(phrases)
        searchKey = key
      }
      switchTo(KEYWORD_SEARCH)
      return done('search', cached, started)
    },
  }
}
