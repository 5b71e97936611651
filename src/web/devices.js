// Camera, microphone and speaker: the picker dialog with a live preview, the choices remembered
// in localStorage, and the constraints a call opens its devices with.

import { $, h, fill } from './ui.js';

const STORAGE_KEY = 'switchboard.devices';

/** The remembered choices: {camera?, mic?, speaker?} device ids. */
export function chosenDevices() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY)) ?? {};
  } catch {
    return {};
  }
}

function choose(kind, deviceId) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ ...chosenDevices(), [kind]: deviceId }));
}

/** getUserMedia constraints for a track kind, preferring the chosen device (`ideal`, so a
 * device that went away falls back to another instead of failing the call). */
export function trackConstraints(kind, deviceId = null) {
  const chosen = deviceId ?? chosenDevices()[kind === 'video' ? 'camera' : 'mic'];
  const base = kind === 'video' ? { width: { ideal: 1280 }, height: { ideal: 720 } } : {};
  if (deviceId) return { ...base, deviceId: { exact: deviceId } };
  return chosen ? { ...base, deviceId: { ideal: chosen } } : kind === 'video' ? base : true;
}

/** Sends the remote audio to the chosen speaker, where the browser can. */
export function applySpeaker(element) {
  const speaker = chosenDevices().speaker;
  if (speaker && typeof element.setSinkId === 'function') element.setSinkId(speaker).catch(() => {});
}

/**
 * @param {object} options
 * @param {() => MediaStream | null} options.callStream the current call's camera and microphone,
 *   shown as the preview instead of opening the devices a second time
 * @param {(kind: 'camera'|'mic'|'speaker', deviceId: string) => void} options.onChange a choice
 *   changed (the call switches to it)
 */
export function createDevices({ callStream, onChange }) {
  let preview = null; // a stream opened for the preview only

  function stopPreview() {
    for (const track of preview?.getTracks() ?? []) track.stop();
    preview = null;
    $('#device-preview').srcObject = null;
  }

  async function showPreview() {
    const video = $('#device-preview');
    const inCall = callStream();
    if (inCall) {
      stopPreview();
      video.srcObject = inCall;
      return;
    }
    stopPreview();
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: trackConstraints('video'), audio: trackConstraints('audio') });
      if (!$('#devices-dialog').open) {
        // Closed while the camera was opening.
        for (const track of stream.getTracks()) track.stop();
        return;
      }
      stopPreview();
      preview = stream;
      video.srcObject = preview;
      $('#devices-error').textContent = '';
    } catch (error) {
      $('#devices-error').textContent =
        error?.name === 'NotAllowedError' ? 'Camera and microphone are blocked for this page.' : 'No camera or microphone could be opened.';
    }
  }

  async function listDevices() {
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    const chosen = chosenDevices();
    const fillSelect = (select, kind, key, fallback) => {
      const mine = devices.filter((d) => d.kind === kind);
      fill(
        select,
        mine.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === chosen[key] }, d.label || `${fallback} ${i + 1}`)),
      );
      select.disabled = mine.length === 0;
      return mine.length;
    };
    fillSelect($('#device-camera'), 'videoinput', 'camera', 'Camera');
    fillSelect($('#device-mic'), 'audioinput', 'mic', 'Microphone');
    const speakers = fillSelect($('#device-speaker'), 'audiooutput', 'speaker', 'Speaker');
    $('#device-speaker-field').hidden = !speakers || typeof HTMLMediaElement.prototype.setSinkId !== 'function';
  }

  async function open() {
    const dialog = $('#devices-dialog');
    if (!dialog.open) dialog.showModal();
    // Device names are only readable once the page has been given a device.
    await showPreview();
    await listDevices();
  }

  function picked(kind, select) {
    choose(kind, select.value);
    onChange(kind, select.value);
    if (kind !== 'speaker' && !callStream()) showPreview();
  }

  function wire() {
    $('#device-camera').addEventListener('change', (e) => picked('camera', e.target));
    $('#device-mic').addEventListener('change', (e) => picked('mic', e.target));
    $('#device-speaker').addEventListener('change', (e) => picked('speaker', e.target));
    $('#devices-dialog').addEventListener('close', stopPreview);
    navigator.mediaDevices?.addEventListener?.('devicechange', () => $('#devices-dialog').open && listDevices());
  }

  return { open, wire, refreshPreview: () => $('#devices-dialog').open && showPreview() };
}
