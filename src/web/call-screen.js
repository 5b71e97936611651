// The call screen, drawn from a call's fields: the incoming-call alert, the phase and status
// line, the call timer, the mute and camera toggles, the remote media, the ended message; and
// the connection banner shown while the socket is down. It only draws: calls.js owns the call.

import { $, h, fill, icon, avatar, formatClock } from './ui.js';
import { applySpeaker } from './devices.js';

/** How long an ended call's message stays on the call screen. */
const ENDED_SCREEN_MS = 2500;
/** Longer when it offers "Call again", so there is time to press it. */
const ENDED_WITH_ACTION_MS = 5000;

let timerInterval = null;
let bannerTimer = null;
/** The ended message's own timer: a newer message replaces it (and its timer) entirely. */
let endedTimer = null;
/** Where the focus was before the alert or the call screen took it, to give it back after. */
let focusBefore = null;

/** Moves the focus into a dialog that just opened, remembering where it was. */
function takeFocus(target) {
  const active = document.activeElement;
  if (!$('#incoming').contains(active) && !$('#call-screen').contains(active)) focusBefore = active;
  target.focus();
}

/** Gives the focus back to where it was before the call, if that is still on the page. */
function returnFocus() {
  const back = focusBefore;
  focusBefore = null;
  if (back && back.isConnected && back.offsetParent !== null) back.focus();
}

/**
 * Draws `call` (nothing for null, but its timer stops). `reconnecting`: the socket is down, which
 * the status line says first.
 */
export function renderCall(call, { reconnecting = false } = {}) {
  clearInterval(timerInterval);
  timerInterval = null;
  const incoming = $('#incoming');
  const screen = $('#call-screen');
  if (!call) return;
  const mediaLabel = call.kind === 'video' ? 'video call' : 'audio call';
  if (call.phase === 'incoming') {
    const opening = incoming.hidden;
    incoming.hidden = false;
    screen.hidden = true;
    if (opening) takeFocus($('#incoming-accept'));
    fill($('#incoming-avatar'), [avatar(call.peerName, call.peer, 'lg')]);
    $('#incoming-name').textContent = call.peerName;
    $('#incoming-kind').textContent = `Incoming ${mediaLabel}`;
    document.title = `📞 ${call.peerName} is calling`;
    return;
  }
  const alertHadFocus = !incoming.hidden && incoming.contains(document.activeElement);
  const opening = screen.hidden || screen.dataset.phase === 'ended';
  incoming.hidden = true;
  screen.hidden = false;
  screen.dataset.phase = call.phase;
  delete screen.dataset.reason;
  $('#call-again').hidden = true;
  const remote = call.remote ?? {};
  // An audio call shows video while the peer shares a screen.
  screen.dataset.media = call.kind === 'video' || remote.sharing ? 'video' : 'audio';
  const inCall = call.phase === 'active' || call.phase === 'connecting';
  // A peer whose camera is off still sends (black) frames: show their avatar instead.
  screen.dataset.remoteVideo = String(Boolean(call.media?.remoteStream.getVideoTracks().length) && !remote.cameraOff);
  screen.dataset.peerSpeaking = String(inCall && Boolean(remote.speaking) && !remote.muted);
  $('#peer-muted').hidden = !(inCall && remote.muted);
  $('#peer-camera-off').hidden = !(inCall && remote.cameraOff && call.kind === 'video');
  $('#peer-sharing').hidden = !(inCall && remote.sharing);
  screen.dataset.localVideo = String(Boolean(call.localStream?.getVideoTracks().length) && !call.cameraOff);
  fill($('#call-avatar'), [avatar(call.peerName, call.peer, 'xl')]);
  $('#call-name').textContent = call.peerName;
  const local = $('#local-video');
  if (call.localStream && local.srcObject !== call.localStream) {
    local.srcObject = call.localStream;
    local.play().catch(() => {});
  }
  const status = {
    dialing: 'Calling…',
    ringing: 'Ringing…',
    connecting: 'Connecting…',
    active: '',
  }[call.phase];
  let line = status ?? '';
  if (reconnecting) line = 'Reconnecting…';
  else if (call.phase === 'active' && call.connection === 'disconnected') line = 'Poor connection, reconnecting media…';
  $('#call-status').textContent = line;
  document.title = call.phase === 'active' ? `In a call with ${call.peerName}` : `Calling ${call.peerName}…`;
  setToggle($('#call-mute'), call.muted, call.muted ? 'micOff' : 'mic', call.muted ? 'Unmute microphone' : 'Mute microphone');
  setToggle(
    $('#call-camera'),
    call.cameraOff,
    call.cameraOff ? 'cameraOff' : 'camera',
    call.cameraOff ? 'Turn camera on' : 'Turn camera off',
  );
  $('#call-camera').hidden = !call.localStream?.getVideoTracks().length;
  renderTools(call, inCall);
  const hangup = $('#call-hangup');
  const ringingOut = call.phase === 'dialing' || call.phase === 'ringing';
  hangup.setAttribute('aria-label', ringingOut ? 'Cancel call' : 'Hang up');
  hangup.title = ringingOut ? 'Cancel call' : 'Hang up';
  if (opening || alertHadFocus) takeFocus(hangup);
  const tick = () => {
    $('#call-timer').textContent = call.answeredAt ? formatClock((Date.now() - call.answeredAt) / 1000) : '';
  };
  tick();
  if (call.answeredAt) timerInterval = setInterval(tick, 1000);
}

