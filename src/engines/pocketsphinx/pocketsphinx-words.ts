import type { Hypothesis, Word } from '../engine.js'
import type { RawSegment } from './pocketsphinx-binding.js'

/** `<s>`, `</s>`, `<sil>`, `[NOISE]`, `++BREATH++`: markers and fillers, not words. */
function isFiller(word: string): boolean {
  return /^<.*>$/.test(word) || /^\[.*\]$/.test(word) || /^\+\+.*\+\+$/.test(word)
}

/**
 * Turns segments into words: drops fillers, strips the `(2)` of alternate pronunciations, lower-cases, and
 * converts frames to seconds (a word ends where its last frame ends). `withConfidence: false` gives 0
 * instead of the placeholder probability PocketSphinx reports mid-utterance.
 */
export function segmentsToWords(
  segments: readonly RawSegment[],
  frameRate: number,
  withConfidence: boolean,
): Word[] {
  const words: Word[] = []
  for (const seg of segments) {
    if (isFiller(seg.word)) continue
    const word = seg.word.replace(/\(\d+\)$/, '').toLowerCase()
    if (word === '') continue
    const confidence = withConfidence ? Math.min(1, Math.max(0, seg.probability)) : 0
    words.push({
      word,
      start: seg.startFrame / frameRate,
      end: (seg.endFrame + 1) / frameRate,
      confidence: Number.isFinite(confidence) ? confidence : 0,
    })
  }
  return words
}

/** A hypothesis over `[start, end]` seconds; word times are clamped into that stretch. */
export function toHypothesis(words: readonly Word[], start: number, end: number): Hypothesis {
  const clamped = words.map((w) => ({
    ...w,
    start: Math.min(Math.max(w.start, start), end),
    end: Math.min(Math.max(w.end, start), end),
  }))
  const confidence =
    clamped.length === 0 ? 0 : clamped.reduce((sum, w) => sum + w.confidence, 0) / clamped.length
  return {
    transcript: clamped.map((w) => w.word).join(' '),
    words: clamped,
    confidence,
    start,
    end,
  }
}
