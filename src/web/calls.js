// The call on this page, from invite or ring to its end: starting, answering, declining and
// hanging up, the broker's call.* and signal frames, the tones, taking a call back after a
// reconnect or reload, and the ICE servers for its media. Owns the one current call;
// call-screen.js draws it.

import { MediaCall, getLocalMedia } from './media-call.js';
import { watchQuality } from './quality.js';
import { trackConstraints } from './devices.js';
import { notifyIncoming, closeCallNotification } from './notify.js';
import { formatClock } from './ui.js';
import { toast } from './screens.js';
import {
  renderCall,
  renderBanner,
  showRemoteStream,
  callScreenShown,
  clearCallScreen,
  showEnded,
  renderChat,
} from './call-screen.js';

const ICE_CACHE_MS = 10 * 60 * 1000;
/** How long the page waits for the socket to come back before giving up on a live call; the
 * broker's own reconnect grace (10 s by default) ends it on its side. */
const CALL_OFFLINE_LIMIT_MS = 20_000;

function normalizeIce(list) {
  return (list ?? [])
    .filter((s) => s && s.urls)
    .map((s) => ({
      urls: s.urls,
      ...(s.username ? { username: s.username } : {}),
      ...(s.credential ? { credential: s.credential } : {}),
    }));
}

function newCall(fields) {
  return {
    id: null,
    phase: 'dialing', // dialing | ringing | incoming | connecting | active | ended
    offerer: false,
    answeredAt: null,
    localStream: null,
    media: null, // MediaCall
    early: [], // frames for our call that arrived before the invite's ack named it
    signals: [], // signal frames that arrived before the peer connection existed
    adopting: false, // a call this page took back after a reload, until its media is rebuilt
    iceServers: null, // from call.accepted, when it came while adopting
    cancelled: false,
    muted: false,
    cameraOff: false,
    // What the peer told us over the data channel (an older page never does).
    // `known`: the peer has sent its state, so it speaks the data channel (an older page never
    // does, and chat to it would vanish).
    remote: { muted: false, cameraOff: false, sharing: false, speaking: false, known: false },
    sharing: null, // {track} while this side shares its screen
    chat: [], // {from: 'me' | 'peer', text, at}
    chatOpen: false,
    unread: 0,
    quality: null, // good | fair | poor, from getStats()
    stats: null,
    watcher: null,
    notification: null,
    disconnectTimer: null,
    connection: 'new',
    offlineTimer: null,
    failTimer: null,
    ...fields,
  };
}

function mediaErrorMessage(error, media) {
  if (error?.name === 'NotAllowedError') {
    return 'Camera and microphone are blocked for this page; the other side will not see or hear you.';
  }
  return media === 'video'
    ? 'No camera or microphone could be opened; the call continues without them.'
    : 'No microphone could be opened; the call continues without it.';
}

/** The message for a call that ended, from this side's point of view. `peerStatus` is the
 * callee's presence as last shown here: the broker ends calls to dnd as `busy` and to people
 * with no device as `unavailable`, and the page can say which it was. */
function endMessage(call, reason, peerStatus) {
  const name = call.peerName;
  const outgoing = call.direction === 'outgoing';
  switch (reason) {
    case 'completed':
      return call.answeredAt
        ? `Call with ${name} ended · ${formatClock((Date.now() - call.answeredAt) / 1000)}`
        : 'Call ended.';
    case 'declined':
      return outgoing ? `${name} declined the call.` : `You declined the call from ${name}.`;
    case 'cancelled':
      return outgoing ? 'Call cancelled.' : `Missed call from ${name}.`;
    case 'no_answer':
      return outgoing ? `No answer from ${name}.` : `Missed call from ${name}.`;
    case 'unavailable':
      if (!outgoing) return `Missed call from ${name}.`;
      return peerStatus === 'offline'
        ? `${name} is offline. They will see a missed call.`
        : `${name} is unavailable right now. They will see a missed call.`;
    case 'busy':
      if (!outgoing) return `Missed call from ${name}.`;
      return peerStatus === 'dnd'
        ? `${name} is on do not disturb. They will see a missed call.`
        : `${name} is busy. They will see a missed call.`;
    case 'connection_lost':
      return `Connection lost. The call with ${name} ended.`;
    case 'server_shutdown':
      return 'Switchboard restarted and the call ended. Please call again.';
    default:
      return 'The call failed. Please try again.';
  }
}