const QUALITY_LABEL = { good: 'Good connection', fair: 'Fair connection', poor: 'Poor connection' };

/** Screen sharing, chat, quality, picture-in-picture and full screen. */
function renderTools(call, inCall) {
  const active = call.phase === 'active';
  const share = $('#call-share');
  share.hidden = !active || !navigator.mediaDevices?.getDisplayMedia;
  setToggle(share, Boolean(call.sharing), 'screen', call.sharing ? 'Stop sharing screen' : 'Share screen');
  const chat = $('#call-chat');
  chat.hidden = !inCall;
  chat.setAttribute('aria-pressed', String(call.chatOpen));
  const label = call.unread ? `Chat, ${call.unread} unread` : call.chatOpen ? 'Close chat' : 'Chat';
  chat.setAttribute('aria-label', label);
  chat.title = label;
  if (!chat.querySelector('.icon')) chat.prepend(icon('chat'));
  $('#chat-badge').hidden = !call.unread;
  $('#chat-badge').textContent = String(call.unread);
  $('#chat-panel').hidden = !(inCall && call.chatOpen);
  // Chat needs the channel open and a peer that answers on it (an older page doesn't).
  const chatReady = Boolean(call.media?.channelOpen) && Boolean(call.remote?.known);
  $('#chat-input').disabled = !chatReady;
  $('#chat-send').disabled = !chatReady;
  $('#chat-note').textContent = chatReady
    ? `Messages go straight to ${call.peerName} and are not stored.`
    : call.phase === 'active' && call.connection === 'connected'
      ? `${call.peerName}'s page has no chat yet (an older version).`
      : 'Chat opens once the call is connected.';
  const quality = $('#call-quality');
  quality.hidden = !(active && call.quality);
  if (call.quality) {
    quality.dataset.quality = call.quality;
    quality.textContent = QUALITY_LABEL[call.quality];
    const s = call.stats ?? {};
    quality.title = [
      s.rtt != null ? `round trip ${Math.round(s.rtt * 1000)} ms` : null,
      `loss ${Math.round((s.loss ?? 0) * 100)} %`,
      `${s.kbps ?? 0} kbit/s`,
    ]
      .filter(Boolean)
      .join(' · ');
  }
  const remoteShown = screenRemoteVideoShown();
  $('#call-pip').hidden = !(inCall && remoteShown && document.pictureInPictureEnabled);
  $('#call-fullscreen').hidden = !document.fullscreenEnabled;
  $('#call-fullscreen').setAttribute('aria-pressed', String(document.fullscreenElement === $('#call-screen')));
}

function screenRemoteVideoShown() {
  return $('#call-screen').dataset.remoteVideo === 'true';
}

