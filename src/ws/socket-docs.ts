import { SESSION_LIMIT_CLOSE } from '../access/index.js'
import { listenQueryDoc } from '../listen/index.js'
import { REVOCATION_CLOSE } from '../revocation/index.js'
import { speakQueryDoc } from '../tts/index.js'
import { CLOSE } from './close-codes.js'
import { SPEAK_CLOSE } from './speak-session.js'
import type { SocketRouteDoc } from './upgrade.js'

type CloseDoc = SocketRouteDoc['closeCodes'][number]

const typed = (type: string, properties: Record<string, unknown> = {}) => ({
  type: 'object',
  required: ['type'],
  properties: { type: { const: type }, ...properties },
})

/** Closes both sockets share: revocation, a credential's session limit (Earmark's), a server fault. */
const SHARED_CLOSES: CloseDoc[] = [
  { ...REVOCATION_CLOSE.REVOKED, meaning: 'The credential was revoked (docs/revocation.md).', earmark: true },
  {
    ...REVOCATION_CLOSE.EXPIRED,
    meaning: "The credential's key expired (docs/revocation.md).",
    earmark: true,
  },
  {
    ...SESSION_LIMIT_CLOSE,
    meaning: "The credential's `max_session_duration_seconds` (docs/credential-options.md).",
    earmark: true,
  },
]

/** `GET /v1/listen` (docs/deepgram-compat.md §7, docs/speech.md "The live socket"). */
export const LISTEN_SOCKET_DOC: SocketRouteDoc = {
  summary: 'Live transcription over a WebSocket (`usage:write`, keys or grant tokens)',
  description:
    'Audio in binary frames (headerless with `encoding` and `sample_rate`, or in a container); `Results` ' +
    'back as JSON text frames. Refusals (credentials, options, capacity) are HTTP answers before any 101.',
  tags: ['listen'],
  querystring: listenQueryDoc('live'),
  clientMessages: {
    binary: { description: 'Audio. An empty frame is taken as `CloseStream`.' },
    KeepAlive: { description: 'Keeps a stream without audio open.', schema: typed('KeepAlive') },
    Finalize: {
      description: 'Flushes what is buffered: `Results` with `from_finalize: true`.',
      schema: typed('Finalize'),
    },
    CloseStream: {
      description: 'Flushes, sends the last `Results` and `Metadata`, then closes with 1000.',
      schema: typed('CloseStream'),
    },
  },
  serverMessages: {
    Results: {
      description:
        'A transcript: `is_final`, `speech_final`, `channel.alternatives[]` (docs/deepgram-compat.md §7.3).',
      schema: typed('Results', {
        channel_index: { type: 'array', items: { type: 'integer' } },
        duration: { type: 'number' },
        start: { type: 'number' },
        is_final: { type: 'boolean' },
        speech_final: { type: 'boolean' },
        from_finalize: { type: 'boolean' },
        channel: { type: 'object' },
        metadata: { type: 'object' },
      }),
    },
    Metadata: {
      description: 'After `CloseStream`: request id, sha256, duration.',
      schema: typed('Metadata'),
    },
    UtteranceEnd: {
      description: 'With `utterance_end_ms`.',
      schema: typed('UtteranceEnd', { channel: { type: 'array' }, last_word_end: { type: 'number' } }),
    },
    SpeechStarted: {
      description: 'With `vad_events=true`.',
      schema: typed('SpeechStarted', { channel: { type: 'array' }, timestamp: { type: 'number' } }),
    },
  },
  closeCodes: [
    { ...CLOSE.NORMAL, meaning: 'The normal end, after `CloseStream`.' },
    { ...CLOSE.BAD_AUDIO, meaning: 'The audio cannot be decoded.' },
    { ...CLOSE.INTERNAL, meaning: 'The server failed.' },
    { ...CLOSE.NO_AUDIO, meaning: 'No audio (nor `KeepAlive`) for the idle timeout.' },
    {
      ...CLOSE.QUOTA,
      meaning: 'An audio quota ran out, after the final `Results` (docs/quotas.md).',
      earmark: true,
    },
    ...SHARED_CLOSES,
  ],
}

/** `GET /v1/speak` (docs/deepgram-compat.md §8.2, docs/speech.md "Live text to speech"). */
export const SPEAK_SOCKET_DOC: SocketRouteDoc = {
  summary: 'Live text to speech over a WebSocket (`usage:write`, keys or grant tokens)',
  description:
    'Text in JSON messages, headerless audio back in binary frames (linear16 at 24 kHz by default).',
  tags: ['speak'],
  querystring: speakQueryDoc('live'),
  clientMessages: {
    Speak: { description: 'Adds text.', schema: typed('Speak', { text: { type: 'string' } }) },
    Flush: { description: 'Speaks the text added so far.', schema: typed('Flush') },
    Clear: { description: 'Drops what is pending.', schema: typed('Clear') },
    Close: { description: 'Ends the socket with 1000.', schema: typed('Close') },
  },
  serverMessages: {
    binary: { description: 'Audio in the asked `encoding`.' },
    Metadata: { description: 'First: request id and model.', schema: typed('Metadata') },
    Flushed: {
      description: 'A `Flush` was spoken.',
      schema: typed('Flushed', { sequence_id: { type: 'integer' } }),
    },
    Cleared: {
      description: 'A `Clear` was done.',
      schema: typed('Cleared', { sequence_id: { type: 'integer' } }),
    },
    Warning: {
      description: 'For example more than 20 `Flush` in 60 s.',
      schema: typed('Warning', { description: { type: 'string' }, code: { type: 'string' } }),
    },
  },
  closeCodes: [
    { ...SPEAK_CLOSE.NORMAL, meaning: 'After `Close`.' },
    { ...SPEAK_CLOSE.UNKNOWN_MESSAGE, meaning: 'A message it does not understand.' },
    { ...SPEAK_CLOSE.TOO_MANY_FLUSHES, meaning: 'Too many characters in the window.' },
    { ...SPEAK_CLOSE.TEXT_TOO_LONG, meaning: 'Text too long.' },
    { ...SPEAK_CLOSE.INTERNAL, meaning: 'The server failed.' },
    { ...SPEAK_CLOSE.IDLE, meaning: 'Idle, or a time limit passed.' },
    ...SHARED_CLOSES,
  ],
}