/**
 * @param {object} options
 * @param {object} options.api the REST client (createApi)
 * @param {() => object | null} options.realtime the current Realtime, null when signed out
 * @param {import('./ringtone.js').Ringtone} options.ringtone
 * @param {(username: string) => string} options.displayName a friend's name, else the username
 * @param {(username: string) => string | undefined} options.friendStatus a friend's presence
 * @param {() => void} options.onEnded a call ended here: its record is about to be written
 */
export function createCalls({ api, realtime, ringtone, displayName, friendStatus, onEnded }) {
  let call = null;
  let ice = null; // {servers, expires}
  /** A call to accept as soon as it rings here (Accept on a push notification): {id, settled}. */
  let wanted = null;

  function render() {
    const socket = realtime();
    renderCall(call, { reconnecting: Boolean(socket && !socket.connected) });
  }

  // -------------------------------------------------------------- ICE servers

  /** The ICE servers that came with `welcome`, kept for the next calls. */
  function cacheIceServers(list) {
    if (Array.isArray(list)) {
      ice = { servers: normalizeIce(list), expires: Date.now() + ICE_CACHE_MS };
    }
  }

  /** ICE servers from the broker: those on the frame when present, else cached, else asked for. */
  async function iceServers(fromFrame) {
    if (Array.isArray(fromFrame)) return normalizeIce(fromFrame);
    if (ice && ice.expires > Date.now()) return ice.servers;
    let servers = [];
    try {
      const answer = await api.iceServers();
      servers = normalizeIce(answer?.ice_servers);
      const ttl = Number(answer?.ttl) > 0 ? Number(answer.ttl) * 1000 * 0.8 : ICE_CACHE_MS;
      ice = { servers, expires: Date.now() + Math.min(ttl, ICE_CACHE_MS) };
    } catch {
      // An older broker has no ICE endpoint: host candidates still work on one network.
      ice = { servers, expires: Date.now() + ICE_CACHE_MS };
    }
    return servers;
  }

  // -------------------------------------------------------------- placing and answering

  async function startCall(username, media) {
    ringtone.unlock();
    if (call) {
      // Calling back the person whose call is ringing here is simply answering it.
      if (call.phase === 'incoming' && call.peer === username) return acceptCall();
      toast('Finish the current call first.', { kind: 'warn' });
      return undefined;
    }
    if (!realtime()?.connected) {
      toast('Not connected to Switchboard yet; try again in a moment.', { kind: 'warn' });
      return undefined;
    }
    const placed = newCall({
      direction: 'outgoing',
      peer: username,
      peerName: displayName(username),
      peerStatus: friendStatus(username),
      kind: media,
    });
    call = placed;
    render();
    const local = await getLocalMedia(media);
    if (call !== placed || placed.cancelled) {
      for (const track of local.stream.getTracks()) track.stop();
      return undefined;
    }
    placed.localStream = local.stream;
    if (local.error) toast(mediaErrorMessage(local.error, media), { kind: 'warn' });
    render();
    try {
      const ack = await realtime().request({ type: 'call.invite', to: username, media });
      if (call !== placed) return undefined;
      placed.id = ack.call_id;
      if (placed.cancelled) {
        realtime().send({ type: 'call.cancel', call_id: placed.id });
        return undefined;
      }
      for (const frame of placed.early.splice(0)) onCallFrame(frame);
    } catch (error) {
      if (call !== placed) return undefined;
      const message =
        error.code === 'not_friends'
          ? `You can only call friends.`
          : error.code === 'already_in_call'
            ? 'You are already in a call on another device.'
            : `The call could not start: ${error.message}`;
      finishCall(placed, null, message);
    }
    return undefined;
  }

  function onIncoming(frame) {
    if (call) return; // The broker rings us only when free; a stale frame otherwise.
    call = newCall({
      id: frame.call_id,
      direction: 'incoming',
      phase: 'incoming',
      peer: frame.from,
      peerName: frame.display_name ?? displayName(frame.from),
      kind: frame.media,
    });
    if (wanted?.id === call.id) {
      settleWanted(true);
      acceptCall();
      return;
    }
    ringtone.start('incoming');
    render();
    call.notification = notifyIncoming(call, { onClick: () => window.focus() });
  }

  function settleWanted(accepted) {
    const { settled } = wanted;
    wanted = null;
    settled(accepted);
  }

  /**
   * Accepts call `id` as soon as it rings on this page: at once when it already does, else when
   * the next `welcome` lists it as ringing (the page was opened from the call's notification).
   * `settled(accepted)`: false when the call is no longer there to accept.
   */
  function acceptWhenRinging(id, settled) {
    if (wanted) settleWanted(false);
    wanted = { id, settled };
    if (call?.id === id && call.phase === 'incoming') {
      settleWanted(true);
      acceptCall();
    } else if (call?.id === id) {
      settleWanted(true); // Already answered here.
    } else if (realtime()?.connected) {
      settleWanted(false); // Connected, and it isn't ringing: it's over (or answered elsewhere).
    }
  }

  /** Pushed `call.*` and `signal` frames. */
  function onFrame(frame) {
    if (frame.type === 'call.incoming') return onIncoming(frame);
    return onCallFrame(frame);
  }

  function onCallFrame(frame) {
    const current = call;
    if (!current) return;
    if (current.id === null) {
      // The invite's ack has not named our call yet; keep its frames until it does. In glare the
      // broker names the merged call in call.accepted itself.
      if (frame.type === 'call.accepted' && current.direction === 'outgoing') current.id = frame.call_id;
      else {
        current.early.push(frame);
        return;
      }
    }
    if (frame.call_id !== current.id) return;
    switch (frame.type) {
      case 'call.ringing':
        if (current.phase === 'dialing') {
          current.phase = 'ringing';
          ringtone.start('ringback');
          render();
        }
        break;
      case 'call.accepted':
        onAccepted(current, frame);
        break;
      case 'call.answered_elsewhere':
        if (current.phase === 'incoming') {
          finishCall(current, null, 'Answered on another device.', { reason: 'answered_elsewhere', quiet: true });
        } else {
          finishCall(current, null, 'The call moved to another device.', { reason: 'answered_elsewhere' });
        }
        break;
      case 'call.resumed':
        // The peer re-attached and will offer. An offer from a new peer connection (a reload,
        // another device) is recognised by its SDP session and answered from a new one of ours
        // (media-call.js); one from the same connection is an ordinary renegotiation.
        break;
      case 'call.ended':
        finishCall(current, frame.reason);
        break;
      case 'signal':
        if (current.media) current.media.handleSignal(frame);
        else current.signals.push(frame);
        break;
      default:
        break;
    }
  }

  async function onAccepted(accepted, frame) {
    ringtone.stop();
    // The broker repeats call.accepted to a device that resumes an answered call. A page that
    // kept its peer connection carries on (reconcileCalls restarts ICE if media broke); a
    // reloaded page builds a new one in reconcileCalls, whatever its role.
    if (accepted.media || accepted.adopting) {
      accepted.offerer = Boolean(frame.offerer);
      if (Array.isArray(frame.ice_servers)) accepted.iceServers = frame.ice_servers;
      return;
    }
    accepted.phase = 'connecting';
    accepted.offerer = Boolean(frame.offerer);
    accepted.answeredAt ??= Date.now();
    if (accepted.direction === 'incoming' && !accepted.localStream) {
      // Glare merged our invite into this call: this side had not opened its camera yet.
      accepted.localStream = (await getLocalMedia(accepted.kind)).stream;
    }
    render();
    await ensureMedia(accepted, frame.ice_servers);
    if (call === accepted && accepted.offerer && accepted.media) accepted.media.offer();
  }

  async function ensureMedia(target, iceFromFrame) {
    if (target.media) return;
    const servers = await iceServers(iceFromFrame);
    if (call !== target || target.media) return;
    target.media = new MediaCall({
      media: target.kind,
      localStream: target.localStream ?? new MediaStream(),
      iceServers: servers,
      sendSignal: (signal) => sendSignal(target, signal),
      onRemoteStream: (stream) => attachRemote(target, stream),
      onConnectionState: (connection) => onConnection(target, connection),
      onPeerMessage: (message) => onPeerMessage(target, message),
      onChannelOpen: () => sendState(target),
    });
    target.media.setMuted(target.muted);
    target.media.setCameraOff(target.cameraOff);
    target.watcher = watchQuality(
      () => target.media?.pc ?? null,
      (sample) => onSample(target, sample),
    );
    for (const signal of target.signals.splice(0)) target.media.handleSignal(signal);
  }

  // -------------------------------------------------------------- the data channel

  /** Tells the peer our mute, camera and screen-share state (docs/protocol.md, section 9.1). */
  function sendState(target) {
    target.media?.sendPeer({
      type: 'state',
      muted: target.muted,
      camera_off: target.cameraOff,
      screen_sharing: Boolean(target.sharing),
    });
  }

  function onPeerMessage(target, message) {
    if (call !== target) return;
    if (message.type === 'state') {
      target.remote = {
        ...target.remote,
        known: true,
        muted: message.muted === true,
        cameraOff: message.camera_off === true,
        sharing: message.screen_sharing === true,
      };
      render();
    } else if (message.type === 'chat' && typeof message.text === 'string' && message.text.trim()) {
      target.chat.push({ from: 'peer', text: message.text.slice(0, 2000), at: Date.parse(message.sent_at) || Date.now() });
      if (!target.chatOpen) target.unread += 1;
      renderChat(target);
      render();
    }
    // Unknown types come from newer pages: ignored.
  }

  let chatSeq = 0;

  /** Sends a chat message to the peer, peer to peer; false when the channel isn't open. */
  function sendChat(text) {
    const current = call;
    const body = text.trim().slice(0, 2000);
    if (!current?.media || !current.remote.known || !body) return false;
    const sent = current.media.sendPeer({
      type: 'chat',
      id: `m-${Date.now()}-${++chatSeq}`,
      text: body,
      sent_at: new Date().toISOString(),
    });
    if (!sent) return false;
    current.chat.push({ from: 'me', text: body, at: Date.now() });
    renderChat(current);
    return true;
  }

  function toggleChat(open) {
    const current = call;
    if (!current) return;
    current.chatOpen = open ?? !current.chatOpen;
    if (current.chatOpen) current.unread = 0;
    renderChat(current);
    render();
  }

  function onSample(target, sample) {
    if (call !== target) return;
    const changed =
      target.quality !== sample.quality || target.remote.speaking !== sample.speaking || !target.stats || target.stats.kbps !== sample.kbps;
    target.quality = sample.quality;
    target.stats = sample;
    target.remote.speaking = sample.speaking && !target.remote.muted;
    if (changed) render();
  }

  // -------------------------------------------------------------- screen sharing and devices

  async function toggleShare() {
    const current = call;
    if (!current?.media) return;
    if (current.sharing) {
      await stopSharing(current);
      return;
    }
    let display;
    try {
      display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (error) {
      if (error?.name !== 'NotAllowedError') toast('Screen sharing could not start.', { kind: 'warn' });
      return;
    }
    const track = display.getVideoTracks()[0];
    if (call !== current || !current.media || !track) {
      for (const t of display.getTracks()) t.stop();
      return;
    }
    current.sharing = { track };
    // The browser's own "Stop sharing" ends the track.
    track.addEventListener('ended', () => stopSharing(current));
    try {
      await current.media.sendVideo(track);
    } catch (error) {
      console.warn('screen share', error);
    }
    sendState(current);
    render();
  }

  async function stopSharing(target) {
    const sharing = target.sharing;
    if (!sharing) return;
    target.sharing = null;
    sharing.track.stop();
    if (call === target && target.media) {
      const camera = target.media.localStream.getVideoTracks()[0] ?? null;
      try {
        await target.media.sendVideo(camera);
      } catch (error) {
        console.warn('back to the camera', error);
      }
      sendState(target);
      render();
    }
  }

  /** Another camera or microphone was picked: the call's track is swapped, no renegotiation. */
  async function switchDevice(kind, deviceId) {
    const current = call;
    if (!current || kind === 'speaker' || !current.localStream) return;
    const trackKind = kind === 'camera' ? 'video' : 'audio';
    const old = current.localStream.getTracks().find((t) => t.kind === trackKind);
    if (!old) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ [trackKind]: trackConstraints(trackKind, deviceId) });
    } catch {
      toast(`That ${kind === 'camera' ? 'camera' : 'microphone'} could not be opened.`, { kind: 'warn' });
      return;
    }
    const track = stream.getTracks()[0];
    if (call !== current || !track) {
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    track.enabled = trackKind === 'audio' ? !current.muted : !current.cameraOff;
    if (current.media) {
      if (trackKind === 'video' && current.sharing) {
        // The screen stays on the sender; the new camera takes over when sharing stops.
        current.media.localStream = new MediaStream([...current.media.localStream.getTracks().filter((t) => t !== old), track]);
      } else {
        await current.media.replaceLocalTrack(old, track);
      }
      current.localStream = current.media.localStream;
    } else {
      current.localStream = new MediaStream([...current.localStream.getTracks().filter((t) => t !== old), track]);
    }
    old.stop();
    render();
  }

  function sendSignal(target, signal) {
    if (call !== target || !target.id) return;
    realtime()
      ?.request({ type: 'signal', call_id: target.id, ...signal })
      .catch((error) => console.warn('signal not relayed', error.code, error.message));
  }

  function attachRemote(target, stream) {
    if (call !== target) return;
    showRemoteStream(stream);
    render();
  }

  function onConnection(target, connection) {
    if (call !== target) return;
    target.connection = connection;
    clearTimeout(target.disconnectTimer);
    target.disconnectTimer = null;
    if (connection === 'disconnected') {
      // Media stopped flowing. If it doesn't come back by itself soon, the offerer restarts ICE
      // (one side only, so the two restarts don't cross).
      target.disconnectTimer = setTimeout(() => {
        if (call === target && target.connection === 'disconnected' && target.offerer && realtime()?.connected) {
          target.media?.offer({ iceRestart: true });
        }
      }, 4000);
    }
    if (connection === 'connected') {
      clearTimeout(target.failTimer);
      target.failTimer = null;
      if (target.phase === 'connecting') target.phase = 'active';
    } else if (connection === 'failed' && !target.failTimer) {
      // One ICE restart; if media is still down after that, the call is over.
      if (realtime()?.connected) target.media.offer({ iceRestart: true });
      target.failTimer = setTimeout(() => {
        if (call === target && target.connection !== 'connected') {
          realtime()?.send({ type: 'call.hangup', call_id: target.id, reason: 'media_failed' });
          finishCall(target, 'connection_lost');
        }
      }, 15_000);
    }
    render();
  }

  async function acceptCall() {
    const ringing = call;
    if (!ringing || ringing.phase !== 'incoming') return;
    ringing.notification?.close();
    ringing.notification = null;
    closeCallNotification(ringing.id);
    ringtone.stop();
    ringtone.unlock();
    ringing.phase = 'connecting';
    render();
    const local = await getLocalMedia(ringing.kind);
    if (call !== ringing) {
      for (const track of local.stream.getTracks()) track.stop();
      return;
    }
    ringing.localStream = local.stream;
    if (local.error) toast(mediaErrorMessage(local.error, ringing.kind), { kind: 'warn' });
    render();
    try {
      // The ack carries ICE servers with a credential for this call; an offer arriving before
      // the peer connection exists waits in call.signals.
      const ack = await realtime().request({ type: 'call.accept', call_id: ringing.id });
      if (call !== ringing) return;
      ringing.answeredAt = Date.now();
      await ensureMedia(ringing, ack.ice_servers);
      render();
    } catch (error) {
      if (call !== ringing) return;
      finishCall(
        ringing,
        null,
        error.code === 'invalid_transition' || error.code === 'call_not_found'
          ? 'The call was already over.'
          : `Could not answer: ${error.message}`,
      );
    }
  }

  function declineCall() {
    const ringing = call;
    if (!ringing || ringing.phase !== 'incoming') return;
    realtime()?.send({ type: 'call.reject', call_id: ringing.id });
    finishCall(ringing, null, `You declined the call from ${ringing.peerName}.`, { reason: 'declined', quiet: true });
  }

  function hangUp() {
    const current = call;
    if (!current) return;
    if (current.phase === 'incoming') return declineCall();
    if (current.phase === 'dialing' || current.phase === 'ringing') {
      current.cancelled = true;
      if (current.id) realtime()?.send({ type: 'call.cancel', call_id: current.id });
      finishCall(current, null, 'Call cancelled.', { reason: 'cancelled' });
      return undefined;
    }
    if (current.id) realtime()?.send({ type: 'call.hangup', call_id: current.id });
    finishCall(current, 'completed');
    return undefined;
  }

  function toggleMute() {
    const current = call;
    if (!current) return;
    current.muted = !current.muted;
    current.media?.setMuted(current.muted);
    for (const track of current.localStream?.getAudioTracks() ?? []) track.enabled = !current.muted;
    sendState(current);
    render();
  }

  function toggleCamera() {
    const current = call;
    if (!current) return;
    current.cameraOff = !current.cameraOff;
    current.media?.setCameraOff(current.cameraOff);
    for (const track of current.localStream?.getVideoTracks() ?? []) track.enabled = !current.cameraOff;
    sendState(current);
    render();
  }

  // -------------------------------------------------------------- the end of a call

  /**
   * Ends the call on this page: media off, tones off, the reason shown briefly on the call screen
   * and as a toast. `reason` is the broker's end reason; `message` overrides the text.
   */
  function finishCall(ended, reason, message, { reason: tagged, quiet = false } = {}) {
    let tag = tagged;
    if (call !== ended) return;
    const peerStatus = friendStatus(ended.peer) ?? ended.peerStatus;
    const text = message ?? endMessage(ended, reason, peerStatus);
    if (!tag && reason === 'busy' && peerStatus === 'dnd' && ended.direction === 'outgoing') tag = 'dnd';
    const missed = ended.direction === 'incoming' && ['cancelled', 'no_answer', 'unavailable', 'busy'].includes(reason);
    const serious = ['declined', 'no_answer', 'unavailable', 'busy', 'connection_lost', 'failed', 'server_shutdown'];
    const kind = missed || serious.includes(reason) ? 'warn' : 'info';
    const wasOnScreen = callScreenShown();
    teardownCall();
    const againable = ended.direction === 'outgoing' && ['declined', 'no_answer', 'busy', 'unavailable'].includes(reason);
    const again = againable ? () => startCall(ended.peer, ended.kind) : null;
    const reasonTag = tag ?? reason ?? 'ended';
    // Shown once: on the call screen when it was up, else as a toast.
    if (wasOnScreen && !quiet) showEnded(text, () => !call, { reason: reasonTag, again });
    else toast(text, { kind, reason: reasonTag, action: again ? { label: 'Call again', run: again } : null });
    onEnded();
  }

  /** Releases everything a call holds on this page, without messages. */
  function teardownCall() {
    const current = call;
    if (!current) return;
    call = null;
    ringtone.stop();
    clearTimeout(current.offlineTimer);
    clearTimeout(current.failTimer);
    clearTimeout(current.disconnectTimer);
    current.watcher?.stop();
    current.notification?.close();
    if (current.direction === 'incoming') closeCallNotification(current.id);
    current.sharing?.track.stop();
    current.media?.close();
    if (!current.media) for (const track of current.localStream?.getTracks() ?? []) track.stop();
    clearCallScreen();
  }

  // -------------------------------------------------------------- reconnects and reloads

  /** After (re)connecting: pick up, resume or close whatever call the broker still has for us. */
  async function reconcileCalls(calls) {
    const current = call;
    if (wanted && current?.id !== wanted.id && !calls.some((c) => c.call_id === wanted.id && c.state === 'ringing')) {
      settleWanted(false);
    }
    if (current && current.id) {
      const mine = calls.find((c) => c.call_id === current.id);
      if (!mine) return endedWhileAway(current);
      if (current.phase === 'incoming') return undefined; // Still ringing here.
      clearTimeout(current.offlineTimer);
      current.offlineTimer = null;
      try {
        await realtime().request({ type: 'call.resume', call_id: current.id });
      } catch {
        return endedWhileAway(current);
      }
      if (current.media && ['failed', 'disconnected'].includes(current.connection)) {
        current.media.offer({ iceRestart: true });
      }
      render();
      return undefined;
    }
    if (current) return undefined;
    const summary = calls[0];
    if (!summary) return undefined;
    if (summary.state === 'ringing') {
      return onIncoming({ call_id: summary.call_id, from: summary.peer, media: summary.media });
    }
    // This page was reloaded during a call of ours: take it back.
    const adopted = newCall({
      id: summary.call_id,
      direction: summary.direction,
      peer: summary.peer,
      peerName: displayName(summary.peer),
      kind: summary.media,
      phase: summary.state === 'active' ? 'connecting' : 'ringing',
      adopting: summary.state === 'active',
    });
    call = adopted;
    render();
    try {
      await realtime().request({ type: 'call.resume', call_id: adopted.id });
    } catch {
      call = null;
      teardownCall();
      return undefined;
    }
    adopted.localStream = (await getLocalMedia(adopted.kind)).stream;
    if (call !== adopted) return undefined;
    if (summary.state === 'active') {
      adopted.answeredAt = Date.now();
      // The timer goes on from the real answer time (to the accuracy of the two clocks).
      api.call(adopted.id).then(
        (record) => {
          const at = Date.parse(record?.answered_at ?? '');
          if (!Number.isNaN(at) && at <= Date.now()) adopted.answeredAt = at;
        },
        () => {},
      );
      await ensureMedia(adopted, adopted.iceServers);
      adopted.adopting = false;
      // A new peer connection: this side offers, whichever it was before.
      if (call === adopted && adopted.media) adopted.media.offer();
    } else {
      ringtone.start('ringback');
    }
    render();
    return undefined;
  }

  async function endedWhileAway(away) {
    let reason = 'connection_lost';
    try {
      const record = await api.call(away.id);
      if (record?.outcome && !['ringing', 'active'].includes(record.outcome)) reason = record.outcome;
    } catch {
      // The record may be gone; the call is over either way.
    }
    finishCall(away, reason);
  }

  function onConnectionLost() {
    const current = call;
    if (!current || !current.id || current.offlineTimer) return;
    if (current.phase === 'incoming') return; // It rings again (or not) after the reconnect.
    current.offlineTimer = setTimeout(() => {
      current.offlineTimer = null;
      if (call === current && !realtime()?.connected) finishCall(current, 'connection_lost');
    }, CALL_OFFLINE_LIMIT_MS);
  }

  /** The socket's state changed: the banner, a deadline for a call while the socket is lost,
   * and the call's status line (not for the first connection, which has nothing to report). */
  function connectionChanged(info) {
    const lost = renderBanner(info);
    if (lost) onConnectionLost();
    if (call && (lost || info.state === 'online' || info.state === 'stopped')) render();
  }

  return {
    start: startCall,
    onFrame,
    accept: acceptCall,
    decline: declineCall,
    hangUp,
    toggleMute,
    toggleCamera,
    toggleShare,
    toggleChat,
    sendChat,
    switchDevice,
    /** The current call's camera and microphone, or null. */
    localStream: () => call?.localStream ?? null,
    reconcile: reconcileCalls,
    acceptWhenRinging,
    cacheIceServers,
    connectionChanged,
    /** Ends any call at once, without messages (signing out). */
    teardown: teardownCall,
    /** The current call's RTCPeerConnection, or null. */
    peerConnection: () => call?.media?.pc ?? null,
    /** The current call in brief, or null. */
    summary: () =>
      call && {
        id: call.id,
        phase: call.phase,
        direction: call.direction,
        peer: call.peer,
        media: call.kind,
        quality: call.quality,
        stats: call.stats,
        connection: call.connection,
        offerer: call.offerer,
        remote: { ...call.remote },
        sharing: Boolean(call.sharing),
      },
  };
}
