// The media side of one call: local camera and microphone, the RTCPeerConnection, the
// offer/answer/trickle-ICE exchange carried by the broker's `signal` frames, and the call's
// peer-to-peer data channel (state and chat messages, never through the broker).

import { trackConstraints } from './devices.js';

/** The data channel both sides open on every peer connection: negotiated, so neither side has
 * to announce it, and a peer that never opens it (an older page) simply never hears from it. */
const CHANNEL_LABEL = 'switchboard';
const CHANNEL_ID = 0;

/**
 * Camera and microphone for a call. Falls back to what is available (a video call without a
 * camera still sends audio and receives video); never throws.
 * @returns {Promise<{stream: MediaStream, error: Error | null}>}
 */
export async function getLocalMedia(media) {
  const attempts =
    media === 'video'
      ? [{ audio: trackConstraints('audio'), video: trackConstraints('video') }, { audio: true }, { video: true }]
      : [{ audio: trackConstraints('audio') }, { audio: true }];
  let lastError = null;
  if (navigator.mediaDevices?.getUserMedia) {
    for (const constraints of attempts) {
      try {
        return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: null };
      } catch (error) {
        lastError = error;
      }
    }
  } else {
    lastError = new Error('this browser gives no access to camera or microphone (is the page on https?)');
  }
  return { stream: new MediaStream(), error: lastError };
}

/** The sess-id of an SDP's o= line: the same for every renegotiation of one peer connection. */
function sessionIdOf(sdp) {
  return /^o=\S+ (\d+) /m.exec(sdp)?.[1] ?? null;
}

export class MediaCall {
  /**
   * @param {object} options
   * @param {'audio'|'video'} options.media
   * @param {MediaStream} options.localStream
   * @param {RTCIceServer[]} options.iceServers
   * @param {(signal: {kind: string, sdp?: string, candidate?: object}) => void} options.sendSignal
   * @param {(stream: MediaStream) => void} options.onRemoteStream
   * @param {(state: RTCPeerConnectionState) => void} options.onConnectionState
   * @param {(message: object) => void} [options.onPeerMessage] a message from the peer's data channel
   * @param {() => void} [options.onChannelOpen] the data channel (re)opened: time to send our state
   */
  constructor({ media, localStream, iceServers, sendSignal, onRemoteStream, onConnectionState, onPeerMessage, onChannelOpen }) {
    this.media = media;
    this.localStream = localStream;
    this.iceServers = iceServers;
    this.sendSignal = sendSignal;
    this.onRemoteStream = onRemoteStream;
    this.onConnectionState = onConnectionState;
    this.onPeerMessage = onPeerMessage ?? (() => {});
    this.onChannelOpen = onChannelOpen ?? (() => {});
    this.remoteSession = null;
    this.pendingCandidates = [];
    // Signals are handled strictly in arrival order, each after the previous one finished.
    this.queue = Promise.resolve();
    this.closed = false;
    this.#createPeer();
  }