/** The chat log of `call`, newest last. */
export function renderChat(call) {
  const log = $('#chat-log');
  fill(
    log,
    call.chat.map((m) =>
      h(
        'li',
        { class: `chat-message ${m.from}`, dataset: { from: m.from } },
        h('span', { class: 'visually-hidden' }, m.from === 'me' ? 'You: ' : `${call.peerName}: `),
        h('span', { class: 'chat-text' }, m.text),
        h('time', { class: 'chat-time', datetime: new Date(m.at).toISOString() }, new Date(m.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
      ),
    ),
  );
  log.scrollTop = log.scrollHeight;
}

/** Full screen for the call, or back. */
export function toggleFullscreen() {
  const screen = $('#call-screen');
  const done = () => $('#call-fullscreen').setAttribute('aria-pressed', String(document.fullscreenElement === screen));
  if (document.fullscreenElement) document.exitFullscreen().then(done, done);
  else screen.requestFullscreen?.().then(done, done);
}

/** The peer's video in a floating window that stays on top of other tabs and apps. */
export function togglePictureInPicture() {
  const video = $('#remote-video');
  if (document.pictureInPictureElement) document.exitPictureInPicture().catch(() => {});
  else video.requestPictureInPicture?.().catch(() => {});
}

function setToggle(button, pressed, iconName, label) {
  button.setAttribute('aria-pressed', String(pressed));
  button.setAttribute('aria-label', label);
  button.title = label;
  fill(button, [icon(iconName)]);
}

/** The peer's stream into the remote video and audio; a button to allow sound if autoplay is refused. */
export function showRemoteStream(stream) {
  const video = $('#remote-video');
  const audio = $('#remote-audio');
  if (video.srcObject !== stream) video.srcObject = stream;
  if (audio.srcObject !== stream) audio.srcObject = stream;
  applySpeaker(audio);
  video.play().catch(() => {});
  audio.play().then(
    () => ($('#sound-unlock').hidden = true),
    () => ($('#sound-unlock').hidden = false),
  );
}

/** The "allow sound" button: a click is the gesture that lets the remote audio play. */
export function playRemoteAudio() {
  $('#remote-audio').play().then(() => ($('#sound-unlock').hidden = true), () => {});
}

export function callScreenShown() {
  return !$('#call-screen').hidden;
}

/** No call: media detached, the alert and the call screen hidden, the title back. */
export function clearCallScreen() {
  for (const id of ['#remote-video', '#remote-audio', '#local-video']) $(id).srcObject = null;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  if (document.pictureInPictureElement) document.exitPictureInPicture().catch(() => {});
  $('#chat-panel').hidden = true;
  $('#chat-log').replaceChildren();
  $('#chat-badge').hidden = true;
  $('#call-quality').hidden = true;
  $('#incoming').hidden = true;
  $('#call-screen').hidden = true;
  $('#call-screen').dataset.phase = 'idle';
  $('#sound-unlock').hidden = true;
  document.title = 'Switchboard';
  returnFocus();
}

/**
 * An ended call's message on the call screen for a moment (the one place it is shown; no toast
 * repeats it); it stays while `stillIdle()` is false. `again`: a "Call again" button, which keeps
 * the message up a little longer.
 */
export function showEnded(text, stillIdle, { reason = 'ended', again = null } = {}) {
  const screen = $('#call-screen');
  screen.hidden = false;
  screen.dataset.phase = 'ended';
  screen.dataset.reason = reason;
  $('#call-status').textContent = text;
  $('#call-timer').textContent = '';
  const button = $('#call-again');
  button.hidden = !again;
  button.onclick = again
    ? () => {
        close();
        again();
      }
    : null;
  if (again) button.focus();
  const close = () => {
    if (screen.dataset.phase === 'ended') {
      screen.hidden = true;
      screen.dataset.phase = 'idle';
      delete screen.dataset.reason;
      button.hidden = true;
      returnFocus();
    }
  };
  const dismiss = () => {
    if (stillIdle()) close();
  };
  clearTimeout(endedTimer);
  endedTimer = setTimeout(dismiss, again ? ENDED_WITH_ACTION_MS : ENDED_SCREEN_MS);
}

// ---------------------------------------------------------------- connection banner

/**
 * Shows the socket's state in the banner. Returns true when it reports the connection as lost:
 * not while online or stopped, nor for the first connection, which has nothing to report yet.
 */
export function renderBanner(info) {
  clearInterval(bannerTimer);
  const banner = $('#conn-banner');
  document.documentElement.dataset.connection = info.state;
  if (info.state === 'online' || info.state === 'stopped') {
    banner.hidden = true;
    delete banner.dataset.state;
    return false;
  }
  if (info.state === 'connecting' && !info.attempt) {
    banner.hidden = true; // The first connection: nothing to report yet.
    return false;
  }
  banner.hidden = false;
  const text = $('#conn-text');
  if (info.state === 'connecting') {
    text.textContent = banner.dataset.state === 'offline' ? 'Offline: trying to reach Switchboard…' : 'Connection lost. Reconnecting…';
  } else {
    // Never reached the broker (it is down, or this device has no network) versus a drop.
    banner.dataset.state = info.unreachable ? 'offline' : 'lost';
    const update = () => {
      const seconds = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
      text.textContent = info.unreachable
        ? `Offline: Switchboard can't be reached. Retrying in ${seconds} s…`
        : `Connection lost. Reconnecting in ${seconds} s…`;
    };
    update();
    bannerTimer = setInterval(update, 500);
  }
  return true;
}

/** Signed out: the banner goes. */
export function hideBanner() {
  $('#conn-banner').hidden = true;
  delete $('#conn-banner').dataset.state;
}
