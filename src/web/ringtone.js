// Call tones made with WebAudio, so the page needs no sound files: a bright two-note ring for
// incoming calls and the classic 440+480 Hz ringback while an outgoing call rings.

const PATTERNS = {
  // [start s, duration s, frequencies Hz] within one period.
  incoming: {
    periodMs: 2600,
    gain: 0.16,
    notes: [
      [0.0, 0.14, [1318.5]],
      [0.16, 0.14, [1046.5]],
      [0.32, 0.14, [1318.5]],
      [0.48, 0.14, [1046.5]],
      [0.9, 0.14, [1318.5]],
      [1.06, 0.14, [1046.5]],
      [1.22, 0.14, [1318.5]],
      [1.38, 0.14, [1046.5]],
    ],
  },
  ringback: {
    periodMs: 6000,
    gain: 0.06,
    notes: [[0.0, 2.0, [440, 480]]],
  },
};

export class Ringtone {
  #context = null;
  #timer = null;
  #voices = new Set();
  kind = null;

  /** Creates or resumes the AudioContext; call from a user gesture so browsers allow sound. */
  unlock() {
    try {
      this.#context ??= new AudioContext();
      if (this.#context.state === 'suspended') this.#context.resume().catch(() => {});
    } catch {
      // No WebAudio: the visual alert still shows.
    }
  }

  /** 'running' when sound can be heard, 'suspended' before any user gesture, 'none' without WebAudio. */
  get contextState() {
    return this.#context?.state ?? 'none';
  }

  /** Starts ringing ('incoming' or 'ringback') until stop(). */
  start(kind) {
    if (this.kind === kind) return;
    this.stop();
    this.kind = kind;
    document.documentElement.dataset.ringtone = kind;
    this.unlock();
    const pattern = PATTERNS[kind];
    const play = () => this.#burst(pattern);
    play();
    this.#timer = setInterval(play, pattern.periodMs);
  }

  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
    this.kind = null;
    delete document.documentElement.dataset.ringtone;
    for (const voice of this.#voices) {
      try {
        voice.stop();
      } catch {
        // Already stopped.
      }
    }
    this.#voices.clear();
  }

  #burst(pattern) {
    const ctx = this.#context;
    if (!ctx || ctx.state === 'closed') return;
    const t0 = ctx.currentTime + 0.03;
    for (const [start, duration, freqs] of pattern.notes) {
      const gain = ctx.createGain();
      gain.connect(ctx.destination);
      const at = t0 + start;
      // Short ramps avoid clicks at note edges.
      gain.gain.setValueAtTime(0, at);
      gain.gain.linearRampToValueAtTime(pattern.gain / freqs.length, at + 0.01);
      gain.gain.setValueAtTime(pattern.gain / freqs.length, at + duration - 0.02);
      gain.gain.linearRampToValueAtTime(0, at + duration);
      for (const freq of freqs) {
        const osc = ctx.createOscillator();
        osc.type = 'sine';
        osc.frequency.value = freq;
        osc.connect(gain);
        osc.start(at);
        osc.stop(at + duration + 0.01);
        this.#voices.add(osc);
        osc.onended = () => this.#voices.delete(osc);
      }
    }
  }
}
