/** How microphone audio reaches the socket. */
export type AudioPath = 'mediarecorder' | 'worklet'

export interface Capture {
  /** What the socket carries, for the page. */
  readonly description: string
  /** The AudioContext's real sample rate (the worklet resamples from it). */
  readonly contextRate: number
  /** Stops the microphone once the last audio has been handed to `onAudio`. */
  stop(): Promise<void>
}

export interface CaptureHandlers {
  onAudio(audio: Blob | ArrayBuffer): void
  /** Peak and RMS of the last ~40 ms, 0..1. */
  onLevel(peak: number, rms: number): void
}

/** Every 250 ms a chunk (Chromium delivers about every 300 ms, on 60 ms Opus frame boundaries). */
const TIMESLICE_MS = 250
const WEBM_OPUS = 'audio/webm;codecs=opus'

/**
 * Opens the microphone with the browser's processing off: auto-gain, noise suppression and echo cancellation
 * clip and garble speech a recogniser then gets wrong (browser-testing-notes.md, pitfall 4).
 */
export async function startCapture(path: AudioPath, handlers: CaptureHandlers): Promise<Capture> {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  })
  const context = new AudioContext()
  await context.resume()
  const source = context.createMediaStreamSource(stream)
  // A muted sink keeps the graph running without playing the microphone back through the speakers.
  const sink = context.createGain()
  sink.gain.value = 0
  sink.connect(context.destination)
  const analyser = context.createAnalyser()
  analyser.fftSize = 2048
  source.connect(analyser)
  analyser.connect(sink)
  const samples = new Float32Array(analyser.fftSize)
  const meter = setInterval(() => {
    analyser.getFloatTimeDomainData(samples)
    let peak = 0
    let sum = 0
    for (const s of samples) {
      peak = Math.max(peak, Math.abs(s))
      sum += s * s
    }
    handlers.onLevel(peak, Math.sqrt(sum / samples.length))
  }, 50)

  const release = async () => {
    clearInterval(meter)
    for (const track of stream.getTracks()) track.stop()
    await context.close()
  }

  try {
    if (path === 'mediarecorder') {
      const mimeType = MediaRecorder.isTypeSupported(WEBM_OPUS) ? WEBM_OPUS : ''
      const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {})
      recorder.addEventListener('dataavailable', (event) => {
        if (event.data.size > 0) handlers.onAudio(event.data)
      })
      const stopped = new Promise<void>((resolve) => recorder.addEventListener('stop', () => resolve()))
      recorder.start(TIMESLICE_MS)
      return {
        description: `${recorder.mimeType || 'MediaRecorder default'}, ${TIMESLICE_MS} ms chunks`,
        contextRate: context.sampleRate,
        stop: async () => {
          // The last chunk arrives before 'stop'.
          if (recorder.state !== 'inactive') recorder.stop()
          await stopped
          await release()
        },
      }
    }

    await context.audioWorklet.addModule(new URL('./pcm-worklet.js', location.href))
    const node = new AudioWorkletNode(context, 'pcm-16k', { numberOfInputs: 1, numberOfOutputs: 1 })
    let flushed: () => void = () => {}
    node.port.onmessage = (event: MessageEvent) => {
      if (event.data instanceof ArrayBuffer) handlers.onAudio(event.data)
      else if (event.data === 'flushed') flushed()
    }
    source.connect(node)
    node.connect(sink)
    return {
      description: `linear16, 16 kHz (resampled from ${context.sampleRate} Hz), 100 ms frames`,
      contextRate: context.sampleRate,
      stop: async () => {
        await new Promise<void>((resolve) => {
          flushed = resolve
          node.port.postMessage('flush')
          setTimeout(resolve, 1000)
        })
        source.disconnect()
        node.disconnect()
        await release()
      },
    }
  } catch (err) {
    await release()
    throw err
  }
}