  #createPeer() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    // Screen sharing and camera switches swap the track on this sender.
    this.videoSender = pc.getSenders().find((s) => s.track?.kind === 'video') ?? null;
    const remote = new MediaStream();
    pc.onicecandidate = (event) => {
      // A null candidate only marks the end of gathering; the broker needs none.
      if (event.candidate && event.candidate.candidate) {
        this.sendSignal({ kind: 'candidate', candidate: event.candidate.toJSON() });
      }
    };
    pc.ontrack = (event) => {
      if (!remote.getTracks().includes(event.track)) remote.addTrack(event.track);
      this.onRemoteStream(remote);
    };
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this.onConnectionState(pc.connectionState);
    };
    const channel = pc.createDataChannel(CHANNEL_LABEL, { negotiated: true, id: CHANNEL_ID });
    channel.onopen = () => {
      if (this.channel === channel) this.onChannelOpen();
    };
    channel.onmessage = (event) => {
      if (this.channel !== channel || typeof event.data !== 'string' || event.data.length > 64 * 1024) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && typeof message.type === 'string') this.onPeerMessage(message);
    };
    this.pc = pc;
    this.channel = channel;
    this.remoteStream = remote;
  }

  /** The camera or microphone track `old` is replaced by `track` (another device). */
  async replaceLocalTrack(old, track) {
    const streamTracks = this.localStream.getTracks().filter((t) => t !== old);
    this.localStream = new MediaStream([...streamTracks, track]);
    const sender = this.pc.getSenders().find((s) => s.track === old);
    if (sender) await sender.replaceTrack(track);
    else if (track.kind === 'video' && this.videoSender && !this.videoSender.track) await this.videoSender.replaceTrack(track);
  }

  /**
   * Sends `track` as this side's video: a shared screen, or the camera again (null: none). With a
   * video sender already there it is a replaceTrack and needs no negotiation; an audio call gets
   * a video sender and a new offer through the broker.
   */
  async sendVideo(track) {
    if (this.closed) return;
    if (this.videoSender) {
      await this.videoSender.replaceTrack(track);
      return;
    }
    if (!track) return;
    const idle = this.pc.getTransceivers().find((t) => t.receiver.track?.kind === 'video' && !t.stopped);
    if (idle) {
      idle.direction = 'sendrecv';
      await idle.sender.replaceTrack(track);
      this.videoSender = idle.sender;
    } else {
      this.videoSender = this.pc.addTrack(track, this.localStream);
    }
    await this.offer({ renegotiate: true });
  }

  /** Sends a message to the peer over the data channel; false while it isn't open. */
  sendPeer(message) {
    if (this.closed || this.channel?.readyState !== 'open') return false;
    this.channel.send(JSON.stringify(message));
    return true;
  }

  get channelOpen() {
    return this.channel?.readyState === 'open';
  }

  /** Sends an offer: the first one, an ICE restart, or a fresh start after a page reload. */
  offer({ iceRestart = false, renegotiate = false } = {}) {
    return this.#enqueue(async () => {
      const pc = this.pc;
      if (!iceRestart && !renegotiate) {
        // Receive what the call is about even when this side has no camera or microphone.
        const kinds = this.media === 'video' ? ['audio', 'video'] : ['audio'];
        for (const kind of kinds) {
          const has = pc.getTransceivers().some((t) => t.receiver.track?.kind === kind);
          if (!has) pc.addTransceiver(kind, { direction: 'recvonly' });
        }
      }
      const offer = await pc.createOffer({ iceRestart });
      await pc.setLocalDescription(offer);
      this.sendSignal({ kind: 'offer', sdp: pc.localDescription.sdp });
    });
  }

  /** One relayed `signal` frame from the peer. */
  handleSignal({ kind, sdp, candidate }) {
    return this.#enqueue(async () => {
      if (kind === 'offer') await this.#onOffer(sdp);
      else if (kind === 'answer') await this.#onAnswer(sdp);
      else if (kind === 'candidate' && candidate) await this.#onCandidate(candidate);
    });
  }

  async #onOffer(sdp) {
    const session = sessionIdOf(sdp);
    if (this.remoteSession && session !== this.remoteSession) {
      // The peer started over with a new peer connection (it reloaded the page mid-call).
      this.pc.close();
      this.pendingCandidates = [];
      this.#createPeer();
    }
    this.remoteSession = session;
    const pc = this.pc;
    if (pc.signalingState !== 'stable') {
      // Both sides offered at once (an ICE restart from each): the remote offer wins.
      await pc.setLocalDescription({ type: 'rollback' });
    }
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await this.#flushCandidates();
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.sendSignal({ kind: 'answer', sdp: pc.localDescription.sdp });
  }

  async #onAnswer(sdp) {
    const pc = this.pc;
    if (pc.signalingState !== 'have-local-offer') return;
    this.remoteSession = sessionIdOf(sdp);
    await pc.setRemoteDescription({ type: 'answer', sdp });
    await this.#flushCandidates();
  }

  async #onCandidate(candidate) {
    if (!this.pc.remoteDescription) {
      this.pendingCandidates.push(candidate);
      return;
    }
    await this.#addCandidate(candidate);
  }

  async #flushCandidates() {
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const candidate of pending) await this.#addCandidate(candidate);
  }

  async #addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (error) {
      // A candidate of an earlier ICE generation or peer connection; harmless.
      console.debug('ignored ICE candidate', error);
    }
  }

  #enqueue(task) {
    const run = this.queue.then(() => (this.closed ? undefined : task()));
    this.queue = run.catch((error) => console.warn('signaling step failed', error));
    return run;
  }

  setMuted(muted) {
    for (const track of this.localStream.getAudioTracks()) track.enabled = !muted;
  }

  setCameraOff(off) {
    for (const track of this.localStream.getVideoTracks()) track.enabled = !off;
  }

  get hasAudio() {
    return this.localStream.getAudioTracks().length > 0;
  }

  get hasVideo() {
    return this.localStream.getVideoTracks().length > 0;
  }

  close() {
    this.closed = true;
    this.pc.close();
    for (const track of this.localStream.getTracks()) track.stop();
  }
}
