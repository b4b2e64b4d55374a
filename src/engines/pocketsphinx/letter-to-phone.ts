/**
 * A small rule-based letter-to-sound fallback for words the pronouncing dictionary lacks (keyword boosting,
 * docs/speech.md "Keywords"). PocketSphinx 0.8+5prealpha has no grapheme-to-phoneme model, so an
 * out-of-vocabulary keyword ("kubernetes", "grafana") gets its phones from these rules, in the CMUdict phone
 * set the acoustic model uses, without stress marks. It is deliberately simple: English spelling rules of
 * thumb (digraphs, soft c and g, silent final e, a vowel before one consonant and a vowel is long), good
 * enough for the search to find a boosted word whose sound is close; it is no substitute for a dictionary.
 */

/** Multi-letter spellings tried before single letters, longest first within each starting letter. */
const GRAPHEMES: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['tch', ['CH']],
  ['sch', ['S', 'K']],
  ['tion', ['SH', 'AH', 'N']],
  ['sion', ['ZH', 'AH', 'N']],
  ['ough', ['AO']],
  ['augh', ['AO']],
  ['igh', ['AY']],
  ['eigh', ['EY']],
  ['ch', ['CH']],
  ['sh', ['SH']],
  ['th', ['TH']],
  ['ph', ['F']],
  ['wh', ['W']],
  ['ck', ['K']],
  ['ng', ['NG']],
  ['nk', ['NG', 'K']],
  ['qu', ['K', 'W']],
  ['gh', ['G']],
  ['ee', ['IY']],
  ['ea', ['IY']],
  ['oo', ['UW']],
  ['ou', ['AW']],
  ['ow', ['OW']],
  ['oi', ['OY']],
  ['oy', ['OY']],
  ['ai', ['EY']],
  ['ay', ['EY']],
  ['au', ['AO']],
  ['aw', ['AO']],
  ['ie', ['IY']],
  ['ei', ['EY']],
  ['ey', ['IY']],
  ['ue', ['UW']],
  ['ew', ['UW']],
  ['oa', ['OW']],
  ['ar', ['AA', 'R']],
  ['er', ['ER']],
  ['ir', ['ER']],
  ['ur', ['ER']],
  ['or', ['AO', 'R']],
]

const CONSONANTS: Readonly<Record<string, readonly string[]>> = {
  b: ['B'],
  d: ['D'],
  f: ['F'],
  h: ['HH'],
  j: ['JH'],
  k: ['K'],
  l: ['L'],
  m: ['M'],
  n: ['N'],
  p: ['P'],
  r: ['R'],
  s: ['S'],
  t: ['T'],
  v: ['V'],
  w: ['W'],
  x: ['K', 'S'],
  z: ['Z'],
}

const SHORT: Readonly<Record<string, string>> = { a: 'AE', e: 'EH', i: 'IH', o: 'AA', u: 'AH', y: 'IH' }
const LONG: Readonly<Record<string, string>> = { a: 'EY', e: 'IY', i: 'AY', o: 'OW', u: 'UW', y: 'AY' }

const isVowel = (c: string | undefined) => c !== undefined && 'aeiou'.includes(c)
const isFront = (c: string | undefined) => c !== undefined && 'eiy'.includes(c)

/** Word-initial spellings whose first letter is silent or special. */
const ONSETS: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['kn', ['N']],
  ['wr', ['R']],
  ['ps', ['S']],
  ['pn', ['N']],
  ['gn', ['N']],
  ['x', ['Z']],
]

/** The longest multi-letter spelling of `word` at `at`, if any. */
function grapheme(word: string, at: number): readonly [string, readonly string[]] | undefined {
  let best: readonly [string, readonly string[]] | undefined
  for (const entry of GRAPHEMES) {
    if (word.startsWith(entry[0], at) && (!best || entry[0].length > best[0].length)) best = entry
  }
  return best
}

/**
 * Pronunciations to try for a word the dictionary lacks: the rules as they are and, when it differs, the
 * same with short vowels in open syllables (the rules cannot tell stressed from reduced syllables).
 */
export function pronunciations(word: string): string[][] {
  const first = letterToPhones(word)
  const second = letterToPhones(word, { openSyllablesLong: false })
  if (first.length === 0) return []
  return first.join(' ') === second.join(' ') ? [first] : [first, second]
}

/**
 * CMUdict phones (no stress) for a lower-case word of letters and apostrophes, e.g. `grafana` →
 * `G R AE F AE N AH`; an empty array when nothing in it is pronounceable.
 */
export function letterToPhones(word: string, options: { openSyllablesLong?: boolean } = {}): string[] {
  const openLong = options.openSyllablesLong ?? true
  const w = word.toLowerCase().replace(/[^a-z]/g, '')
  const phones: string[] = []
  let i = 0
  for (const [onset, sound] of ONSETS) {
    if (w.startsWith(onset) && w.length > onset.length) {
      phones.push(...sound)
      i = onset.length
      break
    }
  }
  while (i < w.length) {
    const c = w[i] as string
    const next = w[i + 1]
    // A final silent e (after a consonant, in a word of more than two letters).
    if (c === 'e' && i === w.length - 1 && w.length > 2 && !isVowel(w[i - 1])) break
    // -le after a consonant at the end: a syllabic l (ansible, table).
    if (c === 'l' && next === 'e' && i === w.length - 2 && i > 0 && !isVowel(w[i - 1])) {
      phones.push('AH', 'L')
      break
    }
    const multi = grapheme(w, i)
    // An r-controlled vowel only when the r closes the syllable (terraform: T EH R AH, not T ER R).
    const rControlled = multi?.[0].length === 2 && multi[0][1] === 'r'
    if (multi && !(rControlled && (isVowel(w[i + 2]) || w[i + 2] === 'r' || w[i + 2] === 'y'))) {
      phones.push(...multi[1])
      i += multi[0].length
      continue
    }
    if (c === 'y') {
      // Consonant at the start of a syllable, vowel elsewhere (final y: IY).
      if (i === 0 || isVowel(w[i - 1])) phones.push('Y')
      else phones.push(i === w.length - 1 ? 'IY' : 'IH')
      i += 1
      continue
    }
    if (isVowel(c)) {
      // Long before one consonant and a vowel (open syllable, or a silent final e), short otherwise;
      // a final a or o is reduced or long.
      const afterNext = w[i + 2]
      let sound = SHORT[c] as string
      if (i === w.length - 1)
        sound = c === 'a' ? 'AH' : c === 'o' ? 'OW' : c === 'i' ? 'IY' : (LONG[c] as string)
      else if (next !== undefined && !isVowel(next) && next !== 'x' && next !== 'w' && isVowel(afterNext)) {
        const silentE = afterNext === 'e' && i + 3 === w.length
        if (openLong || silentE) sound = LONG[c] as string
      }
      phones.push(sound)
      i += 1
      continue
    }
    if (c === 'c') phones.push(isFront(next) ? 'S' : 'K')
    else if (c === 'g') phones.push(isFront(next) && i > 0 ? 'JH' : 'G')
    else if (c === 'q') phones.push('K')
    else {
      const sound = CONSONANTS[c]
      if (sound) phones.push(...sound)
    }
    // A doubled consonant sounds once.
    i += next === c ? 2 : 1
  }
  return phones
}
