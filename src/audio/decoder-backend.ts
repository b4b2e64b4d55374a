/**
 * Where a decoder sends the bytes once it knows what they are: straight through, or into ffmpeg. A backend
 * reports PCM, end and failure through the decoder's `DecoderEvents`.
 */
export interface DecoderBackend {
  /** @returns false when the caller should wait for `waitForDrain()`. */
  write(bytes: Uint8Array): boolean
  waitForDrain(): Promise<void>
  end(): void
  /** Stops at once; resolves when any process has exited. */
  kill(): Promise<void>
  readonly pendingBytes: number
  readonly pid: number | undefined
}
