/**
 * Why decoding failed, as a stable string code (the message is for people and may change):
 * - `UNDECODABLE`: the bytes are not audio Earmark can read (unknown or corrupt container, no audio track).
 * - `BACKLOG_FULL`: the client sent audio faster than it could be decoded, beyond the pending-bytes cap.
 * - `TOO_LONG`: the decoded audio passed the caller's length cap (`decodeAll`'s `maxSamples`).
 * - `DECODER_UNAVAILABLE`: ffmpeg could not be started (a server fault, not the client's).
 */
export const AUDIO_DECODE_ERRORS = {
  UNDECODABLE: 'The audio could not be decoded.',
  BACKLOG_FULL: 'Audio arrived faster than it could be decoded.',
  TOO_LONG: 'The audio is longer than allowed.',
  DECODER_UNAVAILABLE: 'The audio decoder is unavailable.',
} as const

export type AudioDecodeErrorCode = keyof typeof AUDIO_DECODE_ERRORS

/**
 * The one error the audio capability reports. Its message never holds client data: ffmpeg's stderr is only
 * ever mapped onto a short, fixed reason.
 */
export class AudioDecodeError extends Error {
  readonly code: AudioDecodeErrorCode

  constructor(code: AudioDecodeErrorCode, reason?: string) {
    super(reason ? `${AUDIO_DECODE_ERRORS[code]} (${reason})` : AUDIO_DECODE_ERRORS[code])
    this.name = 'AudioDecodeError'
    this.code = code
  }
}

export function isAudioDecodeError(err: unknown): err is AudioDecodeError {
  return err instanceof AudioDecodeError
}
