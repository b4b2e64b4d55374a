import { DeepgramConverter, type DeepgramResponse, srt, webvtt } from '@deepgram/captions'

/** The output formats of `earmark transcribe`, and the extension each file gets. */
export const TRANSCRIPT_FORMATS = { json: 'json', text: 'txt', srt: 'srt', vtt: 'vtt' } as const

export type TranscriptFormat = keyof typeof TRANSCRIPT_FORMATS

export function isTranscriptFormat(value: string): value is TranscriptFormat {
  return Object.hasOwn(TRANSCRIPT_FORMATS, value)
}

/** The parts of a Deepgram pre-recorded answer the text formats read. */
interface PrerecordedAnswer {
  metadata?: { duration?: number }
  results?: {
    channels?: { alternatives?: { transcript?: string; words?: unknown[] }[] }[]
    utterances?: { transcript?: string }[]
  }
}

/** `@deepgram/captions`' converter with Earmark's name in the WebVTT note instead of Deepgram's. */
class EarmarkConverter extends DeepgramConverter {
  override getHeaders(): string[] {
    return super
      .getHeaders()
      .map((line) =>
        line === 'Transcription provided by Deepgram' ? 'Transcription provided by Earmark' : line,
      )
  }
}

/** How many words the answer holds (the caption writers fail on none). */
function wordCount(answer: PrerecordedAnswer): number {
  return answer.results?.channels?.[0]?.alternatives?.[0]?.words?.length ?? 0
}

/** The audio length a Deepgram answer reports, seconds. */
export function answerDuration(answer: unknown): number {
  const d = (answer as PrerecordedAnswer).metadata?.duration
  return typeof d === 'number' ? d : 0
}

/**
 * One transcript as a file's text: Deepgram's JSON as answered; plain text (one line per utterance when the
 * answer has them, else the transcript); SRT or WebVTT through `@deepgram/captions` (cues of at most 8 words
 * within an utterance). Audio with no word gives an empty SRT and a WebVTT of its header alone.
 */
export function renderTranscript(answer: unknown, format: TranscriptFormat): string {
  const a = answer as PrerecordedAnswer
  switch (format) {
    case 'json':
      return `${JSON.stringify(answer, null, 2)}\n`
    case 'text': {
      const utterances = a.results?.utterances
      const lines = utterances
        ? utterances.map((u) => u.transcript ?? '')
        : [a.results?.channels?.[0]?.alternatives?.[0]?.transcript ?? '']
      const text = lines.filter((l) => l !== '').join('\n')
      return text === '' ? '' : `${text}\n`
    }
    case 'srt':
      return wordCount(a) === 0 ? '' : srt(new EarmarkConverter(answer as DeepgramResponse))
    case 'vtt':
      return wordCount(a) === 0 ? 'WEBVTT\n' : webvtt(new EarmarkConverter(answer as DeepgramResponse))
  }
}
