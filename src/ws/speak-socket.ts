import { USAGE_WRITE } from '../auth/index.js'
import { invalidField } from '../errors.js'
import { finishStreamUsage, type Services, startUsage } from '../projects/index.js'
import { parseSpeakQuery, type Speech, type SpeechFormat, type Voice } from '../tts/index.js'
import { SPEAK_SOCKET_DOC } from './socket-docs.js'
import { createSpeakSession, DEFAULT_SPEAK_LIMITS, type SpeakSessionLimits } from './speak-session.js'
import { type SocketRoute, UPGRADE_GONE } from './upgrade.js'

export interface SpeakSocketOptions {
  services: Services
  /** Renders text: the same bounded synthesis slots as `POST /v1/speak`. */
  synthesize(text: string, voice: Voice, format: SpeechFormat, speed?: number): Promise<Speech>
  limits?: Partial<SpeakSessionLimits>
}

/** The headerless encodings the live socket streams (docs/speech.md "Live text to speech"). */
const LIVE_ENCODINGS = new Set(['linear16', 'mulaw', 'alaw'])

/**
 * The live `GET /v1/speak` route: the query is checked before anything is claimed, then a usage record is
 * opened and handed to the socket, whose close finishes it with the characters spoken.
 */
export function createSpeakRoute(o: SpeakSocketOptions): SocketRoute {
  const limits = { ...DEFAULT_SPEAK_LIMITS, ...o.limits }
  return {
    path: '/v1/speak',
    doc: SPEAK_SOCKET_DOC,
    scope: USAGE_WRITE,
    async prepare({ query, principal, requestId, log, url }) {
      // The socket speaks raw linear16 at 24 kHz unless told otherwise, never a container (Deepgram's defaults).
      const encoding = query.encoding ?? 'linear16'
      if (typeof encoding !== 'string' || !LIVE_ENCODINGS.has(encoding)) {
        throw invalidField('encoding', 'must be linear16, mulaw or alaw on the live socket')
      }
      if (query.container !== undefined && query.container !== 'none') {
        throw invalidField('container', 'must be none on the live socket')
      }
      const { model, voice, format, tags, speed } = parseSpeakQuery({ ...query, encoding, container: 'none' })
      const usage = await startUsage(o.services, principal, {
        requestId,
        endpoint: 'speak',
        method: 'streaming',
        path: url.pathname,
        model,
        tags,
      })
      let usageDone: Promise<void> = Promise.resolve()
      const session = createSpeakSession({
        requestId,
        model,
        voice,
        format,
        limits,
        log,
        synthesize: (text) => o.synthesize(text, voice, format, speed),
        onEnd: ({ code, reason, characters }) => {
          usageDone = finishStreamUsage(o.services, usage, {
            characters,
            status: code,
            detail: reason || null,
          }).catch((err) => log.error({ err, request_id: requestId }, 'could not record usage'))
          log.info({ request_id: requestId, code, characters }, 'speak socket closed')
        },
      })
      const released = session.ended.then(() => usageDone)
      return {
        attach: (ws) => session.attach(ws),
        release: async () => {
          session.abandon(UPGRADE_GONE.code, UPGRADE_GONE.reason)
          await released
        },
        released,
      }
    },
  }
}
