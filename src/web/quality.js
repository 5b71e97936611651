// The call's connection quality and the peer's "speaking", both read from the peer connection's
// getStats() once a second: round-trip time, packet loss and bitrate give good, fair or poor.

const INTERVAL_MS = 1000;
/** Loss is judged over the last few seconds, so one bad second doesn't flip the indicator. */
const WINDOW = 4;
const SPEAKING_LEVEL = 0.02;

/**
 * good / fair / poor from a round-trip time (seconds), a loss fraction (0..1) and whether media
 * is connected at all. The thresholds follow what people notice: beyond 8 % loss or half a
 * second of round trip a call stutters; beyond 2 % or a quarter second it degrades.
 */
export function classifyQuality({ rtt = 0, loss = 0, connected = true }) {
  if (!connected || loss >= 0.08 || rtt >= 0.5) return 'poor';
  if (loss >= 0.02 || rtt >= 0.25) return 'fair';
  return 'good';
}

/** One reading of the numbers that matter, summed over the inbound streams. */
function read(report) {
  let lost = 0;
  let received = 0;
  let bytes = 0;
  let rtt = null;
  let energy = 0;
  let duration = 0;
  let selectedPair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) selectedPair = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      lost += Math.max(0, s.packetsLost ?? 0);
      received += s.packetsReceived ?? 0;
      bytes += s.bytesReceived ?? 0;
      if (s.kind === 'audio') {
        energy += s.totalAudioEnergy ?? 0;
        duration += s.totalSamplesDuration ?? 0;
      }
    } else if (s.type === 'candidate-pair' && typeof s.currentRoundTripTime === 'number') {
      if (s.id === selectedPair || (!selectedPair && s.nominated)) rtt = s.currentRoundTripTime;
    }
  });
  return { lost, received, bytes, rtt, energy, duration, at: performance.now() };
}

/**
 * Watches the call's peer connection (`currentPc()`: it is replaced when the peer reloads) until
 * stop(). `onSample({quality, rtt, loss, kbps, speaking})` gets each second's verdict.
 */
export function watchQuality(currentPc, onSample) {
  const history = [];
  let stopped = false;
  let busy = false;
  let watched = null;
  const timer = setInterval(async () => {
    if (busy || stopped) return;
    const pc = currentPc();
    if (!pc) return;
    if (pc !== watched) {
      watched = pc;
      history.length = 0;
    }
    busy = true;
    try {
      const now = read(await pc.getStats());
      history.push(now);
      if (history.length > WINDOW + 1) history.shift();
      const first = history[0];
      const expected = now.lost - first.lost + (now.received - first.received);
      const loss = expected > 0 ? (now.lost - first.lost) / expected : 0;
      const seconds = (now.at - first.at) / 1000;
      const kbps = seconds > 0 ? Math.round(((now.bytes - first.bytes) * 8) / 1000 / seconds) : 0;
      const connected = pc.connectionState === 'connected';
      // The mean level over the last second, from the energy the receiver played out (a single
      // packet's audioLevel is too jumpy).
      const previous = history[history.length - 2];
      const played = previous ? now.duration - previous.duration : 0;
      const audioLevel = played > 0 ? Math.sqrt(Math.max(0, now.energy - previous.energy) / played) : 0;
      if (!stopped && history.length > 1) {
        onSample({
          quality: classifyQuality({ rtt: now.rtt ?? 0, loss, connected }),
          rtt: now.rtt,
          loss,
          kbps,
          audioLevel,
          speaking: audioLevel > SPEAKING_LEVEL,
        });
      }
    } catch {
      // The connection closed under us; stop() follows.
    } finally {
      busy = false;
    }
  }, INTERVAL_MS);
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
