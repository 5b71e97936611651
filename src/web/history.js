// Call history: the recent calls, the missed-calls badge on the History tab, and marking them
// seen. Owns the loaded records and the missed count.

import { h, $, fill, formatClock, formatWhen } from './ui.js';

const OUTCOME_LABEL = {
  completed: 'Answered',
  declined: 'Declined',
  cancelled: 'Cancelled',
  no_answer: 'No answer',
  unavailable: 'Unavailable',
  busy: 'Busy',
  connection_lost: 'Connection lost',
  failed: 'Failed',
  server_shutdown: 'Server restarted',
  ringing: 'Ringing',
  active: 'In progress',
};

/**
 * @param {object} options
 * @param {object} options.api the REST client (createApi)
 * @param {(username: string) => object | undefined} options.friend what is known of a friend
 * @param {(username: string, media: string) => void} options.onCall a record's call-back button
 */
export function createHistory({ api, friend, onCall }) {
  let records = [];
  let missed = 0;
  let refreshTimers = [];
  // Each load's number: an answer older than the latest load, or than marking the calls
  // seen, is dropped (it would bring back a count already cleared).
  let loads = 0;

  async function load() {
    const mine = ++loads;
    let page;
    try {
      page = await api.calls(30);
    } catch (error) {
      if (error.status !== 401) console.warn('history', error);
      return;
    }
    if (mine !== loads) return;
    records = page.calls;
    setMissed(page.missed_count ?? 0);
    render();
  }

  /** Call records are written just after the call ends, so look again shortly after. */
  function refreshSoon() {
    for (const t of refreshTimers) clearTimeout(t);
    refreshTimers = [400, 1500].map((ms) => setTimeout(load, ms));
  }

  function setMissed(count) {
    missed = count;
    const badge = $('#missed-badge');
    badge.hidden = count === 0;
    badge.textContent = String(count);
    // Read as "History 2 missed"; the tab's name stays its visible text.
    $('#missed-label').hidden = count === 0;
  }

  function render() {
    const rows = records.map((call) => {
      const known = call.peer_deleted ? null : friend(call.peer);
      const name = call.peer_deleted ? 'Deleted account' : (known?.display_name ?? call.peer);
      let outcome = call.missed ? 'Missed' : (OUTCOME_LABEL[call.outcome] ?? call.outcome);
      if (call.outcome === 'completed') outcome = formatClock(call.duration_seconds);
      return h(
        'li',
        {
          class: `row call-record${call.missed ? ' missed' : ''}`,
          dataset: { peer: call.peer, outcome: call.outcome, direction: call.direction, media: call.media },
        },
        h('span', { class: `direction ${call.direction}`, title: call.direction, icon: call.direction }),
        h(
          'span',
          { class: 'row-text' },
          h('span', { class: 'row-title' }, name),
          h(
            'span',
            { class: 'row-sub' },
            h('span', { class: 'visually-hidden' }, `${call.direction} `),
            `${call.media === 'video' ? 'Video' : 'Audio'} · `,
            h('span', { class: 'outcome' }, outcome),
          ),
        ),
        h('span', { class: 'row-when muted' }, formatWhen(call.started_at)),
        known
          ? h('button', {
              type: 'button',
              class: 'icon-button',
              title: `Call ${name} back`,
              'aria-label': `Call ${name} back`,
              onclick: () => onCall(call.peer, call.media),
              icon: call.media === 'video' ? 'video' : 'phone',
            })
          : null,
      );
    });
    fill($('#history-list'), rows);
    $('#history-empty').hidden = rows.length > 0;
  }

  /**
   * The History section was shown: reload it. Missed calls count as seen only when the person
   * opened it themselves (`byUser`) and it is still showing once the list has loaded.
   */
  function opened({ byUser, stillShown }) {
    load().then(async () => {
      if (byUser && missed > 0 && stillShown()) {
        try {
          await api.markCallsSeen();
          loads += 1;
          setMissed(0);
        } catch {
          // The badge stays; nothing else depends on it.
        }
      }
    });
  }

  /** Signed out: the records and the count go (the list and badge are redrawn on next load). */
  function reset() {
    records = [];
    missed = 0;
  }

  return { load, refreshSoon, setMissed, opened, reset };
}
